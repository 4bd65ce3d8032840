"""``chs-evaluate``: score a served model on a labelled JSONL file, through the API.

    chs-evaluate heldout.jsonl [--url URL] [--api-key KEY] [--out report.json]
                 [--min-accuracy main_category=0.8 ...]

Each line of the file is ``{"narrative": ..., "main_category": ...,
"sub_category": ..., "intervention": ..., "priority": ...}`` (other keys, such
as ``id``, are ignored). The narratives go to ``POST /classify/batch`` in
server-sized chunks; the answers are compared with the labels. Per task it
reports accuracy, macro-F1 and the most confused (gold → predicted) pairs,
prints a summary and writes the JSON report to ``--out``.

Run it before a retrained model goes live: deploy the candidate next to the
current one, evaluate both on the same labelled file, and gate on the result
with ``--min-accuracy`` (exit status 3 when a task is under its floor).

Exit status: 0 done, 1 the service failed, 2 the input file is unusable,
3 a ``--min-accuracy`` floor was not met.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from clients.client import DEFAULT_URL, URL_ENV, HelplineClient, HelplineError
from clients.jsonl import read_lines
from clients.scoring import TASKS, evaluation_report

REQUIRED = ("narrative",) + TASKS


class InputError(ValueError):
    pass


def read_labelled(path: Path) -> list[dict[str, Any]]:
    """The labelled records of a JSONL file; a clear error naming the line for anything unusable."""
    records = []
    try:
        lines = read_lines(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from None
    for line in lines:
        number, record = line.number, line.value
        if line.error is not None:
            raise InputError(f"{path}:{number}: not JSON ({line.error})")
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise InputError(f"{path}:{number}: missing {', '.join(missing)}")
        if not isinstance(record["narrative"], str) or not record["narrative"].strip():
            raise InputError(f"{path}:{number}: 'narrative' must be a non-empty string")
        records.append(record)
    if not records:
        raise InputError(f"{path} holds no labelled narratives")
    return records


def evaluate(records: Sequence[dict], client: HelplineClient, batch_size: Optional[int] = None,
             top: int = 5) -> dict[str, Any]:
    """Classify the records' narratives through the API and score the answers: the report, less timing."""
    info = client.info()
    results = client.classify_batch([r["narrative"] for r in records], include_confidence=False,
                                    batch_size=batch_size)
    predicted = [{task: getattr(res, task).label for task in TASKS} for res in results]
    model = {"id": info.model.id, "revision": info.model.revision,
             **{k: info.raw.get("model", {}).get(k) for k in ("untrained", "note")}}
    return {"url": client.url, "model": model,
            **evaluation_report([{task: r[task] for task in TASKS} for r in records], predicted, top)}


def summary(report: dict[str, Any]) -> str:
    lines = [f"{report['n']} labelled narratives, model {report.get('model', {}).get('id', '?')}",
             f"{'task':<15} {'accuracy':>9} {'macro-F1':>9}  most confused (gold → predicted)"]
    for task in TASKS:
        t = report["tasks"][task]
        confused = "; ".join(f"{c['gold']} → {c['predicted']} ×{c['count']}" for c in t["most_confused"][:3])
        lines.append(f"{task:<15} {t['accuracy']:>9.3f} {t['macro_f1']:>9.3f}  {confused or '-'}")
    return "\n".join(lines)


def _floor(text: str) -> tuple[str, float]:
    task, sep, value = text.partition("=")
    if not sep or task not in TASKS:
        raise argparse.ArgumentTypeError(f"expected TASK=ACCURACY with TASK one of {', '.join(TASKS)}")
    try:
        floor = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= floor <= 1:
        raise argparse.ArgumentTypeError("an accuracy floor is between 0 and 1")
    return task, floor


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chs-evaluate", description="Score a served model on a labelled JSONL file through the API."
    )
    parser.add_argument("file", type=Path, metavar="FILE.jsonl",
                        help="narrative, main_category, sub_category, intervention, priority per line")
    parser.add_argument("--url", default=None, help=f"service base URL (default ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help="API key (default $CHS_API_KEY)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--batch-size", type=int, default=None, help="narratives per request (default: the server's limit)")
    parser.add_argument("--top", type=int, default=5, help="confused pairs to report per task (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--min-accuracy", type=_floor, action="append", default=[], metavar="TASK=ACC",
                        help="fail (exit 3) if TASK's accuracy is under ACC; repeatable")
    args = parser.parse_args(argv)

    try:
        records = read_labelled(args.file)
    except InputError as exc:
        print(f"chs-evaluate: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        with HelplineClient(args.url, api_key=args.api_key, timeout=args.timeout) as client:
            scored = evaluate(records, client, args.batch_size, args.top)
    except HelplineError as exc:
        print(f"chs-evaluate: the service failed: {exc}", file=sys.stderr)
        return 1
    report = {"file": str(args.file), **scored, "seconds": round(time.perf_counter() - started, 3)}
    print(summary(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"report written to {args.out}", file=sys.stderr)
    failed = [f"{task} {report['tasks'][task]['accuracy']:.3f} < {floor}"
              for task, floor in args.min_accuracy if report["tasks"][task]["accuracy"] < floor]
    if failed:
        print("chs-evaluate: under the accuracy floor: " + "; ".join(failed), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
