"""Counsellor/caller call transcripts, all on one scenario, so their labels are known."""

from __future__ import annotations

import random

from training.corpus.calls import Call, candidates, labelled_item, new_call, pick_scenario
from training.corpus.data import load_pools
from training.corpus.records import LabelledNarrative
from training.corpus.render import count_words, first_rendering, sentence


def _lower_first(s: str) -> str:
    first = s.split(" ", 1)[0]
    if first in ("I", "I'm") or (len(first) > 1 and first.isupper()):
        return s
    return s[:1].lower() + s[1:]


def transcript_turns(rng: random.Random, call: Call, target_words: int) -> list[str]:
    """Alternating counsellor/caller turns on ``call``'s scenario, at least ``target_words`` words."""
    tp = load_pools()["transcript"]
    # Details, not other templates: the whole call stays on one incident.
    content_groups = ["details", call.kind, "family"]
    content: list[str] = []
    fillers: list[str] = []
    questions: list[str] = []
    turns: list[str] = []
    count = 0
    while count < target_words:
        if not questions:
            questions = list(tp["questions_general"]) + (list(tp["questions_child"]) if call.has_child else [])
            questions += list(tp["reflections"])
            rng.shuffle(questions)
        c_turn = "Counsellor: " + questions.pop()
        if rng.random() < 0.6:
            if not content:
                content = candidates(rng, call, content_groups)
            s = content.pop(0)
            prefix = rng.choice(tp["prefixes"])
            if prefix.endswith(", ") or prefix.endswith("so "):
                s = _lower_first(s)
            r_turn = "Caller: " + prefix + s
        else:
            if not fillers:
                fillers = list(tp["caller_fillers"])
                rng.shuffle(fillers)
            r_turn = "Caller: " + fillers.pop()
        turns += [c_turn, r_turn]
        count += count_words(c_turn) + count_words(r_turn)
    return turns


def _caller_intro(rng: random.Random, call: Call) -> str:
    intros = load_pools()["transcript"]["caller_intro"]
    frame = "child" if call.scenario.frame == "child" else "caller"
    s = first_rendering(rng, intros[frame][call.caller], call.ctx)
    assert s is not None
    return s


def transcript(rng: random.Random, call: Call, target_words: int) -> str:
    tp = load_pools()["transcript"]
    head = ["Counsellor: " + rng.choice(tp["counsellor_open"]),
            "Caller: " + rng.choice(tp["caller_open"]),
            "Counsellor: " + rng.choice(tp["reflections"]),
            "Caller: " + _caller_intro(rng, call),
            "Counsellor: Can you tell me what is happening?",
            "Caller: " + sentence(call.template.text, call.ctx)]
    close_c = "Counsellor: " + first_rendering(rng, tp["counsellor_close"][call.intervention], call.ctx)
    close_r = "Caller: " + rng.choice(tp["caller_close"])
    fixed = sum(count_words(t) for t in head) + count_words(close_c) + count_words(close_r)
    middle = transcript_turns(rng, call, max(0, target_words - fixed)) if target_words > fixed else []
    return "\n".join(head + middle + [close_c, close_r])


def make_transcript(rng: random.Random, target_words: int = 3000,
                    sub_category: str | None = None) -> LabelledNarrative:
    """A multi-turn counsellor/caller transcript of at least ``target_words`` words.

    The whole call stays on one scenario (one sub category, one child, one set of
    slot values), so the returned labels hold for the entire text.
    """
    scen = pick_scenario(rng, sub_category)
    call = new_call(rng, scen)
    return labelled_item(call, transcript(rng, call, target_words))
