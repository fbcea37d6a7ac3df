"""The settings file an output folder keeps beside its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcdesign.data.io import InputError
from tcdesign.folder_settings import changed_settings, check_folder_settings

NAME = "settings.json"
REMEDY = "choose another --out"


def test_first_run_records_the_settings_as_they_read_back(tmp_path: Path) -> None:
    check_folder_settings(tmp_path, NAME, {"shape": (2, 3), "lr": 0.1}, False, REMEDY)
    assert json.loads((tmp_path / NAME).read_text()) == {"shape": [2, 3], "lr": 0.1}
    assert not list(tmp_path.glob("*.partial"))
    # a tuple and the list it became are the same setting on a rerun
    check_folder_settings(tmp_path, NAME, {"shape": (2, 3), "lr": 0.1}, True, REMEDY)


def test_a_change_beside_results_names_every_changed_key(tmp_path: Path) -> None:
    check_folder_settings(tmp_path, NAME, {"a": 1, "b": "x", "c": True}, False, REMEDY)
    with pytest.raises(InputError) as error:
        check_folder_settings(tmp_path, NAME, {"a": 2, "b": "y", "c": True}, True, REMEDY)
    message = str(error.value)
    assert "a: 1 -> 2" in message and "b: 'x' -> 'y'" in message and "c:" not in message
    assert message.endswith(REMEDY)
    # the refused settings did not replace the recorded ones
    assert json.loads((tmp_path / NAME).read_text()) == {"a": 1, "b": "x", "c": True}


def test_without_results_new_settings_replace_the_old(tmp_path: Path) -> None:
    check_folder_settings(tmp_path, NAME, {"a": 1}, False, REMEDY)
    check_folder_settings(tmp_path, NAME, {"a": 2}, False, REMEDY)
    assert json.loads((tmp_path / NAME).read_text()) == {"a": 2}


def test_keys_only_one_side_knows_are_not_changes(tmp_path: Path) -> None:
    (tmp_path / NAME).write_text(json.dumps({"a": 1, "retired": 5}))
    check_folder_settings(tmp_path, NAME, {"a": 1, "new_setting": 0.5}, True, REMEDY)
    assert changed_settings({"a": 1}, {"a": 1, "b": 2}) == []
    assert changed_settings({"a": 1.0}, {"a": 1.5}) == ["a: 1.0 -> 1.5"]


def test_a_folder_from_before_the_settings_file_is_taken_as_it_is(tmp_path: Path) -> None:
    check_folder_settings(tmp_path, NAME, {"a": 1}, True, REMEDY)
    assert json.loads((tmp_path / NAME).read_text()) == {"a": 1}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe{"])
def test_an_unreadable_settings_file_beside_results_is_refused(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / NAME
    path.write_bytes(content)
    with pytest.raises(InputError, match=NAME):
        check_folder_settings(tmp_path, NAME, {"a": 1}, True, REMEDY)
    # without results there is nothing to protect: the file is rewritten
    check_folder_settings(tmp_path, NAME, {"a": 1}, False, REMEDY)
    assert json.loads(path.read_text()) == {"a": 1}
