"""Non-learned generator baselines on the bundled JARVIS superconductor splits.

1. Element substitution into the training crystals: ``--n`` samples (default 1000), scored with
   :func:`tcdesign.generate.metrics.generation_metrics` against the val structures (and novelty
   against train, the set the samples were made from).
2. Template composition -> structure on every val cell composition: top-1 and top-k match rates
   against the true val structures (CDVAE's CSP matcher).

Writes benchmarks/results/generator_baselines.json and prints a table. Single process; about two
minutes on a 2-core CPU.

    python benchmarks/generator_baselines.py [--n 1000] [--k 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from tcdesign.data.io import read_structures
from tcdesign.generate.metrics import (
    composition_validity,
    csp_metrics,
    density_wasserstein,
    generation_metrics,
    non_p1_fraction,
    novelty,
    num_elements_wasserstein,
)
from tcdesign.generate.substitution import fit_atomic_volumes, substitute, template_csp
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.ensemble import Ensemble

RESULTS = Path(__file__).parent / "results" / "generator_baselines.json"
TC_THRESHOLD = 5.0  # K, as in benchmarks/generator.py


def cell_formula(structure: Structure) -> str:
    """Atom counts per cell, e.g. ``Nb6Sn2``."""
    counts = structure.composition.get_el_amt_dict()
    return "".join(f"{symbol}{round(amount)}" for symbol, amount in counts.items())


def load(split: str) -> list[Structure]:
    return [r.structure for r in read_structures(bundled_csv(split)) if r.ok]


def reference_rows(train: list[Structure], val: list[Structure]) -> dict[str, float]:
    """Yardsticks: the training set itself scored against val with the same functions."""
    return {
        "train_comp_validity": sum(map(composition_validity, train)) / len(train),
        "val_comp_validity": sum(map(composition_validity, val)) / len(val),
        "train_vs_val_wdist_density": density_wasserstein(train, val),
        "train_vs_val_wdist_num_elements": num_elements_wasserstein(train, val),
        "train_non_p1_fraction": non_p1_fraction(train),
    }


def run_substitution(train: list[Structure], val: list[Structure], n: int, seed: int) -> dict:
    start = time.perf_counter()
    samples = substitute(train, n, seed)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = generation_metrics(samples, val)
    metrics_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics["novelty_vs_train"] = novelty(samples, train)
    novelty_seconds = time.perf_counter() - start
    usable = [s for s in samples if s is not None and len(s) > 0]
    tc, _ = Ensemble.load().predict(usable)  # the judge of benchmarks/generator.py
    metrics["fraction_tc_above_5K"] = float(np.sum(tc > TC_THRESHOLD) / len(samples))
    return {
        "n_requested": n,
        "seed": seed,
        "metrics_vs_val": metrics,
        "generation_seconds": seconds,
        "structures_per_second": len(samples) / seconds if seconds else float("nan"),
        "metrics_seconds": metrics_seconds,
        "novelty_vs_train_seconds": novelty_seconds,
    }


def run_template(train: list[Structure], val: list[Structure], k: int) -> dict:
    volumes = fit_atomic_volumes(train)
    pairs = []
    no_template = []
    start = time.perf_counter()
    for structure in val:
        formula = cell_formula(structure)
        try:
            candidates = template_csp(formula, train, k, volumes=volumes)
        except ValueError:
            candidates = []
            no_template.append(formula)
        pairs.append((structure, candidates))
    seconds = time.perf_counter() - start
    result = csp_metrics(pairs, k)
    result["match_rate_top3"] = csp_metrics(pairs, 3)["match_rate_topk"]
    result["no_template"] = no_template
    result["seconds"] = seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="substitution samples")
    parser.add_argument("--k", type=int, default=5, help="template CSP candidates per formula")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    train, val = load("train"), load("val")
    substitution = run_substitution(train, val, args.n, args.seed)
    template = run_template(train, val, args.k)
    result = {
        "substitution": substitution,
        "template_csp": template,
        "reference": reference_rows(train, val),
        "n_train": len(train),
        "n_val": len(val),
        "versions": {name: version(name) for name in ("pymatgen", "smact", "spglib", "scipy")},
        "machine": platform.processor() or platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    metrics = substitution["metrics_vs_val"]
    print(f"substitution baseline: {metrics['n_generated']} of {args.n} samples")
    print(f"{'metric':<28}{'value':>10}")
    for key in (
        "struct_validity",
        "comp_validity",
        "validity",
        "uniqueness",
        "novelty",
        "novelty_vs_train",
        "unique_novel",
        "wdist_density",
        "wdist_num_elements",
        "non_p1_fraction",
        "fraction_tc_above_5K",
    ):
        print(f"{key:<28}{metrics[key]:>10.3f}")
    print(f"{'generation s':<28}{substitution['generation_seconds']:>10.1f}")
    print(f"{'metrics s':<28}{substitution['metrics_seconds']:>10.1f}")
    print(f"\ntemplate CSP on {template['n']} val compositions (k={template['k']})")
    for key in ("match_rate_top1", "match_rate_top3", "match_rate_topk", "rms_top1", "rms_topk"):
        print(f"{key:<28}{template[key]:>10.3f}")
    print(f"{'seconds':<28}{template['seconds']:>10.1f}")
    print("\nreference (train vs val)")
    for key, value in result["reference"].items():
        print(f"{key:<34}{value:>10.3f}")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
