import numpy as np
import pytest

from deployments.core.windowing import WindowSpan, TokenWindows, tokenize_windows, window_spans


@pytest.mark.parametrize("n", [1, 5, 509, 510, 511, 1000, 1020, 5000])
@pytest.mark.parametrize("max_length, overlap", [(512, 128), (512, 0), (64, 16), (16, 13)])
def test_every_token_lands_in_a_window(n, max_length, overlap):
    spans = window_spans(n, max_length, overlap)
    covered = np.zeros(n, dtype=bool)
    for s in spans:
        assert 0 < s.length <= max_length - 2
        covered[s.start : s.end] = True
    assert covered.all()
    assert spans[0].start == 0 and spans[-1].end == n


@pytest.mark.parametrize("max_length, overlap", [(512, 128), (64, 16), (32, 0)])
def test_consecutive_windows_overlap_by_the_configured_tokens(max_length, overlap):
    spans = window_spans(10_000, max_length, overlap)
    step = max_length - 2 - overlap
    for a, b in zip(spans, spans[1:]):
        assert b.start - a.start == step
    for s in spans[:-1]:
        assert s.length == max_length - 2
    for a, b in zip(spans[:-2], spans[1:-1]):
        assert a.end - b.start == overlap


def test_edge_lengths():
    # Exactly max_length with [CLS] and [SEP]: one window, nothing cut.
    assert len(window_spans(510, 512, 128)) == 1
    # One more token needs a second window.
    spans = window_spans(511, 512, 128)
    assert len(spans) == 2 and spans[1].end == 511
    # Nothing left after normalization: one window of [CLS] [SEP] alone, as the card's recipe reads "".
    assert window_spans(0, 512, 128) == [WindowSpan(0, 0)]


def test_bad_overlap_is_refused():
    with pytest.raises(ValueError):
        window_spans(100, 512, 510)


def test_tokenize_windows_adds_specials_around_each_span():
    ids = list(range(1000, 1022))
    rows, spans = tokenize_windows(ids, cls_id=101, sep_id=102, max_length=10, overlap=2)
    assert [len(r) for r in rows] == [10, 10, 10, 6]
    for row, span in zip(rows, spans):
        assert row[0] == 101 and row[-1] == 102
        assert list(row[1:-1]) == ids[span.start : span.end]


def test_token_windows_round_trip_and_slice():
    rows = [np.arange(3), np.arange(5) + 10, np.arange(1) + 20]
    w = TokenWindows.from_rows(rows)
    assert len(w) == 3 and list(w.lengths()) == [3, 5, 1]
    assert w.ids.dtype == np.int32
    assert [list(w.window(i)) for i in range(3)] == [list(r) for r in rows]
    part = w.slice(1, 3)
    assert [list(part.window(i)) for i in range(2)] == [list(r) for r in rows[1:]]
    joined = TokenWindows.concat([w.slice(0, 1), part])
    assert [list(joined.window(i)) for i in range(3)] == [list(r) for r in rows]
