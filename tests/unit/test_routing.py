import numpy as np
import pytest

from deployments.core.config import DEFAULT_CRITICAL_SUB_CATEGORIES, RoutingArgs
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet
from deployments.core.routing import RoutingPolicy, classify_probabilities, queue_slug

LABELS = LabelSet.from_dir(BUNDLED_LABELS_DIR)


def probs_for(main, sub, interv, priority, confidence=0.9, runner_up=None):
    def one(labels, label):
        n = len(labels)
        p = np.full(n, (1 - confidence) / (n - 1))
        p[labels.index(label)] = confidence
        return p

    out = {
        "main_category": one(LABELS.main_category, main),
        "sub_category": one(LABELS.sub_category, sub),
        "intervention": one(LABELS.intervention, interv),
        "priority": one(LABELS.priority, priority),
    }
    if runner_up:
        out["sub_category"][LABELS.sub_category.index(runner_up)] += 0.001
    return out


def decide(probs, **config):
    policy = RoutingPolicy(RoutingArgs(**config), LABELS)
    c = classify_probabilities(probs, LABELS)
    return c, policy.decide(c)


def test_labels_confidences_and_runner_up():
    c, _ = decide(probs_for("GBV", "Sexual Violence", "Referral", 3, 0.8, runner_up="Physical Violence"))
    assert c.main_category.label == "GBV" and c.main_category.confidence == pytest.approx(0.8)
    assert c.sub_category.label == "Sexual Violence"
    assert c.sub_category_2.label == "Physical Violence"
    assert c.priority.label == 3 and isinstance(c.priority.label, int)


def test_confident_routine_case_goes_to_its_queue_without_review():
    _, r = decide(probs_for("Advice and Counselling", "Bullying", "Counselling", 2, 0.95))
    assert r.queue == "advice-and-counselling"
    assert not r.escalate and not r.human_review and r.reasons == []


def test_top_priority_escalates_and_needs_review():
    _, r = decide(probs_for("Advice and Counselling", "Bullying", "Counselling", 3, 0.95))
    assert r.escalate and r.human_review
    assert any("Priority is 3" in reason for reason in r.reasons)


@pytest.mark.parametrize("sub", DEFAULT_CRITICAL_SUB_CATEGORIES)
def test_critical_sub_category_escalates_whatever_the_priority(sub):
    _, r = decide(probs_for("VANE", sub, "Referral", 1, 0.95))
    assert r.escalate and r.human_review
    assert any(sub in reason for reason in r.reasons)


def test_low_confidence_asks_for_review_without_escalating():
    _, r = decide(probs_for("Nutrition", "Malnutrition", "Counselling", 1, 0.5))
    assert r.human_review and not r.escalate
    assert any("under the review threshold 0.60" in reason for reason in r.reasons)


def test_policy_is_data():
    p = probs_for("Nutrition", "Malnutrition", "Counselling", 2, 0.5)
    _, r = decide(p, review_threshold=0.4, queues={"Nutrition": "health-desk"},
                  critical_sub_categories=["Malnutrition"], escalate_priority=2)
    assert r.queue == "health-desk"
    assert r.escalate and r.human_review
    _, r = decide(p, review_threshold=0.4, critical_sub_categories=[], escalate_priority=3)
    assert not r.escalate and not r.human_review


def test_queue_slugs():
    assert queue_slug("Child Maintenance & Custody") == "child-maintenance-custody"
    assert queue_slug("VANE") == "vane"


def test_a_sub_category_that_contradicts_its_main_category_goes_to_review_naming_both():
    assert LABELS.parent_of("Bullying") == "Advice and Counselling"
    c, r = decide(probs_for("VANE", "Bullying", "Counselling", 2, 0.95))
    assert r.human_review and not r.escalate
    assert r.reasons == ["Sub category 'Bullying' belongs to 'Advice and Counselling', but the main category is 'VANE'."]


def test_a_consistent_pair_needs_no_review():
    _, r = decide(probs_for("Advice and Counselling", "Bullying", "Counselling", 2, 0.95))
    assert not r.human_review and r.reasons == []


def test_taxonomy_mismatch_off_leaves_the_decision_to_the_other_rules():
    _, r = decide(probs_for("VANE", "Bullying", "Counselling", 2, 0.95), taxonomy_mismatch="off")
    assert not r.human_review and r.reasons == []


def test_without_a_taxonomy_the_check_is_skipped():
    bare = LabelSet.from_lists(LABELS.to_json())
    assert bare.sub_to_main is None and bare.parent_of("Bullying") is None
    policy = RoutingPolicy(RoutingArgs(), bare)
    c = classify_probabilities(probs_for("VANE", "Bullying", "Counselling", 2, 0.95), bare)
    assert not policy.decide(c).human_review


