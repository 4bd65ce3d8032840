"""``chs-loadtest``: open-loop load at a fixed arrival rate, then a latency and throughput summary.

    chs-loadtest --rate 3/s --duration 5m
    chs-loadtest --url http://helpline:8000 --rate 10000/h --duration 10m --narratives cases.jsonl --json out.json

Narratives come from ``--narratives`` (one per line, or JSONL with a
``narrative`` field) or, by default, the ten built-in ones below
(:data:`FALLBACK_NARRATIVES`). For the realistic length spread of the
project's benchmark corpus (long transcripts included), write it to a file
in a checkout first and pass that:

    python -m training.corpus --benchmark 200 --seed 0 --out bench.jsonl
    chs-loadtest --rate 3/s --duration 5m --narratives bench.jsonl

This module needs only the clients package: no Ray, no torch, nothing from
``training/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from clients.client import DEFAULT_URL, URL_ENV
from clients.jsonl import read_lines
from clients.load import parse_duration, parse_rate, run_open_loop

# The default when no --narratives file is given: ten short narratives of several kinds of call.
FALLBACK_NARRATIVES = (
    "A 14 year old girl called to report that her stepfather beats her when he is drunk and she is afraid to go home.",
    "A mother reported that her neighbour's son, aged 9, has not been to school for a month and is made to herd cattle.",
    "The caller wanted to know how to get a birth certificate for her baby so he can be registered at the clinic.",
    "A boy of 16 said he has been feeling hopeless since his parents separated and sometimes thinks about ending his life.",
    "A teacher called about a pupil, 12, who told her an older man gives her money and asks her to meet him after school.",
    "A grandmother caring for three orphans asked where she can get help with school fees and food.",
    "The caller reported that a 15 year old girl in the village is being prepared to marry a man of 40 next month.",
    "A father asked for advice because his daughter, 13, spends the nights online and met an adult who asks for photos.",
    "A 17 year old boy called to say his employer has not paid him for three months and keeps his identity card.",
    "The caller asked about the opening hours of the helpline and whether calls are free from every network.",
)


def load_narratives(path: Optional[str]) -> list[str]:
    """The narratives in the file at ``path`` (``FALLBACK_NARRATIVES`` when there is none).

    A line holding a JSON object with a string ``narrative`` gives that narrative;
    any other non-blank line is a narrative itself. Raises OSError or UnicodeDecodeError.
    """
    if not path:
        return list(FALLBACK_NARRATIVES)
    out = []
    for line in read_lines(path):
        record = line.value
        if isinstance(record, dict) and isinstance(record.get("narrative"), str):
            out.append(record["narrative"])
        else:
            out.append(line.text.strip())
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chs-loadtest",
        description="Open-loop load at a fixed arrival rate against a helpline-serve endpoint.",
    )
    p.add_argument("--url", default=None, help=f"base URL (default ${URL_ENV} or {DEFAULT_URL})")
    p.add_argument("--rate", required=True, type=_typed(parse_rate), help="arrival rate: 3/s, 180/min, 10000/h")
    p.add_argument("--duration", required=True, type=_typed(parse_duration), help="how long to send: 30s, 5m, 1h")
    p.add_argument("--narratives", metavar="FILE",
                   help="one narrative per line, or JSONL with 'narrative' (default: ten built-in narratives)")
    p.add_argument("--api-key", default=None, help="API key (default $CHS_API_KEY)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _typed(fn):
    def parse(text: str):
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = fn.__name__.replace("parse_", "")
    return parse


def main(argv: Optional[Sequence[str]] = None) -> int:
    import os

    from tqdm import tqdm

    args = _parser().parse_args(argv)
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    try:
        narratives = load_narratives(args.narratives)
    except (OSError, UnicodeDecodeError) as exc:
        _parser().error(f"cannot read --narratives: {exc}")
    if not narratives:
        _parser().error("no narratives to send")

    total = max(1, int(args.rate * args.duration + 1e-9))
    bar = tqdm(total=total, unit="req", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True,
               desc=f"{args.rate:.3g}/s")
    failed = {"n": 0}

    def on_complete(outcome: str, latency_s: float) -> None:
        if not outcome.startswith("2"):
            failed["n"] += 1
            bar.set_postfix(failed=failed["n"], refresh=False)
        bar.update(1)

    try:
        report = run_open_loop(url, args.rate, args.duration, narratives, api_key=args.api_key,
                               timeout_s=args.timeout, on_complete=on_complete)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted", file=sys.stderr)
        return 130
    bar.close()
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.ok > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
