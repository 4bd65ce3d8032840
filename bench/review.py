"""What ``POST /review/next`` costs the case store at 10,000 open cases, on SQLite and on PostgreSQL.

    python -m bench --review [--cases 10000] [--calls 1000] [--database-url postgresql://...]

The worklist's own work, in process (no Ray, no HTTP: those cost every route the same): the
store is filled with ``--cases`` open cases (a tenth escalated, priorities mixed, ages spread over
a week), then ``Worklist.claim_next`` is timed ``--calls`` times, each claim released untimed so
the list stays at its size; then the same with 8 supervisors claiming at once; then the first
page of ``GET /review``. PostgreSQL is the server ``--database-url`` names, else a throwaway
one started from Debian's binaries (``/usr/lib/postgresql/*/bin``, as its own user when run as
root), on a free port, with fsync off as the tests run it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from deployments.core.store.repository import CaseStore, case_row
from deployments.core.store.worklist import Worklist

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
CONCURRENT = 8


def _result(rng: np.random.Generator) -> dict:
    priority = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    escalate = bool(rng.random() < 0.1)
    pred = lambda label, conf: {"label": label, "confidence": conf}  # noqa: E731
    classification = {"main_category": pred("Advice and Counselling", 0.9), "sub_category": pred("Bullying", 0.5),
                      "sub_category_2": pred("Peer Relationships", 0.1), "intervention": pred("Counselling", 0.7),
                      "priority": pred(priority, 0.55)}
    queue = str(rng.choice(["advice-and-counselling", "vane", "information", "general"]))
    return {"classification": classification,
            "routing": {"queue": queue, "escalate": escalate, "human_review": True,
                        "reasons": ["Confidence in sub category is 0.50, under the review threshold 0.60."]},
            "chunks": 1, "truncated": False, "tokens": 64,
            "chunk_details": [{"index": 0, "token_span": [0, 64], "classification": classification}]}


def fill(store: CaseStore, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = [case_row(case_id=str(uuid.uuid4()), request_id=None, call_id=None, task_id=None, batch_index=None,
                     created_at=NOW - timedelta(seconds=int(rng.integers(0, 7 * 24 * 3600))), model_id="models/base",
                     model_revision=None, result=_result(rng), narrative=None) for _ in range(n)]
    for start in range(0, n, 1000):
        store.add_cases(rows[start:start + 1000])


def _percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "calls": len(ms)}


def time_next(worklist: Worklist, calls: int, supervisors: int = 1) -> dict:
    """claim_next's latency, each claim released untimed so the open list keeps its size."""
    per_thread = calls // supervisors
    timings: list[float] = []
    lock, start = threading.Lock(), threading.Barrier(supervisors)

    def work(n: int) -> None:
        start.wait()
        mine = []
        for _ in range(per_thread):
            began = time.perf_counter()
            item = worklist.claim_next(f"sup-{n}", now=NOW)
            mine.append((time.perf_counter() - began) * 1000)
            worklist.release(item["case_id"], f"sup-{n}", now=NOW)
        with lock:
            timings.extend(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(supervisors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _percentiles(timings)


def time_list(worklist: Worklist, calls: int) -> dict:
    timings = []
    for _ in range(calls):
        began = time.perf_counter()
        worklist.list(limit=50, now=NOW)
        timings.append((time.perf_counter() - began) * 1000)
    return _percentiles(timings)


def measure(url: str, cases: int, calls: int) -> dict:
    store = CaseStore(url)
    worklist = Worklist(store)
    try:
        fill(store, cases)
        time_next(worklist, min(calls, 50))  # warm the pool and the caches
        return {"open_cases": cases, "next": time_next(worklist, calls),
                f"next_{CONCURRENT}_at_once": time_next(worklist, calls, CONCURRENT),
                "list_first_page": time_list(worklist, min(calls, 200))}
    finally:
        worklist.close()
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres() -> Iterator[Optional[str]]:
    """A temporary PostgreSQL server's URL, or None when Debian's server binaries are absent."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        yield None
        return
    bin_dir, root = Path(found[-1]).parent, Path(tempfile.mkdtemp(prefix="chs-bench-pg-"))
    run_as = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port, password = root / "data", _free_port(), uuid.uuid4().hex
    (root / "pw").write_text(password)
    if run_as:
        shutil.chown(root / "pw", "postgres")
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile",
                        str(root / "pw"), "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"], check=True,
                       capture_output=True)
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], check=True,
                       capture_output=True)
        yield f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run(cases: int, calls: int, database_url: Optional[str] = None) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        out["sqlite"] = measure(f"sqlite:///{d}/helpline.db", cases, calls)
    if database_url:
        out["postgresql"] = measure(database_url, cases, calls)
    else:
        with throwaway_postgres() as url:
            out["postgresql"] = measure(url, cases, calls) if url else "skipped: no PostgreSQL server binaries"
    return out


def markdown(result: dict) -> str:
    lines = ["| database | open cases | /review/next p50 | p99 | 8 at once p50 | p99 | GET /review page p50 | p99 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in result.items():
        if isinstance(r, str):
            lines.append(f"| {name} | {r} |")
            continue
        n, c, page = r["next"], r[f"next_{CONCURRENT}_at_once"], r["list_first_page"]
        lines.append(f"| {name} | {r['open_cases']:,} | {n['p50_ms']} ms | {n['p99_ms']} ms | {c['p50_ms']} ms | "
                     f"{c['p99_ms']} ms | {page['p50_ms']} ms | {page['p99_ms']} ms |")
    return "\n".join(lines)
