"""Fine-tune the multi-task classifier: the model card's recipe, small and readable.

The recipe: the narrative normalized exactly as serving does
(``deployments.core.text.normalize_narrative``), the sum of the four tasks'
cross-entropies, AdamW with weight decay 0.01, a linear warm-up then decay,
gradients clipped to norm 1.0 (the Hugging Face Trainer's default).
Seeded: the same examples, seed and device give the same weights.

Operators fine-tune the real model on their own labelled export with it
(a GPU is advised; see docs/demo-model.md)::

    python -m training.finetune --base openchs/cls-gbv-distilbert-v1 \\
        --train export.jsonl --out models/ours --epochs 3 --device cuda [--eval heldout.jsonl]

Each line of the JSONL is ``{"narrative": ..., "main_category": ...,
"sub_category": ..., "intervention": ..., "priority": ...}`` with labels from
the base checkpoint's label files. The output directory has the Hub layout and
can be served as is (``CHS_MODEL=models/ours``).

``trainable_layers`` trains only the top layers of the encoder (and the heads):
the embeddings and lower layers are frozen, so their outputs are computed once
and reused every epoch. That is how the demo model trains in a few minutes on
two CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.masking_utils import create_bidirectional_mask

from deployments.core.labels import TASKS, LabelSet
from deployments.core.loading import load_labels, load_model, load_tokenizer, resolve_checkpoint
from deployments.core.model import HEAD_NAMES, MultiTaskDistilBert
from deployments.core.text import normalize_narrative
from training.corpus import load_jsonl
from training.evaluation import evaluate_checkpoint
from training.hub_layout import save_checkpoint


class Labelled(Protocol):
    """One training example: what ``training.corpus.LabelledNarrative`` holds."""

    narrative: str
    main_category: str
    sub_category: str
    intervention: str
    priority: int


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 5e-5
    head_lr: float | None = None  # the freshly initialised heads may learn faster; default: lr
    batch_size: int = 16
    max_length: int = 512
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 0
    device: str = "cpu"
    trainable_layers: int | None = None  # None: the whole encoder
    max_steps: int | None = None
    progress: bool = True


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # summed loss of each step
    steps: int = 0
    seconds: float = 0.0
    cache_seconds: float = 0.0  # of which: computing the frozen layers' outputs once


# --- data -------------------------------------------------------------------------------


def label_indices(examples: Sequence[Labelled], labels: LabelSet) -> torch.Tensor:
    """(n, 4) target indices, in ``TASKS`` order; unknown labels are refused, all at once."""
    index = {task: {str(v): i for i, v in enumerate(labels.for_task(task))} for task in TASKS}
    rows, unknown = [], set()
    for ex in examples:
        row = []
        for task in TASKS:
            value = str(getattr(ex, task))
            if value not in index[task]:
                unknown.add(f"{task}={value!r}")
                row.append(0)
            else:
                row.append(index[task][value])
        rows.append(row)
    if unknown:
        raise ValueError(f"labels not in the checkpoint's label files: {', '.join(sorted(unknown))}")
    return torch.tensor(rows, dtype=torch.long)


def encode_narratives(narratives: Sequence[str], tokenizer, max_length: int) -> list[list[int]]:
    """[CLS] ids [SEP], from normalized text: what serving's first window holds."""
    texts = [normalize_narrative(n) for n in narratives]
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    order = torch.randperm(n, generator=generator).tolist()
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


# --- the model, in two parts when the lower layers are frozen ------------------------------


def heads(model: MultiTaskDistilBert, first: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Exactly ``MultiTaskDistilBert.forward`` after the encoder, from the first token's state."""
    pooled = model.dropout(torch.relu(model.pre_classifier(first)))
    return tuple(getattr(model, HEAD_NAMES[task])(pooled) for task in TASKS)


def attention_mask_for(model: MultiTaskDistilBert, hidden: torch.Tensor, mask: torch.Tensor):
    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)


def lower_states(model: MultiTaskDistilBert, ids: torch.Tensor, mask: torch.Tensor, n_frozen: int) -> torch.Tensor:
    """Hidden states after the embeddings and the first ``n_frozen`` layers."""
    encoder = model.distilbert
    hidden = encoder.embeddings(ids)
    extended = attention_mask_for(model, hidden, mask)
    for layer in encoder.transformer.layer[:n_frozen]:
        hidden = layer(hidden, extended)
    return hidden


