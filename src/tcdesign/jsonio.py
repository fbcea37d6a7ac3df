"""Strict JSON for every file tcdesign writes: NaN and infinities become null (Python's json
module would write the non-standard tokens NaN and Infinity, which strict readers reject), and
numpy scalars, arrays and paths become plain JSON values."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None and numpy types and paths made
    plain, recursively through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_ready` (``value``); raises ValueError rather than write NaN."""
    return json.dumps(json_ready(value), allow_nan=False, **kwargs)


def write_json(path: Path, value: Any, indent: int | None = 2) -> None:
    """Write ``value`` to ``path`` as strict JSON, whole or not at all: the text goes to a
    sibling ``.partial`` file that then replaces ``path``, so a kill mid-write keeps the
    previous file."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.partial")
    try:
        partial.write_text(dumps(value, indent=indent) + "\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def drop_partial_line(path: Path, chunk: int = 1 << 16) -> None:
    """Cut a last line that a killed run left unfinished, so appended rows start on a new line.

    The file is truncated in place (``os.truncate``): the finished rows before it are never
    rewritten, so a kill at any moment loses at most the unfinished line.
    """
    if not path.is_file():
        return
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        keep, end = 0, size
        while end > 0:  # the last newline, read backwards in chunks
            start = max(0, end - chunk)
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
    os.truncate(path, keep)


def read_keyed_results(
    path: Path, float_fields: tuple[str, ...] = ()
) -> dict[tuple[str, str], dict[str, Any]]:
    """``(id, key) -> result`` from a JSON-lines cache whose lines are ``{"id", "key",
    "result"}`` (the per-candidate stages of screening); a torn line, from a run killed while
    writing, is skipped, and null in ``float_fields`` is read back as NaN."""
    cached: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.is_file():
        return cached
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        result = entry["result"]
        for name in float_fields:
            result[name] = math.nan if result.get(name) is None else result[name]
        cached[(entry["id"], entry["key"])] = result
    return cached
