"""The clients' one JSONL reader (clients/jsonl.py) and the three tools that read through it."""

from __future__ import annotations

import json
import re

import pytest

from clients.cli import done_ids, read_rows
from clients.evaluate import InputError, read_labelled
from clients.jsonl import numbered_lines, parse_lines, read_lines
from clients.loadtest import FALLBACK_NARRATIVES, load_narratives

LABELS = {"main_category": "VANE", "sub_category": "Physical Abuse", "intervention": "Referral", "priority": 3}
# JSON allows U+2028/U+2029/U+0085 raw inside a string, and json.dumps(ensure_ascii=False) writes them so.
SEPARATED = "She said\u2028he hits her\u0085every\x0cnight\u2029."


def test_lines_end_only_at_newline_and_keep_their_numbers():
    text = "\ufeff" + '{"a": 1}\r\n\n   \n' + json.dumps({"n": SEPARATED}, ensure_ascii=False) + "\n{oops\n"
    lines = list(parse_lines(text))
    assert [ln.number for ln in lines] == [1, 4, 5]
    assert lines[0].value == {"a": 1} and lines[0].error is None and lines[0].text == '{"a": 1}'
    assert lines[1].value == {"n": SEPARATED}
    assert lines[2].value is None and lines[2].error == "Expecting property name enclosed in double quotes"
    assert list(numbered_lines("a\r\n\nb")) == [(1, "a"), (3, "b")]


def test_json_null_is_a_value_not_an_error():
    (line,) = parse_lines("null\n")
    assert line.value is None and line.error is None


def test_hostile_nesting_is_an_unparsable_line_not_a_crash():
    (line,) = parse_lines("[" * 100_000 + "\n")
    assert line.error is not None


def test_read_lines_reads_a_bom_file(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"narrative": "hello"}).encode() + b"\n")
    assert [ln.value for ln in read_lines(path)] == [{"narrative": "hello"}]


def test_chs_classify_rows(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"id": "a", "narrative": SEPARATED}, ensure_ascii=False) + "\n\n"
                    + "[1, 2]\n{not json\n" + json.dumps({"narrative": 5}) + "\n"
                    + json.dumps({"narrative": "no id"}) + "\r\n", encoding="utf-8")
    rows = read_rows(path, "jsonl")
    assert [(r.id, r.narrative, r.problem) for r in rows] == [
        ("a", SEPARATED, None),
        ("3", None, "line 3 is not a JSON object"),
        ("4", None, "line 4 is not valid JSON"),
        ("5", None, "the 'narrative' field is missing or not a string"),
        ("6", "no id", None),
    ]
    assert [r.index for r in rows] == list(range(5))
    text = tmp_path / "cases.txt"
    text.write_text("first\r\n\nsecond\n", encoding="utf-8")
    assert [(r.id, r.narrative) for r in read_rows(text, "text")] == [("1", "first"), ("3", "second")]


def test_chs_classify_resume_reads_done_ids_past_a_cut_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "a", "main_category": "VANE"}) + "\n"
                   + json.dumps({"id": 7, "note": SEPARATED}, ensure_ascii=False) + "\n"
                   + json.dumps({"id": "b", "error": {"code": "x"}}) + "\n" + '{"id": "c", "main_', encoding="utf-8")
    assert done_ids(out, "jsonl") == {"a", "7"}


def test_chs_loadtest_narratives(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("  plain text line  \n\n" + json.dumps({"narrative": SEPARATED}, ensure_ascii=False) + "\n"
                    + json.dumps({"id": 1}) + "\n{broken\n", encoding="utf-8")
    assert load_narratives(str(path)) == ["plain text line", SEPARATED, '{"id": 1}', "{broken"]
    assert load_narratives(None) == list(FALLBACK_NARRATIVES)
    with pytest.raises(OSError):
        load_narratives(str(tmp_path / "absent.txt"))


def test_chs_evaluate_labelled(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text("\n" + json.dumps({"narrative": SEPARATED, **LABELS}, ensure_ascii=False) + "\n",
                    encoding="utf-8-sig")
    assert read_labelled(path) == [{"narrative": SEPARATED, **LABELS}]


@pytest.mark.parametrize("content, message", [
    ("\n{oops\n", "bad.jsonl:2: not JSON (Expecting property name enclosed in double quotes)"),
    ("[1]\n", "bad.jsonl:1: expected a JSON object"),
    (json.dumps({"narrative": "x", "main_category": "VANE"}) + "\n", "bad.jsonl:1: missing sub_category"),
    (json.dumps({"narrative": " ", **LABELS}) + "\n", "bad.jsonl:1: 'narrative' must be a non-empty string"),
    ("\n\n", "bad.jsonl holds no labelled narratives"),
])
def test_chs_evaluate_names_the_bad_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        read_labelled(path)


def test_chs_evaluate_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="cannot read .*absent.jsonl: No such file"):
        read_labelled(tmp_path / "absent.jsonl")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"narrative": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_labelled(latin)
