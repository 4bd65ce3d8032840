import json

import pytest

from deployments.core.errors import LabelHeadMismatchError
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet, load_sub_to_main


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
