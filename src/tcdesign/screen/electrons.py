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
about twice the time), and the moment that survives, Bohr magnetons per atom, goes to the
``dft_magmom`` column (0 without such elements); with ``dft_magmom_max`` set, a rule passes only
candidates at or below it.

Results are cached in ``fermi_dos.jsonl`` of the screening folder (one line per candidate,
keyed by its input fingerprint, the pseudopotential files and the settings), the QE input and
log of each in ``fermi_dos/ID/``; a rerun computes only what is new. The scratch folder of each
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


@dataclass(frozen=True)
class FermiJob:
    """One candidate's N(E_F) scf."""

    id: str
    structure: Structure  # relaxed
    pseudo_dir: str
    work: str  # absolute: dask workers do not share this process's working directory
    pw_command: str = "pw.x"


def _run_job(job: FermiJob) -> dict[str, Any]:
    from tcdesign.verify.workflow import may_be_magnetic

    work = Path(job.work)
    pseudo_dir = Path(job.pseudo_dir)
    result = fermi.fermi_dos(job.structure, pseudo_dir, work, pw_command=job.pw_command)
    shutil.rmtree(work / "tmp", ignore_errors=True)  # wavefunctions: megabytes, not needed
    row = {
        "nef": round(float(result[f"nef_{BROADENING_EV:g}"]), 5),
        "dft_magmom": 0.0,
        "nef_error": "",
        "nef_seconds": result["seconds"],
        "nef_kpts": result["kpts"],
    }
    if may_be_magnetic(job.structure):
        try:  # a spin-polarised scf that fails keeps the N(E_F) of the first
            moment = fermi.magnetic_moment(
                job.structure, pseudo_dir, work, pw_command=job.pw_command
            )
        except RuntimeError as exc:
            row["dft_magmom"] = math.nan
            row["nef_error"] = f"spin-polarised scf: {exc}"
        else:
            row["dft_magmom"] = round(float(moment["magmom_abs"]), 4)
            row["spin_seconds"] = moment["seconds"]
        finally:
            shutil.rmtree(work / "tmp", ignore_errors=True)
    return row


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


def _key(fingerprint: str, structure: Structure, pseudo_dir: Path) -> str:
    """What a cached result depends on; the pseudopotential choice is part of it."""
    elements = sorted({e.symbol for e in structure.composition})
    pseudos = choose_pseudopotentials(elements, pseudo_dir)
    return json.dumps(
        {
            "fingerprint": fingerprint,
            "pseudopotentials": {e: p.filename for e, p in pseudos.items()},
            "ecut_ry": fermi.ECUT_RY,
            "k_spacing": fermi.K_SPACING,
            "broadening_ev": BROADENING_EV,
            "spin_check": True,
        },
        sort_keys=True,
    )


def check_candidates(
    candidates: Iterable[tuple[str, str, Structure]],
    out_dir: str | Path,
    pseudo_dir: str | Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    pw_command: str = "pw.x",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """N(E_F) of ``(id, input fingerprint, relaxed structure)`` candidates, keyed by id; cached
    in ``out_dir/fermi_dos.jsonl`` (appended as each finishes). A candidate whose scf cannot be
    made (no pseudopotential for an element, pw.x failing) gets NaN and the reason in
    ``nef_error``; the others go on."""
    out_dir = Path(out_dir).resolve()
    pseudo_dir = Path(pseudo_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CACHE_FILE
    jsonio.drop_partial_line(path)
    cached = jsonio.read_keyed_results(path, ("nef", "dft_magmom"))
    results: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, str]] = []  # (id, key)
    jobs: list[FermiJob] = []
    lacking: set[str] = set()  # elements without a pseudopotential
    unstartable = 0
    for candidate_id, fingerprint, structure in candidates:
        try:
            key = _key(fingerprint, structure, pseudo_dir)
        except PseudopotentialError as exc:  # recorded, not cached
            results[candidate_id] = _failed(str(exc))
            lacking.update(exc.missing)
            unstartable += 1
            continue
        if (candidate_id, key) in cached:
            results[candidate_id] = cached[(candidate_id, key)]
            continue
        work = out_dir / WORK_FOLDER / safe_name(candidate_id)
        todo.append((candidate_id, key))
        jobs.append(FermiJob(candidate_id, structure, str(pseudo_dir), str(work), pw_command))
    if unstartable:
        print(
            _pseudo_warning(unstartable, len(results) + len(jobs), lacking, pseudo_dir),
            file=sys.stderr,
        )
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].structure))  # largest first
    todo, jobs = [todo[i] for i in order], [jobs[i] for i in order]
    # pw.x runs on one core per job; torch is not used, so one thread per worker
    computed = run_and_append(
        _run_job,
        jobs,
        todo,
        path,
        _failed,
        desc="N(E_F) (pw.x)",
        workers=workers,
        scheduler=scheduler,
        threads=1,
        progress=progress,
    )
    return {**results, **computed}
