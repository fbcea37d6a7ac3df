"""Choose and measure the CHGNet energy term of template composition -> structure ranking.

``tcdesign csp --method template`` (and ``hybrid``) ranks the best template candidates of a
formula by substitution log-probability minus ``--energy-weight`` x their CHGNet static energy
per atom above the lowest of them (:func:`tcdesign.generate.substitution.template_csp`). This
script measures that ranking for a grid of weights, on two sets of queries:

- the training formulas, each with its own crystal left out of the templates (846 queries; the
  set the default weight is chosen on), and
- the val formulas with all training crystals as templates (105 queries; reported, not tuned on).

For each query the ``--pool`` best candidates by probability (primitive cells first, as the CLI
ranks them) are built once, their static energies computed once, and each is matched against the
true crystal (CDVAE's CSP matcher: stol 0.5, ltol 0.3, angle_tol 10); every weight then re-ranks
the same pool. Candidates and energies stream to ``--cache`` (JSON lines), so a killed run
resumes. Writes ``benchmarks/results/csp_energy.json`` and prints a table.

    python benchmarks/csp_energy.py --workers 2      # about 35 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tcdesign.data.io import read_structures
from tcdesign.generate.defaults import ENERGY_POOL, ENERGY_WEIGHT
from tcdesign.generate.metrics import match_rms
from tcdesign.generate.substitution import _energy_above_lowest, fit_atomic_volumes, template_csp
from tcdesign.predict.api import bundled_csv

RESULTS = Path(__file__).parent / "results" / "csp_energy.json"
CACHE = Path(__file__).parent / "results" / "csp_energy_candidates.jsonl"
WEIGHTS = (0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1000.0)
MAX_ATOMS = 20  # the val benchmark's limit (the generator's largest cell)


@lru_cache(maxsize=2)
def _split(name: str) -> list:
    """The usable structures of a bundled split, read once per process."""
    return [r.structure for r in read_structures(bundled_csv(name)) if r.ok]


def cell_formula(structure) -> str:
    counts = structure.composition.get_el_amt_dict()
    return "".join(f"{el}{round(n)}" for el, n in counts.items())


def candidates(split: str, index: int, pool: int) -> dict:
    """One query: its pool of candidates with log-probability, primitive flag, static energy and
    whether each matches the true crystal."""
    from tcdesign.screen.relax import static_energies_per_atom

    train = _split("train")
    truth = train[index] if split == "train" else _split("val")[index]
    templates = [s for i, s in enumerate(train) if not (split == "train" and i == index)]
    formula = cell_formula(truth)
    record: dict = {"split": split, "index": index, "formula": formula, "candidates": []}
    if len(truth) > MAX_ATOMS:
        record["skipped"] = f"{len(truth)} atoms"
        return record
    try:
        found = template_csp(
            formula, templates, pool, volumes=fit_atomic_volumes(templates), primitive_cell=True
        )
    except ValueError as exc:  # no template with this stoichiometry: a miss for every weight
        record["error"] = str(exc)
        return record
    energies = static_energies_per_atom(found)
    matches = match_rms(truth, found)
    record["candidates"] = [
        {
            "log_probability": float(s.properties["log_probability"]),
            "primitive": bool(s.properties["primitive"]),
            "energy_per_atom": float(e),
            "match": m is not None,
        }
        for s, e, m in zip(found, energies, matches, strict=True)
    ]
    return record


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_cached(
    jobs: list[tuple[str, int]],
    cache_path: Path,
    work: Callable[[str, int], dict],
    workers: int,
) -> dict[tuple[str, int], dict]:
    """Every (split, index) job's record: read from the JSON-lines ``cache_path`` where it is
    there, else computed by ``work`` in ``workers`` processes and appended as it finishes (a
    killed run resumes)."""
    done: dict[tuple[str, int], dict] = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            record = json.loads(line)
            done[(record["split"], record["index"])] = record
    todo = [job for job in jobs if job not in done]
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        futures = [pool.submit(work, split, i) for split, i in todo]
        with cache_path.open("a") as cache:
            for future in tqdm(as_completed(futures), total=len(futures), desc="queries"):
                record = future.result()
                done[(record["split"], record["index"])] = record
                cache.write(json.dumps(record) + "\n")
                cache.flush()
    return done


def rank(record: dict, weight: float) -> list[bool]:
    """Match flags of the record's candidates in the order the CLI gives them for ``weight``."""
    cands = record["candidates"]
    if not cands:
        return []
    energies = np.array([c["energy_per_atom"] for c in cands], dtype=float)
    above = _energy_above_lowest(energies) if weight else np.zeros(len(cands))
    keys = [
        (not c["primitive"], -(c["log_probability"] - weight * a))
        for c, a in zip(cands, above, strict=True)
    ]
    order = sorted(range(len(cands)), key=lambda i: keys[i])
    return [cands[i]["match"] for i in order]


def rates(records: list[dict], weight: float, n: int, k: int) -> dict:
    """Top-1 and top-k match rates at ``weight``, and how many queries it turns from a top-1
    miss into a hit (``gained``) and back (``lost``) against probability alone (paired)."""
    ranked = [rank(r, weight) for r in records]
    plain = [rank(r, 0.0) for r in records]
    hits = [bool(m and m[0]) for m in ranked]
    before = [bool(m and m[0]) for m in plain]
    return {
        "top1": sum(hits) / n,
        "topk": sum(any(m[:k]) for m in ranked) / n,
        "n": n,
        "gained": sum(h and not b for h, b in zip(hits, before, strict=True)),
        "lost": sum(b and not h for h, b in zip(hits, before, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--pool", type=int, default=ENERGY_POOL, help="candidates per query")
    parser.add_argument("--k", type=int, default=5, help="top-k reported beside top-1")
    parser.add_argument("--cache", type=Path, default=CACHE, help="candidate cache (JSON lines)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N queries of each split (tests)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    train_n = len(_split("train"))
    val_n = len(_split("val"))
    jobs = [("train", i) for i in range(train_n)][: args.limit] + [
        ("val", i) for i in range(val_n)
    ][: args.limit]
    done = run_cached(jobs, args.cache, partial(candidates, pool=args.pool), args.workers)
    result: dict = {
        "pool": args.pool,
        "k": args.k,
        "default_weight": ENERGY_WEIGHT,
        "matcher": "stol 0.5, ltol 0.3, angle_tol 10",
        "seconds_this_run": time.perf_counter() - started,
    }
    print(f"{'weight':>8} | train LOO top-1  top-{args.k}  +/- | val top-1  top-{args.k}  +/-")
    for split in ("train", "val"):
        records = [done[job] for job in jobs if job[0] == split]
        # the val benchmark counts only crystals the generator can hold (as benchmarks/generator)
        records = [r for r in records if "skipped" not in r]
        result[split] = {str(w): rates(records, w, len(records), args.k) for w in WEIGHTS}
        result[f"{split}_queries"] = len(records)
        result[f"{split}_pool_match_rate"] = sum(
            any(c["match"] for c in r["candidates"]) for r in records
        ) / max(len(records), 1)
    for w in WEIGHTS:
        t, v = result["train"][str(w)], result["val"][str(w)]
        print(
            f"{w:8g} | {t['top1']:15.3f} {t['topk']:6.3f} {t['gained']:3d}/{t['lost']:<3d}"
            f"| {v['top1']:9.3f} {v['topk']:6.3f} {v['gained']:3d}/{v['lost']:<3d}"
        )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
