"""Does a better energy rank template composition -> structure candidates better?

``tcdesign csp --method template`` re-ranks its 10 best candidates with the CHGNet static
energy of each unrelaxed, volume-rescaled cell (``benchmarks/csp_energy.py`` chose the weight).
An unrelaxed cell's energy mixes the arrangement's merit with how wrong the rescaled volume and
positions are, so two cheap refinements of the energy are measured here on the same pools:

- ``volume``: the lowest static energy over isotropic volume scalings of the cell
  (``SCALES``, seven static calls per candidate);
- ``relaxed``: the energy after a short CHGNet relaxation of positions and cell (FIRE,
  ``--relax-steps`` steps (30), ``--fmax`` (0.1 eV/A); a few seconds per candidate), scored
  both by whether the unrelaxed candidate matches the true crystal and whether the relaxed one
  does. ``--relax-steps 200 --fmax 0.05`` are the settings of ``tcdesign csp --relax``; use
  another ``--cache`` and ``--out`` for them.

Each ranks by log-probability minus weight x (energy above the pool's lowest), primitive cells
first, as the CLI does. Queries: the 105 val formulas (all training crystals as templates) and
every ``--train-every``-th training formula with its own crystal left out of the templates (the
set a default would be chosen on). Candidates stream to ``--cache`` (JSON lines, resumable).
Writes ``benchmarks/results/csp_relax_rank.json`` and prints a table.

    python benchmarks/csp_relax_rank.py --workers 2     # about 1 h on 2 cores (317 queries)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
from csp_energy import _split, cell_formula, run_cached

from tcdesign.generate.defaults import ENERGY_WEIGHT
from tcdesign.generate.substitution import _energy_above_lowest

RESULTS = Path(__file__).parent / "results" / "csp_relax_rank.json"
CACHE = Path(__file__).parent / "results" / "csp_relax_rank_candidates.jsonl"
SCALES = (0.8, 0.87, 0.94, 1.0, 1.07, 1.15, 1.25)  # volume factors; 1.0 is the static energy
WEIGHTS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 1000.0)
POOL = 10
RELAX_FMAX = 0.1  # eV/A


def query(split: str, index: int, relax_steps: int, fmax: float = RELAX_FMAX) -> dict:
    """One formula's pool: log-probability, primitive flag, static energies at ``SCALES``, the
    short-relaxation energy, and whether the candidate (unrelaxed / relaxed) matches the truth."""
    from tcdesign.generate.metrics import match_rms
    from tcdesign.generate.substitution import fit_atomic_volumes, template_csp
    from tcdesign.screen.relax import relax_structure, static_energies_per_atom

    train = _split("train")
    truth = train[index] if split == "train" else _split("val")[index]
    templates = [s for i, s in enumerate(train) if not (split == "train" and i == index)]
    record: dict = {"split": split, "index": index, "formula": cell_formula(truth)}
    record["candidates"] = []
    try:
        found = template_csp(
            record["formula"], templates, POOL, volumes=fit_atomic_volumes(templates)
        )
    except ValueError as exc:  # no template with this stoichiometry: a miss for every ranking
        record["error"] = str(exc)
        return record
    scaled = []
    for structure in found:
        for factor in SCALES:
            copy = structure.copy()
            copy.scale_lattice(structure.volume * factor)
            scaled.append(copy)
    energies = np.array(static_energies_per_atom(scaled)).reshape(len(found), len(SCALES))
    started = time.perf_counter()
    relaxed = [relax_structure(s, fmax=fmax, max_steps=relax_steps) for s in found]
    record["relax_seconds"] = time.perf_counter() - started
    matches = match_rms(truth, found)
    relaxed_cells = [
        r.structure if r.structure is not None else s for r, s in zip(relaxed, found, strict=True)
    ]
    relaxed_matches = match_rms(truth, relaxed_cells)
    for i, structure in enumerate(found):
        result = relaxed[i]
        record["candidates"].append(
            {
                "log_probability": float(structure.properties["log_probability"]),
                "primitive": bool(structure.properties["primitive"]),
                "pairs": int(structure.properties["pairs"]),
                "energies": [float(e) for e in energies[i]],
                "match": matches[i] is not None,
                "nsites": len(structure),
                "relaxed_energy": float(result.energy_per_atom),  # NaN when it failed
                "relaxed_match": result.structure is not None and relaxed_matches[i] is not None,
                "relax_ok": result.structure is not None,
                "relax_steps": int(result.steps),
            }
        )
    return record


def _energy(candidate: dict, which: str) -> float:
    if which == "static":
        return candidate["energies"][SCALES.index(1.0)]
    if which == "volume":
        finite = [e for e in candidate["energies"] if math.isfinite(e)]
        return min(finite) if finite else math.nan
    value = candidate["relaxed_energy"]
    return math.nan if value is None else float(value)


def top1(records: list[dict], which: str, weight: float, relaxed_match: bool = False) -> float:
    """Top-1 match rate when each pool is ranked by log-probability - weight x energy above
    the lowest (``which``: static, volume or relaxed energy); primitive cells first."""
    hits = 0
    for record in records:
        cands = record["candidates"]
        if not cands:
            continue
        energies = np.array([_energy(c, which) for c in cands], dtype=float)
        score = np.array([c["log_probability"] for c in cands]) - weight * _energy_above_lowest(
            energies
        )
        demoted = np.array([not c["primitive"] for c in cands])
        best = int(np.lexsort((-score, demoted))[0])
        hits += bool(cands[best]["relaxed_match" if relaxed_match else "match"])
    return hits / max(len(records), 1)


def top1_relax_option(records: list[dict], weight: float | None) -> float:
    """Top-1 of ``csp --method template --relax`` (relaxed cells matched): the template's own
    score (log-probability - ENERGY_WEIGHT x static energy above the lowest) minus ``weight`` x
    relaxed energy above the lowest, supercells last; ``weight`` None: the relaxed energy
    alone without the supercell rule (``csp --relax`` before session 25)."""
    hits = 0
    for record in records:
        cands = record["candidates"]
        if not cands:
            continue
        relaxed = np.array([_energy(c, "relaxed") for c in cands], dtype=float)
        if weight is None:
            best = int(np.lexsort((np.arange(len(cands)), np.nan_to_num(relaxed, nan=np.inf)))[0])
        else:
            static = np.array([_energy(c, "static") for c in cands], dtype=float)
            score = (
                np.array([c["log_probability"] for c in cands])
                - ENERGY_WEIGHT * _energy_above_lowest(static)
                - weight * _energy_above_lowest(relaxed)
            )
            demoted = np.array([not c["primitive"] for c in cands])
            best = int(np.lexsort((-score, demoted))[0])
        hits += bool(cands[best]["relaxed_match"])
    return hits / max(len(records), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--relax-steps", type=int, default=30, help="FIRE steps per candidate")
    parser.add_argument("--fmax", type=float, default=RELAX_FMAX, help="force threshold, eV/A")
    parser.add_argument("--train-every", type=int, default=4, help="every Nth training formula")
    parser.add_argument("--cache", type=Path, default=CACHE, help="candidate cache (JSON lines)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    jobs = [("val", i) for i in range(len(_split("val")))]
    jobs += [("train", i) for i in range(0, len(_split("train")), args.train_every)]
    work = partial(query, relax_steps=args.relax_steps, fmax=args.fmax)
    done = run_cached(jobs, args.cache, work, args.workers)
    rankings = {
        "static": ("static", False),
        "volume": ("volume", False),
        "relaxed": ("relaxed", False),
        "relaxed, relaxed cell": ("relaxed", True),
    }
    result: dict = {
        "pool": POOL,
        "relax": {"steps": args.relax_steps, "fmax": args.fmax, "optimizer": "FIRE"},
        "volume_scales": list(SCALES),
        "matcher": "stol 0.5, ltol 0.3, angle_tol 10",
    }
    print(f"{'split':5} {'energy':22} " + " ".join(f"w={w:<5g}" for w in WEIGHTS))
    for split in ("train", "val"):
        records = [done[job] for job in jobs if job[0] == split]
        result[split] = {"queries": len(records)}
        result[split]["pool_match_rate"] = float(
            np.mean([any(c["match"] for c in r["candidates"]) for r in records])
        )
        result[split]["pool_match_rate_relaxed"] = float(
            np.mean([any(c["relaxed_match"] for c in r["candidates"]) for r in records])
        )
        for name, (which, relaxed_match) in rankings.items():
            rates = {str(w): top1(records, which, w, relaxed_match) for w in WEIGHTS}
            result[split][name] = rates
            print(f"{split:5} {name:22} " + " ".join(f"{r:7.3f}" for r in rates.values()))
        rates = {str(w): top1_relax_option(records, w) for w in WEIGHTS}
        result[split]["csp --relax (template score)"] = rates
        print(f"{split:5} {'csp --relax':22} " + " ".join(f"{r:7.3f}" for r in rates.values()))
        old = top1_relax_option(records, None)
        result[split]["csp --relax before session 25 (energy alone)"] = old
        print(f"{split:5} {'old csp --relax':22} {old:7.3f}")
    seconds = [r["relax_seconds"] for r in done.values() if "relax_seconds" in r]
    result["relax_seconds_per_query_mean"] = float(np.mean(seconds)) if seconds else None
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
