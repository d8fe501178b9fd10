"""``--tags``: one rule for every command (extract/coco, label/studio, label/start)."""

from __future__ import annotations

import pytest

from antgo_mlflow.errors import UsageError
from antgo_mlflow.tools.tags import class_names, parse_tags


def test_pairs_plain_names_and_shared_indices():
    assert parse_tags("Car:0,Train:1") == {"Car": 0, "Train": 1}
    assert parse_tags(" Car , Train ") == {"Car": 0, "Train": 1}
    merged = parse_tags("car:0,truck:0,person:1")
    assert merged == {"car": 0, "truck": 0, "person": 1}
    assert class_names(merged) == ["car", "person"]
    assert class_names({"a": 2}) == ["0", "1", "a"]
    assert parse_tags(None) is None and parse_tags("") is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Car:0,Train", "every name an index"),
        ("Car:x", "not name:index"),
        ("Car:-1", "must be an integer >= 0"),
        ("Car:0,Car:1", "'Car' is given twice"),
        (":0", "empty category name"),
    ],
)
def test_bad_tags_name_the_flag_and_the_problem(text, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        parse_tags(text)
    assert str(info.value).startswith("--tags")


def test_a_dict_follows_the_same_rule():
    assert parse_tags({"a": 1}) == {"a": 1}
    with pytest.raises(UsageError, match=">= 0"):
        parse_tags({"a": -2})
