"""chs-classify and chs-loadtest, run as the installed console scripts against the served app."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clients.cli import CSV_FIELDS
from clients.loadtest import FALLBACK_NARRATIVES
from tests.conftest import free_port

NARRATIVES = list(FALLBACK_NARRATIVES)
BIN = Path(sys.executable).parent


def command(script: str, module: str) -> list[str]:
    """The console script when installed (``pip install -e .``), else the same entry point through -m."""
    path = BIN / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def run(script, module, *args, stdin=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("CHS_API_KEY", "CHS_URL")}
    return subprocess.run(command(script, module) + [str(a) for a in args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=None if stdin is not None else subprocess.DEVNULL)


def classify(*args, **kwargs):
    return run("chs-classify", "clients.cli", *args, **kwargs)


def loadtest(*args, **kwargs):
    return run("chs-loadtest", "clients.loadtest", *args, **kwargs)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def assert_classified(record: dict) -> None:
    assert "error" not in record, record
    for task in ("main_category", "sub_category", "sub_category_2", "intervention", "priority"):
        assert record[task] not in (None, "")
        assert 0.0 <= record[f"{task}_confidence"] <= 1.0
    assert record["queue"] and isinstance(record["escalate"], bool) and isinstance(record["human_review"], bool)


def test_jsonl_file_in_jsonl_out_in_order(served_tiny, tmp_path):
    ids = [f"case-{i:02d}" for i in range(len(NARRATIVES))]
    src = write_jsonl(tmp_path / "cases.jsonl", [{"id": i, "narrative": n} for i, n in zip(ids, NARRATIVES)])
    out = tmp_path / "out.jsonl"
    p = classify(src, "-o", out, "--url", served_tiny, "--batch-size", "3", "--concurrency", "3")
    assert p.returncode == 0, p.stderr
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ids
    for r in records:
        assert_classified(r)
    # The progress bar went to stderr, not into the output.
    assert f"{len(ids)}/{len(ids)}" in p.stderr
    assert p.stdout == ""
    # No narrative text reaches stderr.
    assert not any(n[:30] in p.stderr for n in NARRATIVES)


def test_csv_in_csv_out(served_tiny, tmp_path):
    src = tmp_path / "cases.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "narrative", "district"])
        for i, n in enumerate(NARRATIVES[:5]):
            w.writerow([f"r{i}", f'{n} She said "help", twice.', "north"])
    out = tmp_path / "out.csv"
    p = classify(src, "-o", out, "--url", served_tiny, "--no-progress")
    assert p.returncode == 0, p.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == CSV_FIELDS
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(5)]
    for r in rows:
        assert r["main_category"] and r["queue"] and r["error"] == ""
        assert r["escalate"] in ("True", "False") and 0 <= float(r["priority_confidence"]) <= 1


def test_one_narrative_from_stdin_or_argument(served_tiny):
    p = classify("--url", served_tiny, stdin=NARRATIVES[1] + "\n")
    assert p.returncode == 0, p.stderr
    (record,) = [json.loads(line) for line in p.stdout.splitlines()]
    assert record["id"] == "1"
    assert_classified(record)
    q = classify(NARRATIVES[1], "--url", served_tiny, "--format", "csv")
    assert q.returncode == 0, q.stderr
    (row,) = list(csv.DictReader(q.stdout.splitlines()))
    assert row["main_category"] == record["main_category"] and row["queue"] == record["queue"]


def test_text_file_ids_are_line_numbers(served_tiny, tmp_path):
    src = tmp_path / "cases.txt"
    src.write_text(f"{NARRATIVES[0]}\n{NARRATIVES[1]}\n\n{NARRATIVES[2]}\n", encoding="utf-8")
    p = classify(src, "--url", served_tiny, "--no-progress")
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in records] == ["1", "2", "4"]


def test_resume_skips_done_ids(served_tiny, tmp_path):
    ids = [f"id{i}" for i in range(6)]
    src = write_jsonl(tmp_path / "cases.jsonl", [{"id": i, "narrative": n} for i, n in zip(ids, NARRATIVES)])
    out = tmp_path / "out.jsonl"
    assert classify(src, "-o", out, "--url", served_tiny, "--no-progress").returncode == 0
    full = out.read_text(encoding="utf-8").splitlines(keepends=True)
    # An interrupted run: three records done, the fourth cut off mid-line.
    out.write_text("".join(full[:3]) + full[3][:25], encoding="utf-8")
    p = classify(src, "-o", out, "--url", served_tiny, "--resume", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "3 rows already done, 3 to go" in p.stderr
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[:3] == full[:3]  # untouched
    assert [json.loads(line)["id"] for line in lines] == ids
    # Everything done: a resume sends nothing at all (a dead URL would fail any request).
    dead = f"http://127.0.0.1:{free_port()}"
    q = classify(src, "-o", out, "--url", dead, "--resume", "--no-progress", "--max-retries", "0")
    assert q.returncode == 0, q.stderr
    assert "nothing to do" in q.stderr
    assert out.read_text(encoding="utf-8").splitlines(keepends=True) == lines


def test_failing_row_is_reported_not_dropped(served_tiny, tmp_path):
    records = [{"id": "a", "narrative": NARRATIVES[0]}, {"id": "b", "narrative": "   "},
               {"id": "c", "narrative": NARRATIVES[2]}, {"id": "d", "narrative": NARRATIVES[3]}]
    src = tmp_path / "cases.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    p = classify(src, "-o", out, "--url", served_tiny, "--no-progress", "--batch-size", "4")
    assert p.returncode == 1, p.stderr
    got = read_jsonl(out)
    assert [r["id"] for r in got] == ["a", "b", "c", "d", "5"]
    assert got[1]["error"]["status"] == 400 and got[1]["error"]["code"] == "empty_narrative"
    assert got[4]["error"]["code"] == "invalid_row"
    for r in (got[0], got[2], got[3]):
        assert_classified(r)
    assert "row b failed: 400 empty_narrative" in p.stderr
    assert "row 5 failed" in p.stderr
    assert "2 of 5 rows failed" in p.stderr
    # A resume retries only the failed row that can be sent again; it fails again.
    q = classify(src, "-o", out, "--url", served_tiny, "--no-progress", "--resume")
    assert q.returncode == 1
    assert [r["id"] for r in read_jsonl(out)][5:] == ["b", "5"]


def test_unreachable_server_fails_every_row_with_exit_1():
    dead = f"http://127.0.0.1:{free_port()}"
    p = classify(NARRATIVES[0], "--url", dead, "--max-retries", "1", "--timeout", "5")
    assert p.returncode == 1
    (record,) = [json.loads(line) for line in p.stdout.splitlines()]
    assert record["id"] == "1" and record["error"]["code"] == "connection_error"
    assert "retrying" in p.stderr  # the one retry was announced


@pytest.mark.parametrize("args", [
    ["--concurrency", "0", "x"],
    ["--resume", "some narrative"],
    ["--format", "xml", "x"],
    ["--no-such-flag"],
])
def test_usage_errors_exit_2(args):
    p = classify(*args, timeout=60)
    assert p.returncode == 2
    assert "usage: chs-classify" in p.stderr


def test_csv_without_narrative_column_is_a_usage_error(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("id,text\n1,hello\n", encoding="utf-8")
    p = classify(src, timeout=60)
    assert p.returncode == 2 and "'narrative' column" in p.stderr


def test_loadtest_prints_the_summary(served_tiny, tmp_path):
    narratives = tmp_path / "n.txt"
    narratives.write_text("\n".join(NARRATIVES[:4]) + "\n" + json.dumps({"narrative": NARRATIVES[4]}) + "\n",
                          encoding="utf-8")
    report = tmp_path / "report.json"
    p = loadtest("--url", served_tiny, "--rate", "5/s", "--duration", "3s", "--narratives", narratives,
                 "--json", report)
    assert p.returncode == 0, p.stderr
    for field in ("achieved", "cases/hour", "p50", "p95", "p99", "errors"):
        assert field in p.stdout
    data = json.loads(report.read_text())
    assert data["scheduled"] == 15 and data["sent"] == 15
    assert data["ok"] + data["failed"] == 15 and data["ok"] > 0
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p95"] <= data["latency_ms"]["p99"]
    assert "15/15" in p.stderr  # the live progress bar


def test_loadtest_usage_errors_exit_2():
    assert loadtest("--rate", "fast", "--duration", "3s", timeout=60).returncode == 2
    assert loadtest("--rate", "5/s", timeout=60).returncode == 2


def test_loadtest_defaults_to_the_built_in_narratives(served_tiny, tmp_path):
    report = tmp_path / "report.json"
    p = loadtest("--url", served_tiny, "--rate", "4/s", "--duration", "1s", "--no-progress", "--json", report)
    assert p.returncode == 0, p.stderr
    data = json.loads(report.read_text())
    assert data["sent"] == 4 and data["ok"] > 0
    q = loadtest("--url", served_tiny, "--rate", "4/s", "--duration", "1s", "--narratives", tmp_path / "absent.txt",
                 timeout=60)
    assert q.returncode == 2 and "cannot read --narratives" in q.stderr
