"""The four label lists of a checkpoint (index i of a list is output i of a head), and its taxonomy.

A label file is read in each form OpenCHS's checkpoints have used: a plain JSON list (what their trainer,
``training&processes/scripts/classification/multitask_classifier_trainer.py``, writes), an ``{"id": label}``
object, or one ``{"id_to_<task>": {"id": label}}`` object; ``label_maps.json`` (the ``model.pt`` layout of
an open pull request there) holds all four ``id_to_*`` maps in one file. Priorities may be ints or numeric
strings; they are read as ints.

The taxonomy (``sub_to_main.json``, sub category → main category, as OpenCHS's
trainer derives it) is optional in a checkpoint: without it the service serves
as before and routing skips the consistency check.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from deployments.core.errors import LabelHeadMismatchError

# File name per task, in the Hub repo's layout. The order is the model's head order.
LABEL_FILES: dict[str, str] = {
    "main_category": "main_categories.json",
    "sub_category": "sub_categories.json",
    "intervention": "interventions.json",
    "priority": "priorities.json",
}
TASKS: tuple[str, ...] = tuple(LABEL_FILES)
TAXONOMY_FILE = "sub_to_main.json"
# The model.pt layout's one file of label maps, and the names its id_to_* maps may carry per task.
LABEL_MAPS_FILE = "label_maps.json"
ID_TO_NAMES: dict[str, tuple[str, ...]] = {
    "main_category": ("id_to_main", "id_to_main_category"),
    "sub_category": ("id_to_sub", "id_to_sub_category"),
    "intervention": ("id_to_interv", "id_to_intervention"),
    "priority": ("id_to_priority",),
}


def labels_in_order(value: object, where: str) -> list:
    """A label file's labels in head order: a list as is; an {"id": label} map by id, which must run 0..n-1."""
    if isinstance(value, dict) and len(value) == 1 and str(next(iter(value))).startswith("id_to_"):
        value = next(iter(value.values()))  # {"id_to_main": {...}}
    if isinstance(value, dict):
        try:
            ids = {int(k): v for k, v in value.items()}
        except ValueError:
            raise ValueError(f"{where}: an id-to-label map's keys must be integers") from None
        if sorted(ids) != list(range(len(ids))):
            raise ValueError(f"{where}: the ids must run 0 to {len(ids) - 1} without a gap")
        value = [ids[i] for i in range(len(ids))]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must hold a non-empty JSON list or an id-to-label map")
    return value


def read_label_maps(path: Path) -> dict[str, list]:
    """The four lists from a ``label_maps.json``: each task's ``id_to_*`` map, under exactly one known name."""
    maps = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(maps, dict):
        raise ValueError(f"{path.name} must hold a JSON object of id_to_* maps")
    lists = {}
    for task, names in ID_TO_NAMES.items():
        found = [n for n in names if n in maps]
        if len(found) != 1:
            raise ValueError(f"{path.name} must have exactly one of {', '.join(names)} (found {found or 'none'})")
        lists[task] = labels_in_order(maps[found[0]], f"{path.name}:{found[0]}")
    return lists

# Where the copied release lives inside the project.
BUNDLED_LABELS_DIR = Path(__file__).resolve().parents[2] / "data" / "labels" / "openchs-2025-09"



