import json

import pytest

from deployments.core.errors import LabelHeadMismatchError
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet, load_sub_to_main, resolve_taxonomy


def test_bundled_release_has_published_sizes():
    labels = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    assert labels.sizes() == {"main_category": 8, "sub_category": 66, "intervention": 4, "priority": 3}
    assert labels.priority == (1, 2, 3)
    assert "VANE" in labels.main_category


def test_sub_to_main_maps_every_sub_category_to_a_main_category():
    labels = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    mapping = load_sub_to_main()
    assert set(mapping) == set(labels.sub_category)
    assert set(mapping.values()) <= set(labels.main_category)
    assert mapping["Outside Mandate"] == "Unknown"


def test_round_trip_through_files(tmp_path):
    labels = LabelSet.from_lists(
        {"main_category": ["A", "B"], "sub_category": ["x"], "intervention": ["i"], "priority": [1, 2, 3]}
    )
    labels.write(tmp_path)
    assert LabelSet.from_dir(tmp_path) == labels
    assert json.loads((tmp_path / "priorities.json").read_text()) == [1, 2, 3]


def test_head_mismatch_names_both_numbers():
    labels = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    with pytest.raises(LabelHeadMismatchError) as err:
        labels.check_heads({"main_category": 8, "sub_category": 65, "intervention": 4, "priority": 3})
    message = str(err.value)
    assert "sub_categories.json" in message and "66" in message and "65" in message
    labels.check_heads({"main_category": 8, "sub_category": 66, "intervention": 4, "priority": 3})


def test_missing_label_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="main_categories.json"):
        LabelSet.from_dir(tmp_path)


def test_taxonomy_is_read_written_and_filtered_to_these_labels(tmp_path):
    bundled = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    assert bundled.sub_to_main == load_sub_to_main()
    bundled.write(tmp_path / "with")
    assert json.loads((tmp_path / "with" / "sub_to_main.json").read_text()) == load_sub_to_main()
    assert LabelSet.from_dir(tmp_path / "with") == bundled
    # A label set of another release keeps only the entries its own lists can use.
    smaller = LabelSet.from_lists(
        {"main_category": ["Advice and Counselling"], "sub_category": ["Bullying", "Other"],
         "intervention": ["i"], "priority": [1, 2, 3]},
        {"Bullying": "Advice and Counselling", "Other": "Not In This Release", "Gone": "Advice and Counselling"},
    )
    assert smaller.sub_to_main == {"Bullying": "Advice and Counselling"}


def test_a_checkpoint_without_a_taxonomy_loads_without_one(tmp_path):
    bare = LabelSet.from_lists(LabelSet.from_dir(BUNDLED_LABELS_DIR).to_json())
    bare.write(tmp_path)
    assert not (tmp_path / "sub_to_main.json").exists()
    assert LabelSet.from_dir(tmp_path).sub_to_main is None


# -- where the taxonomy comes from (labels.resolve_taxonomy; /info reports it) ---------------------------------


def bare_release(directory, *, sub=None):
    """The bundled release's label files without sub_to_main.json, as OpenCHS's published checkpoint has them."""
    lists = LabelSet.from_dir(BUNDLED_LABELS_DIR).to_json()
    if sub is not None:
        lists["sub_category"] = sub
    LabelSet.from_lists(lists).write(directory)
    return LabelSet.from_dir(directory)


def test_without_a_map_the_bundled_one_serves_when_the_lists_are_the_releases(tmp_path):
    resolved = resolve_taxonomy(bare_release(tmp_path), tmp_path)
    assert resolved.taxonomy_source["source"] == "bundled" and resolved.sub_to_main == load_sub_to_main()


def test_other_lists_turn_it_off_and_say_why(tmp_path):
    labels = bare_release(tmp_path, sub=["Bullying", "Neglect", "Something New"])
    resolved = resolve_taxonomy(labels, tmp_path)
    assert resolved.sub_to_main is None and resolved.taxonomy_source["source"] == "off"
    assert "not the bundled release's" in resolved.taxonomy_source["detail"]
    off = resolve_taxonomy(bare_release(tmp_path), tmp_path, bundled=False)
    assert off.sub_to_main is None and "bundled_taxonomy is off" in off.taxonomy_source["detail"]


def test_the_configs_file_wins_then_the_checkpoints(tmp_path):
    labels = bare_release(tmp_path)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"Bullying": "GBV"}))
    resolved = resolve_taxonomy(labels, tmp_path, str(mine))
    assert resolved.sub_to_main == {"Bullying": "GBV"} and resolved.taxonomy_source["source"] == "config"
    (tmp_path / "sub_to_main.json").write_text(json.dumps({"Bullying": "Advice and Counselling"}))
    assert resolve_taxonomy(labels, tmp_path).sub_to_main == {"Bullying": "Advice and Counselling"}
    assert resolve_taxonomy(labels, tmp_path, str(mine)).taxonomy_source["source"] == "config"
    with pytest.raises(ValueError, match="does not exist"):
        resolve_taxonomy(labels, tmp_path, str(tmp_path / "absent.json"))
