"""deployments/core/language.py: the narrative's language, offline (py3langid), with the code-switching rule."""

import dataclasses

import pytest

from deployments.core.language import (
    MOSTLY_ENGLISH_SHARE,
    SAMPLE_CHARS,
    Language,
    LanguageIdentifier,
    _LABELS,
    language_name,
    unread_language_reason,
)

pytestmark = pytest.mark.unit

ENGLISH = "My son is eleven and the school keeps sending him home because we have not paid the fees this term."
SWAHILI = "Binti yangu wa miaka tisa amekuwa akilia kila usiku tangu mjomba wake aanze kuishi nasi."
SHENG = "Maze, buda amekam keja amechapa mathe tena, mimi na bro tumetoka nje tukiogopa."
ENGLISH_SOME_SWAHILI = ("The caller says the mtoto has not eaten for two days because the mama went to the shamba "
                        "and never came back.")
SWAHILI_SOME_ENGLISH = "Mama wa mtoto anasema anahitaji counselling kwa sababu mtoto hataki kwenda shule tena."
FRENCH = "Ma nièce de douze ans ne va plus à l'école depuis que son oncle la garde à la maison."
# 11 English words, then 8 Swahili ones: the model alone calls it Swahili; the window rule, English.
MOSTLY_ENGLISH_MIX = ("The girl is thirteen, her stepfather is beating her every night, mama yake hasemi kitu na "
                      "majirani wanaogopa kuingilia.")


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()  # about a second: built once for the module


@pytest.mark.parametrize(
    "text, code, name",
    [
        (ENGLISH, "en", "English"),
        (SWAHILI, "sw", "Swahili"),
        (SHENG, "sw", "Swahili"),  # Sheng is reported as Swahili
        (ENGLISH_SOME_SWAHILI, "en", "English"),  # mostly English is English
        (SWAHILI_SOME_ENGLISH, "sw", "Swahili"),
        (FRENCH, "fr", "French"),
    ],
    ids=["english", "swahili", "sheng", "english-some-swahili", "swahili-some-english", "french"],
)
def test_identifies_code_name_and_confidence(identifier, text, code, name):
    language = identifier.identify(text)
    assert (language.code, language.name) == (code, name)
    assert 0.5 <= language.confidence <= 1.0  # a full sentence: well above a guess
    assert language.confidence == round(language.confidence, 4)


@pytest.mark.parametrize("text", ["?!... --- ***", "", "   \n\t ", "12345 + 678 = 13023", "😢😢 !!"])
def test_text_without_letters_is_undetermined(identifier, text):
    assert identifier.identify(text) == Language("und", "Undetermined", 0.0)


def test_a_letter_or_two_gives_the_model_nothing_to_go_on(identifier):
    assert identifier.identify("x").code == "und"


def test_mostly_english_mix_is_english_by_the_window_rule(identifier):
    assert identifier._model.classify(MOSTLY_ENGLISH_MIX)[0] != "en"  # the whole text alone leans Swahili
    share = identifier.english_share(MOSTLY_ENGLISH_MIX)
    assert share >= MOSTLY_ENGLISH_SHARE
    assert identifier.identify(MOSTLY_ENGLISH_MIX) == Language("en", "English", round(share, 4))


def test_mostly_swahili_text_is_not_made_english(identifier):
    for text in (SWAHILI, SHENG, SWAHILI_SOME_ENGLISH):
        assert identifier.english_share(text) < MOSTLY_ENGLISH_SHARE


def test_long_narratives_are_read_from_a_bounded_sample_spread_over_the_text(identifier):
    english = " ".join([ENGLISH] * 200)  # ~4,000 words
    assert len(english) > 5 * SAMPLE_CHARS
    assert identifier.identify(english).code == "en"
    assert identifier.identify(" ".join([SWAHILI] * 200)).code == "sw"
    # a Swahili opening longer than the sample, then a much longer English account: the
    # sample is spread over the text, not its opening
    opening = " ".join([SWAHILI] * 30)
    assert len(opening) > SAMPLE_CHARS and identifier.identify(opening).code == "sw"
    assert identifier.identify(" ".join([opening] + [ENGLISH] * 300)).code == "en"


def test_odd_characters_do_not_break_it(identifier):
    text = "The child\x00 was\x07 sent \ud800 home\ufffe from school\x1b today."
    assert identifier.identify(text).code == "en"


def test_to_json_and_immutability(identifier):
    language = identifier.identify(SWAHILI)
    assert language.to_json() == {"code": "sw", "name": "Swahili", "confidence": language.confidence}
    with pytest.raises(dataclasses.FrozenInstanceError):
        language.code = "en"  # type: ignore[misc]


def test_every_label_of_the_model_has_a_code_and_a_name(identifier):
    assert set(identifier._model.labels) == set(_LABELS)
    for code, name in _LABELS.values():
        assert language_name(code)
        assert 2 <= len(code) <= 3 and code.islower()
    assert language_name("sw") == "Swahili"
    with pytest.raises(KeyError):
        language_name("xx")


def test_unread_language_reason_names_the_language():
    english = Language("en", "English", 0.99)
    swahili = Language("sw", "Swahili", 0.97)
    assert unread_language_reason(english) is None
    reason = unread_language_reason(swahili)
    assert reason is not None and "Swahili (sw" in reason and "English (en)" in reason
    assert unread_language_reason(swahili, model_languages=("en", "sw")) is None
    assert "could not be identified" in unread_language_reason(Language("und", "Undetermined", 0.0))
