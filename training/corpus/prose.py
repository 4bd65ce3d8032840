"""The narrative text generator: a counsellor's prose note of one call.

An opening, the scenario sentence, details and fillers, usually a closing that
names the final intervention; or, given ``target_words``, grown from one
scenario's sentences (and, if still short, transcript turns) to that length.
"""

from __future__ import annotations

import random

from training.corpus.calls import Call, candidates
from training.corpus.data import load_pools
from training.corpus.render import count_words, first_rendering, sentence
from training.corpus.transcript import transcript_turns


def _opening(rng: random.Random, call: Call) -> str:
    pools = load_pools()
    frame = "child" if call.scenario.frame == "child" else "caller"
    s = first_rendering(rng, pools["openings"][frame][call.caller], call.ctx)
    assert s is not None
    return s


def _closing(rng: random.Random, call: Call) -> str | None:
    return first_rendering(rng, load_pools()["closings"][call.intervention], call.ctx)


def compose(rng: random.Random, call: Call, target_words: int | None = None) -> str:
    """Compose a prose narrative for ``call``; with ``target_words``, grow it to at least that."""
    pools = load_pools()
    core = sentence(call.template.text, call.ctx)
    if core is None:
        raise ValueError(f"template of {call.scenario.sub_category} has a slot this call cannot fill: "
                         f"{call.template.text!r}")
    opening = _opening(rng, call) if (target_words is not None or rng.random() < 0.92) else None
    closing = _closing(rng, call) if (target_words is not None or rng.random() < 0.75) else None

    if target_words is None:
        body = [core] + candidates(rng, call, ["details"], rng.choice([0, 1, 1, 2, 2, 3]))
        fillers = (candidates(rng, call, [call.kind], rng.choice([0, 0, 1, 1, 2]))
                   + candidates(rng, call, ["family"], rng.choice([0, 0, 1, 1, 2]))
                   + candidates(rng, call, ["call"], rng.choice([0, 0, 0, 1, 1, 2])))
        if len(body) > 1 and rng.random() < 0.25:
            rest = body[1:]
            rng.shuffle(rest)
            body = rest[:1] + [core] + rest[1:]
        for f in fillers:
            body.insert(rng.randint(1, len(body)), f)
        parts = ([opening] if opening else []) + body + ([closing] if closing else [])
        text = " ".join(parts)
        if rng.random() < 0.06:
            text = rng.choice(pools["prefixes"]) + text
        return text

    # Target length: keep adding sentences from one scenario until long enough.
    details = candidates(rng, call, ["details"])
    parts = [opening, core]
    budget = target_words - (count_words(closing) if closing else 0)
    queue = details + candidates(rng, call, ["templates"])
    mixed = candidates(rng, call, [call.kind, "family", "call"])
    rng.shuffle(mixed)
    # interleave: scenario sentences first, fillers sprinkled in
    ordered: list[str] = []
    while queue or mixed:
        if queue and (not mixed or rng.random() < 0.55):
            ordered.append(queue.pop(0))
        else:
            ordered.append(mixed.pop(0))
    count = sum(count_words(p) for p in parts)
    for s in ordered:
        if count >= budget:
            break
        parts.append(s)
        count += count_words(s)
    text = " ".join(parts)
    if count < budget:
        turns = transcript_turns(rng, call, budget - count)
        text += " Part of the call went as follows. " + " ".join(turns)
    if closing:
        text += " " + closing
    return text
