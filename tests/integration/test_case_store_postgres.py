"""The case store on a real PostgreSQL server: the same repository the Router uses, no Ray."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from deployments.core.store.repository import CaseStore, case_row
from tests.unit.test_case_store import head_revision, result


def test_records_feedback_history_and_stats_on_postgresql(postgres_url):
    assert postgres_url.startswith("postgresql://postgres:")
    store = CaseStore(postgres_url)
    try:
        assert store.dialect == "postgresql" and store.revision() == head_revision()
        now = datetime.now(timezone.utc)
        case_id = str(uuid.uuid4())
        store.add_cases([case_row(case_id=case_id, request_id="r1", call_id="pg-call", task_id=None, batch_index=None,
                                  created_at=now, model_id="m", model_revision="v1", result=result(chunks=2),
                                  narrative="a child is bullied")])
        assert store.get_case("pg-call")["chunk_details"][1]["index"] == 1
        store.put_feedback(case_id, corrections={"priority": 3}, rating=2)
        second = store.put_feedback(case_id, corrections={"sub_category": "Emotional Abuse"}, rating=4)
        assert second["version"] == 2 and len(second["history"]) == 2
        stats = store.stats(days=1)
        assert stats["tasks"]["sub_category"]["corrections"] == 1 and stats["by_model"]["m@v1"]["feedback"] == 1
        assert store.export(now - timedelta(days=1)).examples[0]["sub_category"] == "Emotional Abuse"
        assert store.openchs_update("pg-call", 5, "ok")["feedback"] == 5
        CaseStore(postgres_url).close()  # a second replica opening it migrates nothing
    finally:
        store.close()