@dataclass(frozen=True)
class LabelSet:
    main_category: tuple[str, ...]
    sub_category: tuple[str, ...]
    intervention: tuple[str, ...]
    priority: tuple[int, ...]
    # Sub category → its main category; None when the checkpoint ships no taxonomy.
    sub_to_main: Optional[Mapping[str, str]] = field(default=None, hash=False)
    # Where sub_to_main came from, or why there is none (resolve_taxonomy): what /info reports.
    taxonomy_source: Optional[Mapping[str, str]] = field(default=None, hash=False, compare=False)
    # The most urgent priority label (labels.priority_high); None: the model card's, the highest value.
    priority_high: Optional[int] = field(default=None, hash=False, compare=False)

    @property
    def most_urgent(self) -> int:
        return self.priority_high if self.priority_high is not None else max(self.priority)

    def urgency(self, level: int) -> int:
        """Orders priority levels by urgency: larger is more urgent, whichever end priority_high names."""
        return int(level) if self.most_urgent == max(self.priority) else -int(level)

    def priority_name(self, level: int) -> str:
        """'High', 'Medium' or 'Low' by urgency (three levels, as both of OpenCHS's cards have); else the number."""
        ranked = sorted(self.priority, key=self.urgency, reverse=True)
        if len(ranked) != 3:
            return str(level)
        return dict(zip(ranked, ("High", "Medium", "Low"))).get(int(level), str(level))

    def with_priority_high(self, high: int) -> "LabelSet":
        """The labels with ``high`` as the most urgent priority: one end of the priority labels' values."""
        if high not in (min(self.priority), max(self.priority)):
            raise ValueError(f"labels.priority_high is {high}, but the checkpoint's priorities are "
                             f"{list(self.priority)}: name the lowest or the highest value")
        return dataclasses.replace(self, priority_high=high)

    @classmethod
    def from_dir(cls, directory: str | Path) -> "LabelSet":
        directory = Path(directory)
        lists = {}
        label_maps = directory / LABEL_MAPS_FILE
        if not any((directory / f).is_file() for f in LABEL_FILES.values()) and label_maps.is_file():
            lists = read_label_maps(label_maps)
        for task, filename in LABEL_FILES.items():
            if task in lists:
                continue
            path = directory / filename
            if not path.is_file():
                raise FileNotFoundError(f"label file {filename} is missing from {directory}")
            lists[task] = labels_in_order(json.loads(path.read_text(encoding="utf-8")), path.name)
        taxonomy = directory / TAXONOMY_FILE
        sub_to_main = json.loads(taxonomy.read_text(encoding="utf-8")) if taxonomy.is_file() else None
        return cls.from_lists(lists, sub_to_main)

    @classmethod
    def from_lists(cls, lists: Mapping[str, list], sub_to_main: Optional[Mapping[str, str]] = None) -> "LabelSet":
        try:
            priority = tuple(int(str(p).strip()) for p in lists["priority"])  # 3 or "3"
        except ValueError:
            raise ValueError(f"{LABEL_FILES['priority']}: priorities must be integers or numeric strings") from None
        main = tuple(str(x) for x in lists["main_category"])
        sub = tuple(str(x) for x in lists["sub_category"])
        return cls(
            main_category=main,
            sub_category=sub,
            intervention=tuple(str(x) for x in lists["intervention"]),
            priority=priority,
            sub_to_main=_checked_taxonomy(sub_to_main, main, sub),
        )

    def with_taxonomy(self, sub_to_main: Optional[Mapping[str, str]]) -> "LabelSet":
        return dataclasses.replace(LabelSet.from_lists(self.to_json(), sub_to_main), priority_high=self.priority_high)

    def parent_of(self, sub_category: str) -> Optional[str]:
        """The main category a sub category belongs to, or None without a taxonomy."""
        return self.sub_to_main.get(sub_category) if self.sub_to_main else None

    def for_task(self, task: str) -> tuple:
        return getattr(self, task)

    def sizes(self) -> dict[str, int]:
        return {task: len(self.for_task(task)) for task in TASKS}

    def write(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for task, filename in LABEL_FILES.items():
            (directory / filename).write_text(json.dumps(list(self.for_task(task)), indent=1), encoding="utf-8")
        if self.sub_to_main:
            (directory / TAXONOMY_FILE).write_text(json.dumps(dict(self.sub_to_main), indent=1, sort_keys=True),
                                                   encoding="utf-8")

    def check_heads(self, head_sizes: Mapping[str, int]) -> None:
        """Refuse a checkpoint whose heads do not match its label files."""
        problems = [
            f"{LABEL_FILES[task]} lists {len(self.for_task(task))} labels but the "
            f"classifier head for {task} has {head_sizes[task]} outputs"
            for task in TASKS
            if head_sizes[task] != len(self.for_task(task))
        ]
        if problems:
            raise LabelHeadMismatchError("; ".join(problems))

    def to_json(self) -> dict[str, list]:
        return {task: list(self.for_task(task)) for task in TASKS}


def resolve_taxonomy(labels: LabelSet, checkpoint: Path, taxonomy_file: Optional[str] = None,
                     bundled: bool = True) -> LabelSet:
    """The labels with their taxonomy and its source, in this order: the config's file, the checkpoint's
    ``sub_to_main.json``, the bundled release's map when the checkpoint's main and sub category lists are
    that release's; else off, saying why. OpenCHS's published checkpoint ships no map."""
    if taxonomy_file:
        if not Path(taxonomy_file).is_file():
            raise ValueError(f"labels.taxonomy_file {taxonomy_file} does not exist")
        mapping = json.loads(Path(taxonomy_file).read_text(encoding="utf-8"))
        return _sourced(labels.with_taxonomy(mapping), "config", f"labels.taxonomy_file {taxonomy_file}")
    if (checkpoint / TAXONOMY_FILE).is_file():
        return _sourced(labels.with_taxonomy(load_sub_to_main(checkpoint)), "checkpoint",
                        f"{TAXONOMY_FILE} in the checkpoint")
    if bundled:
        release = LabelSet.from_dir(BUNDLED_LABELS_DIR)
        if (labels.main_category, labels.sub_category) == (release.main_category, release.sub_category):
            return _sourced(labels.with_taxonomy(release.sub_to_main), "bundled",
                            f"the bundled release's map ({BUNDLED_LABELS_DIR.name}): the checkpoint's main and "
                            "sub category lists are that release's")
        why = "the checkpoint has no sub_to_main.json and its label lists are not the bundled release's"
    else:
        why = "the checkpoint has no sub_to_main.json and labels.bundled_taxonomy is off"
    return _sourced(labels.with_taxonomy(None), "off",
                    why + ": no sub-category check (set labels.taxonomy_file to turn it on)")


def _sourced(labels: LabelSet, source: str, detail: str) -> LabelSet:
    if labels.sub_to_main is None and source != "off":
        source, detail = "off", f"{detail} names none of this checkpoint's labels"
    return dataclasses.replace(labels, taxonomy_source={"source": source, "detail": detail})


def load_sub_to_main(directory: str | Path = BUNDLED_LABELS_DIR) -> dict[str, str]:
    return json.loads((Path(directory) / TAXONOMY_FILE).read_text(encoding="utf-8"))


def _checked_taxonomy(sub_to_main: Optional[Mapping[str, str]], main: tuple[str, ...],
                      sub: tuple[str, ...]) -> Optional[dict[str, str]]:
    """Only the entries these label lists can use: a release's map may name other releases' labels."""
    if sub_to_main is None:
        return None
    if not isinstance(sub_to_main, Mapping):
        raise ValueError(f"{TAXONOMY_FILE} must hold a JSON object of sub category → main category")
    known_main, known_sub = set(main), set(sub)
    kept = {str(s): str(m) for s, m in sub_to_main.items() if str(s) in known_sub and str(m) in known_main}
    return kept or None
