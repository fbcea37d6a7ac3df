"""CHGNet phonon descriptors for Tc: does the softness of the lattice add to the composition?

McMillan's lambda grows as the phonons soften (lambda ~ eta / (M <omega^2>)), and JARVIS's
highest-Tc entries are often near a lattice instability. So each bundled train and val crystal
gets a finite-displacement phonon calculation with pretrained CHGNet (weights in its wheel,
offline) through phonopy: Niggli-reduced primitive cell, diagonal supercell at least 7 A wide in
every direction, 0.03 A displacements in both signs, force constants symmetrised, frequencies on
a Gamma-centred 8x8x8 mesh. Eight numbers describe the spectrum: the lowest and highest frequency
(THz, imaginary as negative), the mean, the rms, the logarithmic mean of the real modes
(omega_log's shape), the fraction of imaginary modes (< -0.2 THz), the fraction of soft ones
(-0.2 to 2 THz) and <1/f^2> over the real modes. Gradient boosting on log(1 + Tc) is then
fitted on train and scored on val, and by 5-fold cross-validation on train, for the composition
descriptors of the bundled ensemble with and without the phonon descriptors. Writes
benchmarks/results/predictor_phonons.json and prints a table. The phonon rows are kept in
benchmarks/results/phonon_features.csv as they are computed, so a killed run resumes where it
stopped.

Needs two packages that tcdesign itself does not (keep torch pinned while installing):
    pip install phonopy scikit-learn torch==2.13.0
    python benchmarks/predictor_phonons.py [--out PATH] [--features CSV]
About 5 s per crystal on one core (a few low-symmetry cells take minutes), 1.5 h for all 951.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from predictor_sevennet import THRESHOLD, boosting, bundled_splits, scores
from tqdm import tqdm

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.ensemble import Ensemble

RESULTS = Path(__file__).parent / "results" / "predictor_phonons.json"
FEATURES = Path(__file__).parent / "results" / "phonon_features.csv"
MIN_WIDTH = 7.0  # A, smallest supercell width
MESH = (8, 8, 8)
DISPLACEMENT = 0.03  # A
IMAGINARY = -0.2  # THz; below: an imaginary mode
SOFT = 2.0  # THz; between IMAGINARY and this: a soft mode
PHONON_COLUMNS = (
    "f_min",
    "f_max",
    "f_mean",
    "f_rms",
    "f_log",
    "frac_imag",
    "frac_soft",
    "inv_f2",
)


def supercell_multiples(matrix: np.ndarray, min_width: float = MIN_WIDTH) -> np.ndarray:
    """Smallest diagonal multiples that make every perpendicular width of the cell >= min_width."""
    volume = abs(np.linalg.det(matrix))
    widths = np.array(
        [
            volume / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3]))
            for i in range(3)
        ]
    )
    return np.maximum(1, np.ceil(min_width / widths)).astype(int)


def spectrum_descriptors(frequencies: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """The eight descriptors of a mesh of phonon frequencies (THz; (n_q, n_modes)) with the
    q-point weights (n_q,)."""
    f = frequencies.ravel()
    w = np.repeat(weights, frequencies.shape[1]).astype(float)
    w /= w.sum()
    real = f > -IMAGINARY  # modes above 0.2 THz
    w_real = w[real] / w[real].sum() if real.any() else w[real]
    return {
        "f_min": float(f.min()),
        "f_max": float(f.max()),
        "f_mean": float(np.sum(w * f)),
        "f_rms": float(np.sqrt(np.sum(w * f**2))),
        "f_log": float(np.exp(np.sum(w_real * np.log(f[real])))) if real.any() else 0.0,
        "frac_imag": float(w[f < IMAGINARY].sum()),
        "frac_soft": float(w[(f >= IMAGINARY) & (f < SOFT)].sum()),
        "inv_f2": float(np.sum(w_real * f[real] ** -2)) if real.any() else 0.0,
    }


def phonon_row(structure, model) -> dict[str, float]:
    """CHGNet phonon descriptors of one crystal (see the module docstring)."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    from pymatgen.core import Structure

    started = time.perf_counter()
    # Niggli: for a very oblique primitive cell (JVASP-21567, gamma = 161 deg) the diagonal
    # supercell needed 3x3x3 = 270 atoms instead of 90, and CHGNet's forces on 270 atoms of this
    # dense boride took more than 10 GB (the run was killed by the kernel, without a message)
    primitive = structure.get_primitive_structure().get_reduced_structure()
    matrix = primitive.lattice.matrix
    unit = PhonopyAtoms(
        symbols=[str(s) for s in primitive.species],
        cell=matrix,
        scaled_positions=primitive.frac_coords,
    )
    phonon = Phonopy(
        unit, supercell_matrix=np.diag(supercell_multiples(matrix)), primitive_matrix="P"
    )
    phonon.generate_displacements(distance=DISPLACEMENT, is_plusminus=True)
    cells = [
        Structure(c.cell, c.symbols, c.scaled_positions)
        for c in phonon.supercells_with_displacements
    ]
    predictions = model.predict_structure(cells, task="ef", batch_size=1)  # memory
    phonon.forces = np.array([p["f"] for p in predictions])
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    phonon.run_mesh(list(MESH), is_gamma_center=True)
    mesh = phonon.get_mesh_dict()
    row = spectrum_descriptors(mesh["frequencies"], mesh["weights"])
    row.update(
        natoms_prim=len(primitive),
        natoms_super=len(cells[0]),
        n_disp=len(cells),
        seconds=round(time.perf_counter() - started, 2),
    )
    return row


