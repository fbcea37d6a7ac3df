"""The per-candidate stage that runs in a worker: relax, symmetrise, CHGNet energy, relaxed CIF;
and the formation energy and hull of a finished candidate (:func:`reference_energies`).

:func:`screen_candidate` is a module-level function of one picklable :class:`CandidateJob`, so it
runs the same in this process, a local process pool or on a dask worker. CHGNet is loaded once per
process (cached). Formation energy and hull are computed afterwards in the main process from the
stored energy, so a change of references or energy scale does not relax anything again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure

from tcdesign.generate.metrics import space_group_number
from tcdesign.screen.hull import EformScale, ReferenceSet, fetch_mp_references
from tcdesign.screen.relax import relax_structure, static_energy_and_moment
from tcdesign.screen.settings import ScreenSettings

SYMMETRIZE_TOLERANCE = 0.005  # eV/atom; refined cell kept unless CHGNet puts it this much higher
RELAXED_DIR = "relaxed"  # out_dir/relaxed/ID.cif


@dataclass(frozen=True)
class CandidateJob:
    """One candidate's input to the worker stage."""

    id: str
    structure: Structure
    file_stem: str  # safe file name of the id
    out_dir: str
    settings: ScreenSettings


@lru_cache(maxsize=4)
def reference_set(path: str | None, scale: EformScale = "jarvis") -> ReferenceSet:
    """The reference energies on an energy scale, loaded once per process."""
    return ReferenceSet.load(path, scale)


@lru_cache(maxsize=256)
def mp_reference_set(elements: frozenset[str]) -> ReferenceSet:
    """Materials Project entries of one chemical system (mp-api, internet), once per process."""
    return fetch_mp_references(elements)


def reference_energies(
    composition: Composition,
    energy_per_atom: float,
    settings: ScreenSettings,
    hull: ReferenceSet | None = None,
) -> dict[str, Any]:
    """``e_form_chgnet``, ``e_hull`` and ``ehull_reference`` of a relaxed CHGNet energy against
    the references ``settings`` choose (cheap; recomputed for every row when a run resumes, so
    that the reference settings can change without relaxing again); ``hull``, when given,
    replaces them for the hull (e.g. extended by competing prototypes)."""
    references = reference_set(settings.references, settings.eform_scale)
    if hull is not None:
        e_hull, note = hull.e_above_hull(composition, energy_per_atom)
    elif settings.hull_reference == "mp":
        elements = frozenset(str(e) for e in composition.elements)
        e_hull, note = mp_reference_set(elements).e_above_hull(composition, energy_per_atom)
    else:
        e_hull, note = references.e_above_hull(composition, energy_per_atom)
    return {
        "e_form_chgnet": references.formation_energy(composition, energy_per_atom),
        "e_hull": e_hull,
        "ehull_reference": note,
    }


def spacegroup_of(structure: Structure, symprec: float) -> tuple[str, int | None]:
    """(Hermann-Mauguin symbol, international number) by spglib; ("", None) when it fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    number = space_group_number(structure, symprec)
    if number is None:
        return "", None
    symbol = SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_symbol()
    return symbol, number


def symmetrized(structure: Structure, symprec: float) -> Structure | None:
    """The spglib-refined primitive standard cell, or None when it is P1 or spglib fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    number = space_group_number(structure, symprec)
    if number is None or number == 1:
        return None
    try:
        refined = SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()
    except (ValueError, TypeError, IndexError):
        return None
    if not refined.composition.reduced_composition.almost_equals(
        structure.composition.reduced_composition
    ):
        return None
    return refined


def screen_candidate(job: CandidateJob) -> dict[str, Any]:
    """Relax (or take as is), symmetrise, and compute energies and the hull distance of one
    candidate. Returns a row of the stage columns; ``status`` is ``ok`` or ``failed``."""
    started = time.perf_counter()
    row = _stage(job)
    row["stage_seconds"] = time.perf_counter() - started
    return row


def _stage(job: CandidateJob) -> dict[str, Any]:
    settings = job.settings
    structure = job.structure
    row: dict[str, Any] = {
        "id": job.id,
        "spacegroup_initial": space_group_number(structure, settings.symprec),
        "nsites_initial": len(structure),
    }
    if settings.relax:
        result = relax_structure(
            structure,
            fmax=settings.fmax,
            max_steps=settings.max_steps,
            optimizer=settings.optimizer,
            device=settings.device,
        )
        row.update(
            relax_steps=result.steps,
            relax_converged=result.converged,
            max_force=result.max_force,
            volume_change=result.volume_change,
        )
        if result.status != "ok":
            row.update(status="failed", error=f"relaxation failed: {result.error}")
            return row
        relaxed, energy, magmom = result.structure, result.energy_per_atom, result.magmom
    else:
        relaxed = structure
        try:
            energy, magmom = static_energy_and_moment(structure, settings.device)
        except (RuntimeError, ValueError, IndexError) as exc:
            row.update(status="failed", error=f"CHGNet: {type(exc).__name__}: {exc}")
            return row
        if not math.isfinite(energy):
            row.update(status="failed", error="CHGNet energy is NaN")
            return row
    is_symmetrized = False
    if settings.symmetrize:
        refined = symmetrized(relaxed, settings.symprec)
        if refined is not None:
            refined_energy, refined_magmom = static_energy_and_moment(refined, settings.device)
            if math.isfinite(refined_energy) and refined_energy <= energy + SYMMETRIZE_TOLERANCE:
                relaxed, energy, is_symmetrized = refined, refined_energy, True
                magmom = refined_magmom
    symbol, number = spacegroup_of(relaxed, settings.symprec)
    row.update(
        status="ok",
        error="",
        energy_per_atom=energy,
        magmom=magmom,
        spacegroup=symbol,
        spacegroup_number=number,
        symmetrized=is_symmetrized,
        nsites=len(relaxed),
        relaxed_structure=relaxed.as_dict(),
    )
    if settings.relax:
        relative = Path(RELAXED_DIR) / f"{job.file_stem}.cif"
        path = Path(job.out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        relaxed.to(filename=str(path), fmt="cif")
        row["relaxed_cif"] = str(relative)
    return row
