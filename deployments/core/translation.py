"""Machine translation of narratives into the classifier's language: a seq2seq checkpoint, Ray-free.

``Translator.load`` finds the checkpoint as the classifier's is found (``loading.resolve_checkpoint``:
a local directory as is, a Hub repo id through the HF cache, HF_HUB_OFFLINE honoured, a clear
``ModelUnavailableError`` when it cannot be had), for example OpenCHS's sw→en OPUS-MT model
``openchs/sw-en-opus-mt-mul-en-v1``; ``python -m training.marian`` builds a tiny untrained one for tests.

``translate`` takes a batch of narratives and returns one translation each, in order. A narrative
is cut into lines, each line into sentences, and a sentence longer than the model's input into
word chunks under it; every piece is translated on its own (OPUS-MT models are trained on
sentences) and the pieces are joined back, sentences by a space, lines by a newline. The pieces
of the whole batch run together, sorted by length, ``max_batch_segments`` rows per ``generate``.
Decoding is greedy unless ``num_beams`` says otherwise, never sampled, so the same text gives the
same translation; each piece's output is capped by its own length (``2 × input + 16`` tokens, at
most ``max_new_tokens``), so what else shares the batch never changes it and a model that loops
cannot run on for ever. Safe to call from several threads (``asyncio.to_thread``): calls take turns.
Narrative text is never logged.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from deployments.core.errors import ModelUnavailableError
from deployments.core.loading import HOW_TO_FIX, read_checkpoint_info, resolve_checkpoint, resolve_device

logger = logging.getLogger("ray.serve")

TRANSLATION_HOW_TO_FIX = (
    "Point translation.model at a local checkpoint directory (for a test, `python -m training.marian --out "
    "models/marian-tiny` builds an untrained one), make the Hub or its cache reachable, or set translation.model "
    "to null to turn translation off."
)
# OPUS-MT repos keep their SentencePiece models in *.spm files.
TOKENIZER_PATTERNS = ["*.spm"]
# Longest piece fed to the model, in tokens, whatever longer input the model allows: OPUS-MT models
# are trained on sentences and drift on long inputs.
DEFAULT_MAX_INPUT_TOKENS = 256
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_MAX_BATCH_SEGMENTS = 32

_LINES = re.compile(r"\r\n|\r|\n")
# A sentence ends at . ! ? … (and any closing quotes or brackets) followed by white space.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


@dataclass(frozen=True)
class TranslationInfo:
    """What the service says about its translation model."""

    model_id: str
    revision: str | None
    path: str
    untrained: bool
    note: str | None


def resolve_translation_checkpoint(model: str, revision: str | None = None) -> Path:
    """``resolve_checkpoint``, with its fix-it advice about translation.model, plus a Hub repo's *.spm files."""
    try:
        path = resolve_checkpoint(model, revision)
        is_local = Path(model).expanduser().is_dir()
        if not is_local and not any(path.glob("*.spm")):
            # The classifier's download patterns (loading.HUB_FILE_PATTERNS) leave out *.spm; a Marian
            # tokenizer needs them. Same snapshot, same cache, same offline rules.
            try:
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(repo_id=model, revision=revision, allow_patterns=TOKENIZER_PATTERNS))
            except Exception as exc:
                raise ModelUnavailableError(
                    f"Cannot load the tokenizer files (*.spm) of translation model '{model}' from the Hugging Face "
                    f"Hub or its cache ({type(exc).__name__})."
                ) from None
    except ModelUnavailableError as exc:
        message = str(exc).replace(HOW_TO_FIX, "").strip()
        raise ModelUnavailableError(f"Translation: {message} {TRANSLATION_HOW_TO_FIX}") from None
    return path


def split_sentences(line: str) -> list[str]:
    """A line's sentences, white space collapsed; none for a blank line."""
    line = " ".join(line.split())
    return [s for s in _SENTENCE_END.split(line) if s] if line else []


