"""What the ingress finds in a narrative before the model: language, lexicon phrases, too little text."""

from __future__ import annotations

import pytest

from deployments.core.config import AppArgs
from deployments.core.screening import NarrativeScreen


@pytest.fixture(scope="module")
def screen() -> NarrativeScreen:
    return NarrativeScreen.from_args(AppArgs())


def categories(screened) -> list[tuple[str, str]]:
    return [(s.source, s.category) for s in screened.signals]


def test_an_english_narrative_of_a_routine_case_has_no_signal(screen):
    got = screen.screen("A boy of ten keeps asking his teacher for extra maths homework because he enjoys it.")
    assert got.language.code == "en" and got.signals == ()


def test_a_swahili_danger_narrative_names_its_language_and_its_phrase(screen):
    narrative = "Mtoto wa miaka kumi na mbili anasema baba yake alimbaka jana usiku, na sasa anaogopa kurudi nyumbani."
    got = screen.screen(narrative)
    assert got.language.code == "sw"
    lexicon = [s for s in got.signals if s.source == "lexicon"]
    assert lexicon and lexicon[0].category == "sexual_abuse" and lexicon[0].escalate
    assert narrative[lexicon[0].start:lexicon[0].end] == lexicon[0].text
    assert ("language", "sw") in categories(got)
    assert all(s.text is None or s.text not in s.reason for s in got.signals), "a reason never quotes the text"


def test_an_english_figurative_sentence_is_not_escalated(screen):
    got = screen.screen("My daughter says the exams are killing her but she is doing really well this term at school.")
    assert not any(s.escalate for s in got.signals)


def test_nothing_to_read_and_too_short_go_to_review(screen):
    assert categories(screen.screen("?!... ;;")) == [("length", "nothing_to_read")]
    short = screen.screen("help me please")
    assert ("length", "too_short") in categories(short) and all(s.review for s in short.signals)
    assert ("language", short.language.code) not in categories(short) or short.language.confidence >= 0.5


def test_the_models_languages_are_configured():
    both = NarrativeScreen.from_args(AppArgs(language={"model_languages": ["en", "sw"]}))
    narrative = "Mama yangu hanipi chakula na ananifungia ndani ya chumba kila siku nikirudi kutoka shuleni."
    assert not [s for s in both.screen(narrative).signals if s.source == "language"]


@pytest.mark.parametrize("narrative, code, reviewed_for_language", [
    ("A girl of fourteen called to say her father beats her mother every night and she cannot sleep.", "en", False),
    ("Mtoto wa miaka tisa anasema mama yake wa kambo anampiga kila siku na hapewi chakula cha jioni.", "sw", True),
    ("Msee, huyu dem ameniambia mathe yake anamchapa kila siku, ako na stress mob na hataki kuenda home.", "sw", True),
    ("My neighbour's boy is only nine and his father leaves him alone at night, pole sana, the mama is away.",
     "en", False),
    ("Une fille de douze ans dit que son oncle la frappe tous les soirs et qu'elle a peur de rentrer.", "fr", True),
])
def test_each_language_gets_its_field_and_its_reason(screen, narrative, code, reviewed_for_language):
    got = screen.screen(narrative)
    assert got.language.code == code and 0 < got.language.confidence <= 1
    language = [s for s in got.signals if s.source == "language"]
    assert bool(language) == reviewed_for_language
    if language:
        assert language[0].category == code and got.language.name in language[0].reason and language[0].review
