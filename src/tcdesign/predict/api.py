"""Library entry points behind ``tcdesign predict`` and ``tcdesign train predictor``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from tcdesign.data.io import TC_TARGET, InputError, StructureRecord, read_structures
from tcdesign.predict.alignn import ALIGNNConfig
from tcdesign.predict.dataset import GraphDataset
from tcdesign.predict.ensemble import Ensemble, train_ensemble
from tcdesign.predict.features import unsupported_reason
from tcdesign.predict.train import TrainData, TrainSettings

BUNDLED_DATA = "data/bundled"  # train.csv and val.csv inside the package


def bundled_csv(split: str) -> Path:
    """Path of the bundled JARVIS superconductor split ``train`` or ``val``."""
    path = resources.files("tcdesign").joinpath(f"{BUNDLED_DATA}/{split}.csv")
    return Path(str(path))


def report_bad_rows(
    records: Sequence[StructureRecord], stream=None, limit: int | None = None, source: str = ""
) -> None:
    """One line per bad row (and per warning) on ``stream`` (stderr): id and reason.

    With ``limit``, at most that many lines, then one line counting the rest.
    """
    stream = stream or sys.stderr
    lines = [
        f"{r.id}: {r.error}" if r.error is not None else f"{r.id}: warning: {r.warning}"
        for r in records
        if r.error is not None or r.warning is not None
    ]
    prefix = f"tcdesign: {source}: " if source else "tcdesign: "
    for line in lines[:limit]:
        print(prefix + line, file=stream)
    if limit is not None and len(lines) > limit:
        print(f"{prefix}... and {len(lines) - limit} more rows left out", file=stream)


def unsupported_as_bad(
    records: Sequence[StructureRecord], reason: Callable[[Structure], str | None]
) -> list[StructureRecord]:
    """``records`` with each good one that ``reason`` rejects turned into a bad row."""
    out = []
    for record in records:
        why = reason(record.structure) if record.ok else None
        out.append(record if why is None else replace(record, error=why))
    return out


def predict_records(
    records: Sequence[StructureRecord],
    ensemble: Ensemble,
    batch_size: int = 32,
    progress: bool = False,
) -> pd.DataFrame:
    """Predictions for good records, status rows for bad ones, in input order.

    Columns: ``id, formula, <target>, <target>_std, status, error`` and, when the input carried
    reference values of the target, ``<target>_ref``.
    """
    target = ensemble.target
    records = unsupported_as_bad(records, ensemble.unsupported)
    good = [r for r in records if r.ok]
    mean = std = np.zeros(0)
    if good:
        mean, std = ensemble.predict([r.structure for r in good], batch_size, progress)
    has_ref = any(target in r.targets for r in records)
    rows = []
    k = 0  # position among the good records
    for record in records:
        row = {"id": record.id, "formula": record.formula}
        if record.ok:
            row.update(
                {
                    target: float(mean[k]),
                    f"{target}_std": float(std[k]),
                    "status": "ok",
                    "error": record.warning or "",
                }
            )
            k += 1
        else:
            row.update(
                {target: np.nan, f"{target}_std": np.nan, "status": "error", "error": record.error}
            )
        if has_ref:
            row[f"{target}_ref"] = record.targets.get(target, np.nan)
        rows.append(row)
    columns = ["id", "formula", target, f"{target}_std", "status", "error"]
    if has_ref:
        columns.append(f"{target}_ref")
    # explicit columns: an input with no rows still gives a table with the header
    return pd.DataFrame(rows, columns=columns)


def predict_file(
    input_path: str | Path,
    out_csv: str | Path,
    model: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
    device: str | None = None,
    members: int | None = None,
) -> pd.DataFrame:
    """Read an input (CSV, CIF/POSCAR or folder), predict, write ``out_csv``; return the table.
    ``device``: where the networks run (cpu, cuda, cuda:N, mps, auto; default cpu);
    ``members``: use the first n ensemble members (default all)."""
    from tcdesign.devices import resolve_device

    out_csv = Path(out_csv)
    if out_csv.is_dir():  # found before any work, not when writing the table at the end
        raise InputError(f"{out_csv}: --out is a folder; give the path of a CSV file")
    target_device = resolve_device(device)  # a missing GPU is an error before any work
    ensemble = Ensemble.load(model, members).to(target_device)
    records = read_structures(input_path, [ensemble.target])
    report_bad_rows(records)
    table = predict_records(records, ensemble, batch_size, progress)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False, float_format="%.4f")
    return table


def load_training_data(
    train_csv: str | Path,
    val_csv: str | Path,
    target: str,
    config: ALIGNNConfig,
    progress: bool = True,
) -> TrainData:
    """Read both CSVs (rows without a usable target are reported and left out) and build graphs."""
    splits = {}
    for name, path in (("train", train_csv), ("val", val_csv)):
        records = read_structures(path, [target], require_targets=True)
        records = unsupported_as_bad(
            records, partial(unsupported_reason, config.pretrained_features)
        )
        report_bad_rows(records, limit=5, source=Path(path).name)
        good = [r for r in records if r.ok]
        if len(good) < 2:
            raise InputError(f"{path}: fewer than 2 usable rows with target {target!r}")
        negative = [r.id for r in good if r.targets[target] < 0]
        if config.transform == "log1p" and name == "train" and negative:
            # log1p clamps them to 0: the model would silently learn 0 for every one of them
            raise InputError(
                f"{path}: --transform log1p needs {target} >= 0, but {len(negative)} rows are "
                f"negative (e.g. {negative[0]}); use --transform none"
            )
        splits[name] = GraphDataset(
            [r.structure for r in good],
            [r.targets[target] for r in good],
            config.graph_settings,
            config.pretrained_features,
            config.descriptors,
            progress,
        )
        splits[f"{name}_rows"] = (len(good), len(records))
    meta = {
        "data": {
            name: {
                "path": str(path),
                "rows_used": splits[f"{name}_rows"][0],
                "rows": splits[f"{name}_rows"][1],
            }
            for name, path in (("train", train_csv), ("val", val_csv))
        }
    }
    return TrainData(splits["train"], splits["val"], target, meta)


def train_predictor(
    train_csv: str | Path,
    val_csv: str | Path,
    out_dir: str | Path,
    config: ALIGNNConfig,
    settings: TrainSettings,
    n_members: int = 5,
    resume: bool = True,
) -> Ensemble:
    """Train an ensemble on ``train_csv`` (early stopping on ``val_csv``) into ``out_dir``."""
    data = load_training_data(train_csv, val_csv, config.target, config, settings.progress)
    threshold = 5.0 if config.target == TC_TARGET else None
    return train_ensemble(
        data, config, replace(settings), Path(out_dir), n_members, resume, threshold
    )
