"""Facts about the machine and the code a run measured: CPU, GPU, commit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.common import ROOT


def cpu_name() -> str:
    """The CPU model the replicas key their engine measurement by, and the core count."""
    from deployments.core.engine_choice import cpu_model

    return f"{cpu_model()} ({os.cpu_count()} cores)"


def cpu_supports_bf16() -> bool:
    """Whether the CPU runs bf16 matmuls natively (AMX or avx512_bf16): only then is bf16 worth measuring."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"
