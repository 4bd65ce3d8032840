"""Start and stop the servers under test: our Ray Serve app, the model card's recipe, the LitServe peer.

Each runs as a subprocess in its own process group, so stopping it stops
everything it forked; ``with`` waits until its /health answers 200.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from bench.common import ROOT, say

PYTHON = sys.executable
SERVE = str(Path(sys.executable).with_name("serve"))

# Ray settings that cut per-request CPU on a small machine (measured in bench/RESULTS.md):
# Serve's throughput mode (direct ingress, gRPC between replicas, buffered request logs),
# passive OpenMP waits, fewer metric pushes, no per-request task events, and the controller's
# reconcile loop at 2/s instead of 10/s (its CPU halved; deploys and autoscaling react 0.4 s later).
PIPELINE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "OMP_WAIT_POLICY": "PASSIVE",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    "RAY_SERVE_ENABLE_TASK_EVENTS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
PEER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s")


class Server:
    """A server subprocess in its own process group, stopped whatever happens."""

    def __init__(self, cmd: list[str], url: str, env: dict | None = None, log: Path | None = None,
                 stop_signal: int = signal.SIGTERM):
        self.url = url
        self.stop_signal = stop_signal
        self.log = open(log, "w") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> "Server":
        try:
            wait_healthy(self.url, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        # A worker the server forked can outlive it (LitServe's inference loop does) and
        # would eat the CPU of every later phase: nothing of the group may survive.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def with_overrides(args: dict, overrides: dict[str, object]) -> dict:
    """``args`` with each dotted key (``coalescing.max_cases``) set to its value."""
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = args
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return args


def pipeline_config(checkpoint: Path, port: int, engine: str, dtype: str, threads: int, out_dir: Path,
                    overrides: dict[str, object] | None = None) -> Path:
    """``serve_config.yaml`` as deployed, on this port and checkpoint, with access logs off;
    ``overrides``: app args to change, by dotted name (``--app-arg``)."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"].update({"host": "127.0.0.1", "port": port})
    # Access logs cost CPU per request; the benchmark measures serving, not logging.
    config["logging_config"]["enable_access_log"] = False
    app = config["applications"][0]
    app["args"].update({"model": str(checkpoint), "engine": engine, "dtype": dtype, "torch_threads": threads})
    with_overrides(app["args"], overrides or {})
    path = out_dir / "serve_config.bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def pipeline_server(checkpoint: Path, engine: str, dtype: str, threads: int, out_dir: Path,
                    overrides: dict[str, object] | None = None) -> Server:
    """Our Ray Serve app, through ``serve run`` on a local cluster of its own."""
    port = free_port()
    config = pipeline_config(checkpoint, port, engine, dtype, threads, out_dir, overrides)
    say(f"starting the Ray Serve pipeline (serve run), engine {engine} dtype {dtype}")
    return Server([SERVE, "run", "--address", "local", str(config)], f"http://127.0.0.1:{port}",
                  env={**PIPELINE_ENV, "CHS_MODEL": str(checkpoint)}, log=out_dir / "serve.log",
                  stop_signal=signal.SIGINT)


def seed_recipe_server(checkpoint: Path, threads: int, out_dir: Path) -> Server:
    """The model card's recipe (bench/seed_recipe_server.py)."""
    port = free_port()
    say("starting the model card's recipe server")
    return Server([PYTHON, "-m", "bench.seed_recipe_server", "--model", str(checkpoint), "--port", str(port),
                   "--threads", str(threads)], f"http://127.0.0.1:{port}", env=PEER_ENV,
                  log=out_dir / "seed_recipe.log")


def litserve_server(checkpoint: Path, engine: str, dtype: str, threads: int, out_dir: Path) -> Server:
    """LitServe around our in-process pipeline (bench/litserve_server.py)."""
    port = free_port()
    say(f"starting the LitServe peer, engine {engine} dtype {dtype}")
    return Server([PYTHON, "-m", "bench.litserve_server", "--model", str(checkpoint), "--port", str(port),
                   "--engine", engine, "--dtype", dtype, "--threads", str(threads)], f"http://127.0.0.1:{port}",
                  env=PEER_ENV,
                  log=out_dir / "litserve.log")
