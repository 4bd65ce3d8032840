"""What every part of the benchmark shares: where the project is, the progress log, and the in-process
modes' windows and interleaved timing."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "models" / "base"
DEFAULT_DEMO = ROOT / "models" / "demo"


def say(message: str) -> None:
    """A progress line on stderr; stdout carries the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepared_chunks(pipeline, narratives: Sequence[str], chunk: int = 32) -> list:
    """``narratives`` tokenized and windowed by ``pipeline`` (an ``InProcessPipeline``), ``chunk`` cases a
    ``TokenWindows``, as the replica receives them: done before any clock starts."""
    return [pipeline.prepare(narratives[i:i + chunk])[0] for i in range(0, len(narratives), chunk)]


def interleaved_walls(runs: Mapping[str, Callable[[], object]], rounds: int, label: str) -> dict[str, list[float]]:
    """Each run's wall seconds over ``rounds`` rounds that alternate the runs, so that a drifting machine
    slows all of them alike."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            walls[name].append(round(time.perf_counter() - started, 2))
            say(f"{label} round {r + 1}: {name} {walls[name][-1]} s")
    return walls
