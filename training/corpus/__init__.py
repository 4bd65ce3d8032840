"""The project's own synthetic helpline corpus: labelled narratives for training
and evaluating a demo model, and unlabelled narratives for benchmarks.

Everything here is standard library only (no torch, no Ray; the task names and
label file names come from ``deployments.core.labels``, which is standard
library only too), deterministic for a seed (every function takes or builds its
own ``random.Random``; the global ``random`` state is never used), and reads its
hand-written material from ``data/corpus/*.json``:

* ``pools.json`` -- places, callers, openings, closings, filler sentences and
  the turn pools for call transcripts;
* ``scenarios_*.json`` -- one entry per covered sub category, each with a
  default *kind*, at least four scenario templates with slots (``{the_child}``,
  ``{pron}``, ``{poss}``, ``{obj}``, ``{place}``, ``{when}`` ... and per-scenario
  slots such as ``{perp}``), detail sentences and referral targets.

The main category of a narrative is always ``sub_to_main[sub_category]`` from
``data/labels/openchs-2025-09/sub_to_main.json``. A template's kind gives the
narrative's intervention and priority, with documented noise: see
``training.corpus.rules``.

The modules, each importing only those above it:

* ``data`` -- the paths of the hand-written material, the label lists and pools;
* ``records`` -- ``LabelledNarrative`` and ``GeneratedRecord``;
* ``rules`` -- the labelling rules (``base_labels``, ``assign_labels``) and ``label_problems``;
* ``scenarios`` -- the parsed scenarios (``load_scenarios``) and what they cover;
* ``render`` -- filling a template's slots;
* ``calls`` -- one call being composed: scenario, caller, child, slot values, labels;
* ``transcript`` -- counsellor/caller call transcripts (``make_transcript``);
* ``prose`` -- the narrative text generator, a counsellor's note of one call;
* ``generate`` -- the labelled training corpus (``generate_corpus``);
* ``benchmark`` -- the benchmark corpus (``benchmark_corpus``);
* ``jsonl`` -- labelled JSONL (``read_jsonl``, ``load_jsonl``, ``write_jsonl``, ``load_heldout``);
* ``cli`` -- ``python -m training.corpus``.

Narrative lengths
-----------------
* :func:`generate_corpus` (training): an opening, the scenario sentence, 0-3
  detail sentences, 0-5 filler sentences and usually a closing; roughly 20-160
  words, median about 80 (p90 about 110).
* :func:`benchmark_corpus` (load tests): helpline-style narratives with a
  realistic spread -- about 4% very short calls (under 20 words: silent calls,
  prank calls, dropped calls), about 11% long ones of 440-1,400 words (prose or
  a call transcript; > 512 WordPiece tokens), and the rest drawn from a
  log-normal around 110 words (clipped to 25-400).  The result has a median of
  about 110-130 words (roughly 150 WordPiece tokens) and about 10% of
  narratives over 420 words.
* :func:`make_transcript`: a counsellor/caller call transcript of at least
  ``target_words`` words, all on one scenario, so its labels are known.

Command line::

    python -m training.corpus --n 2000 --seed 0 --out FILE.jsonl
    python -m training.corpus --benchmark 500 --seed 0 --out bench.jsonl
    python -m training.corpus --n 2000 --stats
"""

from training.corpus.benchmark import (
    BENCH_CLIP, BENCH_LONG_FRACTION, BENCH_LONG_RANGE, BENCH_MEDIAN_TARGET, BENCH_SHORT_FRACTION, BENCH_SIGMA,
    benchmark_corpus, benchmark_records,
)
from training.corpus.cli import corpus_stats, main
from training.corpus.data import CORPUS_DIR, DATA_DIR, HELDOUT_PATH, LABELS_DIR, load_label_lists, load_pools
from training.corpus.generate import generate_corpus, generate_records
from training.corpus.jsonl import load_heldout, load_jsonl, read_jsonl, write_jsonl
from training.corpus.records import GeneratedRecord, LabelledNarrative
from training.corpus.rules import (
    ALTERNATIVES, AWARENESS, COUNSELLING, KINDS, NOISE_RATE, REFERRAL, SIGNPOSTING, assign_labels, base_labels,
    label_problems, plausible_alternatives,
)
from training.corpus.scenarios import CRITICAL_SUBS, Scenario, covered_labels, load_scenarios
from training.corpus.transcript import make_transcript

__all__ = [
    "ALTERNATIVES", "AWARENESS", "BENCH_CLIP", "BENCH_LONG_FRACTION", "BENCH_LONG_RANGE", "BENCH_MEDIAN_TARGET",
    "BENCH_SHORT_FRACTION", "BENCH_SIGMA", "CORPUS_DIR", "COUNSELLING", "CRITICAL_SUBS", "DATA_DIR", "HELDOUT_PATH",
    "KINDS", "LABELS_DIR", "NOISE_RATE", "REFERRAL", "SIGNPOSTING", "GeneratedRecord", "LabelledNarrative",
    "Scenario", "assign_labels", "base_labels", "benchmark_corpus", "benchmark_records", "corpus_stats",
    "covered_labels", "generate_corpus", "generate_records", "label_problems", "load_heldout", "load_jsonl",
    "load_label_lists", "load_pools", "load_scenarios", "main", "make_transcript", "plausible_alternatives",
    "read_jsonl", "write_jsonl",
]
