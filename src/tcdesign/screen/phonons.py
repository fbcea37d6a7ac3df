"""Dynamical stability of screened candidates from CHGNet phonons.

A relaxation finds a point where the forces vanish, not necessarily a minimum: a cell can sit
on a saddle, and then Quantum ESPRESSO finds imaginary phonon modes and an electron-phonon
coupling blown up by the soft modes (the paper: 7 of its 32 DFT candidates above 5 K; here the
first two candidates verified, VRu and BMo, after 2-9 h of ph.x each). A finite-displacement
phonon calculation with the same potential costs seconds and says so first.

For each candidate that passes the other rules: the Niggli-reduced primitive cell of the relaxed
structure, a diagonal supercell at least ``min_width`` (7 A) wide in every direction,
displacements of ``displacement`` (0.03 A) in both signs, CHGNet forces, force constants
symmetrised by phonopy (Togo, J. Phys. Soc. Jpn. 92, 012001 (2023)), frequencies on a
Gamma-centred ``mesh``^3 grid. The candidate is dynamically stable when no frequency lies below
``-tolerance_cm1`` (10 cm^-1, the tolerance of ``tcdesign verify``). Results are cached in
``phonons.jsonl`` of the screening folder (one line per candidate, keyed by its input
fingerprint and these settings), so a rerun computes only what is new.

Measured (``python benchmarks/screening.py``, ``benchmarks/results/screen.json``): on the 105
bundled val crystals relaxed by the screen, 2.4 s per crystal (median, one core); 48 are stable.
The lowest frequencies are either zero (the acoustic modes at Gamma) or far below zero: in an
earlier run of the same check on 102 of them, 2 fell between -10 and -1 cm^-1 and every other
unstable one below -20. Against Quantum ESPRESSO at the ``verify`` settings CHGNet agrees on 5
of 6 crystals (ZrO and the candidate VRu unstable; Al, NbN and ScN stable) and calls
VC unstable where DFT finds it stable. JARVIS's Tc is more often above 5 K for the crystals
CHGNet calls unstable (40 %) than for the stable ones (19 %): soft modes raise the coupling
DFT computes, which is why requiring stability is a choice (``require_stable``), not a default.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from tcdesign import jsonio
from tcdesign.screen.cached import run_and_append

PHONON_FILE = "phonons.jsonl"  # in the screening --out folder
THZ_TO_CM1 = 33.35641
COLUMNS = ("phonon_min_freq_cm1", "phonon_imaginary_fraction", "phonon_stable", "phonon_error")


@dataclass(frozen=True)
class PhononSettings:
    """How the CHGNet phonon check is made (module docstring)."""

    min_width: float = 7.0  # A, smallest perpendicular width of the supercell
    mesh: int = 8  # Gamma-centred q-mesh per direction
    displacement: float = 0.03  # A
    tolerance_cm1: float = 10.0  # a frequency below -tolerance is an imaginary mode
    max_supercell_atoms: int = 300  # larger supercells are not computed (memory, time)

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) and v > 0 for v in (self.min_width, self.displacement)) or not (
            math.isfinite(self.tolerance_cm1) and self.tolerance_cm1 >= 0
        ):
            raise ValueError("min_width and displacement must be positive, tolerance_cm1 >= 0")
        if self.mesh < 1 or self.max_supercell_atoms < 1:
            raise ValueError("mesh and max_supercell_atoms must be at least 1")


@dataclass(frozen=True)
class PhononJob:
    """One candidate's phonon check."""

    id: str
    structure: Structure  # relaxed
    settings: PhononSettings
    device: str = "cpu"


def supercell_multiples(matrix: np.ndarray, min_width: float) -> np.ndarray:
    """(3,) smallest diagonal multiples that make every perpendicular width of the cell with
    rows ``matrix`` (3, 3) at least ``min_width``."""
    volume = abs(np.linalg.det(matrix))
    areas = np.linalg.norm(np.cross(matrix[[1, 2, 0]], matrix[[2, 0, 1]]), axis=1)  # (3,)
    return np.maximum(1, np.ceil(min_width * areas / volume)).astype(int)


