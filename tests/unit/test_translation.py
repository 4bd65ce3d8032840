"""Translation, Ray-free: the tiny Marian checkpoint built offline in the Hub layout, loaded and run.

Its weights are random, so its output is gibberish: these tests check the plumbing (one translation
per narrative, in order, deterministic, whatever shares the batch; long text cut under the model's
input; a Hub id resolved through the cache), never the quality of a translation.
"""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployments.core.config import AppArgs, TranslationArgs
from deployments.core.errors import ModelUnavailableError
from deployments.core.translation import Translator, split_sentences
from training.marian import MAX_POSITIONS, build_tiny_marian, main

SHORT_TEXTS = [
    "Mtoto wa miaka kumi amefukuzwa nyumbani na mama yake wa kambo.",
    "Baba yangu hunipiga kila anaporudi akiwa amelewa. Mama anaogopa kusema chochote.",
    "Tafadhali nisaidieni, sijui nifanye nini.",
    "Mpigaji simu ni jirani.",
    "Msichana aliolewa akiwa na miaka kumi na tano.",
    "Polisi wamempeleka hospitalini.",
    "Mtoto amepotea tangu jana jioni.",
    "Asante kwa kupiga simu, uko salama sasa.",
]
HUB_ID = "openchs/sw-en-opus-mt-mul-en-v1"


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("marian") / "tiny", seed=0)


@pytest.fixture(scope="module")
def translator(marian_dir) -> Translator:
    return Translator.load(str(marian_dir))


# -- the checkpoint --------------------------------------------------------------------------------

def test_tiny_marian_has_the_hub_layout_and_is_marked_untrained(marian_dir):
    names = {p.name for p in marian_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "source.spm", "target.spm",
            "vocab.json", "tokenizer_config.json"} <= names
    config = json.loads((marian_dir / "config.json").read_text())
    assert config["model_type"] == "marian" and config["architectures"] == ["MarianMTModel"]
    assert config["chs_untrained"] is True and "gibberish" in config["chs_note"]
    vocab = json.loads((marian_dir / "vocab.json").read_text())
    # OPUS-MT's conventions: </s> 0, <unk> 1, <pad> last and the decoder's start token.
    assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1
    assert config["vocab_size"] == len(vocab) and config["decoder_start_token_id"] == vocab["<pad>"]
    assert 300 <= len(vocab) <= 1000
    assert sum(p.stat().st_size for p in marian_dir.iterdir()) < 3_000_000


