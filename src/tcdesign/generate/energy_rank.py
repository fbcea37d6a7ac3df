"""Composition -> structure candidates relaxed with CHGNet and ranked by energy.

Every CSP method (CDVAE, template, hybrid) proposes a pool of candidate cells for one composition;
which of them the DFT ground state resembles is a question of energy, which none of the methods'
own scores measures. :func:`rank_by_energy` relaxes each candidate with the CHGNet universal
potential (:func:`tcdesign.screen.relax.relax_structure`: positions and cell, FIRE), merges
candidates that relax to the same crystal (``StructureMatcher``; the lowest energy stays) and
orders the rest by relaxed energy per atom, lowest first. Candidates whose relaxation fails or
that are broken go last, unrelaxed, with their reason. ``benchmarks/generator.py`` measures the
effect on the val compositions (``--csp-relax``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pymatgen.core import Structure

from tcdesign.generate.metrics import duplicate_groups, is_usable

RELAX_STEPS = 200  # FIRE step cap per candidate (the relaxations of CSP candidates are short)


@dataclass
class RankedCandidate:
    """A candidate after relaxation: the relaxed cell (the input cell when it failed)."""

    structure: Structure | None
    energy_per_atom: float  # eV/atom, CHGNet; NaN when the relaxation failed
    source_rank: int  # 1-based position in the method's own ranking
    error: str = ""


def relax_candidates(
    candidates: Sequence[Structure | None],
    *,
    fmax: float = 0.05,
    max_steps: int = RELAX_STEPS,
    progress: bool = False,
) -> list[RankedCandidate]:
    """Each candidate relaxed with CHGNet, in the given order; a broken candidate or a failed
    relaxation keeps its input cell, NaN energy and the reason. ``progress``: a bar over the
    candidates (it disappears when done)."""
    from tqdm.auto import tqdm

    from tcdesign.screen.relax import relax_structure

    out: list[RankedCandidate] = []
    bar = tqdm(candidates, desc="relax", unit="candidate", leave=False, disable=not progress)
    for rank, structure in enumerate(bar, start=1):
        if not is_usable(structure):
            out.append(RankedCandidate(structure, math.nan, rank, "broken candidate"))
            continue
        result = relax_structure(structure, fmax=fmax, max_steps=max_steps)
        if result.status != "ok" or not math.isfinite(result.energy_per_atom):
            reason = f"relaxation failed: {result.error}"
            out.append(RankedCandidate(structure, math.nan, rank, reason))
            continue
        out.append(RankedCandidate(result.structure, result.energy_per_atom, rank))
    return out


def order_by_energy(relaxed: Sequence[RankedCandidate]) -> list[RankedCandidate]:
    """Lowest energy per atom first, one entry per distinct crystal (``StructureMatcher``; the
    lowest-energy member stays); failed candidates last, in their original order."""
    done = sorted(
        (c for c in relaxed if not c.error), key=lambda c: (c.energy_per_atom, c.source_rank)
    )
    groups = duplicate_groups([c.structure for c in done])
    seen: set[int] = set()
    distinct = []
    for candidate, group in zip(done, groups, strict=True):
        if group >= 0 and group in seen:
            continue
        seen.add(group)
        distinct.append(candidate)
    return distinct + sorted((c for c in relaxed if c.error), key=lambda c: c.source_rank)


def rank_by_energy(
    candidates: Sequence[Structure | None],
    *,
    fmax: float = 0.05,
    max_steps: int = RELAX_STEPS,
    progress: bool = False,
) -> list[RankedCandidate]:
    """Relax ``candidates`` (the method's order) and return them lowest energy per atom first,
    without duplicates (candidates relaxing to one crystal count once, at its lowest energy);
    failed and broken candidates follow in their original order with the reason."""
    relaxed = relax_candidates(candidates, fmax=fmax, max_steps=max_steps, progress=progress)
    return order_by_energy(relaxed)
