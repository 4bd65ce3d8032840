"""``chs-classify``: classify one narrative, or a whole file, from the command line.

    chs-classify "A 14 year old girl reports ..."          # one narrative, JSON line on stdout
    echo "A 14 year old girl reports ..." | chs-classify   # one narrative from stdin
    chs-classify cases.jsonl -o labelled.jsonl              # a file: JSONL / CSV with id,narrative, or text
    chs-classify cases.csv -o labelled.csv --resume         # carry on after an interruption
    chs-classify backlog.jsonl -o out.jsonl --async          # a backlog: queue every case, then collect

With ``--async`` every row is first queued (POST /tasks/classify/batch, the row id as its
call_id) and its task id saved to ``OUTPUT.tasks.jsonl``; then the results are collected in
input order. Run it again with ``--resume`` after an interruption: rows already written are
skipped, rows with a saved task id are collected without being queued again (and a row queued
again gets its same task back: same call id, same narrative).

INPUT is a file when such a path exists, otherwise the narrative itself. A
file is read by its extension: ``.jsonl``/``.ndjson`` (objects with ``id`` and
``narrative``), ``.csv`` (columns ``id`` and ``narrative``), anything else as
plain text with one narrative per line (the id is the line number).

Output rows come in input order, one per input row: the labels, confidences
and routing, or an ``error`` for a row that failed. Exit status: 0 all rows
classified, 1 some rows failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional, Sequence

from clients.client import DEFAULT_URL, URL_ENV, AsyncHelplineClient, HelplineError
from clients.jsonl import numbered_lines, parse_lines, read_text
from clients.models import TASKS, ClassifyResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Statuses a single row's content can cause: worth retrying that batch row by row.
ROW_ERROR_STATUSES = {400, 413, 422}
DEFAULT_BATCH = 32

CSV_FIELDS = (
    ["id"]
    + [f for task in TASKS for f in (task, f"{task}_confidence")]
    + ["queue", "escalate", "human_review", "reasons", "chunks", "truncated", "error"]
)


@dataclass
class Row:
    index: int
    id: str
    narrative: Optional[str]
    problem: Optional[str] = None  # the row could not be read


class UsageError(Exception):
    pass


# ----------------------------------------------------------------------------- input

def detect_format(path: Path, given: str) -> str:
    if given != "auto":
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "text"


def read_rows(path: Path, fmt: str) -> list[Row]:
    text = read_text(path)
    rows: list[Row] = []
    if fmt == "jsonl":
        for line in parse_lines(text):
            if line.error is not None:
                rows.append(Row(len(rows), str(line.number), None, f"line {line.number} is not valid JSON"))
                continue
            record = line.value
            if not isinstance(record, dict):
                rows.append(Row(len(rows), str(line.number), None, f"line {line.number} is not a JSON object"))
                continue
            row_id = str(record["id"]) if record.get("id") is not None else str(line.number)
            narrative = record.get("narrative")
            if not isinstance(narrative, str):
                rows.append(Row(len(rows), row_id, None, "the 'narrative' field is missing or not a string"))
                continue
            rows.append(Row(len(rows), row_id, narrative))
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "narrative" not in reader.fieldnames:
            raise UsageError(f"{path}: a CSV input needs a 'narrative' column (and optionally 'id')")
        for n, record in enumerate(reader, 1):
            row_id = (record.get("id") or "").strip() or str(n)
            narrative = record.get("narrative")
            if narrative is None:
                rows.append(Row(len(rows), row_id, None, "the row has no 'narrative' value"))
                continue
            rows.append(Row(len(rows), row_id, narrative))
    else:
        for line_no, line in numbered_lines(text):
            rows.append(Row(len(rows), str(line_no), line))
    return rows


# ----------------------------------------------------------------------------- output

def result_record(row_id: str, r: ClassifyResult) -> dict:
    record: dict = {"id": row_id}
    for task in TASKS:
        p = getattr(r, task)
        record[task] = p.label
        record[f"{task}_confidence"] = p.confidence
    record.update(queue=r.routing.queue, escalate=r.routing.escalate, human_review=r.routing.human_review,
                  reasons=list(r.routing.reasons), chunks=r.chunks, truncated=r.truncated)
    return record


def error_record(row_id: str, error: dict) -> dict:
    return {"id": row_id, "error": error}


def error_dict(err: HelplineError) -> dict:
    return err.to_dict()


class Writer:
    def __init__(self, stream: IO[str], fmt: str, write_header: bool):
        self.stream, self.fmt = stream, fmt
        self.csv = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore") if fmt == "csv" else None
        if self.csv is not None and write_header:
            self.csv.writeheader()

    def write(self, record: dict) -> None:
        if self.csv is None:
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        flat = dict(record)
        if "error" in flat:
            e = flat["error"]
            flat["error"] = f"{e.get('status') or '-'} {e.get('code')}: {e.get('message')}"
        if "reasons" in flat:
            flat["reasons"] = "; ".join(flat["reasons"])
        self.csv.writerow(flat)

    def flush(self) -> None:
        self.stream.flush()


def done_ids(path: Path, fmt: str) -> set[str]:
    """Ids with a successful record in an earlier output (failed rows are tried again)."""
    if not path.exists():
        return set()
    text = path.read_text(encoding="utf-8")
    done = set()
    if fmt == "csv":
        for record in csv.DictReader(io.StringIO(text)):
            if record.get("id") and not record.get("error"):
                done.add(record["id"])
    else:
        for line in parse_lines(text):
            record = line.value
            if isinstance(record, dict) and "id" in record and "error" not in record:
                done.add(str(record["id"]))
    return done


def drop_partial_line(path: Path) -> None:
    """An interrupted run may leave half a line at the end; appending after it would corrupt the next record."""
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


# ----------------------------------------------------------------------------- run

def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"chs-classify: {message}", file=sys.stderr)


async def classify_rows(client: AsyncHelplineClient, rows: Sequence[Row], writer: Writer, *, batch_size: int,
                        concurrency: int, progress: bool) -> int:
    """Classify ``rows`` in batches, ``concurrency`` batches in flight; write in input order. Returns failures."""
    from tqdm import tqdm

    bar = tqdm(total=len(rows), unit="case", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    pending: dict[int, dict] = {}
    order = [r.index for r in rows]
    cursor = 0
    failed = 0

    def emit(records: list[tuple[Row, dict]]) -> None:
        nonlocal cursor, failed
        for row, record in records:
            pending[row.index] = record
            if "error" in record:
                failed += 1
                e = record["error"]
                _say(f"row {row.id} failed: {e.get('status') or '-'} {e.get('code')}: {e.get('message')}")
        while cursor < len(order) and order[cursor] in pending:
            writer.write(pending.pop(order[cursor]))
            cursor += 1
        writer.flush()
        bar.update(len(records))

    async def one_by_one(batch: Sequence[Row]) -> list[tuple[Row, dict]]:
        out = []
        for row in batch:
            try:
                out.append((row, result_record(row.id, await client.classify(row.narrative))))
            except HelplineError as err:
                out.append((row, error_record(row.id, error_dict(err))))
        return out

    async def do_batch(batch: Sequence[Row], gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                results = await client.classify_batch([r.narrative for r in batch], batch_size=len(batch))
                records = [(row, result_record(row.id, res)) for row, res in zip(batch, results)]
            except HelplineError as err:
                if err.status in ROW_ERROR_STATUSES and len(batch) > 1:
                    records = await one_by_one(batch)  # find the rows at fault
                else:
                    records = [(row, error_record(row.id, error_dict(err))) for row in batch]
        emit(records)

    unreadable = [(r, error_record(r.id, {"status": None, "code": "invalid_row", "message": r.problem,
                                          "request_id": None})) for r in rows if r.problem]
    if unreadable:
        emit(unreadable)
    good = [r for r in rows if not r.problem]
    gate = asyncio.Semaphore(max(1, concurrency))
    try:
        await asyncio.gather(*(do_batch(good[i:i + batch_size], gate) for i in range(0, len(good), batch_size)))
    finally:
        bar.close()
    return failed


def call_id_of(row: Row) -> str:
    """The row id as the task's call_id (at most 128 characters: a longer id is hashed)."""
    if len(row.id) <= 128:
        return row.id
    import hashlib

    return "sha256:" + hashlib.sha256(row.id.encode("utf-8")).hexdigest()


