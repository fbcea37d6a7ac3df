"""Competing phases built from training prototypes, so that the hull covers chemical systems the
reference table leaves empty.

The bundled hull references are the elements and the 846 training crystals. A candidate whose
chemical system holds no training compound is then judged against its elements alone, and a
candidate in a sparse system against one or two compounds: "on the hull" then says little (in an
earlier 1000-per-method funnel, 45 of the 144 passed candidates within 0.1 eV/atom of that hull had
no compound reference at all). With ``hull_prototypes = K`` the screen also builds, for the
chemical system of every candidate that passes all the other rules, the likeliest competing
crystals the training prototypes give: for each subsystem of two or more of its elements and each
stoichiometry that at least :data:`MIN_PATTERN_COUNT` training crystals share (AB, AB2, AB3, AB6,
ABC2, ABC, ABC3, ...), the K most probable distinct crystals of the template method
(:func:`tcdesign.generate.substitution.template_csp`: substitution probabilities, volume rescaled).
Each is relaxed with CHGNet like a candidate and joins the hull. The table of their energies
(``prototype_references.csv`` in the screening folder, the columns of the reference table, ``kind =
prototype``) grows row by row, so a killed run keeps every relaxation it finished and a rerun or a
larger K reuses it.

Cost: for K = 2, 14 relaxations for a binary system and 86 for Mo-Ru-N (1-5 s each here), only
for the candidates that pass everything else. Rock-salt ScSb, in a system without a training
compound, lies 0.95 eV/atom below the elements-only hull and 0.003 above the one with K = 2.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations, permutations
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Composition, Structure
from tqdm.auto import tqdm

from tcdesign.data.io import StructureRecord
from tcdesign.executor import run_tasks
from tcdesign.generate.substitution import (
    _integer_counts,
    fit_atomic_volumes,
    stoichiometry_pattern,
    template_csp,
)
from tcdesign.screen.hull import ReferenceSet
from tcdesign.screen.references import COLUMNS, _append, _existing_ids, _row

PROTOTYPE_TABLE = "prototype_references.csv"  # in the screening --out folder
MIN_PATTERN_COUNT = 5  # a stoichiometry this many training crystals share is a prototype pattern
PAIRS_PER_COMPOSITION = 40  # (template, mapping) pairs template_csp builds per composition


def prototype_patterns(
    structures: Iterable[Structure], min_count: int = MIN_PATTERN_COUNT
) -> dict[int, list[tuple[int, ...]]]:
    """Sorted reduced stoichiometries that at least ``min_count`` of ``structures`` share, by
    number of elements (most common first), e.g. ``{2: [(1, 1), (1, 2), (1, 3)], 3: [...]}``."""
    counts = Counter(stoichiometry_pattern(_integer_counts(s)) for s in structures)
    patterns: dict[int, list[tuple[int, ...]]] = {}
    for pattern, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count >= min_count and len(pattern) >= 2:
            patterns.setdefault(len(pattern), []).append(pattern)
    return patterns


def competing_formulas(
    elements: Iterable[str], patterns: dict[int, list[tuple[int, ...]]]
) -> list[str]:
    """Every reduced formula of two or more of ``elements`` whose stoichiometry is one of
    ``patterns``: each subsystem, each pattern, each distinct assignment of its counts."""
    symbols = sorted(set(elements))
    formulas: list[str] = []
    for size in range(2, len(symbols) + 1):
        for subsystem in combinations(symbols, size):
            for pattern in patterns.get(size, []):
                for counts in sorted(set(permutations(pattern))):
                    formula = "".join(f"{s}{c}" for s, c in zip(subsystem, counts, strict=True))
                    if formula not in formulas:
                        formulas.append(formula)
    return formulas


@dataclass(frozen=True)
class PrototypeJob:
    """One competing crystal to relax (picklable, for worker processes and dask)."""

    id: str
    structure: Structure
    fmax: float
    max_steps: int


def relax_prototype(job: PrototypeJob) -> dict[str, object]:
    """The reference-table row of one relaxed competing crystal."""
    return _row("prototype", job.id, job.structure, True, job.fmax, job.max_steps)


class PrototypeBuilder:
    """The competing crystals of chemical systems, from a set of template crystals."""

    def __init__(
        self, templates: Sequence[StructureRecord], per_composition: int, min_count: int
    ) -> None:
        self.records = [r for r in templates if r.ok]
        self.structures = [r.structure for r in self.records]
        self.per_composition = per_composition
        self.patterns = prototype_patterns(self.structures, min_count)
        self.volumes = fit_atomic_volumes(self.structures)

    def crystals(self, elements: Iterable[str]) -> list[tuple[str, Structure]]:
        """(id, unrelaxed structure) of every competing crystal of the system of ``elements``;
        an id names the formula, the template and the substitution, so it is the same in every
        run with the same templates."""
        made: list[tuple[str, Structure]] = []
        for formula in competing_formulas(elements, self.patterns):
            made += self.crystals_of(formula)
        return made

    def crystals_of(self, formula: str) -> list[tuple[str, Structure]]:
        """(id, unrelaxed structure) of the competing crystals of one reduced formula."""
        made = []
        for structure in template_csp(
            formula,
            self.structures,
            k=self.per_composition,
            max_candidates=PAIRS_PER_COMPOSITION,
            volumes=self.volumes,
            primitive_cell=False,
        ):
            template = self.records[structure.properties["template"]].id
            mapping = structure.properties["mapping"]
            made.append((f"{formula}|{template}|{mapping}", structure))
        return made


def build_prototypes(
    out_csv: str | Path,
    systems: Iterable[Iterable[str]],
    templates: Sequence[StructureRecord],
    *,
    per_composition: int = 2,
    min_count: int = MIN_PATTERN_COUNT,
    fmax: float = 0.05,
    max_steps: int = 300,
    workers: int = 1,
    scheduler: str | None = None,
    threads: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Relax the competing crystals of each chemical system in ``systems`` into ``out_csv``
    (rows appended as they finish; ids already there are not relaxed again). Returns the rows,
    finished or failed, of the crystals these systems need."""
    out_csv = Path(out_csv)
    builder = PrototypeBuilder(templates, per_composition, min_count)
    formulas: dict[str, None] = {}  # ordered set: subsystems shared by systems are built once
    for system in sorted({tuple(sorted(set(s))) for s in systems}):
        formulas.update(dict.fromkeys(competing_formulas(system, builder.patterns)))
    wanted: dict[str, Structure] = {}
    for formula in tqdm(
        formulas, desc="hull prototypes: build", unit="composition", disable=not progress
    ):
        wanted.update(builder.crystals_of(formula))
    done = _existing_ids(out_csv)
    jobs = [PrototypeJob(i, s, fmax, max_steps) for i, s in wanted.items() if i not in done]
    bar = tqdm(
        total=len(jobs), desc="hull prototypes: relax", unit="structure", disable=not progress
    )
    try:
        for outcome in run_tasks(
            relax_prototype, jobs, workers=workers, scheduler=scheduler, threads=threads
        ):
            job = jobs[outcome.index]
            row: dict[str, Any] = outcome.value
            if outcome.error is not None:
                row = {
                    "kind": "prototype",
                    "id": job.id,
                    "formula": job.structure.composition.formula,
                    "natoms": len(job.structure),
                    "energy_per_atom": "",
                    "converged": False,
                    "status": "failed",
                    "error": outcome.error,
                }
            _append(out_csv, row)
            bar.update()
    finally:
        bar.close()
    if not out_csv.is_file() or out_csv.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(out_csv, dtype={"id": str, "error": str})
    return table[table.id.isin(wanted)].drop_duplicates("id", keep="last").reset_index(drop=True)


def prototype_compounds(table: pd.DataFrame) -> list[tuple[Composition, float]]:
    """(composition, CHGNet energy per atom) of the relaxed rows of a prototype table."""
    energies = pd.to_numeric(table.energy_per_atom, errors="coerce")
    return [
        (Composition(formula), float(energy))
        for formula, energy, status in zip(table.formula, energies, table.status, strict=True)
        if status == "ok" and math.isfinite(energy)
    ]


def with_prototypes(base: ReferenceSet, table: pd.DataFrame) -> ReferenceSet:
    """``base`` plus the relaxed crystals of a prototype table, named ``<base>+N prototypes``."""
    compounds = prototype_compounds(table)
    return base.with_compounds(compounds, f"{len(compounds)} prototypes")
