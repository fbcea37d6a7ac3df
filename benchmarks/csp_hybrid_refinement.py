"""What the hybrid's score-network refinement does to template composition -> structure candidates.

``tcdesign csp --method hybrid`` refines the 10 best template candidates of a formula with the
CDVAE score network (from noise level 45, the template cell kept) and ranks them by the template
score plus a quarter of the composition log-likelihood
(:mod:`tcdesign.generate.hybrid`). This script separates the two effects on the val formulas the
generator can hold: for every candidate it records the template score, the composition
log-likelihood, the mean squared score the network still predicts at its smallest noise level
for the unrefined and for the refined cell (:func:`tcdesign.generate.hybrid.denoising_residual`),
and the RMS of each against the true crystal (CDVAE's CSP matcher). It then reports top-1 and
top-5 for each ranking (template order, hybrid default, likelihood weight 0.1) with the
unrefined or the refined cells, and the residual and RMS of the candidates that match both ways.
Records stream to ``--cache`` (JSON lines, resumable); writes
``benchmarks/results/csp_hybrid_refinement.json`` and prints a table.

    python benchmarks/csp_hybrid_refinement.py --workers 1     # about 25 min on one core
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from csp_energy import _split, cell_formula, run_cached

RESULTS = Path(__file__).parent / "results" / "csp_hybrid_refinement.json"
CACHE = Path(__file__).parent / "results" / "csp_hybrid_refinement_candidates.jsonl"
POOL = 10
STEPS_PER_LEVEL = 10  # with 50 levels, as benchmarks/generator.py measures the hybrid


@lru_cache(maxsize=1)
def _model():
    from tcdesign.generate.api import load_generator

    return load_generator(None, "cpu")


def query(split: str, index: int) -> dict:
    """One val formula's pool: per candidate the template score, log-probability, primitive flag,
    likelihood, residuals (unrefined ``res_t``, refined ``res_ref``) and RMS to the truth
    (``mt`` unrefined, ``mr`` refined; None where it does not match)."""
    import torch

    from tcdesign.generate.hybrid import (
        HybridSettings,
        denoising_residual,
        encode_structures,
        refine,
    )
    from tcdesign.generate.metrics import match_rms
    from tcdesign.generate.sample import LangevinSchedule
    from tcdesign.generate.substitution import fit_atomic_volumes, template_csp
    from tcdesign.screen.relax import static_energies_per_atom

    model = _model()
    train = _split("train")
    truth = _split(split)[index]
    record: dict = {"split": split, "index": index, "formula": cell_formula(truth), "c": []}
    if len(truth) > model.config.max_atoms:
        record["skipped"] = f"{len(truth)} atoms"
        return record
    try:
        templates = template_csp(
            record["formula"],
            train,
            POOL,
            volumes=fit_atomic_volumes(train),
            energy=static_energies_per_atom,
        )
    except ValueError as exc:  # no template with this stoichiometry
        record["error"] = str(exc)
        return record
    scores = [float(s.properties["score"]) for s in templates]
    schedule = LangevinSchedule(steps_per_level=STEPS_PER_LEVEL, levels=50)
    generator = torch.Generator().manual_seed(0)
    refined = refine(model, templates, scores, schedule, HybridSettings(), generator)
    cells = refined.templates
    mu, _ = encode_structures(model, cells)
    residual = denoising_residual(
        model,
        mu,
        torch.tensor(np.concatenate([c.frac_coords for c in cells]), dtype=torch.float32),
        torch.tensor([z for c in cells for z in c.atomic_numbers]),
        torch.tensor(np.stack([c.lattice.matrix for c in cells]), dtype=torch.float32),
        torch.tensor([len(c) for c in cells]),
    ).numpy()
    unrefined_rms = match_rms(truth, templates)
    refined_rms = match_rms(truth, refined.structures)
    for j, template in enumerate(templates):
        record["c"].append(
            {
                "score": scores[j],
                "lp": float(template.properties["log_probability"]),
                "prim": bool(template.properties["primitive"]),
                "lik": float(refined.scores["likelihood"][j]),
                "res_ref": float(-refined.scores["residual"][j]),
                "res_t": float(residual[j]),
                "mt": unrefined_rms[j],
                "mr": refined_rms[j],
            }
        )
    return record


def match_rate(records: list[dict], weight: float, refined: bool, k: int, n: int) -> float:
    """Fraction of the ``n`` formulas with a match in the ``k`` best by template score +
    ``weight`` x likelihood (primitive cells first), using the refined or unrefined cells."""
    hits = 0
    for record in records:
        cands = record["c"]
        if not cands:
            continue
        score = np.array([c["score"] + weight * c["lik"] for c in cands])
        demoted = np.array([not c["prim"] for c in cands])
        best = np.lexsort((-score, demoted))[:k]
        hits += any(cands[j]["mr" if refined else "mt"] is not None for j in best)
    return hits / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="candidate cache (JSON lines)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    jobs = [("val", i) for i in range(len(_split("val")))]
    done = run_cached(jobs, args.cache, query, args.workers)
    records = [done[job] for job in jobs if "skipped" not in done[job]]
    n = len(records)
    result: dict = {"formulas": n, "pool": POOL, "schedule": f"50 levels x {STEPS_PER_LEVEL}"}
    print(f"{n} val formulas")
    print(f"{'ranking':34} {'cells':9} top-1  top-5")
    for name, weight in (
        ("template order", 0.0),
        ("hybrid default (+0.25 lik)", 0.25),
        ("+0.1 likelihood", 0.1),
    ):
        for refined in (False, True):
            cells = "refined" if refined else "unrefined"
            top1 = match_rate(records, weight, refined, 1, n)
            top5 = match_rate(records, weight, refined, 5, n)
            result[f"{name}, {cells}"] = {"top1": top1, "top5": top5}
            print(f"{name:34} {cells:9} {top1:.3f}  {top5:.3f}")
    both = [c for r in records for c in r["c"] if c["mt"] is not None and c["mr"] is not None]
    result["matched_both_ways"] = {
        "candidates": len(both),
        "rms_unrefined_mean": float(np.mean([c["mt"] for c in both])),
        "rms_refined_mean": float(np.mean([c["mr"] for c in both])),
    }
    every = [c for r in records for c in r["c"]]
    result["residual_median"] = {
        "unrefined": float(np.median([c["res_t"] for c in every])),
        "refined": float(np.nanmedian([c["res_ref"] for c in every])),
    }
    print(json.dumps({k: result[k] for k in ("matched_both_ways", "residual_median")}))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
