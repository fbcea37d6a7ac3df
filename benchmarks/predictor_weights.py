"""Weighting the high-Tc crystals in the loss: does it help, judged out of fold on train?

Tc is skewed (median 1.8 K, tail to 33 K) and the crystals above 5 K are the ones screening
cares about. Here each crystal's squared error on log(1 + Tc) is weighted by 1 + Tc / tau
(normalised within each batch) in members trained exactly as the bundled ones (the settings
of ``predictor_auxiliary.py``: ALIGNN 2 + 2 layers, width 64, composition descriptors, 40
epochs, best epoch on val). Val alone rests on 105 crystals, 32 of them above 5 K, and moved by
0.1-0.4 in precision between models that are equally good elsewhere; so the train split is cut
into five folds, a member is trained on four (epoch chosen on val) and predicts the fifth, and
the out-of-fold predictions of all 846 crystals (about 250 above 5 K) give MAE, precision and
recall at 5 K. The five fold members' mean on val is reported beside it.
About 3 min per member on one core; the result file keeps finished members, so a killed run
resumes.

    python benchmarks/predictor_weights.py [--tau 5] [--folds 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from predictor_auxiliary import EPOCHS, resumable_result, split, train_member

from tcdesign.predict.dataset import GraphDataset

RESULTS = Path(__file__).parent / "results" / "predictor_weights.json"
THRESHOLD = 5.0  # K


def subset(data: GraphDataset, indices: np.ndarray) -> GraphDataset:
    """The crystals ``indices`` of ``data``, graphs and descriptors shared, not rebuilt."""
    part = copy.copy(data)
    part.graphs = [data.graphs[i] for i in indices]
    part.targets = data.targets[indices]
    part.descriptors = data.descriptors[indices]
    return part


def scores(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """MAE, precision and recall above THRESHOLD, and precision at recall 0.5 by ranking."""
    above = predicted > THRESHOLD
    positives = truth > THRESHOLD
    order = np.argsort(-predicted)
    found = np.cumsum(positives[order])
    half = int(np.searchsorted(found, 0.5 * positives.sum()))  # first rank reaching recall 0.5
    return {
        "mae": float(np.abs(predicted - truth).mean()),
        "precision": float(positives[above].mean()) if above.any() else None,
        "recall": float(positives[above].sum() / positives.sum()),
        "n_predicted_above": int(above.sum()),
        "precision_at_recall_0.5": float(found[half] / (half + 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau", type=float, default=5.0, help="weight 1 + Tc / tau (K)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds on train")
    parser.add_argument("--seed", type=int, default=0, help="fold assignment and member seed")
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path (resumable)")
    args = parser.parse_args()
    out, result = resumable_result(args.out)
    (train, _), (val, _) = split("train"), split("val")
    truth = np.asarray(train.targets, dtype=np.float64)
    val_truth = np.asarray(val.targets, dtype=np.float64)
    fold_of = np.random.default_rng(args.seed).permutation(len(train)) % args.folds
    variants = {"unweighted": None, f"1 + Tc/{args.tau:g}": 1.0 + truth / args.tau}
    for variant, weights in variants.items():
        for fold in range(args.folds):
            key = f"{variant} | fold {fold} of {args.folds} | seed {args.seed}"
            if key in result["members"]:
                continue
            fit, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
            started = time.perf_counter()
            mae, val_predictions, held_predictions = train_member(
                subset(train, fit),
                val,
                None,
                0.0,
                args.seed + fold,
                None if weights is None else weights[fit],
                subset(train, held),
            )
            result["members"][key] = {
                "val_mae": mae,
                "seconds": time.perf_counter() - started,
                "val_predictions": val_predictions,
                "held_out": held.tolist(),
                "held_out_predictions": held_predictions,
            }
            out.write_text(json.dumps(result, indent=1))
            print(f"{key}: val MAE {mae:.3f} K, {time.perf_counter() - started:.0f} s")
    summary = {}
    for variant in variants:
        rows = [
            result["members"][f"{variant} | fold {f} of {args.folds} | seed {args.seed}"]
            for f in range(args.folds)
        ]
        out_of_fold = np.zeros(len(train))
        for row in rows:
            out_of_fold[row["held_out"]] = row["held_out_predictions"]
        val_mean = np.mean([row["val_predictions"] for row in rows], axis=0)
        summary[variant] = {
            "out_of_fold_train": scores(out_of_fold, truth),
            "val_mean_of_fold_members": scores(val_mean, val_truth),
            "member_val_mae": [round(row["val_mae"], 3) for row in rows],
        }
    result.update(
        summary=summary,
        settings={"tau": args.tau, "folds": args.folds, "seed": args.seed, "epochs": EPOCHS},
        machine={"python": platform.python_version(), "torch": torch.__version__},
    )
    out.write_text(json.dumps(result, indent=1))
    header = ("loss weights", "where", "MAE (K)", "P / R > 5 K", "P at R 0.5")
    print("{:<14} {:<12} {:>8} {:>12} {:>11}".format(*header))
    for variant, row in summary.items():
        for where, key in (("train OOF", "out_of_fold_train"), ("val", "val_mean_of_fold_members")):
            s = row[key]
            pr = f"{s['precision'] or 0:.2f} / {s['recall']:.2f}"
            print(
                f"{variant:<14} {where:<12} {s['mae']:>8.3f} {pr:>12} "
                f"{s['precision_at_recall_0.5']:>11.2f}"
            )


if __name__ == "__main__":
    main()
