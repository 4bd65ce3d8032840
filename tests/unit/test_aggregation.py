import numpy as np
import pytest

from deployments.core.aggregation import aggregate_priority, aggregate_task, aggregate_windows

rng = np.random.default_rng(0)


def random_probs(n_windows, n_labels):
    x = rng.random((n_windows, n_labels)) + 1e-3
    return x / x.sum(axis=1, keepdims=True)


def test_weighted_mean_weights_by_tokens():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = aggregate_task(probs, [300, 100], "weighted_mean")
    np.testing.assert_allclose(out, [0.75, 0.25])


def test_mean_weighs_windows_equally():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(aggregate_task(probs, [300, 100], "mean"), [0.5, 0.5])


def test_max_takes_the_most_confident_window():
    probs = np.array([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    np.testing.assert_allclose(aggregate_task(probs, [1, 1, 1], "max"), [0.1, 0.9])


def test_single_window_is_unchanged():
    probs = random_probs(1, 5)
    for method in ("weighted_mean", "mean", "max"):
        np.testing.assert_allclose(aggregate_task(probs, [7], method), probs[0])


def test_priority_takes_the_highest_predicted_level():
    # Window 0 predicts Low confidently, window 1 predicts High; High wins the case.
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]])
    out = aggregate_priority(probs, [500, 20, 500], [1, 2, 3], "max")
    assert int(np.argmax(out)) == 2
    np.testing.assert_allclose(out, probs[1])


def test_priority_tie_at_top_level_goes_to_the_most_confident_window():
    probs = np.array([[0.1, 0.3, 0.6], [0.05, 0.05, 0.9]])
    np.testing.assert_allclose(aggregate_priority(probs, [1, 1], [1, 2, 3], "max"), probs[1])


def test_priority_levels_follow_the_label_values_not_the_index():
    # A release whose priority list is ordered [3, 2, 1]: index 0 is High.
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    out = aggregate_priority(probs, [1, 1], [3, 2, 1], "max")
    np.testing.assert_allclose(out, probs[0])


@pytest.mark.parametrize("method", ["weighted_mean", "mean", "max"])
@pytest.mark.parametrize("priority_method", ["max", "weighted_mean", "mean"])
def test_results_stay_probability_distributions(method, priority_method):
    windows = {t: random_probs(6, n) for t, n in [("main_category", 8), ("sub_category", 66),
                                                 ("intervention", 4), ("priority", 3)]}
    out = aggregate_windows(windows, [510, 510, 510, 510, 510, 37], [1, 2, 3], method, priority_method)
    for task, p in out.items():
        assert p.shape == (windows[task].shape[1],)
        assert np.all(p >= 0) and np.all(p <= 1)
        assert p.sum() == pytest.approx(1.0, abs=1e-9)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        aggregate_task(random_probs(2, 3), [1, 1], "median")
