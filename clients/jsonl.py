"""The one JSON Lines reader behind ``chs-classify``, ``chs-loadtest`` and ``chs-evaluate``.

    for line in read_lines(path):          # non-blank lines, numbered as an editor numbers them
        if line.error is not None:         # not JSON: ``line.error`` is json's reason ("Expecting value")
            ...
        record = line.value                # the parsed JSON value (any type: check for a dict)

Each tool decides what an unusable line means (a failed row, plain text, or a
usage error naming the line); this module only reads.

Only ``\\n`` (or ``\\r\\n``) ends a line. ``str.splitlines()`` would also break at
U+2028, U+2029, U+0085, form feeds and other separators that JSON allows raw
inside a string (``json.dumps(..., ensure_ascii=False)`` writes U+2028 as is),
cutting one valid record in two. A leading byte-order mark is dropped. Blank
lines are skipped but still counted, so line numbers match the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, blank lines counted
    text: str  # the line without its ending
    value: Any = None  # the parsed JSON value; None also for a line that is not JSON
    error: Optional[str] = None  # why the line is not JSON; None when it is


def read_text(path: PathLike) -> str:
    """The file as text: UTF-8, a leading BOM dropped. Raises OSError or UnicodeDecodeError."""
    return Path(path).read_text(encoding="utf-8-sig")


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for each non-blank line; lines end only at ``\\n``, a trailing ``\\r`` is dropped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip():
            yield number, line


def parse_lines(text: str) -> Iterator[Line]:
    """Each non-blank line of ``text``, parsed as JSON where it is JSON."""
    for number, line in numbered_lines(text):
        try:
            yield Line(number, line, json.loads(line))
        except json.JSONDecodeError as exc:
            yield Line(number, line, None, exc.msg)
        except RecursionError:
            yield Line(number, line, None, "nested too deeply")


def read_lines(path: PathLike) -> list[Line]:
    """Each non-blank line of the file at ``path``, parsed. Raises OSError or UnicodeDecodeError."""
    return list(parse_lines(read_text(path)))