def phonon_check(
    structure: Structure, settings: PhononSettings | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """CHGNet phonons of a relaxed crystal: the lowest frequency (cm^-1, imaginary negative),
    the mesh-weighted fraction of modes below ``-tolerance_cm1``, ``phonon_stable`` and the
    supercell size and seconds. Raises ValueError when the supercell would be too large."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    from tcdesign.screen.relax import CHGNET_WARNING, chgnet_model

    settings = settings or PhononSettings()
    started = time.perf_counter()
    primitive = structure.get_primitive_structure().get_reduced_structure()
    multiples = supercell_multiples(primitive.lattice.matrix, settings.min_width)
    n_super = len(primitive) * int(np.prod(multiples))
    if n_super > settings.max_supercell_atoms:
        raise ValueError(
            f"supercell of {n_super} atoms (> max_supercell_atoms {settings.max_supercell_atoms})"
        )
    unit = PhonopyAtoms(
        symbols=[str(site.specie) for site in primitive],
        cell=primitive.lattice.matrix,
        scaled_positions=primitive.frac_coords,
    )
    with warnings.catch_warnings():
        # a diagonal supercell of a skewed cell can have fewer point-group operations than the
        # cell; phonopy says so on stderr, the force constants are symmetrised either way
        warnings.filterwarnings("ignore", message="Warning: Point group symmetries of supercell")
        phonon = Phonopy(unit, supercell_matrix=np.diag(multiples), primitive_matrix="P")
    phonon.generate_displacements(distance=settings.displacement, is_plusminus=True)
    cells = [
        Structure(c.cell, c.symbols, c.scaled_positions)
        for c in phonon.supercells_with_displacements
    ]
    model = chgnet_model(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CHGNET_WARNING)
        predictions = model.predict_structure(cells, task="ef", batch_size=4)
    forces = [p["f"] for p in predictions]
    if not all(np.isfinite(f).all() for f in forces):
        raise ValueError("CHGNet returned non-finite forces")
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    phonon.run_mesh([settings.mesh] * 3, is_gamma_center=True)
    mesh = phonon.get_mesh_dict()
    frequencies = np.asarray(mesh["frequencies"]) * THZ_TO_CM1  # (n_q, n_modes)
    weights = np.repeat(np.asarray(mesh["weights"], float), frequencies.shape[1])
    imaginary = frequencies.ravel() < -settings.tolerance_cm1
    lowest = float(frequencies.min())
    return {
        "phonon_min_freq_cm1": round(lowest, 3) + 0.0,  # no -0.0
        "phonon_imaginary_fraction": round(float(weights[imaginary].sum() / weights.sum()), 5),
        "phonon_stable": bool(lowest >= -settings.tolerance_cm1),
        "phonon_error": "",
        "phonon_supercell_atoms": n_super,
        "phonon_seconds": round(time.perf_counter() - started, 2),
    }


def estimated_cost(structure: Structure, settings: PhononSettings) -> int:
    """A relative cost of :func:`phonon_check`: supercell atoms x primitive atoms (the forces
    of one supercell per displaced atom, before symmetry). Checks run longest first, so that
    a 40-second one does not start last while the other workers sit idle."""
    primitive = structure.get_primitive_structure().get_reduced_structure()
    multiples = supercell_multiples(primitive.lattice.matrix, settings.min_width)
    return len(primitive) ** 2 * int(np.prod(multiples))


def _check_job(job: PhononJob) -> dict[str, Any]:
    return phonon_check(job.structure, job.settings, job.device)


def _failed(reason: str) -> dict[str, Any]:
    return {
        "phonon_min_freq_cm1": math.nan,
        "phonon_imaginary_fraction": math.nan,
        "phonon_stable": None,
        "phonon_error": reason,
    }


def check_candidates(
    candidates: Iterable[tuple[str, str, Structure]],
    out_dir: str | Path,
    settings: PhononSettings | None = None,
    *,
    device: str = "cpu",
    workers: int = 1,
    scheduler: str | None = None,
    threads: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Phonon checks of ``(id, input fingerprint, relaxed structure)`` candidates, keyed by id;
    cached in ``out_dir/phonons.jsonl`` (appended as each finishes). A check that cannot be
    made (too large a supercell, a CHGNet failure) gives NaN values, ``phonon_stable`` None and
    the reason in ``phonon_error``."""
    settings = settings or PhononSettings()
    path = Path(out_dir) / PHONON_FILE
    jsonio.drop_partial_line(path)
    cached = jsonio.read_keyed_results(path, ("phonon_min_freq_cm1", "phonon_imaginary_fraction"))
    results: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, str]] = []  # (id, key)
    jobs: list[PhononJob] = []
    for candidate_id, fingerprint, structure in candidates:
        key = json.dumps({"fingerprint": fingerprint, **asdict(settings)}, sort_keys=True)
        if (candidate_id, key) in cached:
            results[candidate_id] = cached[(candidate_id, key)]
        else:
            todo.append((candidate_id, key))
            jobs.append(PhononJob(candidate_id, structure, settings, device))
    order = sorted(range(len(jobs)), key=lambda i: -estimated_cost(jobs[i].structure, settings))
    todo, jobs = [todo[i] for i in order], [jobs[i] for i in order]
    computed = run_and_append(
        _check_job,
        jobs,
        todo,
        path,
        _failed,
        desc="phonons (CHGNet)",
        workers=workers,
        scheduler=scheduler,
        threads=threads,
        progress=progress,
    )
    return {**results, **computed}
