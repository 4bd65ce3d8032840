"""A real two-node Ray cluster on this machine: placement by node pool, node loss, node return.

The cluster is started here with ``ray start`` (a head that stands for the CPU
pool, and a worker that advertises the custom resource ``gpu_pool``, standing
for the GPU pool), the app is deployed with ``serve deploy`` through the
dashboard's REST API (the path KubeRay's operator uses for ``serveConfigV2``),
and everything else is observed from outside: the ``serve``/``ray`` CLIs and
HTTP. It never touches the session's in-process Ray cluster (``serve_session``).

Run with ``-s`` to see the placement table and the outage observations.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REPO_ROOT, free_port

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

BIN = Path(sys.executable).parent
APP = "helpline"
GPU_POOL = "gpu_pool"  # the custom resource that stands for the GPU node pool
CPU_POOL = "cpu_pool"  # ... and the one that keeps preprocessor and router off it
NARRATIVE = "A 12-year-old reports being bullied at school and does not want to go back."


@dataclass
class LocalNode:
    name: str
    temp_dir: Path
    session_id: int  # the `ray start` process ran in a new session; all its daemons inherit it


@dataclass
class LocalCluster:
    """Ray nodes started with ``ray start`` on this machine, each in its own session and temp dir."""

    root: Path
    env: dict
    gcs_port: int = 0
    dashboard_port: int = 0
    nodes: list[LocalNode] = field(default_factory=list)
    ports_given: set[int] = field(default_factory=set)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def port(self) -> int:
        """A free port no other component of this cluster was given: two calls of free_port can
        return the same number, and Ray refuses to start a node whose components share one."""
        while (port := free_port()) in self.ports_given:
            pass
        self.ports_given.add(port)
        return port

    def _start(self, name: str, *args: str) -> LocalNode:
        temp_dir = self.root / name
        # Every port this node binds is a free one, so it cannot clash with another
        # Ray cluster on the machine; worker ports 0 means "any free port".
        ports = {
            "--node-manager-port": self.port(), "--object-manager-port": self.port(),
            "--dashboard-agent-listen-port": self.port(), "--dashboard-agent-grpc-port": self.port(),
            "--runtime-env-agent-port": self.port(), "--metrics-export-port": self.port(),
            "--min-worker-port": 0, "--max-worker-port": 0,
        }
        cmd = [str(BIN / "ray"), "start", *args, "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
               "--disable-usage-stats", "--object-store-memory=100000000",
               *(f"{k}={v}" for k, v in ports.items())]
        with open(self.root / f"{name}.start.log", "wb") as log:
            proc = subprocess.Popen(cmd, env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            node = LocalNode(name, temp_dir, proc.pid)
            self.nodes.append(node)  # registered before waiting, so teardown finds it whatever happens
            rc = proc.wait(timeout=240)
        assert rc == 0, f"`ray start` for {name} failed:\n{(self.root / f'{name}.start.log').read_text()[-3000:]}"
        return node

    def start_head(self, resources: dict) -> LocalNode:
        self.gcs_port, self.dashboard_port = self.port(), self.port()
        # The dashboard is needed: `serve deploy` and `serve status` talk to its REST API.
        return self._start("head", "--head", f"--port={self.gcs_port}", "--num-cpus=1",
                           f"--resources={json.dumps(resources)}", "--include-dashboard=true",
                           "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                           f"--ray-client-server-port={self.port()}")

    def start_worker(self, name: str, resources: dict) -> LocalNode:
        return self._start(name, f"--address=127.0.0.1:{self.gcs_port}", "--num-cpus=1",
                           f"--resources={json.dumps(resources)}")

    def cli(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run([str(BIN / args[0]), *args[1:]], env=self.env, cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def serve_status(self) -> dict:
        return yaml.safe_load(self.cli("serve", "status", "-a", self.dashboard))

    def ray_nodes(self) -> dict[str, dict]:
        rows = json.loads(self.cli("ray", "list", "nodes", "--address", self.dashboard, "--detail", "--format=json"))
        return {row["node_id"]: row for row in rows}

    def serve_actors(self) -> list[dict]:
        return json.loads(self.cli("ray", "list", "actors", "--address", self.dashboard, "--detail",
                                   "--format=json", "--filter", "state=ALIVE", "--filter", "ray_namespace=serve"))

    def raylet_pid(self, node: LocalNode) -> int:
        """The raylet of one node: the `raylet` process whose sockets live under that node's temp dir."""
        marker = f"--raylet_socket_name={node.temp_dir}/"
        found = [pid for pid, cmd in _processes() if cmd and cmd[0].endswith("/raylet") and
                 any(arg.startswith(marker) for arg in cmd)]
        assert len(found) == 1, f"expected one raylet for {node.name}, found {found}"
        return found[0]

    def _own_processes(self) -> list[int]:
        sessions = {n.session_id for n in self.nodes}
        root = str(self.root)
        return [pid for pid, cmd in _processes() if pid != os.getpid() and _alive(pid) and
                (_session_of(pid) in sessions or any(root in arg for arg in cmd))]

    def teardown(self) -> None:
        """Stop every process this cluster started, and only those (never a machine-wide `ray stop`)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._own_processes()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if _alive(p)]
                time.sleep(0.2)
        left = self._own_processes()
        shutil.rmtree(self.root, ignore_errors=True)
        if left:
            raise RuntimeError(f"processes of the test cluster survived teardown: {left}")


def _processes():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # after "(comm)": state ppid pgrp session


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(what: str, probe, timeout: float, interval: float = 2.0):
    """Call ``probe`` until it returns something truthy; fail naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


