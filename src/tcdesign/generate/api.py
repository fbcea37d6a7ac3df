"""Library entry points behind ``tcdesign train generator`` (and, later, generate and csp)."""

from __future__ import annotations

import json
from pathlib import Path

from tcdesign.data.io import TC_TARGET, InputError, read_structures
from tcdesign.generate.cdvae import CDVAEConfig
from tcdesign.generate.data import CrystalDataset
from tcdesign.generate.train import GeneratorSettings, train_generator
from tcdesign.predict.api import report_bad_rows


def load_crystals(path: str | Path, max_atoms: int, progress: bool = False) -> CrystalDataset:
    """Usable structures of a CSV/CIF/folder with their Tc (NaN where absent).

    Rows with more atoms than the generator supports are reported and left out.
    """
    records = read_structures(path, [TC_TARGET])
    report_bad_rows(records, limit=5, source=Path(path).name)
    good = [r for r in records if r.ok]
    too_big = [r for r in good if len(r.structure) > max_atoms]
    if too_big:
        print(
            f"tcdesign: {Path(path).name}: {len(too_big)} structures with more than "
            f"{max_atoms} atoms left out (first: {too_big[0].id})"
        )
    good = [r for r in good if len(r.structure) <= max_atoms]
    if len(good) < 2:
        raise InputError(f"{path}: fewer than 2 usable structures")
    return CrystalDataset(
        [r.structure for r in good],
        [r.targets.get(TC_TARGET, float("nan")) for r in good],
        progress=progress,
    )


def train_generator_from_csv(
    train_csv: str | Path,
    val_csv: str | Path,
    out_dir: str | Path,
    config: CDVAEConfig,
    settings: GeneratorSettings,
    resume: bool = True,
) -> dict:
    """Train CDVAE on ``train_csv`` (val loss on ``val_csv``); returns metrics.json's content."""
    train = load_crystals(train_csv, config.max_atoms, settings.progress)
    val = load_crystals(val_csv, config.max_atoms, settings.progress)
    train_generator(train, val, config, settings, Path(out_dir), resume)
    return json.loads((Path(out_dir) / "metrics.json").read_text())
