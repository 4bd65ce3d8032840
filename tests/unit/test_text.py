import pytest

from deployments.core.text import normalize_narrative


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Hello, World!  ", "hello world"),
        ("Child (12) was BEATEN; call 116.", "child 12 was beaten call 116"),
        ("Mtoto amepigwa na baba yake", "mtoto amepigwa na baba yake"),
        ("Café naïve", "caf nave"),  # accented letters are outside [a-z0-9], as in training
        ("She said 😢 help", "she said  help"),
        ("line1\nline2\tx", "line1\nline2\tx"),
        ("!!!???", ""),
    ],
)
def test_normalization_matches_training_recipe(raw, expected):
    assert normalize_narrative(raw) == expected


def test_normalization_is_idempotent():
    text = "A 12-year-old; bullied at SCHOOL!"
    once = normalize_narrative(text)
    assert normalize_narrative(once) == once
