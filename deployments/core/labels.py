"""The four label lists of a checkpoint: index i of a list is output i of a head."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from deployments.core.errors import LabelHeadMismatchError

# File name per task, in the Hub repo's layout. The order is the model's head order.
LABEL_FILES: dict[str, str] = {
    "main_category": "main_categories.json",
    "sub_category": "sub_categories.json",
    "intervention": "interventions.json",
    "priority": "priorities.json",
}
TASKS: tuple[str, ...] = tuple(LABEL_FILES)

# Where the copied release lives inside the project.
BUNDLED_LABELS_DIR = Path(__file__).resolve().parents[2] / "data" / "labels" / "openchs-2025-09"

PRIORITY_NAMES = {1: "Low", 2: "Medium", 3: "High"}


@dataclass(frozen=True)
class LabelSet:
    main_category: tuple[str, ...]
    sub_category: tuple[str, ...]
    intervention: tuple[str, ...]
    priority: tuple[int, ...]

    @classmethod
    def from_dir(cls, directory: str | Path) -> "LabelSet":
        directory = Path(directory)
        lists = {}
        for task, filename in LABEL_FILES.items():
            path = directory / filename
            if not path.is_file():
                raise FileNotFoundError(f"label file {filename} is missing from {directory}")
            values = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path.name} must hold a non-empty JSON list")
            lists[task] = values
        return cls.from_lists(lists)

    @classmethod
    def from_lists(cls, lists: Mapping[str, list]) -> "LabelSet":
        priority = tuple(int(p) for p in lists["priority"])
        return cls(
            main_category=tuple(str(x) for x in lists["main_category"]),
            sub_category=tuple(str(x) for x in lists["sub_category"]),
            intervention=tuple(str(x) for x in lists["intervention"]),
            priority=priority,
        )

    def for_task(self, task: str) -> tuple:
        return getattr(self, task)

    def sizes(self) -> dict[str, int]:
        return {task: len(self.for_task(task)) for task in TASKS}

    def write(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for task, filename in LABEL_FILES.items():
            (directory / filename).write_text(json.dumps(list(self.for_task(task)), indent=1), encoding="utf-8")

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


def load_sub_to_main(directory: str | Path = BUNDLED_LABELS_DIR) -> dict[str, str]:
    return json.loads((Path(directory) / "sub_to_main.json").read_text(encoding="utf-8"))