def test_the_cli_builds_the_same_bytes_for_the_same_seed(marian_dir, tmp_path):
    assert main(["--out", str(tmp_path / "again"), "--seed", "0"]) == 0
    for name in ("model.safetensors", "source.spm", "target.spm", "vocab.json", "config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (marian_dir / name).read_bytes(), name


def test_the_standard_classes_load_it(marian_dir):
    from transformers import MarianMTModel, MarianTokenizer

    tokenizer = MarianTokenizer.from_pretrained(str(marian_dir))
    model = MarianMTModel.from_pretrained(str(marian_dir))
    ids = tokenizer(["Mtoto amepotea."], return_tensors="pt")["input_ids"]
    assert ids[0, -1].item() == tokenizer.eos_token_id and model.config.d_model <= 64


# -- loading ---------------------------------------------------------------------------------------

def test_load_reads_a_local_directory(translator, marian_dir):
    info = translator.info
    assert (info.model_id, info.revision, info.path) == (str(marian_dir), None, str(marian_dir.resolve()))
    assert info.untrained is True
    assert type(translator.tokenizer).__name__ == "MarianTokenizer"
    assert type(translator.model).__name__ == "MarianMTModel"
    assert translator.max_input_tokens == MAX_POSITIONS and translator.num_beams == 1
    translator.health_check()


def _hub_cache(monkeypatch, tmp_path: Path, checkpoint: Path | None) -> None:
    """An HF cache under tmp_path holding HUB_ID's 'main' as ``checkpoint`` (None: empty), offline."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    if checkpoint is not None:
        repo = cache / ("models--" + HUB_ID.replace("/", "--"))
        sha = "0123456789abcdef0123456789abcdef01234567"
        shutil.copytree(checkpoint, repo / "snapshots" / sha)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(sha)
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def test_a_hub_id_loads_from_the_cache_offline(monkeypatch, tmp_path, marian_dir, translator):
    _hub_cache(monkeypatch, tmp_path, marian_dir)
    hub = Translator.load(HUB_ID, "main")
    assert (hub.info.model_id, hub.info.revision) == (HUB_ID, "main")
    assert hub.translate(SHORT_TEXTS[:2]) == translator.translate(SHORT_TEXTS[:2])


def test_an_unreachable_hub_fails_fast_naming_the_model_and_the_setting(monkeypatch, tmp_path):
    _hub_cache(monkeypatch, tmp_path, None)
    with pytest.raises(ModelUnavailableError) as err:
        Translator.load(HUB_ID, "main")
    message = str(err.value)
    assert HUB_ID in message and "translation.model" in message and "training.marian" in message
    assert "CHS_MODEL" not in message  # the classifier's advice, not this model's


def test_a_missing_local_directory_fails_with_guidance(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist.*translation.model"):
        Translator.load(str(tmp_path / "nope"))


def test_a_checkpoint_that_is_not_a_translation_model_is_refused(marian_dir, tmp_path):
    broken = shutil.copytree(marian_dir, tmp_path / "broken")
    (broken / "source.spm").unlink()
    with pytest.raises(ModelUnavailableError, match="cannot be read as a seq2seq model"):
        Translator.load(str(broken))


# -- translating -----------------------------------------------------------------------------------

def test_a_batch_translates_one_for_one_deterministically(translator):
    first = translator.translate(SHORT_TEXTS)
    assert len(first) == len(SHORT_TEXTS) and all(isinstance(t, str) and t for t in first)
    assert translator.translate(SHORT_TEXTS) == first
    assert len(set(first)) > 1  # the input reaches the output: different narratives, different strings


def test_a_translation_never_depends_on_what_shares_its_batch(translator):
    batched = translator.translate(SHORT_TEXTS)
    assert [translator.translate([t])[0] for t in SHORT_TEXTS] == batched
    assert translator.translate(SHORT_TEXTS[::-1]) == batched[::-1]
    small = Translator(translator.model, translator.tokenizer, translator.info, device=translator.device,
                       max_batch_segments=3)
    assert small.translate(SHORT_TEXTS) == batched


def test_beams_are_settable_and_deterministic(translator):
    translator.num_beams = 3
    try:
        beamed = translator.translate(SHORT_TEXTS[:3])
        assert translator.translate(SHORT_TEXTS[:3]) == beamed and len(beamed) == 3
    finally:
        translator.num_beams = 1


def test_empty_and_blank_texts_give_empty_translations(translator):
    assert translator.translate([]) == []
    out = translator.translate(["", "   ", "\n\n", SHORT_TEXTS[0], ""])
    assert out[:3] == ["", "", ""] and out[4] == "" and out[3] == translator.translate([SHORT_TEXTS[0]])[0]


def test_sentences_and_lines_are_translated_apart_and_joined_back(translator):
    assert split_sentences("  Mtoto  amepotea. Polisi wamekuja!  Je? ") == [
        "Mtoto amepotea.", "Polisi wamekuja!", "Je?"]
    assert translator.segments("Mtoto amepotea. Polisi wamekuja.\n\nAsante.") == [
        ["Mtoto amepotea.", "Polisi wamekuja."], [], ["Asante."]]
    one, two, three = translator.translate(["Mtoto amepotea.", "Polisi wamekuja.", "Asante."])
    assert translator.translate(["Mtoto amepotea. Polisi wamekuja.\n\nAsante."]) == [f"{one} {two}\n\n{three}"]


def test_long_texts_are_cut_under_the_models_input_and_rejoined(translator):
    budget = translator.max_input_tokens - 1  # the end-of-sentence token
    unpunctuated = " ".join([SHORT_TEXTS[0].rstrip(".")] * 30)  # a call transcript: no full stops
    blob = "x" * 1000  # one "word" longer than the model reads
    # Characters the vocabulary lacks: one <unk> however many, so they fit as they are.
    for text, cut in ((unpunctuated, True), (blob, True), (f"{unpunctuated}. {blob}", True), ("🙂" * 300, False)):
        (pieces,) = translator.segments(text)
        assert (len(pieces) > 1) == cut
        counts = [len(ids) for ids in translator.tokenizer(pieces, add_special_tokens=False)["input_ids"]]
        assert max(counts) <= budget, counts
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")  # nothing lost
    out = translator.translate([unpunctuated, SHORT_TEXTS[0], blob])
    assert len(out) == 3 and out[1] == translator.translate([SHORT_TEXTS[0]])[0]
    # Each piece's output is capped by its own length, and the decoder's positions bound every cap.
    assert translator.max_new_tokens <= MAX_POSITIONS - 2


def test_threads_take_turns_and_get_what_they_would_alone(translator):
    expected = translator.translate(SHORT_TEXTS)
    start = threading.Barrier(4)

    def call(i: int) -> list[str]:
        start.wait()
        return translator.translate(SHORT_TEXTS[i:] + SHORT_TEXTS[:i])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(4)))
    assert results == [expected[i:] + expected[:i] for i in range(4)]


# -- config ----------------------------------------------------------------------------------------

def test_translation_is_off_by_default_and_strict():
    settings = AppArgs().translation
    assert settings == TranslationArgs() and settings.model is None and settings.languages == ["sw"]
    assert (settings.max_batch_size, settings.num_beams) == (16, 1)
    on = AppArgs(translation={"model": HUB_ID, "languages": ["sw", "so"], "num_beams": 4})
    assert on.translation.model == HUB_ID and on.translation.num_beams == 4
    with pytest.raises(ValueError):
        AppArgs(translation={"model": HUB_ID, "beams": 4})
    with pytest.raises(ValueError):
        TranslationArgs(max_batch_size=0)