def first_token_of_layer(layer, hidden: torch.Tensor, mask: torch.Tensor, training: bool) -> torch.Tensor:
    """One ``TransformerBlock``'s output at position 0 only; keys and values still come from every token.

    The heads read nothing else, so the last layer's queries, attention output
    and feed-forward for the other positions would be wasted work.
    """
    att = layer.attention
    batch, length, dim = hidden.shape
    shape = (batch, -1, att.n_heads, att.attention_head_size)
    query = att.q_lin(hidden[:, :1]).view(shape).transpose(1, 2)
    key = att.k_lin(hidden).view(shape).transpose(1, 2)
    value = att.v_lin(hidden).view(shape).transpose(1, 2)
    keep = mask[:, None, None, :].to(torch.bool)
    context = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=keep, dropout_p=att.dropout.p if training else 0.0, scale=att.scaling
    )
    context = att.out_lin(context.transpose(1, 2).reshape(batch, 1, dim))
    state = layer.sa_layer_norm(context + hidden[:, :1])
    return layer.output_layer_norm(layer.ffn(state) + state)[:, 0]


def upper_forward(model: MultiTaskDistilBert, hidden: torch.Tensor, mask: torch.Tensor, n_frozen: int):
    """The remaining layers and the heads, from ``lower_states``' output: the same numbers as ``model``."""
    *middle, last = model.distilbert.transformer.layer[n_frozen:]
    if middle:
        extended = attention_mask_for(model, hidden, mask)
        for layer in middle:
            hidden = layer(hidden, extended)
    return heads(model, first_token_of_layer(last, hidden, mask, model.training))


@torch.no_grad()
def cache_lower_states(
    model: MultiTaskDistilBert, rows: Sequence[Sequence[int]], n_frozen: int, pad_id: int, device: torch.device,
    batch_size: int = 64, progress: bool = True,
) -> list[torch.Tensor]:
    """Each example's frozen-part output, unpadded, on CPU. Computed once, reused every epoch."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(rows)
    by_length = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # little padding per batch
    chunks = [by_length[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    for chunk in tqdm(chunks, desc="frozen layers", unit="batch", disable=not progress, leave=False):
        ids, mask = pad([rows[i] for i in chunk], pad_id)
        states = lower_states(model, ids.to(device), mask.to(device), n_frozen).float().cpu()
        for j, i in enumerate(chunk):
            out[i] = states[j, : len(rows[i])].clone()
    model.train(was_training)
    return out  # type: ignore[return-value]


def pad_states(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(s.shape[0] for s in states)
    hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=states[0].dtype)
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return hidden, mask


def set_trainable(model: MultiTaskDistilBert, trainable_layers: int | None) -> int:
    """Freeze the embeddings and the lower layers; return how many layers are frozen."""
    n_layers = len(model.distilbert.transformer.layer)
    if trainable_layers is not None and not 1 <= trainable_layers <= n_layers:
        raise ValueError(f"trainable_layers must be between 1 and {n_layers}, got {trainable_layers}")
    n_frozen = 0 if trainable_layers is None else max(0, n_layers - trainable_layers)
    for p in model.parameters():
        p.requires_grad_(True)
    if n_frozen:
        for p in model.distilbert.embeddings.parameters():
            p.requires_grad_(False)
        for layer in model.distilbert.transformer.layer[:n_frozen]:
            for p in layer.parameters():
                p.requires_grad_(False)
    return n_frozen


def make_optimizer(model: MultiTaskDistilBert, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW, decay 0.01 on weight matrices (not on biases and LayerNorm, as usual)."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    head_lr = config.head_lr or config.lr
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = config.lr if name.startswith("distilbert.") else head_lr
        decay = 0.0 if p.ndim == 1 else config.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": lr, "weight_decay": decay} for (lr, decay), ps in groups.items()]
    )


def warmup_then_linear(optimizer: torch.optim.Optimizer, total: int, warmup_ratio: float):
    warmup = max(1, int(total * warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))
    )


@contextlib.contextmanager
def deterministic(seed: int):
    """Seed torch and prefer deterministic kernels for the duration; restore the global setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(seed)
    # warn_only: a CUDA op without a deterministic kernel warns instead of stopping a long run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


# --- the loop --------------------------------------------------------------------------------