class Translator:
    """A seq2seq model and its tokenizer: narratives in, translations out, one for one."""

    def __init__(self, model, tokenizer, info: TranslationInfo, *, device: torch.device, num_beams: int = 1,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
                 max_batch_segments: int = DEFAULT_MAX_BATCH_SEGMENTS):
        if num_beams < 1 or max_new_tokens < 1 or max_batch_segments < 1 or max_input_tokens < 3:
            raise ValueError("num_beams, max_new_tokens and max_batch_segments must be at least 1, "
                             "max_input_tokens at least 3")
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.device = device
        self.num_beams = num_beams
        self.max_batch_segments = max_batch_segments
        positions = getattr(model.config, "max_position_embeddings", None)
        limits = [max_input_tokens, positions, getattr(tokenizer, "model_max_length", None)]
        # Tokens per piece, its end-of-sentence token included.
        self.max_input_tokens = min(int(n) for n in limits if n and n < 10**9)
        # The decoder's positions hold its start token, the output and the end token generate forces.
        self.max_new_tokens = min(max_new_tokens, int(positions) - 2) if positions else max_new_tokens
        self._lock = threading.Lock()
        generation = copy.deepcopy(model.generation_config)
        # The length is set per call (max_length); max_new_tokens would be a second, conflicting limit.
        generation.max_new_tokens = None
        generation.do_sample = False
        self._generation = generation

    @classmethod
    def load(cls, model: str, revision: str | None = None, *, device: str = "cpu", num_beams: int = 1,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
             max_batch_segments: int = DEFAULT_MAX_BATCH_SEGMENTS, torch_threads: int | None = None) -> "Translator":
        """The checkpoint ``model`` (Hub repo id or local directory) at ``revision``, on ``device``
        ('cpu', 'cuda' or 'auto'). Raises ``ModelUnavailableError`` when it cannot be had or read.

        ``torch_threads`` sets the process's torch threads: give it the replica's CPUs. More threads
        than the CPUs it may use stall generation on a busy host (on 2 shared cores, 2 threads ran
        8 short texts in 0.09 s or, now and then, 5 s; 1 thread in 0.08 s every time)."""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if torch_threads:
            torch.set_num_threads(torch_threads)

        path = resolve_translation_checkpoint(model, revision)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            network = AutoModelForSeq2SeqLM.from_pretrained(str(path))
        except Exception as exc:
            raise ModelUnavailableError(
                f"Translation: the checkpoint of '{model}' at {path} cannot be read as a seq2seq model and its "
                f"tokenizer ({type(exc).__name__}: {exc}). {TRANSLATION_HOW_TO_FIX}"
            ) from None
        torch_device = resolve_device(device)
        network = network.to(torch_device).eval()
        checkpoint = read_checkpoint_info(path, model, revision)
        info = TranslationInfo(model_id=model, revision=checkpoint.revision, path=str(path),
                               untrained=checkpoint.untrained, note=checkpoint.note)
        logger.info("translation model %s loaded from %s on %s%s", model, path, torch_device,
                    " (untrained: its output is gibberish)" if info.untrained else "")
        return cls(network, tokenizer, info, device=torch_device, num_beams=num_beams, max_new_tokens=max_new_tokens,
                   max_input_tokens=max_input_tokens, max_batch_segments=max_batch_segments)

    # -- cutting and joining -------------------------------------------------------------------

    def _token_count(self, texts: list[str]) -> list[int]:
        # verbose=False: no warning that a sentence is longer than the model reads; it is about to be cut.
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

    def _fit(self, sentence: str) -> list[str]:
        """``sentence`` as it is when it fits the model's input, else word chunks that each do."""
        budget = self.max_input_tokens - 1  # the end-of-sentence token
        (n,) = self._token_count([sentence])
        if n <= budget:
            return [sentence]
        words: list[str] = []
        for word in sentence.split(" "):
            # A "word" longer than the budget (a pasted blob) is cut by characters: a piece is at
            # least one character, so budget - 1 characters (and the word-start mark) fit.
            words.extend(word[i:i + budget - 1] for i in range(0, len(word), budget - 1))
        chunks: list[str] = []
        current: list[str] = []
        used = 0
        for word, cost in zip(words, self._token_count(words)):
            if current and used + cost > budget:
                chunks.append(" ".join(current))
                current, used = [], 0
            current.append(word)
            used += cost
        if current:
            chunks.append(" ".join(current))
        return chunks

    def segments(self, text: str) -> list[list[str]]:
        """``text`` cut for the model: its lines, each a list of pieces (empty for a blank line)."""
        return [[piece for sentence in split_sentences(line) for piece in self._fit(sentence)]
                for line in _LINES.split(text)]

    # -- translating ---------------------------------------------------------------------------

    def translate(self, texts: list[str]) -> list[str]:
        """One translation per text, in order; a blank text translates to ''."""
        with self._lock:
            layouts = [self.segments(text) if text.strip() else [] for text in texts]
            pieces = [piece for layout in layouts for line in layout for piece in line]
            translated = iter(self._generate(pieces))
            return ["\n".join(" ".join(next(translated) for _ in line) for line in layout).strip("\n")
                    if layout else "" for layout in layouts]

    @torch.inference_mode()
    def _generate(self, pieces: list[str]) -> list[str]:
        if not pieces:
            return []
        encoded = self.tokenizer(pieces, truncation=True, max_length=self.max_input_tokens)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        caps = [min(self.max_new_tokens, 2 * n + 16) for n in lengths]
        # Longest first and stable, so rows of like length share a batch and the order never varies.
        order = sorted(range(len(pieces)), key=lambda i: -lengths[i])
        out: list[str] = [""] * len(pieces)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.model.config.pad_token_id
        for start in range(0, len(order), self.max_batch_segments):
            rows = order[start:start + self.max_batch_segments]
            width = max(lengths[i] for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, :lengths[i]] = torch.tensor(encoded[i])
                mask[r, :lengths[i]] = 1
            generation = copy.deepcopy(self._generation)
            generation.num_beams = self.num_beams
            # The decoder's start token, the longest cap, and one more for the end token that
            # generate forces at max_length, so no row's capped output is cut short by it.
            generation.max_length = 2 + max(caps[i] for i in rows)
            generated = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                            generation_config=generation).cpu()
            for r, i in enumerate(rows):
                # Each row cut to its own cap: what else shares the batch never changes a piece's output.
                tokens = generated[r, 1:1 + caps[i]].tolist()
                out[i] = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return out

    def health_check(self) -> None:
        """One encoder pass and one decoder step on a one-token input; raises if the model cannot run."""
        config = self.model.config
        with torch.inference_mode():
            ids = torch.tensor([[config.eos_token_id if isinstance(config.eos_token_id, int) else 0]],
                               device=self.device)
            start = torch.tensor([[config.decoder_start_token_id]], device=self.device)
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=start).logits
        if not torch.isfinite(logits).all():
            raise RuntimeError("translation health check: the model's logits are not finite")
