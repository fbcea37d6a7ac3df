"""The verification workflow against JARVIS-DFT's own electron-phonon Tc on known crystals.

``tcdesign verify`` is what turns a screened candidate into a result, so it has to reproduce the
reference calculations the training labels come from (JARVIS-DFT: QE DFPT, Allen-Dynes Tc). This
runs it on small bundled train and val crystals whose JARVIS Tc spans 0-28 K, with a complete
pseudopotential library (e.g. SSSP, Debian package quantum-espresso-data-sssp, or your own), and
compares Tc, the Tc > 5 K call and dynamical stability. Resumable: rerun the same command and
finished crystals are read back (each QE step leaves a marker). Writes
benchmarks/results/verify_jarvis.json and prints a table; finished crystals already in that file
that this invocation does not run (``--ids``) are kept when the preset and cutoffs match, so the
crystals can be run a few at a time, on different machines.

    python benchmarks/verify_jarvis.py --pseudo-dir DIR [--ids JVASP-19657 ...] [--workers 2]
        [--ecutwfc 45 --ecutrho 360] [--work runs/verify_jarvis]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from dft_rows import add_qe_arguments, dft_cells, dft_values, number
from scipy.stats import spearmanr

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.verify.executor import run_many
from tcdesign.verify.pseudo import PseudopotentialError, choose_pseudopotentials
from tcdesign.verify.settings import make_settings

RESULTS = Path(__file__).parent / "results"
# two-atom (or one-atom) cells of the bundled splits, JARVIS Tc from 28 K to 0 K, non-magnetic
# elements, in the order they run (alternating high and low Tc so a partial run is informative)
DEFAULT_IDS = [
    "JVASP-19657",  # VC, val, 28.1 K
    "JVASP-816",  # Al, train, 1.6 K
    "JVASP-15086",  # ScN, val, 20.8 K
    "JVASP-14989",  # NbN, val, 0.0 K
    "JVASP-18889",  # ZrO, val, 9.8 K
    "JVASP-37011",  # TiN, train, 1.6 K
    "JVASP-1014",  # Ta, val, 7.6 K
    "JVASP-14490",  # MoC, val, 0.0 K
    "JVASP-19974",  # ScSe, val, 9.1 K
    "JVASP-15060",  # ZrC, train, 0.6 K
    "JVASP-961",  # Pb, val, 5.4 K
    "JVASP-16587",  # NbRu, val, 4.6 K
    "JVASP-18916",  # TiC, train, 1.8 K
    "JVASP-14810",  # Sc, val, 1.0 K
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pseudo-dir", required=True, help="pseudopotential library (UPF files)")
    parser.add_argument("--ids", nargs="+", default=DEFAULT_IDS, help="bundled material ids")
    parser.add_argument("--work", default="runs/verify_jarvis", help="run folder (resumable)")
    add_qe_arguments(parser, timeout_s=7200.0)
    parser.add_argument("--out", default=str(RESULTS / "verify_jarvis.json"))
    args = parser.parse_args()
    if shutil.which("pw.x") is None:
        print("pw.x not found: install Quantum ESPRESSO (apt-get install quantum-espresso)")
        return 2
    wanted = list(dict.fromkeys(args.ids))
    known = {}
    for split in ("train", "val"):
        for record in read_structures(bundled_csv(split), targets=("tc",)):
            if record.ok and record.id in wanted:
                known[record.id] = (split, record)
    missing = [i for i in wanted if i not in known]
    if missing:
        print(f"not in the bundled train/val splits: {', '.join(missing)}")
        return 2
    records = []
    for material_id in wanted:
        _, record = known[material_id]
        elements = sorted({s.symbol for s in record.structure.species})
        try:
            choose_pseudopotentials(elements, Path(args.pseudo_dir))
        except PseudopotentialError as exc:
            print(f"skipping {material_id} ({record.formula}): {exc}")
            continue
        records.append(record)
    settings = make_settings(
        args.preset,
        ecutwfc_ry=args.ecutwfc,
        ecutrho_ry=args.ecutrho,
        np=args.np,
        q_workers=args.q_workers,
        timeout_s=args.timeout,
    )
    start = time.perf_counter()
    table = run_many(
        records, args.work, settings, args.pseudo_dir, workers=args.workers, progress=True
    )
    wall = time.perf_counter() - start
    rows = []
    for record, (_, row) in zip(records, table.iterrows(), strict=True):
        split = known[record.id][0]
        result_path = Path(str(row.get("folder") or "")) / "result.json"
        data = json.loads(result_path.read_text()) if result_path.is_file() else {}
        rows.append(
            {
                "id": record.id,
                "formula": record.formula,
                "split": split,
                "tc_jarvis_K": round(record.targets["tc"], 3),
                **dft_values(row),
                "grids": data.get("grids"),
                "pseudopotentials": {
                    e: p["file"] for e, p in data.get("pseudopotentials", {}).items()
                },
                "wall_s": number(data.get("total_seconds")),
                "qe_s": number(data.get("qe_seconds")),
            }
        )
    rows = _with_earlier_rows(rows, Path(args.out), _settings_key(args))
    summary = _summary(rows)
    report = {
        "description": __doc__.split("\n\n")[0],
        "command": "python benchmarks/verify_jarvis.py "
        + f"--pseudo-dir {args.pseudo_dir} --workers {args.workers} --np {args.np} "
        + f"--preset {args.preset} --ecutwfc {args.ecutwfc} --ecutrho {args.ecutrho}",
        "settings": {
            "preset": args.preset,
            "ecutwfc_Ry": args.ecutwfc,
            "ecutrho_Ry": args.ecutrho,
            "mu_star": settings.mu_star,
            "functional": "as the pseudopotentials (JARVIS: OptB88vdW structures, QE PBEsol EPC)",
        },
        "summary": summary,
        "crystals": rows,
        "wall_s_this_invocation": round(wall, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    _print(rows, summary)
    return 0


def _settings_key(args: argparse.Namespace) -> dict[str, object]:
    return {"preset": args.preset, "ecutwfc_Ry": args.ecutwfc, "ecutrho_Ry": args.ecutrho}


def _with_earlier_rows(rows: list[dict], out: Path, settings: dict[str, object]) -> list[dict]:
    """``rows`` plus the finished crystals of an earlier results file at ``out`` that this
    invocation did not run (their run folders may be on another machine), when that file used
    the same preset and cutoffs; ordered as DEFAULT_IDS. A crystal run now replaces its earlier
    row."""
    try:
        earlier = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        return rows
    same = all(earlier.get("settings", {}).get(k) == v for k, v in settings.items())
    ran = {r["id"] for r in rows}
    kept = [
        {**r, "earlier_invocation": True}
        for r in earlier.get("crystals", [])
        if same and r["id"] not in ran and r.get("status") == "ok"
    ]
    order = {material_id: i for i, material_id in enumerate(DEFAULT_IDS)}
    return sorted(rows + kept, key=lambda r: order.get(r["id"], len(order)))


def _summary(rows: list[dict]) -> dict[str, object]:
    done = [r for r in rows if r["status"] == "ok" and r["tc_K"] is not None]
    if not done:
        return {"n_ok": 0, "n": len(rows)}
    ours = np.array([r["tc_K"] for r in done])
    ref = np.array([r["tc_jarvis_K"] for r in done])
    agree = [(a > 5) == (b > 5) for a, b in zip(ours, ref, strict=True)]
    summary: dict[str, object] = {
        "n": len(rows),
        "n_ok": len(done),
        "tc_mae_K": round(float(np.abs(ours - ref).mean()), 3),
        "tc_median_abs_error_K": round(float(np.median(np.abs(ours - ref))), 3),
        "tc_above_5K_agreement": round(float(np.mean(agree)), 3),
        "unstable": sum(1 for r in done if r["dynamically_stable"] is False),
    }
    if len(done) >= 3:
        summary["tc_spearman"] = round(float(spearmanr(ours, ref).statistic), 3)
    return summary


def _print(rows: list[dict], summary: dict[str, object]) -> None:
    print(f"{'id':<13} {'formula':<7} {'JARVIS':>7} {'ours':>7} {'lambda':>7} {'w_log':>6} stable")
    for r in rows:
        print(f"{r['id']:<13} {r['formula']:<7} {r['tc_jarvis_K']:>7.2f} {dft_cells(r)}")
    print(json.dumps(summary))


if __name__ == "__main__":
    raise SystemExit(main())
