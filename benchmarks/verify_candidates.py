"""DFT verification of a run's own candidates: how many screened crystals superconduct in DFT.

The paper's number to beat: of the 61 generated crystals its ALIGNN screen passed, 52 % had an
electron-phonon Tc above 5 K in DFT (89 % above 0.5 K), and 7 of those were dynamically unstable.
This takes the passed candidates of a `tcdesign run` folder (candidates.csv, in rank order), keeps
the small ones (QE DFPT cost grows steeply with the cell), runs `tcdesign verify`'s workflow on
them with a complete pseudopotential library (a crystal that stays magnetic in its spin-polarised
check is counted as such, without phonons) and compares the DFT Tc with the screen's
prediction. Resumable: rerun the same command and finished crystals are read back. Writes
benchmarks/results/verify_candidates.json and prints a table.

    python benchmarks/verify_candidates.py --run runs/default --pseudo-dir DIR [--top 5]
        [--max-atoms 3] [--work runs/verify_candidates]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import pandas as pd
from dft_rows import add_qe_arguments, dft_cells, dft_values, flag, number
from pymatgen.core import Structure

from tcdesign.data.io import StructureRecord
from tcdesign.verify.executor import ROW_COLUMNS, run_many, safe_name
from tcdesign.verify.pseudo import PseudopotentialError, choose_pseudopotentials
from tcdesign.verify.settings import make_settings

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a 'tcdesign run' folder (candidates.csv)")
    parser.add_argument("--pseudo-dir", required=True, help="pseudopotential library (UPF files)")
    parser.add_argument("--top", type=int, default=5, help="candidates to verify (rank order)")
    parser.add_argument("--max-atoms", type=int, default=3, help="largest primitive cell kept")
    parser.add_argument("--work", default="runs/verify_candidates", help="run folder (resumable)")
    add_qe_arguments(parser, timeout_s=14400.0)
    parser.add_argument("--tc-min", type=float, default=5.0, help="K, the screen's Tc rule")
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="start no QE run: report the crystals already finished in --work (e.g. while "
        "'tcdesign verify' runs them in that folder), the others as pending",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="ID",
        default=None,
        help="run QE only for these of the chosen candidates (their id, e.g. gen-00047, or "
        "folder name, gen-00047-NbRu), for example to skip ahead of a slow one; the others are "
        "reported from --work as with --summarize-only",
    )
    parser.add_argument("--out", default=str(RESULTS / "verify_candidates.json"))
    args = parser.parse_args()
    if shutil.which("pw.x") is None:
        print("pw.x not found: install Quantum ESPRESSO (apt-get install quantum-espresso)")
        return 2
    run = Path(args.run)
    table_path = run / "candidates.csv"
    if not table_path.is_file():
        print(f"{table_path}: not found (the --out folder of 'tcdesign run')")
        return 2
    candidates = pd.read_csv(table_path, dtype={"id": str}).sort_values("rank")
    chosen: list[tuple[dict, StructureRecord]] = []
    skipped: list[dict] = []
    for row in candidates.to_dict("records"):
        if len(chosen) == args.top:
            break
        structure = Structure.from_file(run / row["cif"])
        primitive = structure.get_primitive_structure(tolerance=0.1)
        elements = sorted({e.symbol for e in structure.composition.elements})
        reason = None
        if len(primitive) > args.max_atoms:
            reason = f"{len(primitive)} atoms in the primitive cell (> --max-atoms)"
        else:
            try:
                choose_pseudopotentials(elements, Path(args.pseudo_dir))
            except PseudopotentialError as exc:
                reason = str(exc)
        if reason:
            skipped.append({"id": row["id"], "formula": row["formula"], "reason": reason})
            continue
        # folder names carry the formula, so a folder of runs reads without the table
        cell = primitive if len(primitive) < len(structure) else structure
        record = StructureRecord(f"{row['id']}-{row['formula']}", cell)
        chosen.append((row, record))
    settings = make_settings(
        args.preset,
        ecutwfc_ry=args.ecutwfc,
        ecutrho_ry=args.ecutrho,
        np=args.np,
        q_workers=args.q_workers,
        timeout_s=args.timeout,
    )
    start = time.perf_counter()
    records = [record for _, record in chosen]
    only = set(args.only or [])
    unknown = only - {r.id for r in records} - {str(row["id"]) for row, _ in chosen}
    if unknown:
        print(f"--only: not among the chosen candidates: {', '.join(sorted(unknown))}")
        return 2
    run = [
        record
        for row, record in chosen
        if not args.summarize_only and (not only or {record.id, str(row["id"])} & only)
    ]
    finished = {}
    if run:
        computed = run_many(
            run, args.work, settings, args.pseudo_dir, workers=args.workers, progress=True
        )
        finished = {str(row["id"]): dict(row) for _, row in computed.iterrows()}
    table = pd.DataFrame(
        [finished.get(record.id) or _finished(Path(args.work), record.id) for record in records]
    )
    wall = time.perf_counter() - start
    if run:  # run_many rewrote work/verify.csv with only the crystals it ran: list all finished
        done = [
            {**row, "folder": str(Path(args.work) / safe_name(str(row["id"])))}
            for _, row in table.iterrows()
            if row["status"] != "pending"
        ]
        pd.DataFrame(done, columns=ROW_COLUMNS).to_csv(Path(args.work) / "verify.csv", index=False)
    rows = []
    for (candidate, record), (_, row) in zip(chosen, table.iterrows(), strict=True):
        rows.append(
            {
                "id": record.id,
                "rank": int(candidate["rank"]),
                "formula": candidate["formula"],
                "spacegroup": candidate.get("spacegroup"),
                "novel": flag(candidate.get("novel")),
                "tc_predicted_K": number(candidate["tc"]),
                "tc_std_K": number(candidate["tc_std"]),
                "e_hull": number(candidate.get("e_hull")),
                **dft_values(row),
                "wall_s": number(row.get("total_seconds")),
                "qe_s": number(row.get("qe_seconds")),
            }
        )
    summary = _summary(rows, args.tc_min)
    report = {
        "description": __doc__.split("\n\n")[0],
        "command": f"python benchmarks/verify_candidates.py --run {args.run} "
        + f"--pseudo-dir {args.pseudo_dir} --top {args.top} --max-atoms {args.max_atoms} "
        + f"--preset {args.preset} --ecutwfc {args.ecutwfc} --ecutrho {args.ecutrho}",
        "paper": {"tc_above_5K": 0.52, "tc_above_0.5K": 0.89, "n": 61, "unstable_above_5K": 7},
        "summary": summary,
        "candidates": rows,
        "skipped": skipped,
        "wall_s_this_invocation": round(wall, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    _print(rows, summary)
    return 0


def _finished(work: Path, material_id: str) -> dict[str, object]:
    """The verify.csv row of a crystal from its result.json in ``work``, or a pending row."""
    path = work / safe_name(material_id) / "result.json"
    if not path.is_file():
        return {"id": material_id, "status": "pending", "error": "not finished"}
    data = json.loads(path.read_text())
    return {key: data.get(key) for key in ROW_COLUMNS if key != "folder"}


def _summary(rows: list[dict], tc_min: float) -> dict[str, object]:
    done = [r for r in rows if r["status"] == "ok" and r["tc_K"] is not None]
    summary: dict[str, object] = {
        "n": len(rows),
        "n_ok": len(done),
        "magnetic": sum(r["status"] == "magnetic" for r in rows),
        "pending": sum(r["status"] == "pending" for r in rows),
    }
    if not done:
        return summary
    above = [r for r in done if r["tc_K"] > tc_min]
    summary.update(
        {
            "tc_above_tc_min": round(len(above) / len(done), 3),
            "tc_above_0.5K": round(sum(r["tc_K"] > 0.5 for r in done) / len(done), 3),
            "above_tc_min_and_stable": sum(r["dynamically_stable"] is True for r in above),
            "unstable": sum(r["dynamically_stable"] is False for r in done),
            "tc_mae_vs_predicted_K": round(
                sum(abs(r["tc_K"] - r["tc_predicted_K"]) for r in done) / len(done), 3
            ),
        }
    )
    return summary


def _print(rows: list[dict], summary: dict[str, object]) -> None:
    print(f"{'id':<18} {'rank':>4} {'pred':>6} {'DFT':>7} {'lambda':>7} {'w_log':>6} stable")
    for r in rows:
        print(f"{r['id']:<18} {r['rank']:>4} {r['tc_predicted_K']:>6.1f} {dft_cells(r)}")
    print(json.dumps(summary))


if __name__ == "__main__":
    raise SystemExit(main())
