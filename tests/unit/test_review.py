"""The worklist on a real SQLite file: deadlines, order, filters, cursors, claims under contention, resolve.

Every time comes from a clock the test controls (``now=``); nothing sleeps.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, column, create_engine, insert, table, text

from deployments.core.config import AppArgs, ReviewDeadlinesArgs
from deployments.core.errors import ServiceError
from deployments.core.review import Deadlines, Position, gauge_values, review_fields
from deployments.core.store.repository import MIGRATIONS, CaseNotFound, CaseStore, case_row
from deployments.core.store.worklist import Worklist
from tests.unit.test_case_store import result

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def case(created_at=T0, *, priority=2, escalate=False, human_review=True, queue="advice-and-counselling",
         deadlines=None, call_id=None):
    r = result(priority=priority)
    r["routing"] = {**r["routing"], "escalate": escalate, "human_review": human_review or escalate, "queue": queue}
    return case_row(case_id=str(uuid.uuid4()), request_id=None, call_id=call_id, task_id=None, batch_index=None,
                    created_at=created_at, model_id="models/demo", model_revision=None, result=r, narrative=None,
                    deadlines=deadlines)


@pytest.fixture
def store(tmp_path):
    s = CaseStore(f"sqlite:///{tmp_path / 'helpline.db'}")
    yield s
    s.close()


@pytest.fixture
def worklist(store):
    w = Worklist(store)
    yield w
    w.close()


def test_the_default_deadlines_are_openchs_written_ones():
    d = Deadlines()
    assert d.seconds(escalate=True, priority=1) == 60  # an emergency escalation: within a minute
    assert d.seconds(escalate=False, priority=3) == 24 * 3600  # high: the same day
    assert d.seconds(escalate=False, priority=2) == 48 * 3600  # medium: 48-72 hours
    assert d.seconds(escalate=False, priority=1) == 7 * 24 * 3600  # low: within a week
    assert d.seconds(escalate=False, priority=9) == 7 * 24 * 3600  # a level the config does not name
    assert AppArgs().review.deadlines == ReviewDeadlinesArgs()


def test_a_case_enters_the_worklist_only_when_sent_to_review_with_its_deadline():
    assert review_fields(human_review=False, escalate=False, priority=3, created_at=T0) == {
        "review_status": None, "due_at": None}
    assert review_fields(human_review=True, escalate=True, priority=3, created_at=T0) == {
        "review_status": "open", "due_at": T0 + MINUTE}
    custom = Deadlines(ReviewDeadlinesArgs(escalated_s=30, priority_s={2: 3600}))
    assert case(priority=2, deadlines=custom)["due_at"] == T0 + HOUR
    assert case(escalate=True, deadlines=custom)["due_at"] == T0 + timedelta(seconds=30)


def test_escalated_first_then_by_due_time_then_by_age(store, worklist):
    low_old = case(T0 - 3 * DAY, priority=1)       # due T0 + 4 days
    medium = case(T0, priority=2)                  # due T0 + 2 days
    high = case(T0 + HOUR, priority=3)             # due T0 + 25 hours
    escalated_late = case(T0 + 2 * HOUR, escalate=True, priority=3)
    escalated = case(T0 + HOUR, escalate=True, priority=1)
    same_due_older = case(T0 - DAY, priority=3)    # due T0, before the others
    not_reviewed = case(T0, human_review=False)
    store.add_cases([low_old, medium, high, escalated_late, escalated, same_due_older, not_reviewed])
    got = [i["case_id"] for i in worklist.list(now=T0)["items"]]
    assert got == [escalated["id"], escalated_late["id"], same_due_older["id"], high["id"], medium["id"],
                   low_old["id"]]
    assert not_reviewed["id"] not in got


def test_overdue_follows_the_clock(store, worklist):
    escalated, medium = case(T0, escalate=True), case(T0, priority=2)
    store.add_cases([escalated, medium])

    def overdue_at(now):
        return [i["case_id"] for i in worklist.list(overdue=True, now=now)["items"]]

    assert overdue_at(T0 + timedelta(seconds=59)) == []
    assert overdue_at(T0 + timedelta(seconds=61)) == [escalated["id"]]
    assert overdue_at(T0 + 2 * DAY + MINUTE) == [escalated["id"], medium["id"]]
    on_time = worklist.list(overdue=False, now=T0 + 2 * MINUTE)["items"]
    assert [i["case_id"] for i in on_time] == [medium["id"]] and on_time[0]["overdue"] is False
    # A resolved case is never overdue, however late.
    worklist.resolve(escalated["id"], "sup-a", corrections={}, now=T0 + HOUR)
    assert overdue_at(T0 + 3 * DAY) == [medium["id"]]
    item = worklist.list(status="resolved", now=T0 + 3 * DAY)["items"][0]
    assert item["overdue"] is False and item["resolved_at"].startswith("2026-12-01T10:00")


def test_filters_by_queue_status_and_priority(store, worklist):
    a, b, c = case(queue="vane", priority=3), case(queue="vane", priority=1), case(queue="information", priority=1)
    store.add_cases([a, b, c])
    ids = lambda **kw: {i["case_id"] for i in worklist.list(now=T0, **kw)["items"]}  # noqa: E731
    assert ids(queue="vane") == {a["id"], b["id"]}
    assert ids(priority=1) == {b["id"], c["id"]}
    assert ids(queue="vane", priority=1) == {b["id"]}
    worklist.claim(a["id"], "sup-a", now=T0)
    assert ids(status="claimed") == {a["id"]} and ids(status="open") == {b["id"], c["id"]}
    assert ids() == {a["id"], b["id"], c["id"]}  # default: open and claimed


def test_the_cursor_walks_every_case_once_in_order(store, worklist):
    cases = [case(T0 + timedelta(seconds=i % 7), priority=1 + i % 3, escalate=i % 5 == 0) for i in range(37)]
    store.add_cases(cases)
    whole = [i["case_id"] for i in worklist.list(limit=500, now=T0)["items"]]
    walked, cursor = [], None
    while True:
        page = worklist.list(limit=6, cursor=cursor, now=T0)
        walked += [i["case_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == whole and len(set(walked)) == 37
    with pytest.raises(ServiceError) as bad:
        worklist.list(cursor="not-a-cursor", now=T0)
    assert bad.value.status == 422 and bad.value.code == "invalid_cursor"
    position = Position(True, T0, T0, "x")
    assert Position.decode(position.encode()) == position


def test_twenty_concurrent_claims_hand_each_case_out_once(store, worklist):
    cases = [case(T0 + timedelta(seconds=i)) for i in range(25)]
    store.add_cases(cases)
    claimed, errors, start = [], [], threading.Barrier(20)

    def take(n):
        start.wait()
        try:
            claimed.append(worklist.claim_next(f"sup-{n}", now=T0))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [c["case_id"] for c in claimed]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert {c["claimed_by"] for c in claimed} == {f"sup-{n}" for n in range(20)}
    # The twenty most urgent (here: the oldest) went, five remain open.
    assert set(ids) == {c["id"] for c in cases[:20]}
    assert {i["case_id"] for i in worklist.list(status="open", now=T0)["items"]} == {c["id"] for c in cases[20:]}


def test_next_returns_none_when_nothing_is_open_and_respects_the_queue(store, worklist):
    assert worklist.claim_next("sup-a", now=T0) is None
    a, b = case(queue="vane", escalate=True), case(queue="information")
    store.add_cases([a, b])
    assert worklist.claim_next("sup-a", queue="information", now=T0)["case_id"] == b["id"]
    assert worklist.claim_next("sup-a", queue="information", now=T0) is None
    assert worklist.claim_next("sup-b", now=T0)["case_id"] == a["id"]


def test_claim_release_and_the_conflicts(store, worklist):
    a, plain = case(), case(human_review=False)
    store.add_cases([a, plain])
    assert worklist.claim(a["id"], "sup-a", now=T0)["claimed_by"] == "sup-a"
    assert worklist.claim(a["id"], "sup-a", now=T0)["status"] == "claimed"  # again, by its holder: fine
    with pytest.raises(ServiceError) as taken:
        worklist.claim(a["id"], "sup-b", now=T0)
    assert taken.value.status == 409 and "sup-a" in taken.value.message
    with pytest.raises(ServiceError) as other:
        worklist.resolve(a["id"], "sup-b", corrections={}, now=T0)
    assert other.value.status == 409
    released = worklist.release(a["id"], "sup-b", now=T0)  # any supervisor may free it
    assert released["status"] == "open" and released["claimed_by"] is None
    with pytest.raises(ServiceError) as not_claimed:
        worklist.release(a["id"], "sup-b", now=T0)
    assert not_claimed.value.status == 409
    with pytest.raises(ServiceError) as never:
        worklist.claim(plain["id"], "sup-a", now=T0)
    assert never.value.status == 409 and "not sent to review" in never.value.message
    with pytest.raises(CaseNotFound):
        worklist.claim("no-such-case", "sup-a", now=T0)


def test_resolve_writes_the_feedback_post_feedback_writes(store, worklist):
    a = case(call_id="call-9")
    store.add_cases([a])
    worklist.claim(a["id"], "sup-a", now=T0)
    done = worklist.resolve(a["id"], "sup-a", corrections={"sub_category": "Emotional Abuse"}, rating=2,
                            reason="wrong sub category", now=T0 + HOUR)
    assert done["item"]["status"] == "resolved" and done["item"]["resolved_by"] == "sup-a"
    fb = done["feedback"]
    assert fb["reviewer"] == "sup-a" and fb["agreed"]["sub_category"] is False and fb["rating"] == 2
    assert store.get_case("call-9")["feedback"][0]["corrections"] == {"sub_category": "Emotional Abuse"}
    stats = store.stats(days=1, now=T0 + HOUR)
    assert stats["feedback"] == 1 and stats["tasks"]["sub_category"]["corrections"] == 1
    with pytest.raises(ServiceError) as again:
        worklist.resolve(a["id"], "sup-a", corrections={}, now=T0 + HOUR)
    assert again.value.status == 409 and "resolved" in again.value.message
    assert worklist.item(a["id"], now=T0)["status"] == "resolved"


def test_counts_per_queue_priority_and_status_with_overdue(store, worklist):
    store.add_cases([case(queue="vane", escalate=True, priority=3), case(queue="vane", priority=3),
                     case(queue="information", priority=1), case(human_review=False)])
    worklist.claim_next("sup-a", now=T0)  # the escalated one
    counts = {(c["queue"], c["priority"], c["escalate"], c["status"]): (c["cases"], c["overdue"])
              for c in worklist.counts(now=T0 + 2 * MINUTE)}
    assert counts == {("vane", 3, True, "claimed"): (1, 1), ("vane", 3, False, "open"): (1, 0),
                      ("information", 1, False, "open"): (1, 0)}


def test_the_gauges_read_zero_for_a_count_that_went_away():
    first, _ = gauge_values([{"queue": "vane", "priority": 3, "escalate": True, "status": "open", "cases": 2,
                              "overdue": 1}], set())
    cases, overdue = gauge_values([], set(first) | {("vane", "3", "true")})
    assert cases == {("vane", "3", "true", "open"): 0} and overdue == {("vane", "3", "true"): 0}
    cases, overdue = gauge_values([{"queue": "vane", "priority": 3, "escalate": True, "status": "claimed",
                                    "cases": 1, "overdue": 1},
                                   {"queue": "vane", "priority": 3, "escalate": True, "status": "open",
                                    "cases": 4, "overdue": 2}], set())
    assert cases == {("vane", "3", "true", "claimed"): 1, ("vane", "3", "true", "open"): 4}
    assert overdue == {("vane", "3", "true"): 3}


def test_the_migration_puts_earlier_review_cases_on_the_worklist(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    escalated, plain = case(T0, escalate=True), case(T0, human_review=False)
    # The rows as revision 0002 held them: without the worklist's columns, nor the later live calls' ones.
    later = ("review_status", "due_at", "call_timeline", "escalated_at")
    before = [{k: v for k, v in r.items() if k not in later} for r in (escalated, plain)]
    json_columns = ("reasons", "signals", "chunk_details")
    cases = table("cases", *[column(k, JSON if k in json_columns else None) for k in before[0]])
    with engine.begin() as connection:
        connection.execute(insert(cases), before)
    engine.dispose()
    store = CaseStore(url)  # migrates to the head
    worklist = Worklist(store)
    try:
        items = worklist.list(now=T0)["items"]
        assert [i["case_id"] for i in items] == [escalated["id"]]
        assert items[0]["due_at"].startswith("2026-12-01T09:01:00")  # the default minute of an escalation
        with store.engine.connect() as c:
            assert c.execute(text("SELECT review_status FROM cases WHERE id = :i"), {"i": plain["id"]}).scalar() is None
    finally:
        worklist.close()
        store.close()


def test_claims_and_resolves_are_observed_once_each_with_their_wait(store):
    claims, resolves = [], []
    worklist = Worklist(store, on_claim=lambda e, s: claims.append((e, s)),
                        on_resolve=lambda e, s: resolves.append((e, s)))
    try:
        escalated, medium = case(T0, escalate=True), case(T0, priority=2)
        store.add_cases([escalated, medium])
        worklist.claim_next("sup-a", now=T0 + MINUTE)
        worklist.claim(escalated["id"], "sup-a", now=T0 + HOUR)  # its holder again: no new claim
        worklist.resolve(medium["id"], "sup-b", corrections={}, now=T0 + HOUR)  # open: claimed and resolved at once
        worklist.resolve(escalated["id"], "sup-a", corrections={}, now=T0 + 2 * HOUR)
        assert claims == [(True, 60.0), (False, 3600.0)]
        assert resolves == [(False, 3600.0), (True, 7200.0)]
    finally:
        worklist.close()
