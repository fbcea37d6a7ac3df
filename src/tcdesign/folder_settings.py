"""The settings an output folder's results were made with, kept beside them.

generate, csp and screen resume in their ``--out`` folder: a rerun skips every finished id. A
rerun with other settings would then hand back the old results as if they were the new ones, or
mix both in one table. Each command therefore keeps the settings that shape its results in a
JSON file in the folder and refuses to add to results made with others. (``tcdesign run``
keeps its settings in run.json, with rules of its own for what may change on a resume.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tcdesign import jsonio
from tcdesign.data.io import InputError


def changed_settings(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each key both dictionaries hold with different values. A key
    only one of them has (a setting an older or newer tcdesign does not know) is not a change."""
    return [
        f"{key}: {previous[key]!r} -> {current[key]!r}"
        for key in current
        if key in previous and previous[key] != current[key]
    ]


def check_folder_settings(
    out_dir: Path, name: str, settings: dict[str, Any], has_results: bool, remedy: str
) -> None:
    """Refuse to add to ``out_dir``'s results with other settings than made them, then record
    ``settings`` in ``out_dir/name``.

    When results exist (``has_results``) and ``out_dir/name`` holds a different value for a key
    of ``settings``, InputError names every change and ends with ``remedy`` (what the user can
    do). An unreadable settings file beside results is an InputError too: the results cannot be
    told apart from ones made with other settings. A folder without the file (made by an older
    tcdesign) is taken as it is. The file is written atomically.
    """
    out_dir = Path(out_dir)
    path = out_dir / name
    current = json.loads(jsonio.dumps(settings))  # as it reads back: tuples become lists
    if has_results and path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{path} cannot be read ({exc}); it records the settings of the results in "
                f"{out_dir}: restore it, or delete it to go on with the settings given now"
            ) from None
        if not isinstance(previous, dict):
            raise InputError(f"{path} does not hold a JSON object; restore or delete it")
        changes = changed_settings(previous, current)
        if changes:
            raise InputError(
                f"{out_dir} holds results made with other settings ({'; '.join(changes)}); {remedy}"
            )
    jsonio.write_json(path, current)
