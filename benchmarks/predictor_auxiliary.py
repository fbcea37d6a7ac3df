"""Auxiliary physics targets for the Tc network: does learning them beside Tc help?

A member of the bundled ensemble (ALIGNN, 2 + 2 layers, width 64, composition descriptors,
dropout 0.2, AdamW with weight decay 0.05, one-cycle peak 1e-3, batch 16, 40 epochs, best val
epoch) is trained with and without a second, linear head on its pooled crystal features that
predicts physical quantities of the same crystal: six CHGNet phonon descriptors
(benchmarks/results/phonon_features.csv, made by predictor_phonons.py) and the JARVIS formation
energy and E_hull (the bundled dft_labels.csv). Each is standardised on train; missing values
are masked out of the loss, which is the Tc loss plus ``--weight`` times the auxiliary one. The
auxiliary head is dropped after training, so a gain here would cost nothing when predicting.
Plain PyTorch loop, one thread; about 4 min per member on one core. Members already trained
are kept in the result file, so a killed run resumes.

    python benchmarks/predictor_auxiliary.py [--seeds 0 1 2] [--weight 0.5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from tcdesign.data.io import read_structures
from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.dataset import GraphDataset

RESULTS = Path(__file__).parent / "results" / "predictor_auxiliary.json"
PHONONS = Path(__file__).parent / "results" / "phonon_features.csv"
PHONON_COLUMNS = ("f_min", "f_mean", "f_log", "frac_imag", "frac_soft", "inv_f2")
DFT_COLUMNS = ("formation_energy_peratom", "ehull")
CONFIG = ALIGNNConfig(
    alignn_layers=2, gcn_layers=2, hidden=64, embedding=64, descriptors="composition", dropout=0.2
)
EPOCHS, BATCH, PEAK_LR, WEIGHT_DECAY = 40, 16, 1e-3, 0.05


def auxiliary_table() -> pd.DataFrame:
    """Per material id: the auxiliary quantities, transformed to tame their tails."""
    phonons = pd.read_csv(PHONONS).set_index("material_id")
    phonons["f_min"] = phonons.f_min.clip(lower=-10.0)  # THz; a few cells reach -100
    phonons["inv_f2"] = np.log(phonons.inv_f2.clip(lower=1e-3))
    labels = pd.read_csv(bundled_csv("train").parent / "dft_labels.csv").set_index("material_id")
    labels["ehull"] = labels.ehull.clip(upper=2.0)  # eV/atom; hypothetical polymorphs reach 5
    return phonons[list(PHONON_COLUMNS)].join(labels[list(DFT_COLUMNS)], how="outer")


def split(name: str) -> tuple[GraphDataset, list[str]]:
    records = [r for r in read_structures(bundled_csv(name), ["tc"], True) if r.ok]
    data = GraphDataset(
        [r.structure for r in records],
        [r.targets["tc"] for r in records],
        CONFIG.graph_settings,
        "none",
        CONFIG.descriptors,
    )
    return data, [r.id for r in records]


def train_member(
    train: GraphDataset,
    val: GraphDataset,
    auxiliary: np.ndarray | None,
    weight: float,
    seed: int,
    sample_weights: np.ndarray | None = None,
    held_out: GraphDataset | None = None,
    tc_head: torch.nn.Module | None = None,
) -> tuple[float, list[float], list[float]]:
    """Best val MAE (K) over the epochs, the val predictions of that epoch and its predictions
    for ``held_out`` (empty without one). ``sample_weights`` (one per training crystal) weight
    each crystal's Tc loss within its batch (``benchmarks/predictor_weights.py``). ``tc_head``
    replaces the member's own head: it maps the pooled features and standardised descriptors,
    concatenated, to Tc in K (``benchmarks/predictor_mcmillan.py``)."""
    torch.manual_seed(seed)
    model = ALIGNN(CONFIG)
    model.set_target_statistics(model.transform(torch.as_tensor(train.targets)))
    model.set_descriptor_statistics(torch.as_tensor(train.descriptors))
    width = 1 if auxiliary is None else auxiliary.shape[1]
    head = torch.nn.Linear(CONFIG.hidden, width)
    parameters = list(model.parameters()) + list(head.parameters())
    if tc_head is not None:
        own = {id(p) for p in model.head.parameters()}
        parameters = [p for p in parameters if id(p) not in own] + list(tc_head.parameters())

    def standardised(batch, pooled: torch.Tensor) -> torch.Tensor:  # (n,) the loss's space
        scaled = (batch.descriptors - model.descriptor_mean) / model.descriptor_std
        features = torch.cat((pooled, scaled), 1)
        if tc_head is None:
            return model.head(features).squeeze(-1)
        return (torch.log1p(tc_head(features)) - model.target_mean) / model.target_std

    def kelvin(data: GraphDataset) -> torch.Tensor:  # (n,) predicted Tc, eval mode
        batch = data.collate(list(range(len(data))))
        output = standardised(batch, model.crystal_features(batch))
        return model.inverse_transform(output * model.target_std + model.target_mean)

    optimizer = torch.optim.AdamW(parameters, lr=PEAK_LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * math.ceil(len(train) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, PEAK_LR, total_steps=steps)
    order = torch.Generator().manual_seed(seed)
    aux = None if auxiliary is None else torch.as_tensor(auxiliary, dtype=torch.float32)
    truth = torch.as_tensor(val.targets)
    best, best_predictions, held_out_predictions = math.inf, [], []
    weights = None if sample_weights is None else torch.as_tensor(sample_weights).float()
    for _ in tqdm(range(EPOCHS), desc=f"seed {seed}", leave=False):
        model.train()
        permutation = torch.randperm(len(train), generator=order).tolist()
        for start in range(0, len(permutation), BATCH):
            indices = permutation[start : start + BATCH]
            batch = train.collate(indices)
            pooled = model.crystal_features(batch)  # (n, hidden)
            output = standardised(batch, model.dropout(pooled))
            target = (model.transform(batch.targets) - model.target_mean) / model.target_std
            if weights is None:
                loss = ((output - target) ** 2).mean()
            else:
                chosen = weights[indices]  # (n,)
                loss = (chosen * (output - target) ** 2).sum() / chosen.sum()
            if aux is not None:
                wanted = aux[indices]  # (n, width), NaN where missing
                known = ~torch.isnan(wanted)
                squared = (head(pooled) - torch.nan_to_num(wanted)) ** 2
                loss = loss + weight * squared[known].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            predictions = kelvin(val)
        mae = float((predictions - truth).abs().mean())
        if mae < best:
            best, best_predictions = mae, predictions.tolist()
            if held_out is not None:
                with torch.no_grad():
                    held_out_predictions = kelvin(held_out).tolist()
    return best, best_predictions, held_out_predictions


def member_summary(rows: list[dict], truth: np.ndarray, threshold: float = 5.0) -> dict:
    """Val MAE of each member, of their mean, and the mean's precision and recall above
    ``threshold`` (K), from result rows with ``val_mae`` and ``val_predictions``."""
    mean_prediction = np.mean([r["val_predictions"] for r in rows], axis=0)
    above, positives = mean_prediction > threshold, truth > threshold
    return {
        "member_val_mae": [round(r["val_mae"], 3) for r in rows],
        "mean_of_members_val_mae": float(np.abs(mean_prediction - truth).mean()),
        "precision_above_5K": float(positives[above].mean()) if above.any() else None,
        "recall_above_5K": float(positives[above].sum() / positives.sum()),
    }


def print_summary(summary: dict[str, dict]) -> None:
    """One line per variant of :func:`member_summary` results."""
    width = max(16, *(len(name) + 1 for name in summary))
    header = f"{'members (K)':<24} {'mean of members (K)':>20} {'P/R > 5 K':>12}"
    print(f"{'model':<{width}} {header}")
    for variant, row in summary.items():
        members = ", ".join(f"{m:.2f}" for m in row["member_val_mae"])
        pr = f"{row['precision_above_5K'] or 0:.2f}/{row['recall_above_5K']:.2f}"
        print(f"{variant:<{width}} {members:<24} {row['mean_of_members_val_mae']:>20.3f} {pr:>12}")


def resumable_result(path: str) -> tuple[Path, dict]:
    """The result file and what it holds so far (members already trained); one torch thread."""
    torch.set_num_threads(1)
    out = Path(path)
    return out, json.loads(out.read_text()) if out.exists() else {"members": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weight", type=float, default=0.5, help="auxiliary loss weight")
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path (resumable)")
    args = parser.parse_args()
    out, result = resumable_result(args.out)
    (train, train_ids), (val, _) = split("train"), split("val")
    table = auxiliary_table().reindex(train_ids)
    standardised = ((table - table.mean()) / table.std()).to_numpy(dtype=np.float32)
    truth = np.asarray(val.targets)
    for variant, auxiliary in (("tc only", None), ("tc + auxiliary", standardised)):
        for seed in args.seeds:
            key = f"{variant} | seed {seed} | weight {args.weight}"
            if key in result["members"]:
                continue
            started = time.perf_counter()
            mae, predictions, _ = train_member(train, val, auxiliary, args.weight, seed)
            result["members"][key] = {
                "val_mae": mae,
                "seconds": time.perf_counter() - started,
                "val_predictions": predictions,
            }
            out.write_text(json.dumps(result, indent=1))
    summary = {}
    for variant in ("tc only", "tc + auxiliary"):
        rows = [
            result["members"][f"{variant} | seed {s} | weight {args.weight}"] for s in args.seeds
        ]
        summary[variant] = member_summary(rows, truth)
    result.update(
        summary=summary,
        auxiliary_columns=list(PHONON_COLUMNS + DFT_COLUMNS),
        settings={"seeds": args.seeds, "weight": args.weight, "epochs": EPOCHS},
        machine={"python": platform.python_version(), "torch": torch.__version__},
    )
    out.write_text(json.dumps(result, indent=1))
    print_summary(summary)


if __name__ == "__main__":
    main()