def train(
    model: MultiTaskDistilBert,
    examples: Sequence[Labelled],
    labels: LabelSet,
    tokenizer,
    config: TrainConfig = TrainConfig(),
) -> TrainResult:
    """Fine-tune ``model`` in place on ``examples``; return the loss of every step."""
    if not examples:
        raise ValueError("no training examples")
    device = torch.device(config.device)
    started = time.perf_counter()
    result = TrainResult()
    with deterministic(config.seed):
        targets = label_indices(examples, labels)
        rows = encode_narratives([ex.narrative for ex in examples], tokenizer, config.max_length)
        pad_id = int(tokenizer.pad_token_id or 0)
        model.to(device)
        n_frozen = set_trainable(model, config.trainable_layers)
        cached = None
        if n_frozen:
            cached = cache_lower_states(model, rows, n_frozen, pad_id, device, progress=config.progress)
            result.cache_seconds = time.perf_counter() - started

        steps_per_epoch = math.ceil(len(examples) / config.batch_size)
        total = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
        optimizer = make_optimizer(model, config)
        schedule = warmup_then_linear(optimizer, total, config.warmup_ratio)
        generator = torch.Generator().manual_seed(config.seed)
        loss_fn = nn.CrossEntropyLoss()

        model.train()
        bar = tqdm(total=total, desc="training", unit="step", disable=not config.progress)
        while result.steps < total:
            for batch in shuffled_batches(len(examples), config.batch_size, generator):
                if cached is not None:
                    hidden, mask = pad_states([cached[i] for i in batch])
                    logits = upper_forward(model, hidden.to(device), mask.to(device), n_frozen)
                else:
                    ids, mask = pad([rows[i] for i in batch], pad_id)
                    logits = model(ids.to(device), mask.to(device))
                y = targets[batch].to(device)
                loss = sum(loss_fn(logits[t], y[:, t]) for t in range(len(TASKS)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                schedule.step()
                result.losses.append(loss.item())
                result.steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
                if result.steps >= total:
                    break
        bar.close()
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
    result.seconds = time.perf_counter() - started
    return result


# --- the operator's command ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.finetune",
        description="Fine-tune a multi-task OpenCHS checkpoint on a labelled JSONL export; write the Hub layout.",
    )
    parser.add_argument("--base", required=True, help="checkpoint directory or Hub repo id to start from")
    parser.add_argument("--revision", default=None, help="Hub revision of --base")
    parser.add_argument("--train", type=Path, required=True, help="JSONL: narrative, main_category, sub_category, "
                        "intervention, priority per line")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the fine-tuned checkpoint to")
    parser.add_argument("--eval", type=Path, default=None, help="labelled JSONL to evaluate on; writes OUT/eval.json")
    parser.add_argument("--epochs", type=float, default=3.0, help="passes over the training file (default 3)")
    parser.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate of the encoder (default 5e-5)")
    parser.add_argument("--head-lr", type=float, default=None, help="learning rate of the heads (default: --lr)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per narrative; longer ones are cut (default 512)")
    parser.add_argument("--trainable-layers", type=int, default=None,
                        help="train only the top N encoder layers (default: all)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffling and dropout (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        # cuBLAS needs this set before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    base = resolve_checkpoint(args.base, args.revision)
    labels = load_labels(base)
    tokenizer = load_tokenizer(base)
    model = load_model(base, labels)
    examples = load_jsonl(args.train)
    print(f"fine-tuning {args.base} on {len(examples)} examples from {args.train} ({device})", file=sys.stderr)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, head_lr=args.head_lr, batch_size=args.batch_size,
        max_length=args.max_length, seed=args.seed, device=device, trainable_layers=args.trainable_layers,
        max_steps=args.max_steps, progress=not args.no_progress,
    )
    result = train(model, examples, labels, tokenizer, config)
    model.to("cpu")
    # The base's own notes (untrained, demo, revision) no longer describe these weights.
    for key in [k for k in model.config.to_dict() if k.startswith("chs_")]:
        delattr(model.config, key)
    save_checkpoint(args.out, model, tokenizer, labels, {
        "chs_untrained": False,
        "chs_note": f"fine-tuned from {args.base} on {args.train.name} ({len(examples)} examples)",
        "chs_training": {"base": args.base, "examples": len(examples), "steps": result.steps,
                         "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                         "max_length": args.max_length, "seed": args.seed},
    })
    print(f"{result.steps} steps in {result.seconds:.0f}s, last loss {result.losses[-1]:.3f}; wrote {args.out}",
          file=sys.stderr)
    if args.eval is not None:
        report = evaluate_checkpoint(args.out, load_jsonl(args.eval), device=device)
        report["file"] = str(args.eval)
        (args.out / "eval.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(json.dumps({t: report["tasks"][t]["accuracy"] for t in TASKS}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
