"""InProcessPipeline: the whole pipeline in process, every setting read from AppArgs. No Ray, no network."""

from types import SimpleNamespace

import numpy as np
import pytest

from deployments.core.in_process import InProcessPipeline, CaseResult
from deployments.core.config import AppArgs
from deployments.core.labels import TASKS
from deployments.core.windowing import window_spans

SENTENCES = [
    "The caller says her daughter aged eleven has not been to school for three weeks.",
    "She explains that the father drinks every evening and shouts at the children.",
    "The girl told her teacher that she is afraid to go home after classes.",
]
LONG = " ".join(SENTENCES * 40)  # five 512-token windows on the tiny tokenizer
SHORT = [
    "My uncle touches me at night and says I must not tell mama. I am 13.",
    "Caller wants to know the opening hours of the helpline.",
    "Neighbour reports that a girl aged 9 is locked in the house every day and is not going to school.",
]


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint) -> InProcessPipeline:
    return InProcessPipeline.from_args(AppArgs(model=str(tiny_checkpoint), accelerator="cpu", dtype="fp32",
                                            torch_threads=1))


def window_probs(classifier, text):
    """Per-task probabilities of each window of ``text``, and the windows' content-token counts."""
    windows, (plan,) = classifier.prepare([text])
    (probs,) = classifier.forward([windows])
    return probs, np.asarray(plan.token_counts(), dtype=np.float64)


def assert_same_case(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_case(a[key], b[key], tol)
        elif isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], abs=tol), key
        elif isinstance(a[key], list) and a[key] and isinstance(a[key][0], dict):
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                assert_same_case(x, y, tol)
        else:
            assert a[key] == b[key], key


def test_settings_are_the_app_args(classifier, tiny_checkpoint):
    args = classifier.args
    assert args.model == str(tiny_checkpoint)
    assert (classifier.assembler.aggregation, classifier.assembler.priority_aggregation) == (
        args.aggregation, args.priority_aggregation)
    assert classifier.device.type == "cpu" and classifier.dtype_name == "fp32"
    changed = classifier.replace(aggregation="max", priority_aggregation="mean", max_length=256)
    assert (changed.args.aggregation, changed.args.priority_aggregation, changed.args.max_length) == (
        "max", "mean", 256)
    assert (changed.assembler.aggregation, changed.assembler.priority_aggregation) == ("max", "mean")
    assert changed.backend is classifier.backend  # no load setting changed: the same model
    with pytest.raises(ValueError, match="window_overlap"):
        classifier.replace(max_length=64, window_overlap=100)  # validated as AppArgs are


def test_long_narrative_chunks_follow_the_window_settings(classifier):
    body = classifier.classify([LONG], include_chunks=True)[0]
    n_tokens = body["tokens"]
    args = classifier.args
    assert body["chunks"] == len(window_spans(n_tokens, args.max_length, args.window_overlap)) > 1
    assert body["truncated"] is False
    spans = [d["token_span"] for d in body["chunk_details"]]
    assert spans[0][0] == 0 and spans[-1][1] == n_tokens
    assert all(a[1] - b[0] == args.window_overlap for a, b in zip(spans, spans[1:]))

    narrow = classifier.replace(max_length=128, window_overlap=32).classify([LONG], include_chunks=True)[0]
    assert narrow["tokens"] == n_tokens
    assert narrow["chunks"] == len(window_spans(n_tokens, 128, 32)) > body["chunks"]
    spans = [d["token_span"] for d in narrow["chunk_details"]]
    assert all(a[1] - b[0] == 32 for a, b in zip(spans, spans[1:]))


def test_truncate_reads_only_the_first_window(classifier):
    windowed = classifier.classify([LONG], include_chunks=True)[0]
    truncated = classifier.replace(long_narratives="truncate").classify([LONG])[0]
    assert windowed["chunks"] > 1 and windowed["truncated"] is False
    assert truncated["chunks"] == 1 and truncated["truncated"] is True
    assert truncated["tokens"] == windowed["tokens"]  # the whole narrative was tokenized, one window read
    # The case is its first window's classification.
    assert_same_case(truncated["classification"], windowed["chunk_details"][0]["classification"])
    # A narrative that fits one window is not marked truncated.
    short = classifier.replace(long_narratives="truncate").classify([SHORT[0]])[0]
    assert short["chunks"] == 1 and short["truncated"] is False


