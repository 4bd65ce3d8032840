"""The taxonomy over real HTTP: a sub category that contradicts its main category is caught and explained."""


import httpx
import pytest

from deployments.core.labels import load_sub_to_main

SUB_TO_MAIN = load_sub_to_main()
# Varied enough that the tiny random checkpoint answers a spread of label pairs, some of them inconsistent.
NARRATIVES = [f"case {i}: the caller reports {topic} involving a child of {age} in {place}"
              for i, (topic, age, place) in enumerate(
                  (t, a, p) for t in ("bullying at school", "a beating at home", "hunger", "a missing girl",
                                      "school fees", "a question about the helpline")
                  for a in (6, 11, 15) for p in ("the village", "town"))]


def classify_all(url: str) -> list[dict]:
    with httpx.Client(base_url=url, timeout=120) as http:
        r = http.post("/classify/batch", json={"narratives": NARRATIVES})
        assert r.status_code == 200, r.text
        return r.json()["results"]


def mismatch_reason(sub: str, main: str) -> str:
    return f"Sub category '{sub}' belongs to '{SUB_TO_MAIN[sub]}', but the main category is '{main}'."


def test_each_sub_category_carries_its_parent_and_a_contradiction_goes_to_review(served_tiny):
    results = classify_all(served_tiny)
    mismatches = 0
    for case in results:
        c = case["classification"]
        main, sub = c["main_category"]["label"], c["sub_category"]["label"]
        assert c["sub_category"]["parent"] == SUB_TO_MAIN[sub]
        assert c["sub_category_2"]["parent"] == SUB_TO_MAIN[c["sub_category_2"]["label"]]
        if SUB_TO_MAIN[sub] != main:
            mismatches += 1
            assert case["routing"]["human_review"] is True
            assert mismatch_reason(sub, main) in case["routing"]["reasons"]
        else:
            assert not any(r.startswith(f"Sub category '{sub}' belongs to") for r in case["routing"]["reasons"])
    # The check is exercised: the random checkpoint contradicts the taxonomy on some of these.
    assert 0 < mismatches, [c["classification"]["main_category"]["label"] for c in results]


def test_info_shows_the_taxonomy(served_tiny):
    body = httpx.get(f"{served_tiny}/info", timeout=60).json()
    assert body["taxonomy"] == SUB_TO_MAIN
    assert body["taxonomy_source"] == {"source": "checkpoint", "detail": "sub_to_main.json in the checkpoint"}


@pytest.mark.app("small-windows")
def test_taxonomy_mismatch_off_keeps_the_parent_but_adds_no_reason(serve_session, tiny_checkpoint):
    # test_long_transcripts' small windows (every narrative here is one window either way): one app for both.
    url = serve_session.deploy(model=str(tiny_checkpoint), max_length=64, window_overlap=16, windows_per_call=4,
                               routing={"taxonomy_mismatch": "off"})
    for case in classify_all(url):
        c = case["classification"]
        assert c["sub_category"]["parent"] == SUB_TO_MAIN[c["sub_category"]["label"]]
        assert not any("belongs to" in r for r in case["routing"]["reasons"])


@pytest.mark.app("tiny-7-65")
def test_a_checkpoint_without_a_taxonomy_serves_as_before(serve_session, checkpoints):
    path = checkpoints["tiny_7_65"]
    assert not (path / "sub_to_main.json").exists()
    url = serve_session.deploy(model=str(path))
    info = httpx.get(f"{url}/info", timeout=60).json()
    assert "taxonomy" not in info
    for case in classify_all(url):
        assert "parent" not in case["classification"]["sub_category"]
        assert not any("belongs to" in r for r in case["routing"]["reasons"])


@pytest.mark.parametrize("value", ["maybe", 1])
def test_a_bad_setting_fails_the_deploy(value):
    from pydantic import ValidationError

    from deployments.core.config import AppArgs

    with pytest.raises(ValidationError):
        AppArgs(routing={"taxonomy_mismatch": value})
