"""Anonymous reports: case counts per period and category, small counts suppressed. Pure.

The store hands over counts per day and label combination (``DayCount``); ``summarize`` rolls them
up into periods (``day``, ISO ``week`` from Monday, calendar ``month``) grouped by the requested
dimensions, maps categories to Child Helpline International's where our labels map to them
(``data/chi_categories.json``, which states its source), and shows every count under ``min_count`` as
``"<min_count"``, so a rare case cannot be singled out. No id and no text leaves here: labels and counts.
There are no totals, since a total beside a suppressed cell would give that cell away by subtraction.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

DIMENSIONS = ("main_category", "sub_category", "priority", "queue", "language")
PERIODS = ("day", "week", "month")
MAX_PERIODS = 1000
CHI_MAP_PATH = Path(__file__).resolve().parents[2] / "data" / "chi_categories.json"
UNKNOWN_LANGUAGE = "unknown"


@dataclass(frozen=True)
class DayCount:
    """How many cases of one day had these labels."""

    day: date
    main_category: str
    sub_category: str
    priority: int
    queue: str
    language: Optional[str]
    count: int


@dataclass(frozen=True)
class ChiMap:
    """Our sub category → CHI's main category, and where the mapping comes from."""

    taxonomy: str
    source: str
    sub_to_chi: Mapping[str, str]

    @classmethod
    def load(cls, path: Path = CHI_MAP_PATH) -> "ChiMap":
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls(doc["taxonomy"], doc["source"], dict(doc["sub_category_to_chi"]))

    @classmethod
    @functools.lru_cache(maxsize=1)
    def bundled(cls) -> "ChiMap":
        """``data/chi_categories.json``, read once."""
        return cls.load(CHI_MAP_PATH)


def period_start(day: date, period: str) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"period must be one of {', '.join(PERIODS)}")


def next_period(start: date, period: str) -> date:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_starts(first: date, last: date, period: str) -> list[date]:
    """Every period that overlaps the days first..last (both included), in order (at most MAX_PERIODS + 1)."""
    starts, start = [], period_start(first, period)
    while start <= last and len(starts) <= MAX_PERIODS:  # one past the most a report holds: enough to refuse it
        starts.append(start)
        start = next_period(start, period)
    return starts


def shown(count: int, min_count: int) -> int | str:
    """The count, or ``"<min_count"`` when it is under it (min_count 0 or 1: every count as it is)."""
    return f"<{min_count}" if count < min_count else count


def _group(row: DayCount, by: Sequence[str], chi: Optional[ChiMap]) -> tuple[str, ...]:
    mapped = chi.sub_to_chi.get(row.sub_category) if chi else None
    values = {"main_category": mapped or row.main_category, "sub_category": row.sub_category,
              "priority": str(row.priority), "queue": row.queue, "language": row.language or UNKNOWN_LANGUAGE}
    return tuple(values[d] for d in by)


def summarize(rows: Iterable[DayCount], *, first: date, last: date, period: str, by: Sequence[str],
              min_count: int, chi: Optional[ChiMap]) -> dict:
    """The /reports/summary body's ``periods`` and ``taxonomy``: counts per period and group."""
    starts = period_starts(first, last, period)
    if len(starts) > MAX_PERIODS:
        raise ValueError(f"{len(starts)} periods; at most {MAX_PERIODS}")
    cells: dict[date, dict[tuple[str, ...], int]] = {s: {} for s in starts}
    unmapped: set[str] = set()
    for row in rows:
        if not first <= row.day <= last:
            continue
        if chi is not None and "main_category" in by and row.sub_category not in chi.sub_to_chi:
            unmapped.add(row.main_category)
        key = _group(row, by, chi)
        bucket = cells[period_start(row.day, period)]
        bucket[key] = bucket.get(key, 0) + row.count
    periods = [{"start": s.isoformat(), "end": (next_period(s, period) - timedelta(days=1)).isoformat(),
                "counts": [{"group": dict(zip(by, key)), "count": shown(n, min_count)}
                           # Largest first; suppressed cells by name alone, so their order says nothing.
                           for key, n in sorted(cells[s].items(),
                                                key=lambda kv: (-kv[1] if kv[1] >= min_count else 0, kv[0]))]}
               for s in starts]
    taxonomy = None
    if chi is not None:
        taxonomy = {"name": chi.taxonomy, "source": chi.source, "kept_as_ours": sorted(unmapped)}
    return {"periods": periods, "taxonomy": taxonomy}


def to_csv(summary: Mapping, by: Sequence[str]) -> str:
    """One line per period and group: period_start, period_end, the dimensions, count."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period_start", "period_end", *by, "count"])
    for p in summary["periods"]:
        for cell in p["counts"]:
            writer.writerow([p["start"], p["end"], *(cell["group"][d] for d in by), cell["count"]])
    return out.getvalue()