@pytest.fixture
def cluster():
    if not sys.platform.startswith("linux"):
        pytest.skip("finds and stops the cluster's own processes through /proc")
    # A short root: Ray's Unix sockets live under it and their paths must stay under
    # 107 bytes, which a pytest tmp_path plus Ray's session directory name exceed.
    root = Path(tempfile.mkdtemp(prefix="chs-mn-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_DASHBOARD_ADDRESS", "RAY_AUTH_", "CHS_"))}
    # Ray 2.60 starts clusters with token authentication; this cluster gets its own token,
    # so it never reads or writes ~/.ray/auth_token, which other local clusters use.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    c = LocalCluster(root, env)
    try:
        yield c
    finally:
        c.teardown()


def multinode_config(checkpoint: Path, http_port: int) -> dict:
    """serve_config.yaml, as shipped, with the node-pool placement and settings for 2 cores."""
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": http_port, "request_timeout_s": 60}
    (app,) = config["applications"]
    app["args"].update(
        model=str(checkpoint), accelerator="cpu", dtype="fp32", torch_threads=1,
        classifier_num_cpus=0.5, classifier_resources={GPU_POOL: 1},
        # Short, so a request queued for a classifier that is gone is answered within the test.
        backend_timeout_s=10,
    )
    for dep in app["deployments"]:
        if dep["name"] == "Classifier":
            dep.pop("autoscaling_config", None)
            dep["num_replicas"] = 1
        else:
            options = dep.setdefault("ray_actor_options", {})
            options["resources"] = {CPU_POOL: 0.01}
    return config


def deployment(status: dict, name: str) -> dict:
    return status["applications"][APP]["deployments"][name]


def placement(cluster: LocalCluster) -> list[dict]:
    nodes = cluster.ray_nodes()
    rows = []
    for actor in cluster.serve_actors():
        node = nodes[actor["node_id"]]
        rows.append({
            "actor": actor["class_name"].rsplit(":", 1)[-1],
            "node_id": actor["node_id"],
            "head": node["is_head_node"],
            "pool": GPU_POOL if node["resources_total"].get(GPU_POOL) else CPU_POOL,
            "pid": actor["pid"],
        })
    print(f"\n{'actor':<16}{'node':<12}{'head':<6}{'pool':<10}pid")
    for r in sorted(rows, key=lambda r: r["actor"]):
        print(f"{r['actor']:<16}{r['node_id'][:10]:<12}{str(r['head']):<6}{r['pool']:<10}{r['pid']}")
    return rows


def classify(url: str) -> httpx.Response:
    return httpx.post(f"{url}/classify", json={"narrative": NARRATIVE}, timeout=90)


