"""Coarse fcc-Al electron-phonon benchmark: our alpha2F moments against lambda.x on the same run.

Runs ``tcdesign.verify.verify`` with the coarse preset (relaxation included) on conventional fcc
Al, compares lambda and omega_log at the headline broadening with QE's lambda.x, and writes
benchmarks/results/verify_al.json. With ``--structure CIF`` it measures another structure (e.g.
a 2-4 atom candidate) instead and records it under its formula.

    python benchmarks/verify_al.py [--out DIR] [--structure CIF] [--np N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from pymatgen.core import Lattice, Structure

from tcdesign.verify.settings import make_settings
from tcdesign.verify.workflow import verify

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--structure", default=None, help="CIF to measure instead of fcc Al")
    parser.add_argument("--np", type=int, default=1, help="MPI ranks for pw.x and ph.x")
    args = parser.parse_args()
    if shutil.which("pw.x") is None:
        print("pw.x not found: install Quantum ESPRESSO (apt-get install quantum-espresso)")
        return 2
    if args.structure:
        structure = Structure.from_file(args.structure)
    else:
        structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])
    formula = structure.composition.reduced_formula
    out = Path(args.out or tempfile.mkdtemp(prefix=f"verify_{formula}_"))
    settings = make_settings("coarse", np=args.np)
    start = time.perf_counter()
    result = verify(structure, out, settings, structure_id=formula)
    wall = time.perf_counter() - start
    data = result.data
    record = {
        "formula": formula,
        "status": result.status,
        "error": result.error,
        "wall_s": round(wall, 1),
        "np": args.np,
        "preset": "coarse",
        "grids": data.get("grids"),
        "cutoffs_Ry": data.get("cutoffs_Ry"),
        "pseudopotentials": {e: p["file"] for e, p in data.get("pseudopotentials", {}).items()},
        "qe_version": data.get("qe_version"),
        "timings_s": data.get("timings_s"),
    }
    rows = []
    if result.status == "ok":
        lambda_x = {round(r["sigma_Ry"], 4): r for r in data.get("lambda_x", [])}
        check = lambda_x.get(round(data["headline_sigma_Ry"], 4), {})
        record.update(
            {
                key: data[key]
                for key in ("lambda", "omega_log_K", "tc_K", "min_freq_cm1", "dynamically_stable")
            }
        )
        record.update(
            headline_sigma_Ry=data["headline_sigma_Ry"],
            converged=data["converged"],
            lambda_spread_middle=data["lambda_spread_middle"],
            lambda_x=check,
        )
        if check:
            record["lambda_rel_diff"] = data["lambda"] / check["lambda"] - 1
            record["omega_log_rel_diff"] = data["omega_log_K"] / check["omega_log_K"] - 1
            rows.append(("lambda.x", check["lambda"], check["omega_log_K"], check["tc_K"], ""))
        rows.insert(0, ("tcdesign", data["lambda"], data["omega_log_K"], data["tc_K"], wall))
    RESULTS.mkdir(exist_ok=True)
    name = "verify_al.json" if not args.structure else f"verify_{formula}.json"
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")
    print(f"{formula}, coarse preset, status {result.status} {result.error or ''}")
    print(f"{'':10s} {'lambda':>8s} {'omega_log_K':>12s} {'Tc_K':>8s} {'wall_s':>8s}")
    for label, lam, wlog, tc, seconds in rows:
        wall_text = f"{seconds:8.1f}" if seconds != "" else ""
        print(f"{label:10s} {lam:8.3f} {wlog:12.1f} {tc:8.3f} {wall_text}")
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
