"""Metrics of generated crystals against a reference set (training or validation structures).

The quantities follow the CDVAE evaluation (Xie et al., ICLR 2022, arXiv 2110.06197, section 5),
computed with our own code:

- structural validity: every interatomic distance, periodic images included, > 0.5 A and the cell
  volume > 0.1 A^3;
- composition validity: SMACT charge neutrality with the Pauling electronegativity test, where a
  single element or an all-metal composition counts as valid;
- uniqueness and novelty with pymatgen's ``StructureMatcher`` (novel = matches no reference
  structure); only structures with the same reduced formula can match, so the comparisons are
  grouped by reduced formula, which keeps 1000 generated against ~850 reference structures to
  seconds;
- Wasserstein distances of the density (g/cm^3) and of the number of distinct elements;
- the fraction of structures not in space group P1 (spglib through pymatgen, symprec 0.1);
- composition -> structure: top-1 and top-k match rates and the mean normalised RMS displacement
  of the best match (``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)``), as CDVAE's CSP task.

Every function accepts broken inputs (``None``, a non-structure, NaN or infinite coordinates or
lattice, an empty cell): they count as invalid, not unique, not novel and in P1, and never raise.
Denominators are always the full number of inputs given.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.stats import wasserstein_distance

MIN_DISTANCE = 0.5  # A; closer atoms (periodic images included) make a structure invalid
MIN_VOLUME = 0.1  # A^3; a smaller cell is invalid
SYMPREC = 0.1  # A; spglib tolerance for the space group
CSP_STOL = 0.5  # StructureMatcher site tolerance (fraction of (V/N)^(1/3)) for CSP matching
CSP_LTOL = 0.3  # StructureMatcher fractional lattice-length tolerance for CSP matching
CSP_ANGLE_TOL = 10.0  # degrees, StructureMatcher angle tolerance for CSP matching

# what pymatgen's matcher and spglib raise on degenerate but finite cells; anything else is a bug
_GEOMETRY_ERRORS = (ValueError, ArithmeticError, IndexError, TypeError)


def csp_matcher() -> StructureMatcher:
    """The matcher of CDVAE's composition -> structure evaluation (stol 0.5, ltol 0.3, 10 deg)."""
    return StructureMatcher(stol=CSP_STOL, ltol=CSP_LTOL, angle_tol=CSP_ANGLE_TOL)


def default_matcher() -> StructureMatcher:
    """pymatgen's default matcher (ltol 0.2, stol 0.3, angle_tol 5 deg), used for uniqueness and
    novelty."""
    return StructureMatcher()


def is_usable(structure: Any) -> bool:
    """True for a pymatgen Structure with atoms, a finite lattice and finite coordinates.

    Anything else (``None``, NaN, a zero or negative volume) is a broken sample that every metric
    counts as failed.
    """
    if not isinstance(structure, Structure) or len(structure) == 0:
        return False
    matrix = structure.lattice.matrix
    if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(structure.frac_coords))):
        return False
    volume = abs(float(np.linalg.det(matrix)))
    return math.isfinite(volume) and volume > 0.0


def structure_validity(
    structure: Any, min_distance: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME
) -> bool:
    """True when all interatomic distances (A), periodic images included, exceed ``min_distance``
    and the cell volume exceeds ``min_volume`` (A^3)."""
    if not is_usable(structure) or not structure.volume > min_volume:
        return False
    try:
        centers, neighbors, _, distances = structure.get_neighbor_list(min_distance)
    except _GEOMETRY_ERRORS:
        return False
    close = distances < min_distance
    # an atom's zero distance to itself is not a contact; its periodic image closer than the
    # limit is (a lattice vector shorter than min_distance)
    close &= ~((centers == neighbors) & (distances < 1e-8))
    return not bool(close.any())


