"""``engine: auto`` on a CPU: the candidates timed on this host, on this checkpoint, and the fastest served.

A static table measured on one CPU picks wrongly on another (OpenVINO led on an AVX2 EPYC by 3%;
an AMX Xeon ranks the engines otherwise), so the replica times every engine that can run the
precision (for fp32 only exact ones: ``inference.build_engine`` checks each against PyTorch) on
fixed probe batches of the shapes it serves, a batch of short cases and a batch of full 512-token
windows, and keeps the fastest. That costs a few seconds once: the figures are kept in
``engine-choice.json`` beside the ONNX export (``deployments.core.export``), per CPU model,
thread count and library versions, so a restart on the same kind of host does not measure again.

``choose`` (rates → engine) is the whole decision, free of timing, so it is tested over a grid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from deployments.core import export
from deployments.core.engines import ENGINES, Engine

logger = logging.getLogger("ray.serve")

# Bump when the probes or the timing change: older figures no longer compare.
CHOICE_FORMAT = "chs-engine-choice-1"
CHOICE_FILE = "engine-choice.json"
# (rows, tokens): a batch of short cases (coalesced /classify traffic) and a full window (a long call), the
# two shapes the served micro-batches take; small, so that three candidates time in a few seconds.
PROBE_SHAPES = ((8, 64), (1, 512))
# An exported engine must beat eager PyTorch by this much to replace it: closer figures are within
# the noise of a short timing on shared cores, and PyTorch needs no export to restart.
MIN_GAIN = 1.03
# Timed passes over the probes per candidate, after one warm-up, the candidates taking turns (so a burst of
# other work on shared cores slows one pass of each, not all of one); each one's fastest pass counts.
PASSES = 3


@dataclass(frozen=True)
class Measurement:
    """Each candidate's rate (probe windows per second; None: it could not be built exactly), the choice."""

    dtype: str
    rates: dict[str, Optional[float]]
    choice: str
    host: dict = field(default_factory=dict)
    cached: bool = False

    def to_json(self) -> dict:
        return {"dtype": self.dtype, "rates_windows_per_s": self.rates, "choice": self.choice, "host": self.host,
                "cached": self.cached}

    def summary(self) -> str:
        rates = ", ".join(f"{e} {r:.1f}" if r is not None else f"{e} unavailable" for e, r in self.rates.items())
        return (f"engine auto ({self.dtype}): {self.choice}; windows/s on the probes: {rates}"
                f"{' (kept from an earlier start on this host)' if self.cached else ''}")


def choose(rates: Mapping[str, Optional[float]]) -> str:
    """The fastest candidate; eager PyTorch unless another beats it by ``MIN_GAIN``, and when none was measured."""
    usable = {engine: rate for engine, rate in rates.items() if rate is not None and rate > 0}
    if not usable:
        return "torch"
    best = max(usable, key=lambda engine: (usable[engine], engine == "torch"))
    if best != "torch" and "torch" in usable and usable[best] < MIN_GAIN * usable["torch"]:
        return "torch"
    return best


def probe_batches(vocab_size: int, pad_id: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``PROBE_SHAPES`` as token ids and masks, fixed (seeded), the short batch padded as real batches are."""
    rng = np.random.default_rng(20261206)
    batches = []
    for rows, cols in PROBE_SHAPES:
        ids = rng.integers(1000, vocab_size, size=(rows, cols), dtype=np.int64)
        mask = np.ones_like(ids)
        if rows > 1:  # padded, as a length-sorted batch is
            mask[rows // 2:, cols // 2:] = 0
            ids[rows // 2:, cols // 2:] = pad_id
        batches.append((ids, mask))
    return batches


def time_engines(candidates: Mapping[str, Engine], batches, passes: int = PASSES,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Each engine's windows per second over ``batches``: one warm-up pass, then the fastest of ``passes``,
    interleaved."""
    for engine in candidates.values():
        for ids, mask in batches:
            engine.logits(ids, mask)
    windows = sum(ids.shape[0] for ids, _ in batches)
    best = {name: float("inf") for name in candidates}
    for _ in range(passes):
        for name, engine in candidates.items():
            started = clock()
            for ids, mask in batches:
                engine.logits(ids, mask)
            best[name] = min(best[name], clock() - started)
    return {name: round(windows / max(seconds, 1e-9), 2) for name, seconds in best.items()}


def cpu_model() -> str:
    """/proc/cpuinfo's "model name": engines rank by microarchitecture, not by host."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def host_key(threads: Optional[int]) -> dict:
    """What the figures depend on besides the checkpoint: CPU model, threads and the engines' versions."""
    versions = {}
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"format": CHOICE_FORMAT, "cpu": cpu_model(), "threads": threads or os.cpu_count(), "versions": versions}


def cache_file(checkpoint: Path) -> Path:
    """Beside the checkpoint's ONNX export: the same root and content key (a new checkpoint measures anew)."""
    return export.cache_root(checkpoint) / export.content_key(checkpoint) / CHOICE_FILE


def _entry_key(host: dict, dtype: str) -> str:
    return hashlib.sha256(json.dumps({**host, "dtype": dtype}, sort_keys=True).encode()).hexdigest()[:16]


def read_cached(checkpoint: Path, host: dict, dtype: str) -> Optional[Measurement]:
    try:
        entry = json.loads(cache_file(checkpoint).read_text())[_entry_key(host, dtype)]
        return Measurement(dtype, entry["rates"], entry["choice"], host, cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cached(checkpoint: Path, measured: Measurement) -> None:
    """Add ``measured`` to the file (other hosts' entries kept); a cache that cannot be written only costs a re-measure."""
    path = cache_file(checkpoint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = {}
        entries[_entry_key(measured.host, measured.dtype)] = {
            "host": measured.host, "dtype": measured.dtype, "rates": measured.rates, "choice": measured.choice}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # a replica starting beside this one never reads half a file
    except OSError as exc:
        logger.warning("could not keep the engine measurement in %s (%s); the next start measures again", path, exc)


def installed(engine: str) -> bool:
    if engine == "torch":
        return True
    from importlib.util import find_spec

    return find_spec(engine) is not None


def pick(checkpoint: Path, dtype: str, candidates: list[str], build: Callable[[str], Engine],
         batches, threads: Optional[int], recheck_margin: float = 0.0) -> tuple[Engine, Measurement]:
    """The fastest of ``candidates`` for ``dtype``, built by ``build`` (which returns eager PyTorch fp32 for an
    engine it cannot build exactly), measured now or taken from the cache. ``recheck_margin``: what ``build``
    wraps a lower precision with; it changes the rates, so it is part of the key."""
    host = host_key(threads)
    if recheck_margin and dtype != "fp32":
        host["recheck_margin"] = recheck_margin
    candidates = [engine for engine in ENGINES if engine in candidates and installed(engine)]
    cached = read_cached(checkpoint, host, dtype)
    if cached is not None and cached.choice in candidates:
        engine = build(cached.choice)
        if engine.name == cached.choice:
            return engine, cached
    built = {}
    for name in candidates:
        engine = build(name)
        if engine.name == name and engine.dtype_name == dtype:  # else it fell back: not a candidate after all
            built[name] = engine
    measured_rates = time_engines(built, batches)
    rates = {name: measured_rates.get(name) for name in candidates}
    choice = choose(rates)
    if choice not in built:  # nothing could be built as asked: serve the fallback
        return build("torch"), Measurement(dtype, rates, "torch", host)
    measured = Measurement(dtype, rates, choice, host)
    write_cached(checkpoint, measured)
    return built[choice], measured