def tasks_path(output: Optional[Path]) -> Optional[Path]:
    return None if output is None else output.with_name(output.name + ".tasks.jsonl")


def saved_tasks(path: Optional[Path]) -> dict[str, str]:
    """Row id → task id, from an earlier --async run."""
    if path is None or not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            out[str(record["id"])] = str(record["task_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interruption
    return out


async def queue_then_collect(client: AsyncHelplineClient, rows: Sequence[Row], writer: Writer, *,
                             batch_size: int, concurrency: int, progress: bool, tasks_file: Optional[Path],
                             wait_timeout: float) -> int:
    """--async: queue every row not queued yet, save the task ids, then collect the results in order."""
    from tqdm import tqdm

    known = saved_tasks(tasks_file)
    good = [r for r in rows if not r.problem]
    to_queue = [r for r in good if r.id not in known]
    errors: dict[int, dict] = {r.index: error_record(r.id, {"status": None, "code": "invalid_row", "message": r.problem,
                                                            "request_id": None}) for r in rows if r.problem}
    saved = open(tasks_file, "a", encoding="utf-8") if tasks_file is not None else None
    try:
        for start in range(0, len(to_queue), batch_size):
            batch = to_queue[start:start + batch_size]
            try:
                ids = await client.submit_batch([r.narrative for r in batch], call_ids=[call_id_of(r) for r in batch],
                                                batch_size=len(batch))
                pairs = list(zip(batch, ids))
            except HelplineError as err:
                if err.status not in ROW_ERROR_STATUSES:
                    raise
                pairs = []
                for row in batch:  # find the rows at fault
                    try:
                        pairs.append((row, await client.submit(row.narrative, call_id=call_id_of(row))))
                    except HelplineError as row_err:
                        errors[row.index] = error_record(row.id, error_dict(row_err))
            for row, task_id in pairs:
                known[row.id] = task_id
                if saved is not None:
                    saved.write(json.dumps({"id": row.id, "task_id": task_id}) + "\n")
            if saved is not None:
                saved.flush()
        refused = sum(1 for r in to_queue if r.index in errors)
        _say(f"queued {len(to_queue) - refused} rows ({len(good) - len(to_queue)} queued before, {refused} refused); "
             "collecting")
    finally:
        if saved is not None:
            saved.close()

    bar = tqdm(total=len(rows), unit="case", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    gate = asyncio.Semaphore(max(1, concurrency) * 4)

    async def collect(row: Row) -> dict:
        if row.index in errors:
            return errors[row.index]
        async with gate:
            try:
                status = await client.wait(known[row.id], timeout=wait_timeout)
            except HelplineError as err:
                return error_record(row.id, error_dict(err))
            except TimeoutError as exc:
                return error_record(row.id, {"status": None, "code": "timeout", "message": str(exc), "request_id": None})
        if status.status == "succeeded":
            return result_record(row.id, status.result)
        return error_record(row.id, {"status": None, **(status.error or {"code": "failed", "message": "failed"}),
                                     "request_id": None})

    failed = 0
    try:
        collectors = [asyncio.ensure_future(collect(r)) for r in rows]
        for row, fut in zip(rows, collectors):
            record = await fut
            if "error" in record:
                failed += 1
                e = record["error"]
                _say(f"row {row.id} failed: {e.get('status') or '-'} {e.get('code')}: {e.get('message')}")
            writer.write(record)
            writer.flush()
            bar.update(1)
    finally:
        bar.close()
    return failed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chs-classify",
        description="Classify helpline narratives: one given as an argument or on stdin, or a whole file "
                    "(JSONL or CSV with id and narrative, or text with one narrative per line).",
        epilog="Exit status: 0 every row classified, 1 some rows failed, 2 usage error.",
    )
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="a file to classify (if the path exists) or a narrative; omit or '-' to read one from stdin")
    p.add_argument("-o", "--output", metavar="OUTPUT", help="write here instead of stdout")
    p.add_argument("--url", default=None, help=f"service base URL (default ${URL_ENV} or {DEFAULT_URL})")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None,
                   help="output format (default: csv when OUTPUT ends in .csv, else jsonl)")
    p.add_argument("--input-format", choices=("auto", "jsonl", "csv", "text"), default="auto",
                   help="how to read an INPUT file (default: by its extension)")
    p.add_argument("--concurrency", type=_positive, default=4, help="batch requests in flight (default 4)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help=f"narratives per request (default: the server's limit, at most {DEFAULT_BATCH})")
    p.add_argument("--resume", action="store_true", help="skip ids already classified in OUTPUT; append to it")
    p.add_argument("--api-key", default=None, help="API key (default $CHS_API_KEY)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--max-retries", type=int, default=3, help="retries on 429/503/connection errors (default 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="queue every row on the durable intake first, then collect (for backlogs; resumable)")
    p.add_argument("--wait-timeout", type=float, default=3600.0,
                   help="--async: seconds to wait for one queued case (default 3600)")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _gather_rows(args, parser) -> list[Row]:
    if args.input not in (None, "-") and Path(args.input).is_file():
        path = Path(args.input)
        try:
            return read_rows(path, detect_format(path, args.input_format))
        except UsageError as exc:
            parser.error(str(exc))
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read {path}: {exc}")
    if args.input not in (None, "-"):
        return [Row(0, "1", args.input)]
    if sys.stdin is None or sys.stdin.isatty():
        parser.error("give a narrative or a file as INPUT, or pipe a narrative on stdin")
    return [Row(0, "1", sys.stdin.read())]


async def _main(args, rows: list[Row], out: IO[str], fmt: str, write_header: bool) -> int:
    def on_retry(n: int, delay: float, reason: str) -> None:
        _say(f"{reason}; retrying in {delay:.1f} s")

    async with AsyncHelplineClient(args.url, api_key=args.api_key, timeout=args.timeout,
                                   max_retries=args.max_retries, on_retry=on_retry) as client:
        batch_size = args.batch_size
        if batch_size is None and len(rows) > 1:
            try:
                batch_size = min(DEFAULT_BATCH, await client.batch_limit())
            except HelplineError as err:
                _say(f"cannot read the server's limits from {client.url}/info: {err}")
                return EXIT_FAILED
        writer = Writer(out, fmt, write_header)
        if args.use_async:
            failed = await queue_then_collect(
                client, rows, writer, batch_size=batch_size or 1, concurrency=args.concurrency,
                progress=not args.no_progress, tasks_file=tasks_path(Path(args.output) if args.output else None),
                wait_timeout=args.wait_timeout)
        else:
            failed = await classify_rows(client, rows, writer, batch_size=batch_size or 1,
                                         concurrency=args.concurrency, progress=not args.no_progress)
    if failed:
        _say(f"{failed} of {len(rows)} rows failed; see the 'error' records in the output")
        return EXIT_FAILED
    return EXIT_OK


def classify_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_retries < 0:
        parser.error("--max-retries must be 0 or more")
    fmt = args.format or ("csv" if args.output and args.output.lower().endswith(".csv") else "jsonl")
    if args.resume and not args.output:
        parser.error("--resume needs -o OUTPUT (the file to carry on)")
    rows = _gather_rows(args, parser)

    output = Path(args.output) if args.output else None
    write_header = True
    if output is not None and args.resume and output.exists():
        done = done_ids(output, fmt)
        before = len(rows)
        rows = [r for r in rows if r.id not in done]
        if before - len(rows):
            _say(f"resuming: {before - len(rows)} rows already done, {len(rows)} to go")
        drop_partial_line(output)
        write_header = output.stat().st_size == 0
        mode = "a"
    else:
        mode = "w"
    if not rows:
        _say("nothing to do")
        return EXIT_OK

    out = open(output, mode, encoding="utf-8", newline="") if output is not None else sys.stdout
    try:
        return asyncio.run(_main(args, rows, out, fmt, write_header))
    except KeyboardInterrupt:
        _say("interrupted; run again with --resume to carry on")
        return 130
    finally:
        if output is not None:
            out.close()


if __name__ == "__main__":
    sys.exit(classify_main())
