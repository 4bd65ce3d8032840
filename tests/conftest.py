"""Shared fixtures: checkpoints built on disk, one session-scoped Ray cluster, a served app.

Tests use real components: a real local Ray cluster, real HTTP, real
checkpoints written by ``training.checkpoint``. Switching apps goes through
``serve.delete`` so one test's replicas never answer another's requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

# Idle OpenMP threads must not spin while Ray's other processes wait for the CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("CHS_MODEL", None)
# The intake signs callbacks with this; set before Ray starts, so every replica has it.
CALLBACK_SECRET = os.environ.setdefault("CHS_CALLBACK_SECRET", "helpline-tests-callback-secret")
# The bearer token of live call notifications: set before Ray starts, so every replica has it.
NOTIFY_TOKEN = os.environ.setdefault("CHS_NOTIFY_TOKEN", "helpline-tests-notify-token")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
APP_NAME = "helpline"
# How often the session cluster's processes send their metrics to the node's Prometheus endpoint
# (Ray's metrics_report_interval_ms, 10 s by default): the metrics tests wait for a quiet interval
# before each measurement, so a shorter one is that much less waiting.
METRICS_REPORT_INTERVAL_S = 2.0


# Each folder is one kind of test, with a marker of its name: `pytest -m unit`, `-m "not e2e"`.
TEST_KINDS = ("unit", "integration", "e2e", "deploy")
# The order the kinds run in: the Ray-free ones first, then integration, then e2e. The demo model for
# the e2e tests builds meanwhile when it has to (tests/e2e/conftest.py), at a low priority, so it
# takes the CPU the integration tests leave idle (they wait on restarts, redeliveries and metric
# reports) and is ready when e2e begins; it ran beside the unit tests and held e2e up ~2 minutes.
KIND_ORDER = ("deploy", "unit", "integration", "e2e")


def kind_of(item) -> str:
    try:
        return Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts[0]
    except ValueError:
        return ""


# -- one deploy per served app ---------------------------------------------------------------------
#
# A deploy (four replicas starting: torch, transformers, the engine's compile) costs tens of seconds
# on 2 cores, and ServeSession.deploy redeploys whenever a test asks for other AppArgs. So tests that
# serve the same app run one after another: each test's apps come from ``@pytest.mark.app(name, ...)``
# (the apps it deploys, in order) or from the fixtures it uses (FIXTURE_APPS). Order never changes
# what a test proves (each deploys what it needs); it only decides how often the app is replaced.
FIXTURE_APPS = {"served_with_keys": "api-keys", "served_tiny": "tiny"}
# Within a kind these groups come first (LEADING_APPS) or last (TRAILING_APPS): the integration tests
# end on the keyed app and the e2e tests carry on with it.
LEADING_APPS = {"e2e": ("api-keys",)}
TRAILING_APPS = {"integration": ("api-keys",)}


def apps_of(item) -> tuple[str, ...]:
    marker = item.get_closest_marker("app")
    if marker is not None:
        return tuple(marker.args)
    for fixture, app in FIXTURE_APPS.items():
        if fixture in item.fixturenames:
            return (app,)
    return ()


def order_by_app(items: list, leading: tuple[str, ...] = ()) -> list:
    """Tests of one app together, at the place of the first of them (``leading`` apps first). A test
    that moves on to another app runs last in its group: a group that ends on app B runs just before
    B's group, and after it comes B's. Tests of no app keep their places. Deterministic: it depends
    only on the collected order."""
    groups: dict[str, list] = {}
    for item in items:
        apps = apps_of(item)
        if apps:
            groups.setdefault(apps[0], []).append(item)
    for name, members in groups.items():  # a stable sort: the ones that end elsewhere last
        members.sort(key=lambda item: apps_of(item)[-1] != name)
    ends_on = {name: apps_of(members[-1])[-1] for name, members in groups.items()}
    out: list = []
    emitted: set[str] = set()

    def emit(name: str) -> None:
        if name not in groups or name in emitted:
            return
        emitted.add(name)
        for before in groups:  # a group that ends on this app, not yet run: right before it
            if before not in emitted and ends_on[before] == name:
                emitted.add(before)
                out.extend(groups[before])
        out.extend(groups[name])
        emit(ends_on[name])

    for name in leading:
        emit(name)
    for item in items:
        apps = apps_of(item)
        if not apps:
            out.append(item)
        else:
            emit(apps[0])
    return out


def trailing_last(items: list, apps: tuple[str, ...]) -> list:
    """The tests that serve only ``apps`` moved to the end, in their order."""
    last = [item for item in items if apps_of(item) and set(apps_of(item)) <= set(apps)]
    moved = {id(item) for item in last}
    return [item for item in items if id(item) not in moved] + last


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by parametrized fixtures
def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = kind_of(item)
        if kind in TEST_KINDS:
            item.add_marker(getattr(pytest.mark, kind))
    runs, start = [], 0
    for end in range(1, len(items) + 1):  # each run of one kind, as collected
        if end == len(items) or kind_of(items[end]) != kind_of(items[start]):
            kind = kind_of(items[start])
            ordered = order_by_app(items[start:end], LEADING_APPS.get(kind, ()))
            runs.append((kind, trailing_last(ordered, TRAILING_APPS.get(kind, ()))))
            start = end
    runs.sort(key=lambda run: KIND_ORDER.index(run[0]) if run[0] in KIND_ORDER else len(KIND_ORDER))
    items[:] = [item for _, run in runs for item in run]


# Every real (re)deploy of the session's app: (test node id, seconds, what made it differ). Deploys
# are the suite's main cost on 2 cores; the summary line shows when a change adds some.
DEPLOYS: list[tuple[str, float, str]] = []
_RUNNING_TEST = {"nodeid": ""}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _RUNNING_TEST["nodeid"] = item.nodeid


def record_deploy(seconds: float, what: str) -> None:
    DEPLOYS.append((_RUNNING_TEST["nodeid"], seconds, what))


def pytest_terminal_summary(terminalreporter):
    if DEPLOYS:
        total = sum(s for _, s, _ in DEPLOYS)
        terminalreporter.write_line(f"served app: {len(DEPLOYS)} deploys, {total:.0f}s in all"
                                    + ("" if os.environ.get("CHS_TEST_LIST_DEPLOYS") != "1" else ":"))
        if os.environ.get("CHS_TEST_LIST_DEPLOYS") == "1":
            for nodeid, seconds, what in DEPLOYS:
                terminalreporter.write_line(f"  {seconds:6.1f}s  {nodeid}  {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip: a user's fresh clone does not have it."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: ../shared is provided to the project's developers and CI, not to fresh clones")
    return path


def smaller_labels(n_main: int, n_sub: int, n_interv: int) -> LabelSet:
    """A label set of another release's sizes (e.g. 7/65/5/3), derived from the bundled one."""
    base = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    interventions = list(base.intervention) + [f"Intervention {i}" for i in range(10)]
    return LabelSet(base.main_category[:n_main], base.sub_category[:n_sub], tuple(interventions[:n_interv]),
                    base.priority)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random checkpoints in the Hub layout, built once per session."""
    from training.hub_layout import build_random

    root = tmp_path_factory.mktemp("checkpoints")
    bundled = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    return {
        "tiny": build_random("tiny", root / "tiny", bundled, seed=0),
        "tiny_7_65": build_random("tiny", root / "tiny_7_65", smaller_labels(7, 65, 5), seed=1),
        "tiny_legacy": build_random("tiny", root / "tiny_legacy", bundled, seed=2, legacy_layout=True),
    }


@pytest.fixture(scope="session")
def tiny_checkpoint(checkpoints) -> Path:
    return checkpoints["tiny"]


def with_ingress_env(app, env: dict):
    """The same application, its ingress deployment given extra env vars through runtime_env.

    ``Application._bound_deployment`` (Ray 2.60, private) is the ingress Deployment with its
    init args bound; ``.options`` keeps them and replaces only ray_actor_options.
    """
    from ray.serve import Application

    ingress = app._bound_deployment
    options = dict(ingress.ray_actor_options or {})
    runtime_env = dict(options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **{k: str(v) for k, v in env.items()}}
    return Application(ingress.options(ray_actor_options={**options, "runtime_env": runtime_env}))


@dataclass
class ServeSession:
    """One Ray cluster and Serve instance for the whole test session."""

    port: int
    metrics_port: int
    # The case store of apps deployed without a feedback.database_url: a file of this session.
    database_url: str = ""
    var_dir: Path | None = None  # holds the embedded intake broker's folder of each app that names none
    current: str | None = None
    args: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Ray's Prometheus endpoint on this node."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def session_dir(self) -> Path:
        """This Ray session's directory; its logs/ holds every process's log files."""
        import ray

        return Path(ray._private.worker._global_node.get_session_dir_path())

    def deploy(self, *, env: dict | None = None, logging_config: dict | None = None, **args) -> str:
        """Serve the app with these AppArgs (defaults suited to 2 cores); return its base URL.

        ``env``: environment variables for the ingress (Preprocessor) replica, set
        through its runtime_env, e.g. ``env={"CHS_API_KEYS": "k1,k2"}``: replicas do
        not see this process's os.environ. ``logging_config``: Serve's LoggingConfig
        for every deployment of the app, e.g. ``{"encoding": "JSON"}``.
        """
        from ray import serve

        from deployments.app import build_app
        from deployments.core.config import AppArgs

        args = {"dtype": "fp32", "torch_threads": 1, "classifier_num_cpus": 0.5, **args}
        args["feedback"] = {"database_url": self.database_url, **args.get("feedback", {})}
        key = json.dumps([args, env or {}, logging_config or {}], sort_keys=True, default=str)
        if "intake" not in args:
            # A broker folder per app (the same one when the same app is deployed again): what one
            # app's tests queued and left (schemathesis queues hundreds of cases) is never classified
            # by another app, into a case store whose cases a test counts.
            folder = hashlib.sha256(key.encode()).hexdigest()[:16]
            args["intake"] = {"data_dir": str((self.var_dir or REPO_ROOT / "var" / "intake") / folder)}
        if key != self.current:
            started = time.monotonic()
            if self.current is not None:
                serve.delete(APP_NAME)
            app = build_app(AppArgs(**args))
            if env:
                app = with_ingress_env(app, env)
            serve.run(app, name=APP_NAME, route_prefix="/", logging_config=logging_config)
            self.current, self.args = key, args
            record_deploy(time.monotonic() - started, key)
        return self.url

    def undeploy(self) -> None:
        from ray import serve

        if self.current is not None:
            serve.delete(APP_NAME)
            self.current = None


@pytest.fixture(scope="session")
def serve_session(tmp_path_factory):
    import ray
    from ray import serve

    # More logical CPUs than cores: replicas ask for fractions, the OS shares the 2 cores.
    metrics_port = free_port()
    ray.init(num_cpus=4, include_dashboard=False, namespace="helpline-tests", log_to_driver=False,
             _metrics_export_port=metrics_port,
             _system_config={"metrics_report_interval_ms": int(METRICS_REPORT_INTERVAL_S * 1000)})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60})
    session = ServeSession(port, metrics_port,
                           database_url=f"sqlite:///{tmp_path_factory.mktemp('store') / 'helpline.db'}",
                           var_dir=tmp_path_factory.mktemp("intake"))
    try:
        yield session
    finally:
        # The cluster is this process's own: ray.shutdown stops every process of it, Serve's with
        # them, in 1.4 s; serve.shutdown first drained each replica gracefully for nothing (9 s).
        ray.shutdown()


@pytest.fixture
def served_tiny(serve_session, tiny_checkpoint) -> str:
    """Base URL of the app serving the tiny checkpoint with default settings.

    Function-scoped but cheap: it redeploys only when another test changed the app.
    """
    return serve_session.deploy(model=str(tiny_checkpoint))


# The session's API keys: random, so a search of the logs for them proves something.
API_KEYS = (f"key-{uuid.uuid4().hex}", f"key-{uuid.uuid4().hex}")


@pytest.fixture
def served_with_keys(serve_session, tiny_checkpoint) -> str:
    """Base URL of the tiny checkpoint's app that asks for one of API_KEYS (CHS_API_KEYS in the
    ingress's environment): one app for every test of API keys, e2e and integration."""
    return serve_session.deploy(model=str(tiny_checkpoint), env={"CHS_API_KEYS": ",".join(API_KEYS)})


