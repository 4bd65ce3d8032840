"""data/demo/voices.json: valid labels by the corpus's rules, and no near-copy of the held-out set."""

import re

from training.corpus import base_labels, label_problems, load_heldout, load_scenarios
from training.demo import DemoRecipe, load_voices, training_examples
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_every_voice_is_validly_labelled_by_its_kind():
    voices = load_voices()
    assert len(voices) >= 100
    assert {v.sub_category for v in voices} == set(load_scenarios())  # every sub category has a voice
    for v in voices:
        assert label_problems(v) == [], v
    # A child asking for help about themself is priority 2; the same scenario from an adult is 1.
    bullying = [v for v in voices if v.sub_category == "Bullying"]
    assert {v.priority for v in bullying} == {1, 2}
    assert base_labels("help", "Counselling", True) == ("Counselling", 2)


def test_no_voice_is_a_near_copy_of_a_held_out_narrative():
    heldout = [words(h.narrative) for h in load_heldout()]
    for v in load_voices():
        w = words(v.narrative)
        closest = max(len(w & h) / len(w | h) for h in heldout)
        assert closest < 0.3, (v.narrative, closest)


def test_training_set_is_the_corpus_plus_repeated_voices():
    labels = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    recipe = DemoRecipe(examples=50, voice_repeats=2)
    examples = training_examples(recipe, seed=0, labels=labels)
    assert len(examples) == 50 + 2 * len(load_voices())


def test_where_the_generator_has_urgent_calls_the_voices_say_urgency_too():
    # The generator marks some templates of non-danger sub categories "danger" (a shunt blocked, a child
    # alone since yesterday, a goodbye letter): priority 3. The voices must not teach that those sub
    # categories are never urgent in a caller's own words.
    urgent_in_generator = {sub for sub, s in load_scenarios().items()
                           if s.kind != "danger" and any(t.kind == "danger" for t in s.templates)}
    urgent_voices = {v.sub_category for v in load_voices() if v.priority == 3}
    assert urgent_in_generator and urgent_in_generator <= urgent_voices