def phonon_features(records: list, path: Path, desc: str) -> np.ndarray:
    """(n, 8) phonon descriptors of ``records``; rows already in ``path`` are reused, new ones
    appended as they finish."""
    import torch
    from chgnet.model import CHGNet

    known: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    if path.exists():
        with path.open() as handle:
            reader = csv.DictReader(handle)
            known = {row["material_id"]: row for row in reader}
            header = list(reader.fieldnames or []) or None
    missing = [r for r in records if r.id not in known]
    if missing:
        torch.set_num_threads(1)
        model = CHGNet.load(verbose=False)
        with path.open("a", newline="") as handle:
            writer = None
            for record in tqdm(missing, desc=desc, unit="crystal"):
                row = {"material_id": record.id, **phonon_row(record.structure, model)}
                if writer is None:  # an existing file keeps its column order
                    writer = csv.DictWriter(handle, fieldnames=header or list(row))
                    if header is None:
                        writer.writeheader()
                writer.writerow(row)
                handle.flush()
                known[record.id] = {k: str(v) for k, v in row.items()}
    return np.array([[float(known[r.id][c]) for c in PHONON_COLUMNS] for r in records])


def second_stage(phonon_tc: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """The > 5 K rule on val for the bundled ensemble alone and with the phonon model as a second
    condition (as a screen could apply it to the few candidates that pass): precision, recall
    and how many crystals pass."""
    records = [r for r in read_structures(bundled_csv("val"), ["tc"], True) if r.ok]
    ensemble_tc = Ensemble.load(None).predict([r.structure for r in records])[0]
    rules = {
        "ensemble > 5 K": ensemble_tc > THRESHOLD,
        "ensemble > 5 K and phonons > 3 K": (ensemble_tc > THRESHOLD) & (phonon_tc > 3.0),
        "ensemble > 5 K and phonons > 5 K": (ensemble_tc > THRESHOLD) & (phonon_tc > THRESHOLD),
    }
    positive = truth > THRESHOLD
    return {
        name: {
            "passed": int(flagged.sum()),
            "precision": round(float((flagged & positive).sum() / max(flagged.sum(), 1)), 4),
            "recall": round(float((flagged & positive).sum() / positive.sum()), 4),
        }
        for name, flagged in rules.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path")
    parser.add_argument("--features", default=str(FEATURES), help="phonon rows CSV (resumable)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    try:
        import phonopy  # noqa: F401
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.model_selection import KFold
    except ImportError:
        sys.exit("needs phonopy and scikit-learn: pip install phonopy scikit-learn torch==2.13.0")

    start = time.perf_counter()
    splits = bundled_splits(
        "phon",
        lambda records, split: phonon_features(
            records, Path(args.features), f"CHGNet phonons ({split})"
        ),
        order=("val", "train"),
    )
    feature_seconds = time.perf_counter() - start

    def model(seed: int) -> HistGradientBoostingRegressor:
        return boosting(seed, max_iter=300, learning_rate=0.04)

    train, val = splits["train"], splits["val"]
    results: dict = {}
    val_predictions: dict[str, np.ndarray] = {}
    for name, columns in (
        ("composition", ["desc"]),
        ("phonons", ["phon"]),
        ("composition+phonons", ["desc", "phon"]),
    ):
        x_train = np.hstack([train[c] for c in columns])
        x_val = np.hstack([val[c] for c in columns])
        target = np.log1p(train["y"])
        seeds = range(5)  # boosting is nearly deterministic; seeds only shuffle the folds
        predicted = np.expm1(model(0).fit(x_train, target).predict(x_val)).clip(0)
        cv_scores = []
        for seed in seeds:
            cross = np.zeros(len(target))
            for fit, held in KFold(5, shuffle=True, random_state=seed).split(x_train):
                cross[held] = model(seed).fit(x_train[fit], target[fit]).predict(x_train[held])
            cv_scores.append(scores(np.expm1(cross).clip(0), train["y"]))
        cv_maes = [row["mae_K"] for row in cv_scores]
        val_predictions[name] = predicted
        results[name] = {
            "columns": int(x_train.shape[1]),
            "val": scores(predicted, val["y"]),
            "cv5_train_mae_K": round(float(np.mean(cv_maes)), 4),
            "cv5_train_mae_K_spread": round(float(np.std(cv_maes)), 4),
            # the > 5 K rule out of fold: 250 positives in train against 32 in val
            "cv5_train": {
                key: round(float(np.mean([row[key] for row in cv_scores])), 4)
                for key in ("precision", "recall", "best_precision_at_recall_0.5")
            },
        }
    results["second_stage_val"] = second_stage(val_predictions["phonons"], val["y"])
    report = {
        "description": __doc__.splitlines()[0],
        "command": "python benchmarks/predictor_phonons.py",
        "model": "gradient boosting (sklearn HistGradientBoostingRegressor) on log(1 + Tc)",
        "phonons": {
            "potential": "CHGNet (pretrained, bundled in its wheel)",
            "min_supercell_width_A": MIN_WIDTH,
            "mesh": list(MESH),
            "displacement_A": DISPLACEMENT,
        },
        "results": results,
        "feature_seconds": round(feature_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "machine": platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{'features':22s} {'val MAE':>8s} {'prec':>6s} {'rec':>6s} {'CV MAE':>8s} "
        f"{'CV prec':>8s} {'CV rec':>6s}"
    )
    for name, row in results.items():
        if name == "second_stage_val":
            continue
        v, c = row["val"], row["cv5_train"]
        print(
            f"{name:22s} {v['mae_K']:8.3f} {v['precision']:6.2f} {v['recall']:6.2f} "
            f"{row['cv5_train_mae_K']:8.3f} {c['precision']:8.2f} {c['recall']:6.2f}"
        )
    for name, row in results["second_stage_val"].items():
        print(
            f"val, {name}: {row['passed']} pass, precision {row['precision']:.2f}, "
            f"recall {row['recall']:.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
