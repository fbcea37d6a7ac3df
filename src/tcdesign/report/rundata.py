"""Read a run folder (the contract between ``tcdesign run`` and the report) into tables.

Layout read (any part may be missing; the report shows what exists and says what does not)::

    DIR/run.json                  optional: settings, methods, seconds, skipped_verify, ...
    DIR/<method>/generated.csv    id, formula, cif, method, status (ok|broken|invalid), error, ...
    DIR/<method>/screened.csv     id, formula, tc, tc_std, e_form, gap, e_hull, spacegroup, novel,
                                  passed, status, error, tc_unrelaxed, tc_unrelaxed_std,
                                  relaxed_cif (relative to DIR/<method>), ...
    DIR/verify/verify.csv         id, formula, lambda, omega_log_K, tc_K, min_freq_cm1,
                                  dynamically_stable, converged, status, error, folder, method,
                                  source_id (id = f"{method}-{source_id}")
    DIR/verify/<folder>/result.json, alpha2F.csv, phonon_dos.csv

A plain folder with generated.csv and/or screened.csv at its top level (the output of
``tcdesign generate`` or ``tcdesign screen``) is one method, named after its ``method`` column or
"run".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tcdesign.data.io import InputError

GENERATED_CSV = "generated.csv"
SCREENED_CSV = "screened.csv"
VERIFY_CSV = "verify.csv"
RUN_JSON = "run.json"
SCREEN_SETTINGS_JSON = "screen_settings.json"  # tcdesign screen's per-candidate settings
VERIFY_DIR = "verify"
DEFAULT_TC_MIN = 5.0  # K; the paper's screening rule, used when run.json does not set tc_min
METHOD_ORDER = ("cdvae", "substitution")  # known methods first, in this order
ID_COLUMNS = {"id": str, "source_id": str, "formula": str, "method": str, "duplicate_of": str}
TRUE_WORDS = {"true", "1", "yes", "y", "t"}


@dataclass
class MethodRun:
    """One generator's part of a run: its folder and the tables found in it (None = missing)."""

    name: str
    folder: Path
    generated: pd.DataFrame | None = None
    screened: pd.DataFrame | None = None
    relaxed: bool = True  # False: screened without relaxation (tcdesign screen --no-relax)


@dataclass
class RunData:
    """Everything the report reads from a run folder."""

    folder: Path
    info: dict[str, Any]  # run.json's content ({} when absent)
    methods: list[MethodRun]
    verify: pd.DataFrame | None = None  # with method and source_id filled for every row
    verify_folder: Path | None = None
    notes: list[str] = field(default_factory=list)  # what is missing, what was inferred

    @property
    def settings(self) -> dict[str, Any]:
        settings = self.info.get("settings")
        return settings if isinstance(settings, dict) else {}

    @property
    def tc_min(self) -> float:
        """The screening threshold Tc (K) of the run: run.json's ``tc_min``, else 5 K."""
        value = find_setting(self.settings, "tc_min")
        try:
            value = float(value)
        except (TypeError, ValueError):
            return DEFAULT_TC_MIN
        return value if math.isfinite(value) else DEFAULT_TC_MIN

    def method(self, name: str) -> MethodRun | None:
        return next((m for m in self.methods if m.name == name), None)


