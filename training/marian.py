"""Build a tiny MarianMT translation checkpoint in the Hub repo's layout, with no network.

    python -m training.marian --out DIR [--seed N]

The layout is an OPUS-MT repo's (OpenCHS's sw→en ``openchs/sw-en-opus-mt-mul-en-v1`` is one):
config.json, generation_config.json, model.safetensors, source.spm, target.spm, vocab.json and
tokenizer_config.json, loadable by ``MarianTokenizer`` and ``MarianMTModel.from_pretrained``. Its
SentencePiece models are trained here on the bundled sample ``data/translation/sample.tsv``
(source: Swahili and English, target: English) and share one vocab.json, as OPUS-MT's do. The
weights are random and the checkpoint is marked untrained: its "translations" are gibberish by
design. It is for tests of the plumbing (which narratives are translated, batching, shapes,
determinism), never of translation quality. A few hundred KB, built in about a second.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import torch

SAMPLE_PATH = Path(__file__).resolve().parents[1] / "data" / "translation" / "sample.tsv"
UNTRAINED_NOTE = ("randomly initialised translation checkpoint: its output is gibberish "
                  "(for tests and benchmarks only)")
# The positions (and tokens per input) are few, so tests reach the long-text split with short texts.
MAX_POSITIONS = 64
DIMS = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64)
SPM_VOCAB_SIZE = 400  # a ceiling: the sample is small, so each model keeps what it can find (hard_vocab_limit off)
EOS, UNK, PAD = "</s>", "<unk>", "<pad>"


def read_sample(path: Path = SAMPLE_PATH) -> list[tuple[str, str]]:
    """The (Swahili, English) pairs of the bundled sample; '#' lines are comments."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            sw, en = line.split("\t")
            pairs.append((sw.strip(), en.strip()))
    return pairs


def train_spm(sentences: list[str], vocab_size: int = SPM_VOCAB_SIZE) -> bytes:
    """A unigram SentencePiece model, serialised; one thread, so the same text gives the same bytes."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    return model.getvalue()


def shared_vocab(*models: bytes) -> dict[str, int]:
    """OPUS-MT's vocab.json: </s> 0, <unk> 1, every piece of the models, <pad> last (the decoder's start)."""
    import sentencepiece as spm

    vocab = {EOS: 0, UNK: 1}
    for proto in models:
        sp = spm.SentencePieceProcessor(model_proto=proto)
        for i in range(sp.get_piece_size()):
            if sp.is_control(i) or sp.is_unknown(i):
                continue
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab[PAD] = len(vocab)
    return vocab


def build_tiny_marian(out: Path, seed: int = 0) -> Path:
    """A randomly initialised, tiny MarianMT checkpoint at ``out`` in the Hub layout, marked untrained."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    from training.hub_layout import make_readable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = read_sample()
    source = train_spm([s for pair in pairs for s in pair])
    target = train_spm([en for _, en in pairs])
    (out / "source.spm").write_bytes(source)
    (out / "target.spm").write_bytes(target)
    vocab = shared_vocab(source, target)
    (out / "vocab.json").write_text(json.dumps(vocab, indent=2, ensure_ascii=False), encoding="utf-8")
    pad = vocab[PAD]

    tokenizer = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                                vocab=str(out / "vocab.json"), source_lang="sw", target_lang="en",
                                model_max_length=MAX_POSITIONS)
    tokenizer.save_pretrained(str(out))

    torch.manual_seed(seed)
    # A wider init than the default 0.02 spreads the random logits, so different inputs decode differently.
    config = MarianConfig(vocab_size=len(vocab), decoder_vocab_size=len(vocab), max_position_embeddings=MAX_POSITIONS,
                          pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0,
                          init_std=0.5, **DIMS)
    model = MarianMTModel(config).eval()
    # OPUS-MT's own generation settings (beam 4, never <pad>); the service overrides the beams.
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]], decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0, pad_token_id=pad,
        max_length=MAX_POSITIONS, num_beams=4,
    )
    model.save_pretrained(str(out))

    config_path = out / "config.json"
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    saved.update({"chs_untrained": True, "chs_note": UNTRAINED_NOTE, "chs_size": "tiny"})
    config_path.write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")
    make_readable(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.marian", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_tiny_marian(args.out, seed=args.seed)
    print(f"wrote a tiny (untrained) Marian checkpoint to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
