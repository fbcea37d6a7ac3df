"""Benchmark a trained CDVAE generator against val: sample metrics, latent Tc optimisation, CSP.

1. ``--n`` samples from z ~ N(0, I), scored with :func:`tcdesign.generate.metrics.
   generation_metrics` against val (novelty against train), and the fraction with predicted Tc
   > 5 K by the bundled Tc ensemble (the judge);
2. the same with ``--optimize-tc`` (gradient steps on z through the Tc head);
3. composition -> structure on the val cell compositions: top-1 and top-k match rates;
4. speed: structures per second and network evaluations per structure.

The substitution and template baselines are measured by ``generator_baselines.py``.
Writes benchmarks/results/generator.json and prints a table. The schedule can be shortened
(``--levels``, ``--steps-per-level``) for a quick look; the defaults are CDVAE's.

    python benchmarks/generator.py --model checkpoints/generator/generator.pt [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from tcdesign.data.io import read_structures
from tcdesign.generate.api import csp_cdvae, load_generator
from tcdesign.generate.defaults import COMPOSITION_TEMPERATURE
from tcdesign.generate.metrics import csp_metrics, generation_metrics
from tcdesign.generate.sample import LangevinSchedule, decode, optimize_latents
from tcdesign.generate.substitution import parse_cell_formula
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.ensemble import Ensemble

RESULTS = Path(__file__).parent / "results" / "generator.json"
TC_THRESHOLD = 5.0  # K


def load(split: str) -> list[Structure]:
    return [r.structure for r in read_structures(bundled_csv(split)) if r.ok]


def sample(
    model, n: int, batch: int, schedule: LangevinSchedule, seed: int, optimize: bool
) -> tuple[list[Structure | None], float]:
    """``n`` decoded crystals and the seconds it took."""
    rng = torch.Generator().manual_seed(seed)
    structures: list[Structure | None] = []
    started = time.perf_counter()
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), model.config.latent, generator=rng)
        if optimize:
            z = optimize_latents(model, z)
        structures += decode(model, z, schedule, rng).structures()
    return structures, time.perf_counter() - started


def tc_fraction(judge: Ensemble, structures: list[Structure | None]) -> float:
    """Fraction of all samples whose predicted Tc exceeds the threshold (broken ones count 0)."""
    usable = [s for s in structures if s is not None and len(s) > 0]
    if not usable:
        return 0.0
    tc, _ = judge.predict(usable)
    return float(np.sum(tc > TC_THRESHOLD) / len(structures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="generator.pt")
    parser.add_argument("--n", type=int, default=1000, help="samples per setting (default 1000)")
    parser.add_argument("--k", type=int, default=5, help="CSP candidates per formula")
    parser.add_argument(
        "--csp-formulas",
        type=int,
        default=105,
        help="val compositions to test CSP on (default: all)",
    )
    parser.add_argument("--batch", type=int, default=64, help="crystals decoded together")
    parser.add_argument("--levels", type=int, default=None, help="noise levels (default all)")
    parser.add_argument("--steps-per-level", type=int, default=100)
    parser.add_argument(
        "--composition-temperature",
        type=float,
        default=COMPOSITION_TEMPERATURE,
        help=f"composition sharpening (default {COMPOSITION_TEMPERATURE}; 1 is CDVAE's rule)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    model = load_generator(args.model)
    judge = Ensemble.load()
    schedule = LangevinSchedule(
        steps_per_level=args.steps_per_level,
        levels=args.levels,
        composition_temperature=args.composition_temperature,
    )
    calls = schedule.steps_per_level * (schedule.levels or len(model.sigmas))
    train, val = load("train"), load("val")
    result: dict = {
        "model": args.model,
        "schedule": {
            "levels": schedule.levels or len(model.sigmas),
            "steps_per_level": schedule.steps_per_level,
            "composition_temperature": schedule.composition_temperature,
        },
        "network_calls_per_structure": calls,
    }
    for name, optimize in (("plain", False), ("optimize_tc", True)):
        structures, seconds = sample(model, args.n, args.batch, schedule, args.seed, optimize)
        metrics = generation_metrics(structures, val)
        metrics["novelty_vs_train"] = generation_metrics(structures, train)["novelty"]
        metrics["fraction_tc_above_5K"] = tc_fraction(judge, structures)
        metrics["structures_per_second"] = len(structures) / seconds
        result[name] = metrics
    formulas = []
    for structure in val[: args.csp_formulas]:
        counts = structure.composition.get_el_amt_dict()
        formulas.append("".join(f"{el}{round(n)}" for el, n in counts.items()))
    pairs = []
    for formula, truth in zip(formulas, val, strict=False):
        if len(truth) > model.config.max_atoms:
            continue
        candidates = [
            s for s, _ in csp_cdvae(model, parse_cell_formula(formula), args.k, args.seed, schedule)
        ]
        pairs.append((truth, candidates))
    result["csp"] = csp_metrics(pairs, k=args.k)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    keys = (
        "validity",
        "uniqueness",
        "novelty_vs_train",
        "wdist_density",
        "wdist_num_elements",
        "non_p1_fraction",
        "fraction_tc_above_5K",
        "structures_per_second",
    )
    print(f"{'metric':<24} {'plain':>10} {'optimize_tc':>12}")
    for key in keys:
        print(f"{key:<24} {result['plain'][key]:>10.3f} {result['optimize_tc'][key]:>12.3f}")
    print(
        f"CSP top-1 {result['csp']['match_rate_top1']:.3f}, top-{args.k} "
        f"{result['csp']['match_rate_topk']:.3f}; {calls} network calls per structure"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