def test_classifier_runs_on_gpu_pool_and_survives_node_loss(cluster, tmp_path):
    from training.hub_layout import build_random
    from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

    checkpoint = build_random("tiny", tmp_path / "tiny", LabelSet.from_dir(BUNDLED_LABELS_DIR), seed=0)
    http_port = cluster.port()
    url = f"http://127.0.0.1:{http_port}"
    config_path = tmp_path / "serve_multinode.yaml"
    config_path.write_text(yaml.safe_dump(multinode_config(checkpoint, http_port), sort_keys=False))

    cluster.start_head({CPU_POOL: 1})
    gpu_node = cluster.start_worker("gpu1", {GPU_POOL: 1})
    cluster.cli("serve", "deploy", str(config_path), "-a", cluster.dashboard)

    def running():
        status = cluster.serve_status()
        app = (status.get("applications") or {}).get(APP) or {}
        assert app.get("status") != "DEPLOY_FAILED", app
        return status if app.get("status") == "RUNNING" else None

    status = wait_for("the app to be RUNNING", running, timeout=240)
    deployed_at = status["applications"][APP]["last_deployed_time_s"]

    r = classify(url)
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["routing"]["queue"]

    rows = placement(cluster)
    by_actor = {}
    for row in rows:
        by_actor.setdefault(row["actor"], []).append(row)
    assert {row["pool"] for row in by_actor["Classifier"]} == {GPU_POOL}
    assert {row["pool"] for row in by_actor["Preprocessor"] + by_actor["Router"]} == {CPU_POOL}
    assert all(row["head"] for row in by_actor["ServeController"] + by_actor["ProxyActor"])
    gpu_node_ids = {row["node_id"] for row in by_actor["Classifier"]}

    # Node loss: the GPU node's raylet dies without warning.
    os.kill(cluster.raylet_pid(gpu_node), signal.SIGKILL)

    def classifier_unhealthy():
        dep = deployment(cluster.serve_status(), "Classifier")
        return dep if dep["status"] == "UNHEALTHY" else None

    dep = wait_for("Serve to report the Classifier UNHEALTHY", classifier_unhealthy, timeout=180)
    lines = (dep.get("message") or "").splitlines() or [""]
    why = next((line for line in lines if "node" in line.lower()), lines[0])
    print(f"\nafter the gpu node's raylet was killed: Classifier {dep['status']} "
          f"({dep['status_trigger']}), replicas {dep['replica_states']}; {why.strip()[:140]}")
    assert "RUNNING" not in dep["replica_states"]
    # The GCS declares the node dead once it misses its health checks (it may lag Serve's own).
    wait_for("the GCS to mark the gpu node DEAD",
             lambda: all(cluster.ray_nodes()[n]["state"] == "DEAD" for n in gpu_node_ids), timeout=120)

    # With no classifier replica, callers get an error they can act on, never a 200.
    r = classify(url)
    print(f"POST /classify during the outage: {r.status_code} {r.text[:160]}")
    assert r.status_code in (503, 504), r.text
    assert r.json()["success"] is False
    assert r.json()["error"]["code"] == {503: "unavailable", 504: "timeout"}[r.status_code]
    health = httpx.get(f"{url}/health", timeout=60)
    print(f"GET /health during the outage: {health.status_code} {health.text[:160]}")
    assert health.status_code == 503

    # The node comes back (a new raylet with the same resources); Serve places the
    # pending replica on it by itself: no redeploy.
    new_gpu_node = cluster.start_worker("gpu2", {GPU_POOL: 1})

    def classifier_healthy():
        status = cluster.serve_status()
        dep = deployment(status, "Classifier")
        return status if dep["status"] == "HEALTHY" and dep["replica_states"] == {"RUNNING": 1} else None

    status = wait_for("the Classifier to be HEALTHY again", classifier_healthy, timeout=240)
    print(f"after {new_gpu_node.name} joined: Classifier {deployment(status, 'Classifier')['status']}, "
          f"app {status['applications'][APP]['status']}")
    assert status["applications"][APP]["last_deployed_time_s"] == deployed_at, "the app was redeployed"

    r = wait_for("/classify to answer 200", lambda: (lambda r: r if r.status_code == 200 else None)(classify(url)),
                 timeout=120)
    print(f"POST /classify after recovery: {r.status_code}")
    assert r.json()["success"] is True

    rows = placement(cluster)
    classifier_nodes = {row["node_id"] for row in rows if row["actor"] == "Classifier"}
    assert classifier_nodes and not classifier_nodes & gpu_node_ids
    assert {row["pool"] for row in rows if row["actor"] == "Classifier"} == {GPU_POOL}
