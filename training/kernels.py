"""Host-independent fp32 arithmetic for the demo build: one commit, one set of weights, on any x86 CPU.

Training amplifies last-bit differences between kernels. MKL (matrix products),
oneDNN and ATen's own vectorized ops each choose a code path by instruction
set, so an AMX Xeon and an AVX2-only EPYC trained different demo models from
the same commit and seed, and answered the model card's first example
differently. Pinning all three to their AVX2 paths (MKL's Conditional
Numerical Reproducibility in strict mode), with the recipe's fixed thread
count, gives every host with AVX2 the same arithmetic. It costs the build
speed on AVX-512 and AMX hosts, and nothing on the serving path, which is
never pinned.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

PINNED_KERNELS: dict[str, str] = {
    "MKL_CBWR": "AVX2,STRICT",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pinned(environ: Mapping[str, str] = os.environ) -> bool:
    return all(environ.get(name) == value for name, value in PINNED_KERNELS.items())


def rerun_pinned(module: str, argv: Sequence[str]) -> None:
    """Replace this process by ``python -m module argv`` with the kernels pinned, unless they already are.

    The libraries read these variables once, when first used, so they must be
    in the environment before the process does any arithmetic.
    """
    if pinned():
        return
    env = {**os.environ, **PINNED_KERNELS}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
