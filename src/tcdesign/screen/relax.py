"""Relaxation with the CHGNet universal potential (Deng et al., Nat. Mach. Intell. 5, 1031 (2023)).

CHGNet 0.4.2 ships its pretrained weights in the PyPI wheel, so this runs offline. Its energies are
fitted to Materials Project GGA/GGA+U energies with the MP2020 corrections (the MPtrj set), so
differences of CHGNet energies are formation energies on the Materials Project scale.

Positions and cell relax together (ASE ``FrechetCellFilter``) with FIRE or BFGS until the largest
force is below ``fmax`` (eV/A) or ``max_steps`` steps have run. A relaxation that cannot succeed
ends early with ``status='failed'`` and a reason: an element CHGNet lacks, NaN energies, forces or
positions, the volume growing or shrinking by more than :data:`MAX_VOLUME_RATIO`, or two atoms
closer than :data:`MIN_DISTANCE`.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from pymatgen.core import Structure
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from chgnet.model import CHGNet

MAX_VOLUME_RATIO = 3.0  # a cell growing or shrinking by more than this factor has exploded
MIN_DISTANCE = 0.5  # A; atoms closer than this have collapsed onto each other
MIN_VOLUME_PER_ATOM = 2.0  # A^3; denser cells are unphysical and make CHGNet graphs explode
MAX_Z = 94  # CHGNet's element embedding covers H (1) to Pu (94)
# CHGNet 0.4.2 triggers this torch warning on every call; it is harmless
CHGNET_WARNING = "Converting a tensor with requires_grad=True to a scalar"

Optimizer = Literal["FIRE", "BFGS"]


class RelaxationError(Exception):
    """A relaxation stopped because the structure exploded, collapsed or became NaN."""


@dataclass
class RelaxResult:
    """Outcome of one relaxation; ``structure`` and energies are None when it failed."""

    status: Literal["ok", "failed"]
    structure: Structure | None = None
    energy_per_atom: float = math.nan  # eV/atom, CHGNet (MP-compatible scale)
    steps: int = 0
    converged: bool = False  # max force < fmax within max_steps
    max_force: float = math.nan  # eV/A at the end (largest atomic or cell-filter force)
    volume_change: float = math.nan  # relaxed / initial volume
    magmom: float = math.nan  # Bohr magnetons per atom: mean |site moment| CHGNet predicts
    error: str = ""


@lru_cache(maxsize=2)
def chgnet_model(device: str = "cpu") -> CHGNet:
    """The pretrained CHGNet on ``device`` (cpu, cuda, cuda:N, mps, auto), loaded once per
    process and device (weights from the installed wheel)."""
    from chgnet.model import CHGNet

    from tcdesign.devices import resolve_device

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter count
        return CHGNet.load(verbose=False, use_device=str(resolve_device(device)))


@lru_cache(maxsize=2)
def _calculator(device: str = "cpu"):
    """One ASE calculator per process and device around :func:`chgnet_model` (it resets per
    atoms object)."""
    from chgnet.model.dynamics import CHGNetCalculator

    from tcdesign.devices import resolve_device

    model, where = chgnet_model(device), str(resolve_device(device))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the device it runs on
        return CHGNetCalculator(model=model, use_device=where, on_isolated_atoms="ignore")


def unsupported_element(structure: Structure) -> str | None:
    """The first element CHGNet has no embedding for, or None."""
    for element in structure.composition.elements:
        if getattr(element, "Z", MAX_Z + 1) > MAX_Z:
            return str(element)
    return None


def min_distance(positions: np.ndarray, cell: np.ndarray) -> float:
    """Smallest interatomic distance (A), periodic images included (inf for one atom alone)."""
    from ase.geometry import get_distances

    if len(positions) < 1:
        return math.inf
    _, distances = get_distances(positions, cell=cell, pbc=True)
    np.fill_diagonal(distances, np.inf)
    smallest = float(distances.min()) if len(positions) > 1 else math.inf
    # an atom and its own periodic image: the shortest lattice vector
    lattice_min = float(np.min(np.linalg.norm(cell, axis=1)))
    return min(smallest, lattice_min)


def _check(atoms, initial_volume: float) -> None:
    """Raise :class:`RelaxationError` when the atoms are NaN, exploded or collapsed."""
    positions = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(cell))):
        raise RelaxationError("NaN positions or cell")
    volume = abs(float(np.linalg.det(cell)))
    if volume / len(positions) < MIN_VOLUME_PER_ATOM:
        raise RelaxationError(
            f"cell too dense ({volume / len(positions):.2f} A^3 per atom, "
            f"minimum {MIN_VOLUME_PER_ATOM})"
        )
    ratio = volume / initial_volume
    if not (1 / MAX_VOLUME_RATIO < ratio < MAX_VOLUME_RATIO):
        raise RelaxationError(f"volume changed by a factor {ratio:.2f} (exploded or collapsed)")
    distance = min_distance(positions, cell)
    if distance < MIN_DISTANCE:
        raise RelaxationError(f"atoms collapsed ({distance:.2f} A apart)")


def relax_structure(
    structure: Structure,
    *,
    fmax: float = 0.05,
    max_steps: int = 300,
    optimizer: Optimizer = "FIRE",
    relax_cell: bool = True,
    device: str = "cpu",
) -> RelaxResult:
    """Relax positions (and the cell, with ``relax_cell``) with CHGNet; never raises on bad
    physics, returns ``status='failed'`` with the reason instead.

    ``fmax`` in eV/A; ``max_steps`` caps the optimiser steps (not converged is still ``ok``, with
    ``converged=False``); ``device``: where CHGNet runs (the optimiser stays on the CPU).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    missing = unsupported_element(structure)
    if missing is not None:
        return RelaxResult("failed", error=f"element {missing} not covered by CHGNet (Z > {MAX_Z})")
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = _calculator(device)
    initial_volume = float(atoms.get_volume())
    # The cell filter's 3x3 matrix exponentials gain nothing from BLAS threads, and OpenBLAS
    # threads spinning on a loaded machine made each step 30x slower here (2.3 s -> 0.08 s per
    # step of a 2-atom cell with one BLAS thread).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.filterwarnings("ignore", message=CHGNET_WARNING)
        try:
            _check(atoms, initial_volume)
            target = FrechetCellFilter(atoms) if relax_cell else atoms
            dynamics = (FIRE if optimizer == "FIRE" else BFGS)(target, logfile=None)
            dynamics.attach(lambda: _check(atoms, initial_volume), interval=1)
            dynamics.run(fmax=fmax, steps=max_steps)
            energy = float(atoms.get_potential_energy())
            forces = target.get_forces()  # with a cell filter: atomic forces and scaled stress
            magmom = _mean_moment(atoms)
        except RelaxationError as exc:
            return RelaxResult("failed", error=str(exc))
        except (RuntimeError, ValueError, IndexError) as exc:  # graph building, linear algebra
            return RelaxResult("failed", error=f"CHGNet: {type(exc).__name__}: {exc}".strip())
    if not (math.isfinite(energy) and np.all(np.isfinite(forces))):
        return RelaxResult("failed", error="NaN energy or forces")
    max_force = float(np.max(np.linalg.norm(forces, axis=1))) if len(forces) else 0.0
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    return RelaxResult(
        "ok",
        structure=relaxed,
        energy_per_atom=energy / len(atoms),
        steps=int(dynamics.nsteps),
        converged=max_force <= fmax,
        max_force=max_force,
        volume_change=float(atoms.get_volume()) / initial_volume,
        magmom=magmom,
    )


