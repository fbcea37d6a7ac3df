"""How far do passed candidates move off the hull once competing prototypes join it?

For each screening folder given (a ``tcdesign screen --out`` folder, or a method folder of
``tcdesign run`` / ``benchmarks/funnel.py``), takes the candidates that passed and recomputes
their energy above the hull with the competing crystals of ``tcdesign screen --hull-prototypes
K`` added (built from the training prototypes, relaxed with CHGNet into one resumable table under
``--work``, shared by all folders). Counts, per folder, how many lie within 0.1 eV/atom of the
hull before and after, and how many of those are also novel and unique (SUN-passing). Only the
systems of candidates within 0.1 eV/atom get prototypes: more references can only raise a
candidate's distance from the hull.

Writes benchmarks/results/hull_prototypes.json and prints a table. Killed, it resumes: every
relaxation already in the table is reused.

    python benchmarks/hull_prototypes.py DIR [DIR ...] [--k 2] [--work runs/hull_prototypes]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.screen.hull import ReferenceSet
from tcdesign.screen.prototypes import (
    MIN_PATTERN_COUNT,
    PROTOTYPE_TABLE,
    build_prototypes,
    with_prototypes,
)

RESULTS = Path(__file__).parent / "results" / "hull_prototypes.json"
EHULL_MAX = 0.1  # eV/atom, "stable" as in benchmarks/funnel.py


def _passed(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "screened.csv", dtype={"id": str})
    passed = table[table.passed.astype(str).str.lower() == "true"].copy()
    passed["energy_per_atom"] = pd.to_numeric(passed.energy_per_atom, errors="coerce")
    passed["e_hull"] = pd.to_numeric(passed.e_hull, errors="coerce")
    return passed.reset_index(drop=True)


def _counts(table: pd.DataFrame, column: str) -> dict[str, int]:
    stable = table[table[column] <= EHULL_MAX]
    novel = stable.novel.astype(str).str.lower() == "true"
    unique = stable.duplicate_of.isna()
    return {"within_0.1": len(stable), "sun": int((novel & unique).sum())}


def measure(
    folder: Path, work: Path, k: int, workers: int, templates: list, scale: str = "jarvis"
) -> dict:
    passed = _passed(folder)
    compositions = [Composition(f) for f in passed.formula]
    # more references only lower the hull: a candidate above EHULL_MAX stays there, so only the
    # systems of those within it need prototypes
    near = (passed.e_hull <= EHULL_MAX).to_numpy()
    systems = {
        frozenset(str(e) for e in c.elements) for c, n in zip(compositions, near, strict=True) if n
    }
    started = time.perf_counter()
    table = build_prototypes(
        work / PROTOTYPE_TABLE,
        systems,
        templates,
        per_composition=k,
        min_count=MIN_PATTERN_COUNT,
        workers=workers,
    )
    seconds = time.perf_counter() - started
    hull = with_prototypes(ReferenceSet.load(scale=scale), table)
    energies, before = passed.energy_per_atom, passed.e_hull
    passed["e_hull_prototypes"] = [
        hull.e_above_hull(c, e)[0] if n and math.isfinite(e) else h
        for c, e, n, h in zip(compositions, energies, near, before, strict=True)
    ]
    shift = (passed.e_hull_prototypes - passed.e_hull).to_numpy()[near]  # near ones only
    passed[["id", "formula", "e_hull", "e_hull_prototypes"]].to_csv(
        work / f"{folder.parent.name}_{folder.name}.csv", index=False
    )
    return {
        "folder": str(folder),
        "passed": len(passed),
        "systems": len(systems),
        "binary_systems": sum(len(s) == 2 for s in systems),
        "prototypes": int((table.status == "ok").sum()),
        "prototypes_failed": int((table.status != "ok").sum()),
        "before": _counts(passed, "e_hull"),
        "after": _counts(passed, "e_hull_prototypes"),
        "near_hull_before": int(near.sum()),
        "shift_median_eV": float(np.nanmedian(shift)) if len(shift) else math.nan,
        "shift_max_eV": float(np.nanmax(shift)) if len(shift) else math.nan,
        "seconds_this_invocation": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="screening folders (with screened.csv)")
    parser.add_argument("--k", type=int, default=2, help="crystals per competing composition")
    parser.add_argument("--work", default="runs/hull_prototypes", help="prototype table folder")
    parser.add_argument("--workers", type=int, default=1, help="relaxation processes")
    parser.add_argument(
        "--eform-scale",
        choices=["jarvis", "mp"],
        default="jarvis",
        help="energy scale the folders were screened on (default jarvis, the screen's default)",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    templates = [r for r in read_structures(bundled_csv("train")) if r.ok]
    rows = [
        measure(Path(f), work, args.k, args.workers, templates, args.eform_scale)
        for f in args.folders
    ]
    result = {"k": args.k, "ehull_max": EHULL_MAX, "folders": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'folder':<40}{'passed':>8}{'systems':>9}{'<=0.1 before':>14}{'after':>7}"
          f"{'SUN before':>12}{'after':>7}{'median shift':>14}")  # fmt: skip
    for r in rows:
        print(
            f"{r['folder'][-40:]:<40}{r['passed']:>8}{r['systems']:>9}"
            f"{r['before']['within_0.1']:>14}{r['after']['within_0.1']:>7}"
            f"{r['before']['sun']:>12}{r['after']['sun']:>7}{r['shift_median_eV']:>14.3f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