# Request limits smaller than the defaults, in one app for the tests of such limits (which each
# send only what is within the other limit).
SMALL_LIMITS = {"max_batch_narratives": 4, "max_narrative_chars": 5000}


@pytest.fixture
def http(served_tiny):
    with httpx.Client(base_url=served_tiny, timeout=60) as client:
        yield client


# -- a real PostgreSQL server ------------------------------------------------------------------------


@dataclass
class PostgresServer:
    bin_dir: Path
    port: int
    password: str
    run_as: list[str]

    def url(self, database: str) -> str:
        """A standard URL, as CHS_DATABASE_URL takes it."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import subprocess

        subprocess.run([*self.run_as, str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", name], check=True, env={**os.environ, "PGPASSWORD": self.password},
                       capture_output=True)
        return self.url(name)


def postgres_bin_dir() -> Path | None:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL, started as its own user (never root) on a free port in a temporary directory."""
    import shutil
    import subprocess
    import tempfile

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server binaries are absent (/usr/lib/postgresql/*/bin): apt-get install -y postgresql")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="chs-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    password = "chs-test-password"
    (root / "pw").write_text(password)
    if run_as:
        shutil.chown(root / "pw", "postgres")
    data, port = root / "data", free_port()
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile",
                        str(root / "pw"), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True)
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True)
        yield PostgresServer(bin_dir, port, password, run_as)
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh, empty database on the test server, as a standard postgresql:// URL."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + os.urandom(3).hex()
    return postgres_server.create_database(name)
