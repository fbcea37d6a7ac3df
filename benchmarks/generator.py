"""Benchmark a trained CDVAE generator against val: sample metrics, latent Tc optimisation, CSP.

1. ``--n`` samples from z ~ N(0, I), scored with :func:`tcdesign.generate.metrics.
   generation_metrics` against val (novelty against train), and the fraction with predicted Tc
   > 5 K by the bundled Tc ensemble (the judge);
2. the same with ``--optimize-tc`` (gradient steps on z through the Tc head);
3. composition -> structure on the first ``--csp-formulas`` val cell compositions: top-1 and
   top-k match rates and mean RMS for CDVAE, the template baseline and the hybrid (template
   candidates refined by the score network, :mod:`tcdesign.generate.hybrid`; every ranking of
   the same refined candidates is reported beside the default one);
4. speed: structures per second and network evaluations per structure;
5. with ``--csp-relax``: ``tcdesign csp --relax`` itself for each method (its best
   ``--csp-pool`` candidates relaxed with CHGNet and re-ranked, :mod:`tcdesign.generate.
   energy_rank`: CDVAE candidates by relaxed energy, template and hybrid candidates by their own
   score minus the weighed relaxed energy), the relaxed cells matched, reported as
   ``METHOD+relax``; each run is a csp output folder under ``--csp-cache`` (resumable).

The substitution baseline is measured by ``generator_baselines.py``.
Writes benchmarks/results/generator.json and prints a table; ``--only csp`` measures step 3
alone and writes benchmarks/results/generator_csp.json. The schedule can be shortened
(``--levels``, ``--steps-per-level``) for a quick look; the defaults are CDVAE's.

    python benchmarks/generator.py --model checkpoints/generator/generator.pt [--n 1000]
    python benchmarks/generator.py --model src/tcdesign/models/cdvae/generator.pt --only csp \
        --levels 50 --steps-per-level 10 --csp-formulas 40
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
from tcdesign.generate.api import (
    csp as run_csp,
)
from tcdesign.generate.api import (
    csp_cdvae,
    load_generator,
    sample_batch,
    training_latents,
)
from tcdesign.generate.defaults import (
    COMPOSITION_RULE,
    COMPOSITION_TEMPERATURE,
    CSP_POOL,
    ENERGY_WEIGHT,
    OPT_LR,
    OPT_STARTS,
)
from tcdesign.generate.hybrid import RANKINGS, HybridSettings, hybrid_candidates
from tcdesign.generate.metrics import (
    composition_validity,
    csp_metrics,
    duplicate_groups,
    generation_metrics,
    is_usable,
    novel_flags,
    structure_validity,
)
from tcdesign.generate.sample import LangevinSchedule
from tcdesign.generate.substitution import fit_atomic_volumes, parse_cell_formula, template_csp
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.ensemble import Ensemble
from tcdesign.screen.relax import static_energies_per_atom

RESULTS = Path(__file__).parent / "results" / "generator.json"
CSP_RESULTS = Path(__file__).parent / "results" / "generator_csp.json"
CSP_METHODS = ("cdvae", "template", "hybrid")
SETTINGS = ("plain", "optimize_tc")
TC_THRESHOLD = 5.0  # K


def load(split: str) -> list[Structure]:
    return [r.structure for r in read_structures(bundled_csv(split)) if r.ok]


def sample(
    model,
    n: int,
    batch: int,
    schedule: LangevinSchedule,
    seed: int,
    optimize: bool,
    opt_steps: int = 100,
    opt_lr: float = OPT_LR,
    opt_start: str = "random",
) -> tuple[list[Structure | None], float]:
    """``n`` decoded crystals and the seconds it took."""
    rng = torch.Generator().manual_seed(seed)
    structures: list[Structure | None] = []
    started = time.perf_counter()
    starts = training_latents(model) if optimize and opt_start == "train" else None
    for start in range(0, n, batch):
        decoded = sample_batch(
            model, min(batch, n - start), rng, schedule, optimize, opt_steps, opt_lr, None, starts
        )
        structures += decoded.structures()
    return structures, time.perf_counter() - started


def tc_fractions(
    judge: Ensemble, structures: list[Structure | None], train: list[Structure]
) -> dict[str, float]:
    """Fractions of all samples (broken ones count as failing) whose predicted Tc exceeds the
    threshold, and that are also valid, the first of their duplicate group and novel against
    train: the yield of distinct new candidates, which optimisation can raise while it lowers
    uniqueness."""
    n = len(structures)
    usable = [i for i, s in enumerate(structures) if is_usable(s)]
    above = np.zeros(n, bool)
    if usable:
        tc, _ = judge.predict([structures[i] for i in usable])
        above[usable] = tc > TC_THRESHOLD
    groups = duplicate_groups(structures)
    novel = novel_flags(structures, train)
    seen: set[int] = set()
    distinct = np.zeros(n, bool)
    for i, (structure, group) in enumerate(zip(structures, groups, strict=True)):
        if group >= 0 and group not in seen:
            seen.add(group)
            distinct[i] = (
                novel[i] and structure_validity(structure) and composition_validity(structure)
            )
    return {
        "fraction_tc_above_5K": float(above.sum() / n),
        "fraction_distinct_novel_tc_above_5K": float((above & distinct).sum() / n),
    }


def cell_formula(structure: Structure) -> str:
    """The cell formula of a structure, e.g. ``Nb6Sn2``."""
    counts = structure.composition.get_el_amt_dict()
    return "".join(f"{el}{round(n)}" for el, n in counts.items())


def csp_benchmark(
    model,
    train: list[Structure],
    truths: list[Structure],
    k: int,
    seed: int,
    schedule: LangevinSchedule,
    hybrid: HybridSettings,
    methods: tuple[str, ...] = CSP_METHODS,
    energy_weight: float = ENERGY_WEIGHT,
) -> dict:
    """CSP metrics of each method on the cell formulas of ``truths`` (at most ``max_atoms``).
    Template and hybrid candidates are re-ranked with CHGNet static energies at
    ``energy_weight`` (0: by probability alone), as ``tcdesign csp`` does."""
    truths = [t for t in truths if len(t) <= model.config.max_atoms]
    volumes = fit_atomic_volumes(train)
    energy = static_energies_per_atom if energy_weight else None
    result: dict = {"formulas": [cell_formula(t) for t in truths], "energy_weight": energy_weight}
    for method in methods:
        started = time.perf_counter()
        ranked: dict[str, list] = {}
        for truth in truths:
            formula = cell_formula(truth)
            if method == "cdvae":
                counts = parse_cell_formula(formula)
                found = {"cdvae": [s for s, _ in csp_cdvae(model, counts, k, seed, schedule)]}
            elif method == "template":
                try:
                    found = {
                        "template": template_csp(
                            formula,
                            train,
                            k,
                            volumes=volumes,
                            primitive_cell=hybrid.primitive_cell,
                            energy=energy,
                            energy_weight=energy_weight,
                        )
                    }
                except ValueError:  # no template: a miss
                    found = {"template": []}
            else:
                pool = max(k, hybrid.pool or k)
                try:
                    refined = hybrid_candidates(
                        model,
                        formula,
                        train,
                        pool,
                        schedule,
                        hybrid,
                        seed,
                        volumes,
                        energy=energy,
                        energy_weight=energy_weight,
                    )
                    found = {rank: [s for s, _ in refined.ranked(rank, k)] for rank in RANKINGS}
                except ValueError:
                    found = {rank: [] for rank in RANKINGS}
            for name, candidates in found.items():
                ranked.setdefault(name, []).append((truth, candidates))
        seconds = time.perf_counter() - started
        if method == "hybrid":
            metrics = csp_metrics(ranked[hybrid.rank_by], k=k)
            metrics["settings"] = {
                "start_level": hybrid.start_level,
                "start_sigma": float(model.sigmas[hybrid.start_level]),
                "lattice": hybrid.lattice,
                "rank_by": hybrid.rank_by,
                "pool": max(k, hybrid.pool or k),
                "primitive_cell": hybrid.primitive_cell,
            }
            metrics["by_ranking"] = {
                name: csp_metrics(pairs, k=k) for name, pairs in ranked.items()
            }
        else:
            metrics = csp_metrics(ranked[method], k=k)
        metrics["seconds"] = seconds
        result[method] = metrics
    return result


def csp_relax_benchmark(
    model_path: str,
    model,
    truths: list[Structure],
    k: int,
    seed: int,
    schedule: LangevinSchedule,
    hybrid: HybridSettings,
    methods: tuple[str, ...],
    pool: int,
    energy_weight: float,
    folder: Path,
) -> dict:
    """CSP metrics of ``tcdesign csp --relax`` itself (:func:`tcdesign.generate.api.csp` with
    ``relax=True``: the method's ``pool`` best candidates relaxed with CHGNet and re-ranked as
    the CLI ranks them), the relaxed cells matched. Each method's run lives in ``folder/METHOD``
    and resumes by formula, so a killed benchmark keeps its relaxations."""
    truths = [t for t in truths if len(t) <= model.config.max_atoms]
    formulas = [cell_formula(t) for t in truths]
    result: dict = {}
    for method in methods:
        started = time.perf_counter()
        table = run_csp(
            formulas,
            folder / method,
            k,
            method=method,
            seed=seed,
            model=model_path,
            schedule=schedule,
            hybrid=hybrid,
            relax=True,
            pool=pool,
            primitive_cell=hybrid.primitive_cell,
            energy_weight=energy_weight,
        )
        table = table[table["status"] != "error"].sort_values(["formula", "rank"])
        found = {
            formula: [Structure.from_str(cif, fmt="cif") for cif in rows["cif"] if cif]
            for formula, rows in table.groupby("formula")
        }
        pairs = [(t, found.get(f, [])[:k]) for t, f in zip(truths, formulas, strict=True)]
        metrics = csp_metrics(pairs, k=k)
        metrics["pool"] = pool
        metrics["seconds"] = time.perf_counter() - started  # formulas already done take none
        result[f"{method}+relax"] = metrics
    return result


def print_csp(csp: dict, methods: list[str], k: int, calls: int) -> None:
    """The CSP table: match rates and RMS per method (and per hybrid ranking)."""
    print(f"CSP on {len(csp['formulas'])} val formulas; {calls} network calls per CDVAE structure")
    print(f"{'method':<22} {'top-1':>6} {f'top-{k}':>6} {'rms-1':>6} {'rms-k':>6} {'s':>6}")
    rows = [(m, csp[m]) for m in methods if m in csp]
    rows += [(name, m) for name, m in csp.items() if name.endswith("+relax")]
    if "hybrid" in csp:
        rows += [(f"hybrid/{name}", m) for name, m in csp["hybrid"]["by_ranking"].items()]
    for name, m in rows:
        print(
            f"{name:<22} {m['match_rate_top1']:>6.3f} {m['match_rate_topk']:>6.3f} "
            f"{m['rms_top1']:>6.3f} {m['rms_topk']:>6.3f} {m.get('seconds', float('nan')):>6.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="generator.pt")
    parser.add_argument("--n", type=int, default=1000, help="samples per setting (default 1000)")
    parser.add_argument("--k", type=int, default=5, help="CSP candidates per formula")
    parser.add_argument(
        "--csp-formulas",
        type=int,
        default=105,
        help="val compositions to test CSP on (default: all; 0 skips CSP)",
    )
    parser.add_argument(
        "--only",
        choices=["all", "csp"],
        default="all",
        help="csp: only composition -> structure, into results/generator_csp.json",
    )
    parser.add_argument(
        "--csp-methods",
        nargs="+",
        choices=CSP_METHODS,
        default=list(CSP_METHODS),
        help="CSP methods to measure (default all three)",
    )
    parser.add_argument(
        "--csp-relax",
        action="store_true",
        help="also measure 'tcdesign csp --relax' (each method's --csp-pool best candidates "
        "relaxed with CHGNet and re-ranked as the CLI does; the relaxed cells matched)",
    )
    parser.add_argument("--csp-pool", type=int, default=CSP_POOL, help="candidates relaxed")
    parser.add_argument(
        "--csp-energy-weight",
        type=float,
        default=ENERGY_WEIGHT,
        help=f"CHGNet static-energy weight of template/hybrid ranking (default {ENERGY_WEIGHT:g})",
    )
    parser.add_argument(
        "--csp-cache",
        default="benchmarks/results/.csp_relax",
        help="folder of the --csp-relax runs (one csp output folder per method; a rerun resumes "
        "them by formula)",
    )
    defaults = HybridSettings()
    parser.add_argument("--hybrid-start-level", type=int, default=defaults.start_level)
    parser.add_argument("--hybrid-pool", type=int, default=defaults.pool)
    parser.add_argument("--hybrid-rank", choices=RANKINGS, default=defaults.rank_by)
    parser.add_argument("--hybrid-lattice", choices=["template", "head"], default=defaults.lattice)
    parser.add_argument(
        "--any-cell",
        action="store_true",
        help="template and hybrid rank by probability alone (formulas not taken as primitive)",
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
    parser.add_argument(
        "--composition",
        choices=["prior", "cdvae"],
        default=COMPOSITION_RULE,
        help=f"composition rule (default {COMPOSITION_RULE}; cdvae is the original)",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="sampling settings to measure (default both; plain is needed for the Tc ratio)",
    )
    parser.add_argument("--opt-lr", type=float, default=OPT_LR, help=f"default {OPT_LR}")
    parser.add_argument("--opt-steps", type=int, default=100, help="default 100")
    parser.add_argument(
        "--opt-start",
        choices=OPT_STARTS,
        default="random",
        help="optimisation from z ~ N(0, I) (default) or from encoded training crystals",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON (default results/generator*.json)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    out = Path(args.out or (CSP_RESULTS if args.only == "csp" else RESULTS))

    model = load_generator(args.model)
    schedule = LangevinSchedule(
        steps_per_level=args.steps_per_level,
        levels=args.levels,
        composition_temperature=args.composition_temperature,
        composition=args.composition,
    )
    hybrid = HybridSettings(
        start_level=args.hybrid_start_level,
        lattice=args.hybrid_lattice,
        rank_by=args.hybrid_rank,
        pool=args.hybrid_pool,
        primitive_cell=not args.any_cell,
    )
    calls = schedule.steps_per_level * (schedule.levels or len(model.sigmas))
    train, val = load("train"), load("val")
    result: dict = {
        "model": args.model,
        "schedule": {
            "levels": schedule.levels or len(model.sigmas),
            "steps_per_level": schedule.steps_per_level,
            "composition_temperature": schedule.composition_temperature,
            "composition": schedule.composition,
        },
        "network_calls_per_structure": calls,
    }
    if args.only == "all":
        judge = Ensemble.load()
        result["optimisation"] = {
            "steps": args.opt_steps,
            "lr": args.opt_lr,
            "start": args.opt_start,
            "atom_count": "drawn from the starting latent",
        }
        for name in args.settings:
            structures, seconds = sample(
                model,
                args.n,
                args.batch,
                schedule,
                args.seed,
                name == "optimize_tc",
                args.opt_steps,
                args.opt_lr,
                args.opt_start,
            )
            metrics = generation_metrics(structures, val)
            metrics["novelty_vs_train"] = generation_metrics(structures, train)["novelty"]
            metrics.update(tc_fractions(judge, structures, train))
            metrics["structures_per_second"] = len(structures) / seconds
            result[name] = metrics
    csp = {}
    if args.csp_formulas > 0:
        truths = val[: args.csp_formulas]
        # the formulas and sampling settings both CSP measurements share
        shared = (truths, args.k, args.seed, schedule, hybrid, tuple(args.csp_methods))
        csp = csp_benchmark(model, train, *shared, energy_weight=args.csp_energy_weight)
        if args.csp_relax:
            csp.update(
                csp_relax_benchmark(
                    args.model,
                    model,
                    *shared,
                    args.csp_pool,
                    args.csp_energy_weight,
                    Path(args.csp_cache),
                )
            )
    if args.only == "all":
        result["csp"] = csp.get("cdvae", {})
        result["csp_methods"] = csp
    else:
        result["csp"] = csp
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))

    if args.only == "all":
        keys = (
            "validity",
            "uniqueness",
            "novelty_vs_train",
            "wdist_density",
            "wdist_num_elements",
            "non_p1_fraction",
            "fraction_tc_above_5K",
            "fraction_distinct_novel_tc_above_5K",
            "structures_per_second",
        )
        print(f"{'metric':<38}" + "".join(f"{name:>12}" for name in args.settings))
        for key in keys:
            print(f"{key:<38}" + "".join(f"{result[n][key]:>12.3f}" for n in args.settings))
    if csp:
        print_csp(csp, args.csp_methods, args.k, calls)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
