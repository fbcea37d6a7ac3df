"""DFT density of states at the Fermi level of screened candidates (optional stage).

The Tc ensemble, the formation energy and the gap are models; N(E_F) is the first DFT number a
candidate can get, and the electronic half of McMillan's coupling lambda = N(E_F) <I^2> /
(M <omega^2>). For each candidate that passes the other rules: one coarse Quantum ESPRESSO scf
of the relaxed structure (:func:`tcdesign.verify.fermi.fermi_dos`: 35/280 Ry, k-spacing 0.25
1/A, one core, 20 s to a few minutes), and N(E_F) in states/eV per atom (both spins, Gaussian
broadening of 0.2 eV) in the ``nef`` column. With ``nef_min`` set, a rule passes only candidates
with N(E_F) >= nef_min.

A large N(E_F) is also Stoner's condition for ferromagnetism, and magnetic order suppresses
conventional superconductivity. So each candidate with a d- or f-block element also gets the same
scf spin-polarised from a ferromagnetic start (:func:`tcdesign.verify.fermi.magnetic_moment`,
two to three times the time of the first), and the moment that survives, Bohr magnetons per
atom, goes to the ``dft_magmom`` column (0 without such elements); with ``dft_magmom_max`` set,
a rule passes only candidates at or below it. The spin-polarised scf runs after the plain one,
and only where N(E_F) reaches ``spin_min`` (the screen passes its ``nef_min``): a candidate that
fails the nef rule cannot pass whatever its moment, so its ``dft_magmom`` stays empty (NaN).

Results are cached in ``fermi_dos.jsonl`` of the screening folder (one line per candidate and
scf, keyed by its input fingerprint, the pseudopotential files and the settings), the QE input
and log of each in ``fermi_dos/ID/``; a rerun computes only what is new, so lowering
``spin_min`` later runs just the spin-polarised scfs it newly needs. The scratch folder of each
scf (wavefunctions) is removed when it finishes.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from tcdesign import jsonio
from tcdesign.screen.cached import run_and_append
from tcdesign.verify import fermi
from tcdesign.verify.executor import safe_name
from tcdesign.verify.pseudo import PseudopotentialError, choose_pseudopotentials

CACHE_FILE = "fermi_dos.jsonl"  # in the screening --out folder
WORK_FOLDER = "fermi_dos"  # QE runs, one sub-folder per candidate
BROADENING_EV = 0.2  # the value in the nef column (robust on coarse grids; fermi module doc)
COLUMNS = ("nef", "dft_magmom", "nef_error")


SPIN_ERROR = "spin-polarised scf: "  # prefix of nef_error when only that scf failed
SPIN_FIELDS = ("dft_magmom", "spin_seconds", "nef_error")  # what the spin-polarised scf gives


@dataclass(frozen=True)
class FermiJob:
    """One candidate's scf: the plain one for N(E_F) (``spin=False``) or the spin-polarised one
    for the moment."""

    id: str
    structure: Structure  # relaxed
    pseudo_dir: str
    work: str  # absolute: dask workers do not share this process's working directory
    pw_command: str = "pw.x"
    spin: bool = False


def _run_job(job: FermiJob) -> dict[str, Any]:
    work = Path(job.work)
    pseudo_dir = Path(job.pseudo_dir)
    try:
        if job.spin:
            try:  # a spin-polarised scf that fails keeps the N(E_F) of the first
                moment = fermi.magnetic_moment(
                    job.structure, pseudo_dir, work, pw_command=job.pw_command
                )
            except RuntimeError as exc:
                return _spin_failed(str(exc))
            return {
                "dft_magmom": round(float(moment["magmom_abs"]), 4),
                "spin_seconds": moment["seconds"],
            }
        result = fermi.fermi_dos(job.structure, pseudo_dir, work, pw_command=job.pw_command)
        return {
            "nef": round(float(result[f"nef_{BROADENING_EV:g}"]), 5),
            "nef_error": "",
            "nef_seconds": result["seconds"],
            "nef_kpts": result["kpts"],
        }
    finally:
        shutil.rmtree(work / "tmp", ignore_errors=True)  # wavefunctions: megabytes, not needed


def _pseudo_warning(failed: int, total: int, lacking: set[str], pseudo_dir: Path) -> str:
    """One stderr line: how many candidates get no N(E_F) for want of pseudopotentials."""
    which = f" (no file for {', '.join(sorted(lacking))})" if lacking else ""
    return (
        f"N(E_F): {failed} of {total} candidates cannot be computed with the pseudopotentials "
        f"in {pseudo_dir}{which}; they fail the nef rule (reason in nef_error). The SSSP "
        "library covers every element: 'tcdesign fetch-pseudos', or --pseudo-dir"
    )


def _failed(reason: str) -> dict[str, Any]:
    return {"nef": math.nan, "dft_magmom": math.nan, "nef_error": reason}


def _spin_failed(reason: str) -> dict[str, Any]:
    return {"dft_magmom": math.nan, "nef_error": SPIN_ERROR + reason}


def _keys(fingerprint: str, structure: Structure, pseudo_dir: Path) -> dict[str, str]:
    """What a cached result depends on (the pseudopotential choice is part of it), for each
    scf: ``plain`` and ``spin``, and ``both`` for cache lines written before the two became
    separate steps (one result with both), which are still read."""
    elements = sorted({e.symbol for e in structure.composition})
    pseudos = choose_pseudopotentials(elements, pseudo_dir)
    common = {
        "fingerprint": fingerprint,
        "pseudopotentials": {e: p.filename for e, p in pseudos.items()},
        "ecut_ry": fermi.ECUT_RY,
        "k_spacing": fermi.K_SPACING,
    }
    return {
        "both": json.dumps(
            {**common, "broadening_ev": BROADENING_EV, "spin_check": True}, sort_keys=True
        ),
        "plain": json.dumps({**common, "broadening_ev": BROADENING_EV}, sort_keys=True),
        "spin": json.dumps({**common, "scf": "spin-polarised"}, sort_keys=True),
    }


def check_candidates(
    candidates: Iterable[tuple[str, str, Structure]],
    out_dir: str | Path,
    pseudo_dir: str | Path,
    *,
    spin_min: float | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    pw_command: str = "pw.x",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """N(E_F) of ``(id, input fingerprint, relaxed structure)`` candidates, keyed by id; cached
    in ``out_dir/fermi_dos.jsonl`` (appended as each scf finishes). A candidate whose scf cannot
    be made (no pseudopotential for an element, pw.x failing) gets NaN and the reason in
    ``nef_error``; the others go on. The spin-polarised scf (``dft_magmom``) runs for the
    candidates with a d- or f-block element whose N(E_F) is at least ``spin_min`` (None: all of
    them); the others with such elements keep NaN there."""
    from tcdesign.verify.workflow import may_be_magnetic

    out_dir = Path(out_dir).resolve()
    pseudo_dir = Path(pseudo_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CACHE_FILE
    jsonio.drop_partial_line(path)
    cached = jsonio.read_keyed_results(path, ("nef", "dft_magmom"))
    results: dict[str, dict[str, Any]] = {}
    keys: dict[str, dict[str, str]] = {}
    structures: dict[str, Structure] = {}
    lacking: set[str] = set()  # elements without a pseudopotential
    unstartable = 0
    for candidate_id, fingerprint, structure in candidates:
        try:
            keys[candidate_id] = _keys(fingerprint, structure, pseudo_dir)
        except PseudopotentialError as exc:  # recorded, not cached
            results[candidate_id] = _failed(str(exc))
            lacking.update(exc.missing)
            unstartable += 1
            continue
        structures[candidate_id] = structure
    if unstartable:
        print(
            _pseudo_warning(unstartable, len(results) + len(keys), lacking, pseudo_dir),
            file=sys.stderr,
        )

    def computed(ids: list[str], spin: bool) -> dict[str, dict[str, Any]]:
        """Cached or newly run results of one kind of scf for ``ids``."""
        kind = "spin" if spin else "plain"
        done = {i: cached[(i, keys[i][kind])] for i in ids if (i, keys[i][kind]) in cached}
        todo = sorted((i for i in ids if i not in done), key=lambda i: -len(structures[i]))
        jobs = [  # largest cells first
            FermiJob(
                i,
                structures[i],
                str(pseudo_dir),
                str(out_dir / WORK_FOLDER / safe_name(i)),
                pw_command,
                spin,
            )
            for i in todo
        ]
        fresh = run_and_append(
            _run_job,
            jobs,
            [(i, keys[i][kind]) for i in todo],
            path,
            _spin_failed if spin else _failed,
            desc="spin-polarised scf (pw.x)" if spin else "N(E_F) (pw.x)",
            workers=workers,
            scheduler=scheduler,
            threads=1,  # pw.x runs on one core per job; torch is not used
            progress=progress and bool(jobs),
        )
        return {**done, **fresh}

    legacy = {i: cached[(i, k["both"])] for i, k in keys.items() if (i, k["both"]) in cached}
    plain = computed([i for i in keys if i not in legacy], spin=False)
    magnetic = {i for i in plain if may_be_magnetic(structures[i])}
    wanted = [
        i
        for i in plain
        if i in magnetic
        and math.isfinite(plain[i]["nef"])
        and (spin_min is None or plain[i]["nef"] >= spin_min)
    ]
    spin = computed(wanted, spin=True)
    for i, row in plain.items():
        no_shell = i not in magnetic and math.isfinite(row["nef"])  # no d or f shell: 0
        row = {**row, "dft_magmom": 0.0 if no_shell else math.nan}
        if i in spin:  # only its own fields: a cached line reads back a missing nef as NaN
            row.update({k: v for k, v in spin[i].items() if k in SPIN_FIELDS})
        results[i] = row
    return {**results, **legacy}
