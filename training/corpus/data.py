"""Where the corpus's hand-written material lives, and reading it.

``data/corpus/pools.json`` (places, callers, openings, closings, fillers, the
turn pools of call transcripts), ``data/corpus/scenarios_*.json`` (read by
``training.corpus.scenarios``), the label lists of
``data/labels/openchs-2025-09/`` and the hand-written held-out set
``data/heldout.jsonl``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from deployments.core.labels import LABEL_FILES

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
LABELS_DIR = DATA_DIR / "labels" / "openchs-2025-09"
CORPUS_DIR = DATA_DIR / "corpus"
HELDOUT_PATH = DATA_DIR / "heldout.jsonl"


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=None)
def load_label_lists() -> dict[str, Any]:
    """The authoritative label lists: the four task lists plus ``sub_to_main``."""
    lists: dict[str, Any] = {task: tuple(read_json(LABELS_DIR / name)) for task, name in LABEL_FILES.items()}
    lists["priority"] = tuple(int(p) for p in lists["priority"])
    lists["sub_to_main"] = dict(read_json(LABELS_DIR / "sub_to_main.json"))
    return lists


@lru_cache(maxsize=None)
def load_pools() -> dict[str, Any]:
    return read_json(CORPUS_DIR / "pools.json")
