"""Formation energy and energy above the convex hull against a set of reference energies.

E_form = E/N - sum_i x_i mu_i (eV/atom), with mu_i the elemental reference energies; the energy
above the hull comes from pymatgen's ``PhaseDiagram`` of the elements and the reference compounds
in the candidate's chemical system (``allow_negative=True``: a candidate below the hull has a
negative value, the distance by which it would lower the hull).

Reference sets:

- ``chgnet`` (default, offline): the bundled CHGNet table of :mod:`tcdesign.screen.references`
  (elemental ground states + the 846 relaxed training crystals), on one of two energy scales:
  ``jarvis`` (default; ``chgnet/jarvis`` in the ``ehull_reference`` column), where the energy of
  every compound (a crystal of two or more elements, candidate or reference) is corrected per
  element by the amounts fitted to the JARVIS formation energies of the training crystals, or
  ``mp``, CHGNet's energies as they are. Elements are never corrected, in the manner of the
  Materials Project's anion corrections, so an element's ground state keeps formation energy 0
  and lies on its own hull; formation energies and the hull use the same corrected energies;
- Materials Project entries through mp-api (internet and ``MP_API_KEY``), converted by
  :func:`entries_to_references`; CHGNet is fitted to the MP2020-corrected energies that these
  entries carry, so the two scales agree to CHGNet's accuracy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from tcdesign.screen.references import (
    elemental_energies,
    fit_element_corrections,
    jarvis_formation_energies,
    load_references,
)

EformScale = Literal["jarvis", "mp"]
EFORM_SCALES: tuple[EformScale, ...] = ("jarvis", "mp")


@dataclass
class ReferenceSet:
    """Elemental chemical potentials and compound reference entries on one energy scale."""

    name: str  # reported in the ehull_reference column
    mu: dict[str, float]  # eV/atom per element
    compounds: list[tuple[Composition, float]]  # (composition, energy per atom in eV)
    # eV per atom of the element, subtracted from the energy of every compound containing it
    corrections: dict[str, float] = field(default_factory=dict)
    _diagrams: dict[frozenset[str], tuple[PhaseDiagram, int]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def from_table(cls, table: pd.DataFrame, name: str = "chgnet") -> ReferenceSet:
        """From a table with columns formula and energy_per_atom (see references.COLUMNS)."""
        mu = elemental_energies(table)
        compounds = []
        for formula, energy in zip(table.formula, table.energy_per_atom, strict=True):
            composition = Composition(formula)
            if len(composition.elements) > 1:
                compounds.append((composition, float(energy)))
        return cls(name, mu, compounds)

    @classmethod
    def load(cls, path: str | None = None, scale: EformScale = "jarvis") -> ReferenceSet:
        """The bundled CHGNet references, or the table at ``path``, on the energy ``scale``:
        ``mp``, CHGNet's energies as they are; ``jarvis``, compound energies corrected per
        element to fit the JARVIS formation energies of the table's labelled training crystals
        (:func:`tcdesign.screen.references.fit_element_corrections`)."""
        if scale not in EFORM_SCALES:
            raise ValueError(f"unknown formation-energy scale {scale!r}; choose jarvis or mp")
        table = load_references(path)
        references = cls.from_table(table, "chgnet" if path is None else f"chgnet:{path}")
        if scale == "jarvis":
            labels = jarvis_formation_energies()
            try:
                references.corrections = fit_element_corrections(table, labels, references.mu)
            except ValueError as exc:
                raise ValueError(
                    f"{exc}: the jarvis energy scale needs compound rows whose id is a JARVIS id "
                    "of a labelled training crystal; use eform_scale 'mp' (--eform-scale mp) "
                    "for a table of other crystals"
                ) from None
            references.name += "/jarvis"
        return references

    def with_compounds(
        self, compounds: Iterable[tuple[Composition, float]], label: str
    ) -> ReferenceSet:
        """This set plus more compound references (composition, energy per atom on the raw
        scale, corrected like every compound), named ``<name>+<label>``."""
        return ReferenceSet(
            f"{self.name}+{label}", self.mu, [*self.compounds, *compounds], self.corrections
        )

    def corrected(self, composition: Composition, energy_per_atom: float) -> float:
        """The energy per atom on this set's scale: a compound's minus its element corrections,
        an element's unchanged."""
        fractions = composition.fractional_composition.get_el_amt_dict()
        if len(fractions) < 2:
            return energy_per_atom
        correction = sum(x * self.corrections.get(el, 0.0) for el, x in fractions.items())
        return energy_per_atom - correction

    def missing(self, composition: Composition) -> list[str]:
        """Elements of ``composition`` without a reference energy."""
        return sorted(str(e) for e in composition.elements if str(e) not in self.mu)

    def formation_energy(self, composition: Composition, energy_per_atom: float) -> float:
        """E_form (eV/atom); NaN when an element has no reference or the energy is NaN."""
        if self.missing(composition) or not math.isfinite(energy_per_atom):
            return math.nan
        fractions = composition.fractional_composition.get_el_amt_dict()
        energy = self.corrected(composition, energy_per_atom)
        return energy - sum(x * self.mu[symbol] for symbol, x in fractions.items())

    def diagram(self, elements: Iterable[str]) -> tuple[PhaseDiagram, int]:
        """Phase diagram of a chemical system and its number of compound references (cached)."""
        key = frozenset(elements)
        if key not in self._diagrams:
            entries = [PDEntry(Composition(symbol), self.mu[symbol]) for symbol in sorted(key)]
            count = 0
            for composition, energy in self.compounds:
                if {str(e) for e in composition.elements} <= key:
                    energy = self.corrected(composition, energy)
                    entries.append(PDEntry(composition, energy * composition.num_atoms))
                    count += 1
            self._diagrams[key] = (PhaseDiagram(entries), count)
        return self._diagrams[key]

    def e_above_hull(self, composition: Composition, energy_per_atom: float) -> tuple[float, str]:
        """(E above hull in eV/atom, description of the references used); NaN when an element
        has no reference."""
        missing = self.missing(composition)
        if missing:
            return math.nan, f"{self.name}: no reference for {', '.join(missing)}"
        if not math.isfinite(energy_per_atom):
            return math.nan, self.name
        elements = [str(e) for e in composition.elements]
        diagram, count = self.diagram(elements)
        energy = self.corrected(composition, energy_per_atom)
        entry = PDEntry(composition, energy * composition.num_atoms)
        _, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        return float(e_hull), f"{self.name}: elements + {count} compounds"


