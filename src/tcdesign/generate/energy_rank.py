"""Composition -> structure candidates relaxed with CHGNet and ranked by energy.

Every CSP method (CDVAE, template, hybrid) proposes a pool of candidate cells for one composition;
which of them the DFT ground state resembles is a question of energy, which none of the methods'
own scores measures. :func:`rank_by_energy` relaxes each candidate with the CHGNet universal
potential (:func:`tcdesign.screen.relax.relax_structure`: positions and cell, FIRE), merges
candidates that relax to the same crystal (``StructureMatcher``; the best-ranked stays) and
orders the rest: CDVAE candidates by relaxed energy per atom, lowest first; template and hybrid
candidates by their own score minus ``RELAX_ENERGY_WEIGHT`` x relaxed energy above the pool's
lowest, supercells of smaller crystals last, as the template baseline ranks. The JARVIS
structure is often not CHGNet's lowest polymorph, so energy alone ranks worse than the
template's own order (``benchmarks/csp_relax_rank.py``). Candidates whose relaxation fails or
that are broken go last, unrelaxed, with their reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pymatgen.core import Structure

from tcdesign.generate.defaults import RELAX_ENERGY_WEIGHT
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


def order_by_energy(
    relaxed: Sequence[RankedCandidate],
    scores: Sequence[float] | None = None,
    demoted: Sequence[bool] | None = None,
    weight: float = RELAX_ENERGY_WEIGHT,
) -> list[RankedCandidate]:
    """Best first, one entry per distinct crystal (``StructureMatcher``; the best-ranked member
    stays); failed candidates last, in their original order.

    Without ``scores``: lowest energy per atom first. With ``scores`` (the method's own score of
    each candidate, in source order; higher is better): by score minus ``weight`` x relaxed
    energy above the lowest (eV/atom), the ``demoted`` candidates (source order) after the
    others, as :func:`tcdesign.generate.substitution.template_csp` ranks.
    """

    def key(c: RankedCandidate) -> tuple:
        if scores is None:
            return (c.energy_per_atom, c.source_rank)
        i = c.source_rank - 1
        combined = scores[i] - weight * (c.energy_per_atom - lowest)
        return (bool(demoted[i]) if demoted is not None else False, -combined, c.source_rank)

    finite = [c.energy_per_atom for c in relaxed if not c.error]
    lowest = min(finite) if finite else 0.0
    done = sorted((c for c in relaxed if not c.error), key=key)
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
    scores: Sequence[float] | None = None,
    demoted: Sequence[bool] | None = None,
    weight: float = RELAX_ENERGY_WEIGHT,
    fmax: float = 0.05,
    max_steps: int = RELAX_STEPS,
    progress: bool = False,
) -> list[RankedCandidate]:
    """Relax ``candidates`` (the method's order) and return them best first (:func:`order_by_
    energy`: lowest energy per atom, or with ``scores`` the method's score minus ``weight`` x
    relaxed energy above the lowest), without duplicates (candidates relaxing to one crystal
    count once); failed and broken candidates follow in their original order with the reason."""
    relaxed = relax_candidates(candidates, fmax=fmax, max_steps=max_steps, progress=progress)
    return order_by_energy(relaxed, scores, demoted, weight)
