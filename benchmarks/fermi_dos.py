"""Does the DFT density of states at the Fermi level rank JARVIS Tc?

McMillan's coupling is lambda = N(E_F) <I^2> / (M <omega^2>). CHGNet phonons give the phonon
half cheaply and add about 0.1 K to the Tc predictor in cross-validation
(``predictor_phonons.py``); the electronic half needs DFT. This runs one coarse Quantum ESPRESSO
scf per bundled crystal and measures N(E_F) from the eigenvalues:
- SSSP pseudopotentials (``--pseudo-dir``), 35/280 Ry;
- a k-grid of spacing 0.25 1/A, Marzari-Vanderbilt smearing of 0.02 Ry;
- Gaussian broadening of 0.05, 0.1 and 0.2 eV, in states/eV per atom, both spins.

It then reports the Spearman correlation of N(E_F) with the JARVIS Tc. A crystal takes 1-3
minutes on one core, so all 951 take a day: results stream to ``--cache`` (JSON lines, one per
crystal, committed), and a rerun continues where the last one stopped. Writes
``benchmarks/results/fermi_dos.json`` and prints a table.

    python benchmarks/fermi_dos.py --pseudo-dir DIR [--split val] [--limit 20] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from ase.io import read
from ase.io.espresso import write_espresso_in
from pymatgen.io.ase import AseAtomsAdaptor
from scipy.stats import spearmanr

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.verify.inputs import grid_from_spacing
from tcdesign.verify.pseudo import choose_pseudopotentials

RESULTS = Path(__file__).parent / "results" / "fermi_dos.json"
CACHE = Path(__file__).parent / "results" / "fermi_dos.jsonl"
BROADENINGS = (0.05, 0.1, 0.2)  # eV
K_SPACING = 0.25  # 1/A
ECUT = (35.0, 280.0)  # Ry, wavefunctions and density


def fermi_dos(structure, pseudo_dir: Path, work: Path) -> dict:
    """One scf in ``work``: seconds, k-grid and N(E_F) per atom at each of ``BROADENINGS``."""
    pseudos = choose_pseudopotentials(sorted({e.symbol for e in structure.composition}), pseudo_dir)
    kpts = grid_from_spacing(structure, K_SPACING)
    control = {"calculation": "scf", "prefix": "dos", "outdir": "tmp", "verbosity": "high"}
    data = {
        "control": {**control, "pseudo_dir": str(pseudo_dir)},
        "system": {
            "ecutwfc": ECUT[0],
            "ecutrho": ECUT[1],
            "occupations": "smearing",
            "smearing": "mv",
            "degauss": 0.02,
        },
        "electrons": {"conv_thr": 1e-6 * len(structure), "mixing_beta": 0.4},
    }
    buffer = io.StringIO()
    write_espresso_in(
        buffer,
        AseAtomsAdaptor.get_atoms(structure),
        input_data=data,
        pseudopotentials={el: p.filename for el, p in pseudos.items()},
        kpts=kpts,
    )
    work.mkdir(parents=True, exist_ok=True)
    (work / "scf.in").write_text(buffer.getvalue())
    started = time.perf_counter()
    with (work / "scf.out").open("w") as handle:
        subprocess.run(
            ["pw.x", "-in", "scf.in"],
            cwd=work,
            stdout=handle,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=True,
        )
    seconds = time.perf_counter() - started
    calc = read(work / "scf.out", format="espresso-out").calc
    weights = np.array(calc.get_k_point_weights())  # (n_k,)
    eigenvalues = np.array([calc.get_eigenvalues(kpt=k) for k in range(len(weights))])  # eV
    shifted = eigenvalues - calc.get_fermi_level()  # (n_k, n_bands)
    result = {"seconds": round(seconds, 1), "kpts": [int(k) for k in kpts]}
    for sigma in BROADENINGS:
        gauss = np.exp(-0.5 * (shifted / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        per_cell = 2 * (weights[:, None] * gauss).sum() / weights.sum()  # both spins
        result[f"nef_{sigma:g}"] = float(per_cell / len(structure))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pseudo-dir", type=Path, required=True, help="SSSP-style library")
    parser.add_argument("--split", choices=["val", "train"], nargs="+", default=["val", "train"])
    parser.add_argument("--limit", type=int, default=None, help="crystals per split at most")
    parser.add_argument("--work", type=Path, default=Path("runs/fermi_dos"), help="scratch")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    done: dict[str, dict] = {}
    if args.cache.is_file():
        for line in args.cache.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            done[entry["id"]] = entry
    with args.cache.open("a") as handle:
        for split in args.split:
            records = read_structures(bundled_csv(split), targets=["tc"])
            records = [r for r in records if r.ok][: args.limit]
            for record in records:
                if record.id in done:
                    continue
                entry = {"id": record.id, "split": split, "formula": record.formula}
                entry["tc_jarvis"] = record.targets.get("tc")
                try:
                    entry.update(
                        fermi_dos(record.structure, args.pseudo_dir, args.work / record.id)
                    )
                except Exception as exc:  # noqa: BLE001 - recorded, the next crystal runs
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                handle.write(json.dumps(entry) + "\n")
                handle.flush()
                done[record.id] = entry
                print(json.dumps(entry), flush=True)

    result: dict = {"settings": {"k_spacing": K_SPACING, "ecut_ry": ECUT}, "splits": {}}
    for split in args.split:
        rows = [e for e in done.values() if e["split"] == split and "error" not in e]
        summary: dict = {
            "crystals": len(rows),
            "failed": sum(1 for e in done.values() if e["split"] == split and "error" in e),
        }
        if len(rows) >= 3:
            tc = [e["tc_jarvis"] for e in rows]
            for sigma in BROADENINGS:
                rho = spearmanr([e[f"nef_{sigma:g}"] for e in rows], tc).statistic
                summary[f"spearman_nef_{sigma:g}"] = float(rho)
            summary["seconds_median"] = float(np.median([e["seconds"] for e in rows]))
        result["splits"][split] = summary
        print(split, json.dumps(summary))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
