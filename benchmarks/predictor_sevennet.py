"""Frozen SevenNet-0 features as a Tc predictor: does another pretrained potential beat ours?

Each bundled train and val crystal goes once through SevenNet-0 (weights in its wheel, offline).
The scalar channels after each of its five interaction blocks are pooled over the atoms (mean,
std, max), next to its energy per atom, largest force, mean stress components and per-atom
energies. Gradient boosting on log(1 + Tc) is then fitted on train and scored on val, with and
without the composition descriptors of the bundled ensemble, and by 5-fold cross-validation on
train. Writes benchmarks/results/predictor_sevennet.json and prints a table.

Needs two packages that tcdesign itself does not (keep torch pinned while installing):
    pip install sevenn scikit-learn torch==2.13.0
    python benchmarks/predictor_sevennet.py [--out PATH]
About 2 min for the features and 10 min for the fits on two cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.descriptors import descriptors

RESULTS = Path(__file__).parent / "results" / "predictor_sevennet.json"
SPLITS = ("train", "val")
THRESHOLD = 5.0  # K, the paper's screening rule
BLOCKS = 5  # SevenNet-0's interaction blocks
SCALARS = 128  # scalar (0e) channels, first in each block's irreps


def sevennet_features(structures: list, desc: str) -> np.ndarray:
    """(n, d) pooled SevenNet-0 features of each structure."""
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.calculator import SevenNetCalculator

    torch.set_num_threads(1)
    calculator = SevenNetCalculator("7net-0", device="cpu")
    modules = calculator.model._modules
    grabbed: dict[str, np.ndarray] = {}

    def keep(name: str, key: str):
        def hook(module, inputs, output) -> None:
            grabbed[name] = output[key].detach().numpy().copy()

        return hook

    names = [f"{i}_equivariant_gate" for i in range(BLOCKS)]
    for name in names:
        modules[name].register_forward_hook(keep(name, "x"))
    modules["rescale_atomic_energy"].register_forward_hook(keep("atomic", "atomic_energy"))
    rows = []
    for structure in tqdm(structures, desc=desc, unit="structure"):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calculator
        stress = atoms.get_stress()  # (6,) Voigt
        parts = [
            [
                atoms.get_potential_energy() / len(atoms),
                float(np.abs(atoms.get_forces()).max()),
                float(np.abs(stress[:3]).mean()),
                float(np.abs(stress[3:]).mean()),
            ]
        ]
        for name in names:
            x = grabbed[name][:, :SCALARS]  # (n_atoms, SCALARS)
            parts += [x.mean(0), x.std(0), x.max(0)]
        energies = grabbed["atomic"].ravel()
        parts.append([energies.mean(), energies.std(), energies.min(), energies.max()])
        rows.append(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]))
    return np.stack(rows)


def scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, precision and recall of the Tc > 5 K rule, best precision at recall >= 0.5."""
    positive = truth > THRESHOLD
    flagged = predicted > THRESHOLD
    order = np.argsort(-predicted)
    hits = np.cumsum(positive[order])
    recall = hits / max(positive.sum(), 1)
    precision = hits / np.arange(1, len(predicted) + 1)
    return {
        "mae_K": round(float(np.abs(predicted - truth).mean()), 4),
        "precision": round(float((flagged & positive).sum() / max(flagged.sum(), 1)), 4),
        "recall": round(float((flagged & positive).sum() / max(positive.sum(), 1)), 4),
        "best_precision_at_recall_0.5": round(float(precision[recall >= 0.5].max()), 4),
    }


def bundled_splits(
    name: str, featurize: Callable[[list, str], np.ndarray], order: tuple[str, ...] = SPLITS
) -> dict[str, dict[str, np.ndarray]]:
    """Per bundled split: Tc (``y``), ``featurize(records, split)`` under ``name`` and the
    composition descriptors of the bundled ensemble (``desc``); splits featurized in ``order``."""
    splits = {}
    for split in order:
        records = [r for r in read_structures(bundled_csv(split), ["tc"], True) if r.ok]
        splits[split] = {
            "y": np.array([r.targets["tc"] for r in records]),
            name: featurize(records, split),
            "desc": descriptors("composition", [r.structure for r in records]).astype(float),
        }
    return splits


def boosting(seed: int, max_iter: int, learning_rate: float):
    """The gradient boosting regressor of the predictor benchmarks (sklearn, imported here)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=15,
        min_samples_leaf=10,
        l2_regularization=1.0,
        random_state=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.model_selection import KFold
    except ImportError:
        sys.exit("needs scikit-learn and sevenn: pip install sevenn scikit-learn torch==2.13.0")

    start = time.perf_counter()
    splits = bundled_splits(
        "seven",
        lambda records, split: sevennet_features(
            [r.structure for r in records], f"SevenNet-0 ({split})"
        ),
    )
    feature_seconds = time.perf_counter() - start
    keep = splits["train"]["seven"].std(0) > 1e-8  # drop constant columns
    for split in splits.values():
        split["seven"] = split["seven"][:, keep]

    def model(seed: int) -> HistGradientBoostingRegressor:
        return boosting(seed, max_iter=400, learning_rate=0.03)

    train, val = splits["train"], splits["val"]
    results = {}
    for name, columns in (("sevennet", ["seven"]), ("sevennet+composition", ["seven", "desc"])):
        x_train = np.hstack([train[c] for c in columns])
        x_val = np.hstack([val[c] for c in columns])
        target = np.log1p(train["y"])
        predicted = np.expm1(model(0).fit(x_train, target).predict(x_val))
        cross = np.zeros(len(target))
        for fit, held in KFold(5, shuffle=True, random_state=0).split(x_train):
            cross[held] = model(0).fit(x_train[fit], target[fit]).predict(x_train[held])
        results[name] = {
            "columns": int(x_train.shape[1]),
            "val": scores(predicted, val["y"]),
            "cv5_train": scores(np.expm1(cross), train["y"]),
        }
    baseline = np.expm1(model(0).fit(train["desc"], np.log1p(train["y"])).predict(val["desc"]))
    results["composition only"] = {
        "columns": int(train["desc"].shape[1]),
        "val": scores(baseline, val["y"]),
    }
    report = {
        "description": __doc__.splitlines()[0],
        "command": "python benchmarks/predictor_sevennet.py",
        "model": "gradient boosting (sklearn HistGradientBoostingRegressor) on log(1 + Tc), seed 0",
        "results": results,
        "feature_seconds": round(feature_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "machine": platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'features':24s} {'val MAE':>8s} {'prec':>6s} {'rec':>6s} {'CV MAE':>8s}")
    for name, row in results.items():
        cv = row.get("cv5_train", {}).get("mae_K", float("nan"))
        v = row["val"]
        print(f"{name:24s} {v['mae_K']:8.3f} {v['precision']:6.2f} {v['recall']:6.2f} {cv:8.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