@lru_cache(maxsize=65536)
def _smact_valid(symbols: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    """SMACT test of one reduced composition (symbols and integer counts in the same order)."""
    import smact  # imported here: loading its data tables takes a moment

    if len(symbols) == 1:
        return True
    if all(symbol in smact.metals for symbol in symbols):
        return True
    try:
        elements = [smact.Element(symbol) for symbol in symbols]
    except (NameError, KeyError, ValueError):
        return False
    oxidation_options = [element.oxidation_states or [] for element in elements]
    electronegativities = [element.pauling_eneg for element in elements]
    for states in itertools.product(*oxidation_options):
        if sum(state * count for state, count in zip(states, counts, strict=True)) != 0:
            continue
        if _pauling_ok(states, electronegativities):
            return True
    return False


def _pauling_ok(states: Sequence[int], electronegativities: Sequence[float | None]) -> bool:
    """Every cation strictly less electronegative than every anion (Pauling scale).

    A missing electronegativity passes the test, as in CDVAE.
    """
    if any(value is None for value in electronegativities):
        return True
    cations = [eneg for state, eneg in zip(states, electronegativities, strict=True) if state > 0]
    anions = [eneg for state, eneg in zip(states, electronegativities, strict=True) if state < 0]
    if not cations or not anions:
        return True
    return max(cations) < min(anions)


def composition_validity(item: Any) -> bool:
    """SMACT charge neutrality plus the Pauling electronegativity test for a Structure or a
    Composition.

    Some combination of the elements' SMACT oxidation states must make the reduced integer
    composition neutral with every cation less electronegative than every anion. A single
    element and a composition of metals only are valid. Broken structures, fractional or
    non-positive counts and unknown elements are invalid.

    This is CDVAE's rule (SMACT's full oxidation-state lists); 89.2 % of the 951 bundled train
    and val crystals pass it. smact 4's own ``smact_validity`` counts more compositions as alloys
    (metalloids such as Si, B and Te among metals) and passes 91.5 % of them; the two disagree on
    22, all of which smact 4 accepts (e.g. Ti3AlC, PRu, SiRh).
    """
    if isinstance(item, Structure):
        if not is_usable(item):
            return False
        composition = item.composition
    elif isinstance(item, Composition):
        composition = item
    else:
        return False
    try:
        amounts_by_symbol = composition.get_el_amt_dict()  # oxidation states merged per element
    except (AttributeError, ValueError):
        return False
    symbols = tuple(sorted(amounts_by_symbol))
    if not symbols or not all(Element.is_valid_symbol(symbol) for symbol in symbols):
        return False
    amounts = [amounts_by_symbol[symbol] for symbol in symbols]
    if any(not math.isfinite(a) or a <= 0 or abs(a - round(a)) > 1e-6 for a in amounts):
        return False
    counts = [round(a) for a in amounts]
    divisor = math.gcd(*counts)
    return _smact_valid(symbols, tuple(count // divisor for count in counts))


def _fits(matcher: StructureMatcher, first: Structure, second: Structure) -> bool:
    try:
        return bool(matcher.fit(first, second))
    except _GEOMETRY_ERRORS:
        return False


class ReducedMatcher:
    """``matcher.fit`` with each structure reduced once instead of on every comparison.

    ``StructureMatcher.fit`` Niggli-reduces both structures and takes their primitive cells on
    every call (with a small cache), which dominates the cost when one structure meets many
    others, as when grouping template candidates. :meth:`fit` reduces each structure it is given
    once, the same way, keeps the result for the lifetime of this object, and compares reduced
    forms with ``skip_structure_reduction=True``: the answers are those of ``matcher.fit``.
    A structure whose reduction fails matches nothing (as :func:`_fits` answers for it). A
    matcher that ignores species removes them before reducing, which this cannot reproduce; it
    is then called unchanged.
    """

    def __init__(self, matcher: StructureMatcher) -> None:
        self.matcher = matcher
        settings = matcher.as_dict()
        self._primitive_cell = bool(settings.get("primitive_cell", True))
        self._exact = not settings.get("ignored_species")
        self._forms: dict[int, tuple[Structure, Structure | None]] = {}

    def reduce(self, structure: Structure) -> Structure | None:
        """``structure`` as ``matcher.fit`` reduces it (Niggli cell, then the primitive cell when
        the matcher works on primitive cells), or None when that fails; computed once."""
        kept = self._forms.get(id(structure))
        if kept is not None and kept[0] is structure:
            return kept[1]
        try:
            form: Structure | None = Structure.from_sites(structure).get_reduced_structure(
                reduction_algo="niggli"
            )
            if self._primitive_cell:
                form = form.get_primitive_structure()
        except _GEOMETRY_ERRORS:
            form = None
        self._forms[id(structure)] = (structure, form)  # the reference keeps the id valid
        return form

    def fit(self, first: Structure, second: Structure) -> bool:
        """Whether two structures are the same crystal by ``matcher`` (False when either is
        degenerate)."""
        if not self._exact:
            return _fits(self.matcher, first, second)
        one, two = self.reduce(first), self.reduce(second)
        if one is None or two is None:
            return False
        try:
            return bool(self.matcher.fit(one, two, skip_structure_reduction=True))
        except _GEOMETRY_ERRORS:
            return False


def _reduced_formula(structure: Structure) -> str:
    return structure.composition.reduced_formula


def duplicate_groups(
    structures: Sequence[Any], matcher: StructureMatcher | None = None
) -> list[int]:
    """Group index of each structure (equal indices = the same crystal); -1 for broken ones.

    Groups are numbered in order of their first member; a structure joins the first earlier group
    whose first member it matches. Only structures with the same reduced formula are compared.
    """
    reduced = ReducedMatcher(matcher or default_matcher())
    representatives: dict[str, list[tuple[int, Structure]]] = defaultdict(list)
    groups: list[int] = []
    next_group = 0
    for structure in structures:
        if not is_usable(structure):
            groups.append(-1)
            continue
        candidates = representatives[_reduced_formula(structure)]
        group = next(
            (index for index, rep in candidates if reduced.fit(rep, structure)),
            None,
        )
        if group is None:
            group = next_group
            next_group += 1
            candidates.append((group, structure))
        groups.append(group)
    return groups


def uniqueness(structures: Sequence[Any], matcher: StructureMatcher | None = None) -> float:
    """Fraction of the structures that are distinct crystals (number of duplicate groups / number
    of structures); broken structures count as not unique. NaN for an empty list."""
    if not structures:
        return float("nan")
    groups = duplicate_groups(structures, matcher)
    return len({g for g in groups if g >= 0}) / len(structures)


def novel_flags(
    structures: Sequence[Any],
    reference: Sequence[Any],
    matcher: StructureMatcher | None = None,
) -> list[bool]:
    """For each structure, True when it matches no reference structure (False when broken).

    Only reference structures with the same reduced formula are compared.
    """
    reduced = ReducedMatcher(matcher or default_matcher())
    by_formula: dict[str, list[Structure]] = defaultdict(list)
    for known in reference:
        if is_usable(known):
            by_formula[_reduced_formula(known)].append(known)
    flags = []
    for structure in structures:
        if not is_usable(structure):
            flags.append(False)
            continue
        same = by_formula.get(_reduced_formula(structure), [])
        flags.append(not any(reduced.fit(known, structure) for known in same))
    return flags


def novelty(
    structures: Sequence[Any],
    reference: Sequence[Any],
    matcher: StructureMatcher | None = None,
) -> float:
    """Fraction of the structures matching no reference (training) structure; broken ones count
    as not novel. NaN for an empty list."""
    if not structures:
        return float("nan")
    return sum(novel_flags(structures, reference, matcher)) / len(structures)


def densities(structures: Sequence[Any]) -> np.ndarray:
    """Density (g/cm^3) of each usable structure; broken ones are left out."""
    return np.array([float(s.density) for s in structures if is_usable(s)], dtype=float)


def num_elements(structures: Sequence[Any]) -> np.ndarray:
    """Number of distinct elements of each usable structure; broken ones are left out."""
    return np.array([len(s.composition.elements) for s in structures if is_usable(s)], dtype=float)


def _wasserstein(values: np.ndarray, reference: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    reference = reference[np.isfinite(reference)]
    if values.size == 0 or reference.size == 0:
        return float("nan")
    return float(wasserstein_distance(values, reference))


def density_wasserstein(structures: Sequence[Any], reference: Sequence[Any]) -> float:
    """Wasserstein-1 distance (g/cm^3) between the density distributions of the usable
    structures of both sets; NaN when either has none."""
    return _wasserstein(densities(structures), densities(reference))


def num_elements_wasserstein(structures: Sequence[Any], reference: Sequence[Any]) -> float:
    """Wasserstein-1 distance between the distributions of the number of distinct elements;
    NaN when either set has no usable structure."""
    return _wasserstein(num_elements(structures), num_elements(reference))


def space_group_number(structure: Any, symprec: float = SYMPREC) -> int | None:
    """International space group number (spglib, ``symprec`` in A), None when it cannot be
    determined (broken structure or spglib failure)."""
    if not is_usable(structure):
        return None
    try:
        number = SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number()
    except _GEOMETRY_ERRORS:
        return None
    return int(number) if number else None


def non_p1_fraction(structures: Sequence[Any], symprec: float = SYMPREC) -> float:
    """Fraction of the structures whose space group is not P1 (number 1); structures whose group
    cannot be determined count as P1. NaN for an empty list."""
    if not structures:
        return float("nan")
    numbers = [space_group_number(s, symprec) for s in structures]
    return sum(1 for n in numbers if n is not None and n != 1) / len(structures)


def match_rms(
    true_structure: Any,
    candidates: Sequence[Any],
    matcher: StructureMatcher | None = None,
) -> list[float | None]:
    """Normalised RMS displacement of each candidate against the true structure, None where the
    candidate does not match (or is broken or structurally invalid).

    The RMS is pymatgen's, divided by (V/N)^(1/3) (dimensionless). Default matcher:
    :func:`csp_matcher`.
    """
    matcher = matcher or csp_matcher()
    if not is_usable(true_structure):
        return [None] * len(candidates)
    values: list[float | None] = []
    for candidate in candidates:
        if not structure_validity(candidate):
            values.append(None)
            continue
        try:
            result = matcher.get_rms_dist(true_structure, candidate)
        except _GEOMETRY_ERRORS:
            result = None
        values.append(None if result is None else float(result[0]))
    return values


def csp_metrics(
    pairs: Sequence[tuple[Any, Sequence[Any]]],
    k: int | None = None,
    matcher: StructureMatcher | None = None,
) -> dict[str, float]:
    """Composition -> structure prediction scores, as CDVAE's CSP evaluation.

    ``pairs`` holds (true structure, candidates ranked best first). Returns ``match_rate_top1``
    (fraction whose first candidate matches), ``match_rate_topk`` (any of the first ``k``; all
    candidates when ``k`` is None), ``rms_top1`` and ``rms_topk`` (mean normalised RMS over the
    matched cases, of the first candidate resp. of the best matching candidate in the top ``k``;
    NaN when nothing matched), ``k`` and ``n``. Candidates only need to be structurally valid;
    the composition is given, so composition validity is not asked of them.
    """
    matcher = matcher or csp_matcher()
    top1: list[float] = []
    topk: list[float] = []
    largest = 0
    for true_structure, candidates in pairs:
        chosen = list(candidates if k is None else candidates[:k])
        largest = max(largest, len(chosen))
        values = match_rms(true_structure, chosen, matcher)
        if values and values[0] is not None:
            top1.append(values[0])
        matched = [v for v in values if v is not None]
        if matched:
            topk.append(min(matched))
    n = len(pairs)
    return {
        "n": n,
        "k": k if k is not None else largest,
        "match_rate_top1": len(top1) / n if n else float("nan"),
        "match_rate_topk": len(topk) / n if n else float("nan"),
        "rms_top1": float(np.mean(top1)) if top1 else float("nan"),
        "rms_topk": float(np.mean(topk)) if topk else float("nan"),
    }


def generation_metrics(
    generated: Sequence[Any],
    reference: Sequence[Any],
    matcher: StructureMatcher | None = None,
    symprec: float = SYMPREC,
) -> dict[str, float]:
    """All generation metrics of ``generated`` against ``reference`` in one dict.

    Keys: ``n_generated``, ``n_broken`` (None/NaN/empty samples), ``struct_validity``,
    ``comp_validity``, ``validity`` (both), ``uniqueness``, ``novelty``, ``unique_novel`` (first
    member of its duplicate group and novel), ``wdist_density`` (g/cm^3), ``wdist_num_elements``,
    ``non_p1_fraction``. Fractions are over all generated samples. As in CDVAE, the Wasserstein
    distances use the valid generated structures (structure and composition) against all usable
    reference structures.
    """
    matcher = matcher or default_matcher()
    n = len(generated)
    if n == 0:
        return {"n_generated": 0, "n_broken": 0}
    usable = [is_usable(s) for s in generated]
    struct_ok = [structure_validity(s) for s in generated]
    comp_ok = [composition_validity(s) for s in generated]
    valid = [a and b for a, b in zip(struct_ok, comp_ok, strict=True)]
    groups = duplicate_groups(generated, matcher)
    novel = novel_flags(generated, reference, matcher)
    seen: set[int] = set()
    unique_novel = 0
    for group, is_novel in zip(groups, novel, strict=True):
        if group >= 0 and group not in seen:
            seen.add(group)
            unique_novel += bool(is_novel)
    valid_structures = [s for s, ok in zip(generated, valid, strict=True) if ok]
    return {
        "n_generated": n,
        "n_broken": n - sum(usable),
        "struct_validity": sum(struct_ok) / n,
        "comp_validity": sum(comp_ok) / n,
        "validity": sum(valid) / n,
        "uniqueness": len(seen) / n,
        "novelty": sum(novel) / n,
        "unique_novel": unique_novel / n,
        "wdist_density": density_wasserstein(valid_structures, reference),
        "wdist_num_elements": num_elements_wasserstein(valid_structures, reference),
        "non_p1_fraction": non_p1_fraction(generated, symprec),
    }
