"""Offline language identification: the candidates side by side on helpline-style text.

    python -m bench.language_id [--repeats N] [--only NAME ...] [--skip-slow] [--out FILE.json]

Candidates (each ships its own model inside its PyPI package; nothing is downloaded):
``lingua-language-detector`` (several configurations), ``py3langid`` and ``pycld2``, and
ours, ``deployments/core/language.py`` (py3langid, the one chosen, plus the code-switching
rule). Only py3langid is a dependency; ``pip install lingua-language-detector pycld2`` to
compare the others (a candidate not installed is skipped).

Measured, on the committed labelled set ``data/language/samples.jsonl`` (fields ``text``,
``expected``, ``kind``; Sheng is labelled ``sw``, as our identifier reports it):

- accuracy per kind: en, sw, sheng, en_some_sw (English with a few Swahili words, which
  must come out English), sw_some_en, fr, short (3-6 words); and "en or not": texts sent
  the right way, English or not, which is what the routing acts on;
- time per text: each text run ``--repeats`` times, the median of each text's calls,
  then the median (and the worst) over texts, in ms;
- load: a fresh interpreter per candidate imports the library, builds the detector and
  makes one call; wall seconds and the resident memory it added (MiB);
- the code-switching sweep: ~100-word texts whose share of Swahili words runs from 0 to 1,
  mixed word by word (single Swahili words at random positions of English text) and
  sentence by sentence; per share, how many of the seeds each candidate calls English;
- mostly English or not, over MIXES random English/Swahili mixes (``random_mixes``): texts
  called English with most words Swahili, and not English with most words English; and,
  on the same mixes, what CLD2's English share would get wrong at other thresholds;
- ours only: ``identify`` on 100- and 2,000-word English and Swahili narratives.

Timings live here and in bench/RESULTS.md, never in pass/fail tests.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

from bench.common import ROOT, say

SAMPLES = ROOT / "data" / "language" / "samples.jsonl"
KINDS = ("en", "sw", "sheng", "en_some_sw", "sw_some_en", "fr", "short")
# The languages a restricted lingua reads: English, Swahili, French, Somali, Arabic,
# Luganda. lingua has no Amharic, Kinyarwanda, Kirundi or Oromo model (2.1.1), so those
# cannot be in the set.
LINGUA_EAST_AFRICA = ("ENGLISH", "SWAHILI", "FRENCH", "SOMALI", "ARABIC", "GANDA")
SHARES = tuple(i / 10 for i in range(11))
SWEEP_SEEDS = 5
SWEEP_WORDS = 100
MIXES = 400

Detect = Callable[[str], tuple[str, float]]


def _lingua(languages: tuple[str, ...] | None, low_accuracy: bool) -> Detect:
    from lingua import Language, LanguageDetectorBuilder

    if languages is None:
        builder = LanguageDetectorBuilder.from_all_languages()
    else:
        builder = LanguageDetectorBuilder.from_languages(*(getattr(Language, name) for name in languages))
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def detect(text: str) -> tuple[str, float]:
        values = detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0.0:
            return "und", 0.0
        top = values[0]
        return top.language.iso_code_639_1.name.lower(), top.value

    return detect


def _py3langid() -> Detect:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def detect(text: str) -> tuple[str, float]:
        code, probability = identifier.classify(text)
        return code, float(probability)

    return detect


def _pycld2(best_effort: bool) -> Detect:
    import pycld2

    def detect(text: str) -> tuple[str, float]:
        _reliable, _bytes, details = pycld2.detect(text, bestEffort=best_effort)
        _name, code, percent, _score = details[0]
        return ("und", 0.0) if code == "un" else (code, percent / 100)

    return detect


def _ours() -> Detect:
    from deployments.core.language import LanguageIdentifier

    identifier = LanguageIdentifier()

    def detect(text: str) -> tuple[str, float]:
        language = identifier.identify(text)
        return language.code, language.confidence

    return detect


CANDIDATES: dict[str, Callable[[], Detect]] = {
    "lingua, 6 languages, high accuracy": lambda: _lingua(LINGUA_EAST_AFRICA, low_accuracy=False),
    "lingua, 6 languages, low accuracy": lambda: _lingua(LINGUA_EAST_AFRICA, low_accuracy=True),
    "lingua, all 75, low accuracy": lambda: _lingua(None, low_accuracy=True),
    "lingua, all 75, high accuracy": lambda: _lingua(None, low_accuracy=False),
    "py3langid, all 140": _py3langid,
    "pycld2": lambda: _pycld2(best_effort=False),
    "pycld2, bestEffort": lambda: _pycld2(best_effort=True),
    "ours (deployments/core/language.py)": _ours,
}
SLOW = {"lingua, all 75, high accuracy"}  # tens of seconds to load


def load_samples() -> list[dict]:
    with SAMPLES.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure_load_here(name: str) -> dict:
    """In this (fresh) interpreter: import, build, one call. Printed as JSON for the parent."""
    rss_before = _rss_mib()
    start = time.perf_counter()
    detect = CANDIDATES[name]()
    built = time.perf_counter()
    detect("The child was sent home from school.")
    first = time.perf_counter()
    return {"build_s": round(built - start, 3), "first_call_ms": round((first - built) * 1e3, 2),
            "rss_added_mib": round(_rss_mib() - rss_before, 1)}


def measure_load(name: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.language_id", "--load", name], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def accuracy(detect: Detect, samples: list[dict]) -> tuple[dict, list[dict]]:
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    misses = []
    for sample in samples:
        code, confidence = detect(sample["text"])
        total[sample["kind"]] += 1
        if code == sample["expected"]:
            right[sample["kind"]] += 1
        else:
            misses.append({"text": sample["text"], "expected": sample["expected"], "got": code,
                           "confidence": round(confidence, 3)})
    per_kind = {kind: f"{right[kind]}/{total[kind]}" for kind in KINDS if total[kind]}
    per_kind["all"] = f"{sum(right.values())}/{sum(total.values())}"
    routed_right = sum((m["got"] == "en") == (m["expected"] == "en") for m in misses) + sum(right.values())
    per_kind["en or not"] = f"{routed_right}/{sum(total.values())}"
    return per_kind, misses


def time_per_text(detect: Detect, texts: list[str], repeats: int) -> dict:
    medians = []
    for text in texts:
        calls = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            detect(text)
            calls.append(time.perf_counter_ns() - start)
        medians.append(statistics.median(calls) / 1e6)
    return {"median_ms": round(statistics.median(medians), 4), "worst_ms": round(max(medians), 4)}


def _words(samples: list[dict], kind: str) -> list[str]:
    return [word for s in samples if s["kind"] == kind for word in s["text"].split()]


def _sentences(samples: list[dict], kind: str) -> list[str]:
    return [s["text"] for s in samples if s["kind"] == kind]


def sweep_texts(samples: list[dict]) -> dict[str, dict[float, list[tuple[float, str]]]]:
    """Per mode and Swahili share: SWEEP_SEEDS texts, each with its real Swahili word share."""
    english, swahili = _words(samples, "en"), _words(samples, "sw")
    en_sentences, sw_sentences = _sentences(samples, "en"), _sentences(samples, "sw")
    out: dict[str, dict[float, list[tuple[float, str]]]] = {"word": {}, "sentence": {}}
    for share in SHARES:
        for mode in out:
            out[mode][share] = []
        for seed in range(SWEEP_SEEDS):
            rng = random.Random(f"{share}-{seed}")
            # word by word: English running text with single Swahili words dropped in at random places
            n_sw = round(SWEEP_WORDS * share)
            en_start, sw_start = rng.randrange(len(english)), rng.randrange(len(swahili))
            en_run = [english[(en_start + i) % len(english)] for i in range(SWEEP_WORDS - n_sw)]
            sw_run = [swahili[(sw_start + i) % len(swahili)] for i in range(n_sw)]
            slots = set(rng.sample(range(SWEEP_WORDS), n_sw))
            en_iter, sw_iter = iter(en_run), iter(sw_run)
            words = [next(sw_iter) if i in slots else next(en_iter) for i in range(SWEEP_WORDS)]
            out["word"][share].append((n_sw / SWEEP_WORDS, " ".join(words)))
            # sentence by sentence: whole sentences, each time the language that keeps the
            # Swahili word share nearest the target, until ~100 words
            chosen, n_en_words, n_sw_words = [], 0, 0
            while n_en_words + n_sw_words < SWEEP_WORDS:
                en_sentence, sw_sentence = rng.choice(en_sentences), rng.choice(sw_sentences)
                n_en, n_sw_next = len(en_sentence.split()), len(sw_sentence.split())
                if_sw = (n_sw_words + n_sw_next) / (n_en_words + n_sw_words + n_sw_next)
                if_en = n_sw_words / (n_en_words + n_sw_words + n_en)
                if abs(if_sw - share) < abs(if_en - share):
                    chosen.append(sw_sentence)
                    n_sw_words += n_sw_next
                else:
                    chosen.append(en_sentence)
                    n_en_words += n_en
            rng.shuffle(chosen)
            out["sentence"][share].append((n_sw_words / (n_en_words + n_sw_words), " ".join(chosen)))
    return out


def random_mixes(samples: list[dict], n: int = MIXES) -> list[tuple[float, str]]:
    """(English word share, text): half mixed word by word (30, 60 or 100 words, any share),
    half sentence by sentence (2 to 8 sentences, each English or Swahili at random)."""
    english, swahili = _words(samples, "en"), _words(samples, "sw")
    sentences = [(s["text"], s["kind"] == "en") for s in samples if s["kind"] in ("en", "sw")]
    mixes = []
    for seed in range(n):
        rng = random.Random(f"mix-{seed}")
        if seed % 2 == 0:
            size = rng.choice((30, 60, 100))
            n_sw = rng.randint(0, size)
            en_start, sw_start = rng.randrange(len(english)), rng.randrange(len(swahili))
            slots = set(rng.sample(range(size), n_sw))
            en_iter = (english[(en_start + i) % len(english)] for i in range(size))
            sw_iter = (swahili[(sw_start + i) % len(swahili)] for i in range(size))
            text = " ".join(next(sw_iter) if i in slots else next(en_iter) for i in range(size))
            mixes.append((1 - n_sw / size, text))
        else:
            picked = [rng.choice(sentences) for _ in range(rng.randint(2, 8))]
            n_en = sum(len(t.split()) for t, is_en in picked if is_en)
            n_all = sum(len(t.split()) for t, _ in picked)
            mixes.append((n_en / n_all, " ".join(t for t, _ in picked)))
    return mixes


def majority_errors(detect: Detect, mixes: list[tuple[float, str]]) -> dict:
    """Texts called English though most words are Swahili, or the other way round (a
    text with exactly half English words counts as neither), and the English word shares
    between which those errors lie."""
    called_en_mostly_sw, other_mostly_en, shares = 0, 0, []
    for english_share, text in mixes:
        if english_share == 0.5:
            continue
        is_en = detect(text)[0] == "en"
        if is_en and english_share < 0.5:
            called_en_mostly_sw += 1
            shares.append(english_share)
        elif not is_en and english_share > 0.5:
            other_mostly_en += 1
            shares.append(english_share)
    band = f"{min(shares):.2f}-{max(shares):.2f}" if shares else "-"
    return {"texts": sum(share != 0.5 for share, _ in mixes), "en_but_mostly_sw": called_en_mostly_sw,
            "not_en_but_mostly_en": other_mostly_en, "english_share_band": band}


def cld2_threshold_table(mixes: list[tuple[float, str]]) -> dict[str, dict]:
    """What ours would get wrong with other MOSTLY_ENGLISH_SHARE values: CLD2's English
    share of each random mix against the threshold, same counting as majority_errors."""
    import pycld2

    scored = []
    for english_share, text in mixes:
        if english_share == 0.5:
            continue
        _reliable, _bytes, details = pycld2.detect(text, isPlainText=True, bestEffort=True)
        scored.append((english_share, sum(p for _n, c, p, _s in details if c == "en") / 100))
    table = {}
    for threshold in (0.3, 0.4, 0.45, 0.5, 0.55, 0.6):
        over = sum(cld2 >= threshold and truth < 0.5 for truth, cld2 in scored)
        under = sum(cld2 < threshold and truth > 0.5 for truth, cld2 in scored)
        table[f"{threshold:.2f}"] = {"en_but_mostly_sw": over, "not_en_but_mostly_en": under, "wrong": over + under}
    return table


def window_rule_table(mixes: list[tuple[float, str]], samples: list[dict]) -> dict:
    """Ours' code-switching rule with other window sizes and share thresholds, on the same
    mixes (counted as in majority_errors); and the English share each labelled mixed kind
    measures with the chosen window."""
    from deployments.core.language import WINDOW_WORDS, LanguageIdentifier

    identifier = LanguageIdentifier()
    model = identifier._model  # the bare py3langid model: the rule only runs where it says not English
    scored = [(truth, model.classify(text)[0] == "en", text) for truth, text in mixes if truth != 0.5]
    table = {}
    for words in (3, 4, 5, 6, 8):
        shares = [(truth, whole_en, None if whole_en else identifier.english_share(text, words))
                  for truth, whole_en, text in scored]
        for threshold in (0.4, 0.45, 0.5, 0.55, 0.6):
            called = [(truth, whole_en or share >= threshold) for truth, whole_en, share in shares]
            over = sum(en and truth < 0.5 for truth, en in called)
            under = sum(not en and truth > 0.5 for truth, en in called)
            table[f"{words} words, share >= {threshold:.2f}"] = {"en_but_mostly_sw": over,
                                                                 "not_en_but_mostly_en": under}
    by_kind: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        by_kind[sample["kind"]].append(identifier.english_share(sample["text"], WINDOW_WORDS))
    ranges = {kind: f"{min(v):.2f}-{max(v):.2f}" for kind, v in by_kind.items()}
    return {"table": table, "english_share_by_kind": ranges}


def sweep(detect: Detect, texts: dict) -> dict[str, dict[str, str]]:
    """Per mode: 'share (measured mean)': how many of the seeds came out English."""
    result: dict[str, dict[str, str]] = {}
    for mode, by_share in texts.items():
        row = {}
        for share, cases in by_share.items():
            english = sum(detect(text)[0] == "en" for _, text in cases)
            real = statistics.mean(r for r, _ in cases)
            row[f"{share:.1f} ({real:.2f})"] = f"{english}/{len(cases)}"
        result[mode] = row
    return result


def narrative(samples: list[dict], words: int, kind: str = "en") -> str:
    pool = _words(samples, kind)
    return " ".join(pool[i % len(pool)] for i in range(words))


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    from bench.machine import cpu_name

    return cpu_name()


def _load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    parser.add_argument("--skip-slow", action="store_true", help="leave out lingua with all languages at high accuracy")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: measure one candidate's load here
    args = parser.parse_args(argv)
    if args.load:
        print(json.dumps(_measure_load_here(args.load)))
        return 0

    names = args.only or [n for n in CANDIDATES if not (args.skip_slow and n in SLOW)]
    samples = load_samples()
    texts = [s["text"] for s in samples]
    sweeps = sweep_texts(samples)
    mixes = random_mixes(samples)
    report = {"cpu": _cpu(), "cores": __import__("os").cpu_count(), "load_average_at_start": _load_average(),
              "python": sys.version.split()[0], "repeats": args.repeats, "samples": len(samples), "candidates": {}}
    for name in names:
        try:
            detect = CANDIDATES[name]()
        except ImportError as error:  # the candidates are not dependencies: `pip install` them to compare
            say(f"{name}: skipped, not installed ({error})")
            continue
        say(f"{name}: load (fresh interpreter)")
        load = measure_load(name)
        say(f"{name}: accuracy, timing, sweep")
        per_kind, misses = accuracy(detect, samples)
        entry = {"load": load, "accuracy": per_kind, "misses": misses,
                 "time": time_per_text(detect, texts, args.repeats), "sweep": sweep(detect, sweeps),
                 "majority": majority_errors(detect, mixes)}
        if name.startswith("ours"):
            entry["narrative_ms"] = {
                f"{kind} {n} words": time_per_text(detect, [narrative(samples, n, kind)], args.repeats)["median_ms"]
                for kind in ("en", "sw") for n in (100, 2000)}
        report["candidates"][name] = entry
    try:
        report["cld2_mostly_english_threshold"] = cld2_threshold_table(mixes)
    except ImportError:
        report["cld2_mostly_english_threshold"] = {}
    if any(name.startswith("ours") for name in report["candidates"]):
        report["window_rule"] = window_rule_table(mixes, samples)
    report["load_average_at_end"] = _load_average()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    lines = [f"CPU: {report['cpu']} ({report['cores']} cores), Python {report['python']}, "
             f"load average {report['load_average_at_start']} → {report['load_average_at_end']}; "
             f"{report['samples']} texts, {report['repeats']} repeats", ""]
    kinds = [*KINDS, "all", "en or not"]
    lines.append("| candidate | " + " | ".join(kinds) + " | ms/text median (worst) | load s | RSS MiB |")
    lines.append("|---|" + "---:|" * (len(kinds) + 3))
    for name, e in report["candidates"].items():
        acc = " | ".join(e["accuracy"].get(k, "-") for k in kinds)
        lines.append(f"| {name} | {acc} | {e['time']['median_ms']:.3f} ({e['time']['worst_ms']:.3f}) "
                     f"| {e['load']['build_s']:.2f} | {e['load']['rss_added_mib']:.0f} |")
    for mode in ("word", "sentence"):
        lines += ["", f"Code-switching sweep, {mode} by {mode}: texts called English (of {SWEEP_SEEDS}) per "
                  "Swahili word share, target (measured)", ""]
        first = next(iter(report["candidates"].values()))
        shares = list(first["sweep"][mode])
        lines.append("| candidate | " + " | ".join(shares) + " |")
        lines.append("|---|" + "---:|" * len(shares))
        for name, e in report["candidates"].items():
            lines.append(f"| {name} | " + " | ".join(e["sweep"][mode][s] for s in shares) + " |")
    lines += ["", f"Mostly English or not, over {MIXES} random English/Swahili mixes (word and sentence "
              "level): texts called English with most words Swahili, texts not called English with most "
              "words English, and the English word shares the errors lie between", "",
              "| candidate | texts | en, mostly sw | not en, mostly en | error band |", "|---|---:|---:|---:|---|"]
    for name, e in report["candidates"].items():
        m = e["majority"]
        lines.append(f"| {name} | {m['texts']} | {m['en_but_mostly_sw']} | {m['not_en_but_mostly_en']} "
                     f"| {m['english_share_band']} |")
    if report["cld2_mostly_english_threshold"]:
        lines += ["", "CLD2's English share against a MOSTLY_ENGLISH_SHARE threshold, same mixes:", "",
                  "| threshold | en, mostly sw | not en, mostly en | wrong |", "|---:|---:|---:|---:|"]
        for threshold, t in report["cld2_mostly_english_threshold"].items():
            lines.append(f"| {threshold} | {t['en_but_mostly_sw']} | {t['not_en_but_mostly_en']} | {t['wrong']} |")
    if "window_rule" in report:
        rule = report["window_rule"]
        lines += ["", "Ours' window rule at other window sizes and share thresholds, same mixes "
                  "(en, mostly sw / not en, mostly en):", ""]
        sizes = sorted({key.split(" words")[0] for key in rule["table"]}, key=int)
        thresholds = sorted({key.split(">= ")[1] for key in rule["table"]})
        lines.append("| window \\ share >= | " + " | ".join(thresholds) + " |")
        lines.append("|---|" + "---:|" * len(thresholds))
        for size in sizes:
            cells = [rule["table"][f"{size} words, share >= {t}"] for t in thresholds]
            lines.append(f"| {size} words | " + " | ".join(f"{c['en_but_mostly_sw']} / {c['not_en_but_mostly_en']}"
                                                          for c in cells) + " |")
        lines += ["", "English share by windows per labelled kind (min-max): " +
                  ", ".join(f"{k} {v}" for k, v in rule["english_share_by_kind"].items())]
    lines += ["", "Misses:"]
    for name, e in report["candidates"].items():
        for miss in e["misses"]:
            lines.append(f"- {name}: {miss['text'][:60]!r} expected {miss['expected']}, got {miss['got']} "
                         f"({miss['confidence']})")
    if any("narrative_ms" in e for e in report["candidates"].values()):
        lines.append("")
        for name, e in report["candidates"].items():
            if "narrative_ms" in e:
                lines.append(f"{name}: identify on a narrative: " +
                             ", ".join(f"{k} {v:.3f} ms" for k, v in e["narrative_ms"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
