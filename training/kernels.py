"""Host-independent fp32 arithmetic for the demo build: one commit, one set of weights, on any x86 CPU.

Training amplifies last-bit differences between kernels. MKL (matrix products),
oneDNN and ATen's own vectorized ops each choose a code path by instruction
set, so an AMX Xeon and an AVX2-only EPYC trained different demo models from
the same commit and seed, and answered the model card's first example
differently. MKL runs in its Conditional Numerical Reproducibility mode
``COMPATIBLE,STRICT``, the one code path MKL promises to run alike on Intel and
AMD CPUs (its ``AVX2`` branch is honoured on Intel only: on an AMD EPYC,
MKL_VERBOSE shows ``AVX2,STRICT`` running as ``AUTO,STRICT``), and ATen and oneDNN
are pinned to their AVX2 paths; with the recipe's fixed thread count that is the
same arithmetic on every x86 host with AVX2. It costs the build about 2.6× its
CPU time, and nothing on the serving path, which is never pinned.

To measure how much the kernels matter (the spread between hosts), a build
can be told to keep the environment's own settings instead:
``CHS_DEMO_KERNELS=environment`` skips the re-run, so
``CHS_DEMO_KERNELS=environment MKL_CBWR=SSE4_2,STRICT ATEN_CPU_CAPABILITY=default
ONEDNN_MAX_CPU_ISA=SSE41`` emulates an older host and, with none of the three
set, the build takes the host's default paths. ``eval.json`` records what the
build ran with (``kernel_settings``). Without that variable the build is always
pinned.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

PINNED_KERNELS: dict[str, str] = {
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


#: Set to this value, the build keeps the kernel settings the environment has (see the module's docstring).
KEEP_ENVIRONMENT = ("CHS_DEMO_KERNELS", "environment")


def pinned(environ: Mapping[str, str] = os.environ) -> bool:
    return all(environ.get(name) == value for name, value in PINNED_KERNELS.items())


def kernel_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str] | str:
    """What ``eval.json`` records: the three settings as this process has them, or ``"host default"``."""
    found = {name: environ[name] for name in PINNED_KERNELS if name in environ}
    return found or "host default"


def rerun_pinned(module: str, argv: Sequence[str]) -> None:
    """Replace this process by ``python -m module argv`` with the kernels pinned, unless they already are.

    ``CHS_DEMO_KERNELS=environment`` asks to keep the environment's settings: then this returns too.

    The libraries read these variables once, when first used, so they must be
    in the environment before the process does any arithmetic.
    """
    if pinned() or os.environ.get(KEEP_ENVIRONMENT[0]) == KEEP_ENVIRONMENT[1]:
        return
    env = {**os.environ, **PINNED_KERNELS}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