def find_setting(settings: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` in a settings dict, searched depth-first in nested sections."""
    if key in settings:
        return settings[key]
    for value in settings.values():
        if isinstance(value, Mapping):
            found = find_setting(value, key)
            if found is not None:
                return found
    return None


def as_bool(values: pd.Series) -> pd.Series:
    """A column of True/False, 1/0, "True"/"false" (as written by pandas or by hand) as bools;
    anything else (NaN, empty) is False."""

    def convert(value: object) -> bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, int | float | np.integer | np.floating):
            return bool(np.isfinite(value) and value != 0)
        return str(value).strip().lower() in TRUE_WORDS

    return values.map(convert).astype(bool)


def as_float(values: pd.Series) -> pd.Series:
    """A column as floats; anything that is not a number becomes NaN."""
    return pd.to_numeric(values, errors="coerce").astype(float)


def read_table(path: Path, required: Iterable[str] = ("id",)) -> pd.DataFrame | None:
    """A CSV of the run, or None when the file is empty (a stage that just started).

    Raises :class:`InputError` naming the file when it cannot be parsed or lacks a column.
    """
    try:
        frame = pd.read_csv(path, dtype=ID_COLUMNS, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable CSV ({reason})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: no {', '.join(map(repr, missing))} column")
    for column in ("status", "error", "formula"):
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def _read_info(folder: Path, notes: list[str]) -> dict[str, Any]:
    path = folder / RUN_JSON
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{RUN_JSON} could not be read ({exc}); run settings are not shown.")
        return {}
    if not isinstance(info, dict):
        notes.append(f"{RUN_JSON} does not hold a JSON object; run settings are not shown.")
        return {}
    return info


def _method_name(frames: Iterable[pd.DataFrame | None]) -> str:
    for frame in frames:
        if frame is not None and "method" in frame.columns:
            names = [str(v) for v in frame.method.dropna().unique() if str(v).strip()]
            if names:
                return names[0]
    return "run"


def _method_folders(folder: Path, info: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """(name, folder) of every method of the run, in run.json's order or known methods first."""
    found = {
        p.name: p
        for p in folder.iterdir()
        if p.is_dir()
        and p.name != VERIFY_DIR
        and ((p / GENERATED_CSV).is_file() or (p / SCREENED_CSV).is_file())
    }
    listed = info.get("methods")
    order = [str(m) for m in listed] if isinstance(listed, list) else []
    order += [m for m in METHOD_ORDER if m not in order]
    names = [m for m in order if m in found]
    names += sorted(m for m in found if m not in names)
    return [(name, found[name]) for name in names]


def _load_method(name: str, folder: Path) -> MethodRun:
    run = MethodRun(name, folder)
    if (folder / GENERATED_CSV).is_file():
        run.generated = read_table(folder / GENERATED_CSV, ("id", "status"))
    if (folder / SCREENED_CSV).is_file():
        run.screened = read_table(folder / SCREENED_CSV, ("id", "status"))
    try:
        screen_settings = json.loads((folder / SCREEN_SETTINGS_JSON).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        screen_settings = None
    if isinstance(screen_settings, dict) and screen_settings.get("relax") is False:
        run.relaxed = False
    return run


def _attribute_verify(verify: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Fill ``method`` and ``source_id`` of every verify row (from the columns when present, else
    from the ``<method>-<source_id>`` id, else the single method of the run)."""
    verify = verify.copy()
    methods, sources = [], []
    has_method = "method" in verify.columns
    has_source = "source_id" in verify.columns
    for _, row in verify.iterrows():
        rid = str(row["id"])
        method = str(row["method"]) if has_method and isinstance(row["method"], str) else ""
        source = str(row["source_id"]) if has_source and isinstance(row["source_id"], str) else ""
        if not method:
            prefix = next((n for n in names if rid.startswith(f"{n}-")), None)
            if prefix is not None:
                method = prefix
                source = source or rid[len(prefix) + 1 :]
            elif len(names) == 1:
                method = names[0]
        if method and not source:
            source = rid[len(method) + 1 :] if rid.startswith(f"{method}-") else rid
        methods.append(method or "unknown")
        sources.append(source or rid)
    verify["method"] = methods
    verify["source_id"] = sources
    if "formula" not in verify.columns:  # a hand-made or partial verify.csv
        verify["formula"] = ""
    for column in ("lambda", "omega_log_K", "tc_K", "min_freq_cm1"):
        verify[column] = as_float(verify[column]) if column in verify.columns else math.nan
    for column in ("dynamically_stable", "converged"):
        if column in verify.columns:
            verify[column] = as_bool(verify[column])
        else:
            verify[column] = False
    return verify


def verify_result_folder(run: RunData, row: Mapping[str, Any]) -> Path | None:
    """The folder of one verify row's result.json (as written, under DIR/verify, or by id)."""
    if run.verify_folder is None:
        return None
    from tcdesign.verify.executor import safe_name

    candidates = []
    written = row.get("folder")
    if isinstance(written, str) and written.strip():
        # the folder inside this run first (the run may have been moved or copied)
        candidates.append(run.verify_folder / Path(written).name)
        if not Path(written).is_absolute():
            candidates += [run.verify_folder / written, run.folder / written]
        candidates.append(Path(written))
    candidates.append(run.verify_folder / safe_name(str(row.get("id", ""))))
    return next((c for c in candidates if (c / "result.json").is_file()), None)


def load_run(folder: str | Path) -> RunData:
    """Read a run folder; raises :class:`InputError` when it holds nothing to report."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    notes: list[str] = []
    info = _read_info(folder, notes)
    top_level = (folder / GENERATED_CSV).is_file() or (folder / SCREENED_CSV).is_file()
    if top_level:
        plain = _load_method("run", folder)
        plain.name = _method_name([plain.generated, plain.screened])
        methods = [plain]
    else:
        methods = [_load_method(name, path) for name, path in _method_folders(folder, info)]
        listed = info.get("methods")
        for name in listed if isinstance(listed, list) else []:
            if str(name) not in {m.name for m in methods}:
                notes.append(
                    f"{name}: a method of this run (run.json) with no output in the folder yet "
                    f"(no {name}/{GENERATED_CSV} or {SCREENED_CSV}); it is not in the report."
                )
    verify_folder = folder / VERIFY_DIR
    verify = None
    if (verify_folder / VERIFY_CSV).is_file():
        verify = read_table(verify_folder / VERIFY_CSV, ("id", "status"))
    has_tables = any(m.generated is not None or m.screened is not None for m in methods)
    if not has_tables and (verify is None or not len(verify)):
        raise InputError(
            f"{folder}: nothing to report (no {GENERATED_CSV} or {SCREENED_CSV} in it or in a "
            f"method subfolder, and no {VERIFY_DIR}/{VERIFY_CSV} with rows); give the --out "
            "folder of 'tcdesign run', 'generate' or 'screen'"
        )
    if verify is not None:
        verify = _attribute_verify(verify, [m.name for m in methods])
    return RunData(
        folder=folder,
        info=info,
        methods=methods,
        verify=verify,
        verify_folder=verify_folder if verify is not None else None,
        notes=notes,
    )