def entries_to_references(entries: Sequence, name: str = "mp") -> ReferenceSet:
    """A reference set from pymatgen entries (e.g. Materials Project ``ComputedStructureEntry``
    objects from mp-api); each entry's ``energy_per_atom`` (MP2020-corrected for MP entries) is
    used, the lowest per element and per composition."""
    rows = [
        {"formula": entry.composition.formula, "energy_per_atom": float(entry.energy_per_atom)}
        for entry in entries
        if math.isfinite(float(entry.energy_per_atom))
    ]
    return ReferenceSet.from_table(pd.DataFrame(rows, columns=["formula", "energy_per_atom"]), name)


def fetch_mp_references(elements: Iterable[str], api_key: str | None = None) -> ReferenceSet:
    """Materials Project entries of the chemical system spanned by ``elements`` (needs internet,
    ``pip install mp-api`` and an API key in ``MP_API_KEY`` or ``api_key``)."""
    key = api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise RuntimeError("Materials Project references need an API key in MP_API_KEY")
    try:
        from mp_api.client import MPRester
    except ImportError:
        raise RuntimeError("Materials Project references need mp-api: pip install mp-api") from None
    with MPRester(key) as rester:
        entries = rester.get_entries_in_chemsys(sorted(set(elements)))
    return entries_to_references(entries, "mp")
