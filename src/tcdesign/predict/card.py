"""Model cards: a Markdown page written beside every trained ensemble from its metrics.json."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

UNITS = {"tc": "K", "formation_energy_peratom": "eV/atom", "optb88vdw_bandgap": "eV"}


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def model_card(metrics: dict, command: str, notes: str = "") -> str:
    """Markdown text of a model card from an ensemble's ``metrics.json`` dictionary."""
    target = metrics["target"]
    unit = UNITS.get(target, "target units")
    val = metrics["val"]
    config, settings = metrics["config"], metrics["settings"]
    members = metrics["members"]
    data = metrics.get("data", {})
    lines = [
        f"# Model card: ALIGNN ensemble for `{target}`",
        "",
        "## How it was made",
        f"- Command: `{command}`",
        f"- Data: train `{Path(data.get('train', {}).get('path', '?')).name}` "
        f"({data.get('train', {}).get('rows_used', '?')} of "
        f"{data.get('train', {}).get('rows', '?')} rows usable), val "
        f"`{Path(data.get('val', {}).get('path', '?')).name}` "
        f"({data.get('val', {}).get('rows_used', '?')} rows; early stopping and calibration).",
        f"- Members: {len(members)}, seeds {', '.join(str(m['seed']) for m in members)}.",
        f"- Training time: {metrics['train_seconds'] / 60:.1f} min in all on "
        f"{platform.machine()} CPU, torch {torch.__version__}.",
        f"- Architecture: ALIGNN, {config['alignn_layers']} ALIGNN + {config['gcn_layers']} GCN "
        f"layers, width {config['hidden']}, {config['max_neighbors']} nearest neighbours within "
        f"{config['cutoff']} A, target transform `{config['transform']}`, descriptors "
        f"`{config['descriptors']}`, pretrained atom features `{config['pretrained_features']}`, "
        f"dropout {config['dropout']}.",
        f"- Optimisation: AdamW (weight decay {settings['weight_decay']}), one-cycle peak learning "
        f"rate {settings['learning_rate']}, batch {settings['batch_size']}, at most "
        f"{settings['epochs']} epochs, early stopping patience {settings['patience']} on val MAE, "
        f"{settings['loss']} loss on the standardised transformed target.",
        "",
        "## Validation metrics",
        "| metric | value |",
        "|---|---|",
        f"| MAE ({unit}) | {_fmt(val['mae'])} |",
        f"| RMSE ({unit}) | {_fmt(val['rmse'])} |",
        f"| R^2 | {_fmt(val['r2'])} |",
        f"| member MAEs ({unit}) | {', '.join(_fmt(m, 2) for m in metrics['val_member_mae'])} |",
        f"| val errors within 2 std | {_fmt(val.get('within_2std'))} |",
        f"| std scale (calibration factor) | {_fmt(metrics['std_scale'])} |",
    ]
    if "precision" in val:
        lines += [
            f"| precision at > {val['threshold']:g} {unit} | {_fmt(val['precision'])} |",
            f"| recall at > {val['threshold']:g} {unit} | {_fmt(val['recall'])} |",
        ]
    lines += [
        "",
        "Validation numbers are on the split used for early stopping and for the std "
        "calibration, so they are optimistic; the held-back test split measures the model.",
    ]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def write_model_card(ensemble_dir: Path, command: str, notes: str = "") -> Path:
    """Write ``ensemble_dir/MODEL_CARD.md`` from ``ensemble_dir/metrics.json``."""
    metrics = json.loads((ensemble_dir / "metrics.json").read_text())
    path = ensemble_dir / "MODEL_CARD.md"
    path.write_text(model_card(metrics, command, notes))
    return path
