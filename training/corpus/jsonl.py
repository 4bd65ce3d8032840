"""Labelled narratives as JSONL: the one reader and writer of ``training``, and the held-out set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from training.corpus.data import HELDOUT_PATH
from training.corpus.records import LabelledNarrative


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The raw records of a JSONL file (blank lines skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
    return out


def load_jsonl(path: str | Path) -> list[LabelledNarrative]:
    """Labelled narratives from a JSONL file with fields id, narrative, main_category, sub_category,
    intervention, priority (``id`` is not kept; use :func:`read_jsonl` for it)."""
    return [LabelledNarrative.from_dict(r) for r in read_jsonl(path)]


def write_jsonl(path: str | Path, items: Iterable[LabelledNarrative | Mapping[str, Any]],
                id_prefix: str = "gen") -> int:
    """Write labelled JSONL; items without an ``id`` get ``{id_prefix}-000001``... Returns the count."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for i, item in enumerate(items, 1):
            if isinstance(item, LabelledNarrative):
                rec = {"id": f"{id_prefix}-{i:06d}", **item.to_dict()}
            else:
                rec = dict(item)
                rec.setdefault("id", f"{id_prefix}-{i:06d}")
                rec = {"id": rec.pop("id"), **rec}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def load_heldout() -> list[LabelledNarrative]:
    """The hand-written held-out set, ``data/heldout.jsonl``."""
    return load_jsonl(HELDOUT_PATH)