def test_a_mismatch_adds_to_an_escalation_rather_than_replacing_it():
    _, r = decide(probs_for("Advice and Counselling", "Sexual Abuse", "Referral", 3, 0.95))
    assert r.escalate and r.human_review
    assert any(reason.startswith("Sub category 'Sexual Abuse' belongs to") for reason in r.reasons)


def test_unknown_taxonomy_value_is_refused():
    with pytest.raises(ValueError):
        RoutingArgs(taxonomy_mismatch="maybe")


# -- signals: the evidence behind each reason ----------------------------------------------------------


def test_every_reason_comes_from_one_signal():
    _, r = decide(probs_for("Advice and Counselling", "Sexual Abuse", "Counselling", 3, 0.5))
    assert len(r.reasons) == len(r.signals) and r.reasons == [s.reason for s in r.signals]
    assert {s.source for s in r.signals} == {"model", "threshold", "taxonomy"}
    assert r.escalate and r.human_review


def test_a_text_signal_escalates_a_case_the_model_finds_routine():
    from deployments.core.signals import Signal

    policy = RoutingPolicy(RoutingArgs(), LABELS)
    c = classify_probabilities(probs_for("Advice and Counselling", "Bullying", "Counselling", 1, 0.95), LABELS)
    assert not policy.decide(c).escalate
    phrase = Signal("lexicon", "suicide_self_harm", "A phrase of suicide or self-harm at characters 3-20.",
                    escalate=True, review=True, text="wants to die", start=3, end=20)
    r = policy.decide(c, [phrase])
    assert r.escalate and r.human_review and r.signals == [phrase]
    assert phrase.to_json()["text"] == "wants to die"


def test_the_window_that_drove_an_escalation_is_named():
    policy = RoutingPolicy(RoutingArgs(), LABELS)
    c = classify_probabilities(probs_for("VANE", "Physical Violence", "Referral", 3, 0.95), LABELS)
    windows = np.array([[0.8, 0.15, 0.05], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])  # priorities 1, 2, 3
    (model,) = [s for s in policy.decide(c, window_priority=windows).signals if s.category == "priority"]
    assert model.source == "model" and model.window == 1 and "window 1" in model.reason


def test_per_task_review_thresholds_default_to_review_threshold():
    probs = probs_for("Advice and Counselling", "Bullying", "Counselling", 2, 0.7)
    _, default = decide(probs)
    assert not default.human_review
    _, stricter = decide(probs, review_thresholds={"priority": 0.8})
    assert stricter.human_review and [s.category for s in stricter.signals] == ["priority"]
    assert "under the review threshold 0.80" in stricter.reasons[0]
    _, off = decide(probs, review_threshold=0.9, review_thresholds={"main_category": 0.0, "sub_category": 0.0,
                                                                    "intervention": 0.0, "priority": 0.0})
    assert not off.human_review
    with pytest.raises(ValueError):
        RoutingArgs(review_thresholds={"queue": 0.5})


# -- priority direction (labels.priority_high): the model card's High (3), or OpenCHS's dataset card's 1 ------


def assembled(labels, window_priorities):
    """One case of two windows through the real assembler (aggregation, labels, routing), as the Router runs it."""
    from deployments.core.postprocess import CaseAssembler
    from deployments.core.preprocess import CasePlan
    from deployments.core.windowing import WindowSpan

    windows = [probs_for("Advice and Counselling", "Bullying", "Counselling", p, 0.95) for p in window_priorities]
    stacked = {task: np.stack([w[task] for w in windows]) for task in windows[0]}
    plan = CasePlan(spans=(WindowSpan(0, 100), WindowSpan(80, 180)), n_tokens=180, truncated=False)
    assembler = CaseAssembler(labels, RoutingPolicy(RoutingArgs(), labels), "weighted_mean", "max")
    ((body, classification, routing),) = assembler.assemble([plan], stacked)
    return classification, routing


def test_the_card_default_escalates_3_and_a_window_reading_3_speaks_for_the_case():
    c, r = assembled(LABELS, [1, 3])
    assert c.priority.label == 3 and r.escalate
    assert "Priority is 3 (High), the escalation level (window 1 reads it most strongly)." in r.reasons


def test_with_priority_high_1_the_urgent_case_is_still_escalated():
    urgent_is_1 = LABELS.with_priority_high(1)
    # The same windows: the one reading 1 is now the urgent one and speaks for the case under 'max'.
    c, r = assembled(urgent_is_1, [1, 3])
    assert c.priority.label == 1 and r.escalate
    assert "Priority is 1 (High), the escalation level (window 0 reads it most strongly)." in r.reasons
    c, r = assembled(urgent_is_1, [3, 3])  # 3 is now Low: routine
    assert c.priority.label == 3 and not r.escalate
    assert urgent_is_1.priority_name(3) == "Low" and LABELS.priority_name(3) == "High"


def test_priority_high_must_be_an_end_of_the_scale():
    with pytest.raises(ValueError, match="lowest or the highest"):
        LABELS.with_priority_high(2)
