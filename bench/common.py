"""What every part of the benchmark shares: where the project is, and the progress log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "models" / "base"
DEFAULT_DEMO = ROOT / "models" / "demo"


def say(message: str) -> None:
    """A progress line on stderr; stdout carries the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
