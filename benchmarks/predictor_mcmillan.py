"""A McMillan-Allen-Dynes head for the Tc network: does building the formula in help?

Every JARVIS Tc label was computed from an electron-phonon coupling lambda and a logarithmic
phonon frequency omega_log through the McMillan-Allen-Dynes formula,

    Tc = omega_log / 1.2 * exp(-1.04 (1 + lambda) / (lambda - mu* (1 + 0.62 lambda))),

so Tc is exponentially sensitive to lambda and linear in omega_log. Here a member of the
bundled ensemble (the settings of ``predictor_auxiliary.py``: ALIGNN 2 + 2 layers, width 64,
composition descriptors, 40 epochs, best epoch on val) gets, in place of its linear-in-log head,
a head that predicts lambda (softplus, about 0.5 at the start) and omega_log (log-linear, about
250 K at the start) and returns the formula's Tc with mu* = 0.1 (``--mu-star``). Neither lambda
nor omega_log is in the data; only Tc is, and the loss is the bundled members' (squared error of
the standardised log(1 + Tc)). The same seeds are trained with the bundled head beside it.
About 5 min per member on one core; the result file keeps finished members, so a killed run
resumes.

    python benchmarks/predictor_mcmillan.py [--seeds 0 1 2] [--mu-star 0.1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from predictor_auxiliary import (
    CONFIG,
    EPOCHS,
    member_summary,
    print_summary,
    resumable_result,
    split,
    train_member,
)
from torch import nn

RESULTS = Path(__file__).parent / "results" / "predictor_mcmillan.json"


def allen_dynes_tc(coupling: torch.Tensor, omega_log: torch.Tensor, mu_star: float) -> torch.Tensor:
    """McMillan-Allen-Dynes Tc (K) of lambda and omega_log (K), 0 where lambda is too weak."""
    denominator = (coupling - mu_star * (1 + 0.62 * coupling)).clamp_min(1e-3)
    return omega_log / 1.2 * torch.exp(-1.04 * (1 + coupling) / denominator)


class McMillanHead(nn.Module):
    """Pooled features + descriptors -> (lambda, omega_log) -> Allen-Dynes Tc in K."""

    def __init__(self, width: int, hidden: int, mu_star: float) -> None:
        super().__init__()
        self.mu_star = mu_star
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def parameters_of(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda, omega_log in K), each (n,)."""
        a, b = self.net(features).unbind(-1)
        return 0.7 * nn.functional.softplus(a), torch.exp(0.5 * b + math.log(250.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return allen_dynes_tc(*self.parameters_of(features), self.mu_star)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mu-star", type=float, default=0.1, help="Coulomb pseudopotential")
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path (resumable)")
    args = parser.parse_args()
    out, result = resumable_result(args.out)
    (train, _), (val, _) = split("train"), split("val")
    truth = np.asarray(val.targets)
    width = CONFIG.hidden + train.descriptors.shape[1]
    variants = ("bundled head", f"McMillan head, mu* {args.mu_star}")
    for variant in variants:
        for seed in args.seeds:
            key = f"{variant} | seed {seed}"
            if key in result["members"]:
                continue
            head = None
            if variant != "bundled head":
                torch.manual_seed(10_000 + seed)
                head = McMillanHead(width, CONFIG.hidden, args.mu_star)
            started = time.perf_counter()
            mae, predictions, _ = train_member(train, val, None, 0.0, seed, tc_head=head)
            result["members"][key] = {
                "val_mae": mae,
                "seconds": time.perf_counter() - started,
                "val_predictions": predictions,
            }
            out.write_text(json.dumps(result, indent=1))
    members = result["members"]
    summary = {
        variant: member_summary([members[f"{variant} | seed {s}"] for s in args.seeds], truth)
        for variant in variants
    }
    result.update(
        summary=summary,
        settings={"seeds": args.seeds, "mu_star": args.mu_star, "epochs": EPOCHS},
        machine={"python": platform.python_version(), "torch": torch.__version__},
    )
    out.write_text(json.dumps(result, indent=1))
    print_summary(summary)


if __name__ == "__main__":
    main()
