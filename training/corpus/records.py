"""The corpus's records: a labelled narrative, and a generated one with how it was made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class LabelledNarrative:
    narrative: str
    main_category: str
    sub_category: str
    intervention: str
    priority: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "narrative": self.narrative,
            "main_category": self.main_category,
            "sub_category": self.sub_category,
            "intervention": self.intervention,
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelledNarrative":
        """Build from a mapping; extra keys (such as ``id``) are ignored."""
        return cls(
            narrative=str(d["narrative"]),
            main_category=str(d["main_category"]),
            sub_category=str(d["sub_category"]),
            intervention=str(d["intervention"]),
            priority=int(d["priority"]),
        )


@dataclass(frozen=True)
class GeneratedRecord:
    """A generated narrative with how it was made (for tests and analysis)."""

    item: LabelledNarrative
    kind: str
    noisy: bool
    caller: str  # "self", "parent" or "other"
    template: int
