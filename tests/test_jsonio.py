"""Strict JSON: NaN never reaches a file as the non-standard token NaN."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tcdesign import jsonio


def test_non_finite_numbers_become_null_at_any_depth():
    value = {
        "a": math.nan,
        "b": [1.0, np.float32("inf"), {"c": -math.inf}],
        "d": (np.int64(3), np.bool_(True)),
        "e": np.array([0.5, np.nan]),
        "f": Path("x/y.cif"),
        "g": "text",
    }
    text = jsonio.dumps(value)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "a": None,
        "b": [1.0, None, {"c": None}],
        "d": [3, True],
        "e": [0.5, None],
        "f": "x/y.cif",
        "g": "text",
    }


def test_what_json_cannot_hold_is_still_an_error():
    with pytest.raises(TypeError):
        jsonio.dumps({"set": {1, 2}})


def test_write_json_replaces_the_file_whole(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state.json"
    jsonio.write_json(path, {"a": math.nan, "b": (1, 2)})
    assert json.loads(path.read_text()) == {"a": None, "b": [1, 2]}
    assert path.read_text().endswith("\n")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jsonio.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        jsonio.write_json(path, {"a": 2})
    # the previous file is whole and no partial file is left behind
    assert json.loads(path.read_text()) == {"a": None, "b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


class KilledError(Exception):
    """A kill of the process, simulated."""


def test_cutting_a_partial_line_never_rewrites_the_finished_rows(tmp_path, monkeypatch):
    def killed(*args, **kwargs):  # a kill while the file would be rewritten
        raise KilledError

    monkeypatch.setattr(Path, "write_bytes", killed)
    monkeypatch.setattr(Path, "write_text", killed)
    rows = '{"id": "a", "status": "ok"}\n{"id": "b", "status": "failed"}\n'
    path = tmp_path / "progress.jsonl"
    with path.open("w") as handle:
        handle.write(rows + '{"id": "c", "status": "o')
    jsonio.drop_partial_line(path)
    assert path.read_text() == rows
    jsonio.drop_partial_line(path)  # a complete file stays as it is
    assert path.read_text() == rows
    with path.open("a") as handle:  # the last newline is found also several chunks back
        handle.write('{"id": "c", "status": "o')
    jsonio.drop_partial_line(path, chunk=3)
    assert path.read_text() == rows
    with path.open("w") as handle:
        handle.write('{"id": "c"')
    jsonio.drop_partial_line(path)
    assert path.read_text() == ""


def test_keyed_results_skip_torn_lines_and_read_null_as_nan(tmp_path):
    from tcdesign.jsonio import dumps, read_keyed_results

    path = tmp_path / "cache.jsonl"
    assert read_keyed_results(path) == {}
    lines = [
        dumps({"id": "a", "key": "k1", "result": {"x": float("nan"), "y": 1.0}}),
        dumps({"id": "a", "key": "k2", "result": {"x": 2.0, "y": None}}),
        '{"id": "b", "key": "k1", "res',  # killed while writing
    ]
    path.write_text("\n".join(lines))
    cached = read_keyed_results(path, ("x",))
    assert set(cached) == {("a", "k1"), ("a", "k2")}
    assert math.isnan(cached[("a", "k1")]["x"]) and cached[("a", "k2")]["y"] is None
