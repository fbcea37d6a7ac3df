"""Does the generator earn its keep? The screening funnel of each generation method.

For ``--n`` candidates from each of CDVAE with latent Tc optimisation, CDVAE plain and the
element-substitution baseline, runs ``tcdesign run``'s generate and screen stages (the pipeline's
defaults: 50 x 10 Langevin steps, relaxation of the candidates whose unrelaxed predicted Tc
reaches ``--prescreen-tc``) and counts how many relax cleanly, pass the rules (Tc > 5 K,
E_form < 0, gap < 0.05 eV), lie within 0.1 eV/atom of the CHGNet hull, are novel and unique:
the stable-unique-novel-and-passing (SUN-passing) rate per method, and how many of those have
no imaginary CHGNet phonon mode (the screen's phonon check).

Writes benchmarks/results/funnel.json and prints a table. Each method's run folder is kept
under ``--work`` and resumes when the script is rerun.

    python benchmarks/funnel.py [--n 200] [--work runs/funnel] [--prescreen-tc 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tcdesign.pipeline.run import funnel_counts, run_pipeline
from tcdesign.pipeline.settings import make_run_settings

RESULTS = Path(__file__).parent / "results" / "funnel.json"
EHULL_MAX = 0.1  # eV/atom, "stable" for this benchmark
CONFIGS = {  # name -> (method, optimise Tc in latent space)
    "cdvae_optimize_tc": ("cdvae", True),
    "cdvae_plain": ("cdvae", False),
    "substitution": ("substitution", False),
}


def measure(name: str, work: Path, n: int, prescreen_tc: float, seed: int) -> dict:
    method, optimize = CONFIGS[name]
    settings = make_run_settings(
        {
            "run": {"n": n, "methods": [method], "seed": seed, "report": False},
            "generate": {"optimize_tc": optimize},
            "screen": {"prescreen_tc": prescreen_tc},
        }
    )
    run_pipeline(work / name, settings, progress=True)
    # run.json adds up the stage times over every invocation, so a resumed run reports its total
    state = json.loads((work / name / "run.json").read_text())
    seconds = sum(state["seconds"].get(stage, 0.0) for stage in ("generate", "screen"))
    table = pd.read_csv(work / name / method / "screened.csv", dtype={"id": str})
    relaxed = table[table.status == "ok"]
    passed = relaxed[relaxed.passed.astype(bool)]
    stable = passed[pd.to_numeric(passed.e_hull, errors="coerce") <= EHULL_MAX]
    sun = stable[stable.novel.astype(bool) & stable.duplicate_of.isna()]
    # CHGNet phonons (tcdesign.screen.phonons): checked for every candidate that passes the rules
    sun_dynamic = sun[sun.phonon_stable.astype(str).str.lower() == "true"]
    counts = funnel_counts(work / name / method)
    return {
        "method": method,
        "optimize_tc": optimize,
        "generated": counts["generated"],
        "valid": counts["valid"],
        "relaxed_ok": len(relaxed),
        "relax_failed": int((table.status == "failed").sum()),
        "skipped_by_prescreen": int((table.status == "skipped").sum()),
        "passed": len(passed),
        "passed_within_0.1_of_hull": len(stable),
        "sun_passing": len(sun),
        "sun_passing_rate": len(sun) / counts["generated"] if counts["generated"] else 0.0,
        "sun_passing_phonon_stable": len(sun_dynamic),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="candidates per method (default 200)")
    parser.add_argument("--work", default="runs/funnel", help="run folders (resumable)")
    parser.add_argument("--prescreen-tc", type=float, default=2.0, help="K (default 2; 0: all)")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="generation settings to measure (default all three)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    result = {
        "n": args.n,
        "prescreen_tc": args.prescreen_tc,
        "ehull_max": EHULL_MAX,
        "methods": {
            name: measure(name, work, args.n, args.prescreen_tc, args.seed) for name in args.methods
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    keys = (
        "generated",
        "valid",
        "relaxed_ok",
        "relax_failed",
        "skipped_by_prescreen",
        "passed",
        "passed_within_0.1_of_hull",
        "sun_passing",
        "sun_passing_rate",
        "sun_passing_phonon_stable",
        "seconds",
    )
    print(f"{'':<28}" + "".join(f"{name:>20}" for name in args.methods))
    for key in keys:
        values = [result["methods"][name][key] for name in args.methods]
        cells = "".join(f"{v:>20.3f}" if isinstance(v, float) else f"{v:>20}" for v in values)
        print(f"{key:<28}{cells}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