@pytest.mark.parametrize("aggregation", ["weighted_mean", "mean", "max"])
def test_aggregation_setting_combines_the_windows_as_named(classifier, aggregation):
    probs, weights = window_probs(classifier, LONG)
    main = probs["main_category"].astype(np.float64)
    expected = {
        "weighted_mean": (main * (weights / weights.sum())[:, None]).sum(axis=0),
        "mean": main.mean(axis=0),
        "max": main[int(np.argmax(main.max(axis=1)))],
    }[aggregation]
    body = classifier.replace(aggregation=aggregation).classify([LONG])[0]
    got = body["classification"]["main_category"]
    assert got["label"] == classifier.labels.main_category[int(np.argmax(expected))]
    assert got["confidence"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_aggregations_give_different_confidences_on_a_long_narrative(classifier):
    confidences = {
        a: classifier.replace(aggregation=a).classify([LONG])[0]["classification"]["main_category"]["confidence"]
        for a in ("weighted_mean", "mean", "max")
    }
    assert len(set(confidences.values())) == 3, confidences
    assert confidences["max"] >= confidences["weighted_mean"] and confidences["max"] >= confidences["mean"]


def test_priority_aggregation_setting(classifier):
    probs, weights = window_probs(classifier, LONG)
    levels = np.asarray(classifier.labels.priority)
    prio = probs["priority"].astype(np.float64)
    highest = levels[np.argmax(prio, axis=1)].max()
    by_max = classifier.replace(priority_aggregation="max").classify([LONG])[0]["classification"]["priority"]
    assert by_max["label"] == highest
    mean = prio.mean(axis=0)
    by_mean = classifier.replace(priority_aggregation="mean").classify([LONG])[0]["classification"]["priority"]
    assert by_mean["label"] == levels[int(np.argmax(mean))]
    assert by_mean["confidence"] == pytest.approx(float(mean.max()), abs=1e-5)


def test_routing_comes_from_app_args(classifier):
    (result,) = classifier.classify_cases([SHORT[1]])
    main = result.classification.main_category.label
    routed = classifier.replace(routing={"queues": {main: "custom-queue"}, "review_threshold": 0.0,
                                         "critical_sub_categories": []})
    (again,) = routed.classify_cases([SHORT[1]])
    assert again.routing.queue == again.body["routing"]["queue"] == "custom-queue"
    assert not any("review threshold" in r for r in again.routing.reasons)
    strict = classifier.replace(routing={"review_threshold": 1.0})
    assert strict.classify([SHORT[1]])[0]["routing"]["human_review"] is True


def test_batching_settings_bound_every_forward_pass(classifier):
    small = classifier.replace(batching={"max_batch_size": 2, "max_batch_tokens": 512}, windows_per_call=2)
    windows, plans = small.prepare(SHORT + [LONG])
    seen = []
    (probs,) = small.forward([windows], on_microbatch=lambda rows, tokens: seen.append((rows, tokens)))
    assert sum(rows for rows, _ in seen) == len(windows) > 2
    assert all(rows <= 2 for rows, _ in seen)
    assert all(rows == 1 or tokens <= 512 for rows, tokens in seen)
    # Batching changes how windows are grouped, not what the cases are.
    for a, b in zip(small.assemble(plans, probs), classifier.classify_cases(SHORT + [LONG])):
        assert_same_case(a.body, b.body)


def test_a_batch_gives_each_case_what_it_gets_alone(classifier):
    narratives = SHORT + [LONG]
    together = classifier.classify(narratives, include_chunks=True)
    alone = [classifier.classify([n], include_chunks=True)[0] for n in narratives]
    assert len(together) == len(narratives)
    for a, b in zip(together, alone):
        assert_same_case(a, b)


def test_results_carry_the_classification_and_routing(classifier):
    results = classifier.classify_cases(SHORT, include_confidence=False)
    assert all(isinstance(r, CaseResult) for r in results)
    for r in results:
        for task in TASKS:
            assert r.body["classification"][task] == r.classification.for_task(task).label
        assert r.body["routing"]["queue"] == r.routing.queue
        assert r.labels() == {t: r.classification.for_task(t).label for t in TASKS}
        assert "chunk_details" not in r.body
    assert classifier.predict_labels(SHORT) == [r.labels() for r in results]
    assert classifier.predict_labels(SHORT, ("priority",)) == [{"priority": r.labels()["priority"]} for r in results]
    assert classifier.classify_cases([]) == []


def test_bad_input(classifier):
    # Nothing left after normalization is read as the card's recipe reads "", and reviewed.
    fine, unreadable = classifier.classify(["fine", "!!!"])
    assert unreadable["tokens"] == 0 and unreadable["routing"]["human_review"] is True
    with pytest.raises(TypeError):
        classifier.classify(LONG)


def test_evaluate_checkpoint_classifies_through_it(classifier, tiny_checkpoint):
    from training.evaluation import evaluate_checkpoint

    scored = ("main_category", "sub_category", "intervention", "priority")
    narratives = SHORT + [LONG]
    # Gold labels set to what InProcessPipeline predicts: the evaluation must score every task perfect.
    examples = [SimpleNamespace(narrative=n, **labels)
                for n, labels in zip(narratives, classifier.predict_labels(narratives, scored))]
    report = evaluate_checkpoint(tiny_checkpoint, examples)
    assert report["n"] == len(examples)
    assert {t: report["tasks"][t]["accuracy"] for t in scored} == {t: 1.0 for t in scored}
    narrow = classifier.replace(max_length=64, window_overlap=16)
    examples = [SimpleNamespace(narrative=n, **labels)
                for n, labels in zip(narratives, narrow.predict_labels(narratives, scored))]
    report = evaluate_checkpoint(tiny_checkpoint, examples, max_length=64, overlap=16)
    assert {t: report["tasks"][t]["accuracy"] for t in scored} == {t: 1.0 for t in scored}
