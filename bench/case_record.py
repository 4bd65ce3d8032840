"""CPU per case that the case record adds to the Router, in process.

    python -m bench.case_record [N]

The Router's work for one single-case request (aggregate, route, render), first
alone, then with what the case record adds: rendering for the record, building
the row, queueing it, and the writer thread's batched writes to a real SQLite
file in WAL mode. Process CPU time, writer thread included; two rounds.
"""
import sys
import tempfile
import time
import uuid

import numpy as np

from deployments.core.config import RoutingArgs
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet
from deployments.core.postprocess import CaseAssembler
from deployments.core.preprocess import CasePlan
from deployments.core.routing import RoutingPolicy
from deployments.core.windowing import WindowSpan
from deployments.core.store.repository import CaseStore, case_row, utcnow
from deployments.core.store.writer import RecordWriter


LABELS = LabelSet.from_dir(BUNDLED_LABELS_DIR)
ASSEMBLER = CaseAssembler(LABELS, RoutingPolicy(RoutingArgs(), LABELS), "weighted_mean", "max")
ONE_WINDOW = [CasePlan((WindowSpan(0, 128),), 128, False, True, False)]


def random_probs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One window's probabilities per task, as the classifier returns them."""
    out = {}
    for task, n in LABELS.sizes().items():
        p = rng.random(n)
        out[task] = (p / p.sum())[None, :].astype(np.float32)
    return out


def router_cpu_ms(window_probs: list[dict], store: CaseStore | None = None) -> float:
    """CPU-ms per case of the Router's work, with the case record when ``store`` is given."""
    writer = RecordWriter(store.add_cases) if store else None
    started = time.process_time()
    for probs in window_probs:
        if writer is None:
            ASSEMBLER.assemble(ONE_WINDOW, probs)
            continue
        ((_, _, _, record),) = ASSEMBLER.assemble_with_records(ONE_WINDOW, probs)
        writer.submit([case_row(case_id=str(uuid.uuid4()), request_id=uuid.uuid4().hex, call_id=None, task_id=None,
                                batch_index=None, created_at=utcnow(), model_id="models/demo", model_revision=None,
                                result=record, narrative=None)])
    if writer is not None:
        writer.close()  # every record written, as on a clean shutdown
    return (time.process_time() - started) / len(window_probs) * 1000

def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rng = np.random.default_rng(0)
    window_probs = [random_probs(rng) for _ in range(n)]
    with tempfile.TemporaryDirectory() as d:
        store = CaseStore(f"sqlite:///{d}/helpline.db")
        store.migrate()
        for round_ in range(2):
            bare = router_cpu_ms(window_probs)
            recorded = router_cpu_ms(window_probs, store)
            print(f"round {round_}: Router CPU-ms/case without the record {bare:.3f}, "
                  f"with it (SQLite, WAL) {recorded:.3f}, added {recorded - bare:.3f}")

if __name__ == "__main__":
    main()