def _mean_moment(atoms) -> float:
    """Mean |magnetic moment| per atom (Bohr magnetons) of CHGNet's last evaluation of
    ``atoms`` (it predicts site moments beside the energy; NaN when it gave none)."""
    moments = atoms.calc.results.get("magmoms") if atoms.calc is not None else None
    if moments is None or len(moments) == 0:
        return math.nan
    return float(np.mean(np.abs(np.asarray(moments, dtype=float))))


def static_energy_and_moment(structure: Structure, device: str = "cpu") -> tuple[float, float]:
    """CHGNet energy (eV/atom) and mean |site magnetic moment| (Bohr magnetons per atom) of
    ``structure`` as it is, without relaxation."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = _calculator(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CHGNET_WARNING)
        energy = float(atoms.get_potential_energy()) / len(atoms)
    return energy, _mean_moment(atoms)


def static_energy_per_atom(structure: Structure) -> float:
    """CHGNet energy (eV/atom) of ``structure`` as it is, without relaxation."""
    return static_energy_and_moment(structure)[0]


STATIC_BATCH = 16  # structures per CHGNet call in static_energies_per_atom


def static_energies_per_atom(
    structures: Sequence[Structure], device: str = "cpu", batch_size: int = STATIC_BATCH
) -> list[float]:
    """CHGNet energy (eV/atom) of each structure as it is, without relaxation; NaN for a
    structure CHGNet cannot evaluate (an element it lacks, a broken cell, one denser than
    :data:`MIN_VOLUME_PER_ATOM`, an error).

    Batched: ``batch_size`` structures per model call; a batch that fails is retried one
    structure at a time, so one bad cell costs only its own energy.
    """
    from tcdesign.generate.metrics import is_usable

    energies = [math.nan] * len(structures)
    todo = [
        i
        for i, s in enumerate(structures)
        if is_usable(s)
        and unsupported_element(s) is None
        and s.volume / len(s) >= MIN_VOLUME_PER_ATOM
    ]
    model = chgnet_model(device)

    def predict(items: list[int]) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=CHGNET_WARNING)
            out = model.predict_structure(
                [structures[i] for i in items], task="e", batch_size=len(items)
            )
        out = out if isinstance(out, list) else [out]
        for i, prediction in zip(items, out, strict=True):
            energies[i] = float(np.asarray(prediction["e"]).reshape(-1)[0])

    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        try:
            predict(batch)
        except Exception:  # noqa: BLE001 - CHGNet raises many kinds on odd cells; retry singly
            for i in batch:
                try:
                    predict([i])
                except Exception:  # noqa: BLE001
                    energies[i] = math.nan
    return energies
