"""Non-learned baselines beside CDVAE: element substitution into known crystals, and template
lookup for composition -> structure.

Substitution statistics. pymatgen ships the data-mined substitution model of Hautier et al.
(Inorg. Chem. 50, 656 (2011)) as a table of weights lambda(s1, s2) over pairs of *ions*
(``pymatgen/core/structure_prediction/data/lambda.json``, the file its ``SubstitutionProbability``
reads; read here directly, offline); the joint probability of a pair is proportional to
exp(lambda), and pairs never observed get lambda = alpha = -5. Superconductors are mostly
intermetallics without meaningful oxidation states, so we use the table oxidation-state
agnostic: the weight of an *element* pair is the sum of exp(lambda) over all observed ion pairs
of the two elements (the marginal of the joint distribution over oxidation states), exp(alpha)
when no ion pair of the two was ever observed, and P(new | old) is that weight normalised over
all elements of the table.
Summing rather than picking one "most common" oxidation state keeps elements such as Nb, Sn, B or
Si, whose nominal state in an intermetallic is ill defined, on all their observed substitutions.

Volume. A substituted cell keeps its fractional coordinates and is scaled isotropically by the
ratio of the summed atomic volumes after and before the substitution. The atomic volumes
(A^3/atom) are fitted to the training cells (non-negative least squares of cell volume on element
counts, :func:`fit_atomic_volumes`); an element seen in fewer than 3 training cells takes the
volume per atom of its elemental solid (pymatgen's molar volume). On the bundled val split this
predicts the volume of correctly matched template structures to 4.5 % (mean |log ratio|), against
6.4 % for elemental-solid volumes alone and 9 % for cubed empirical atomic radii.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure
from scipy.optimize import nnls

from tcdesign.data.io import MAX_Z
from tcdesign.generate.defaults import ENERGY_POOL, ENERGY_WEIGHT
from tcdesign.generate.metrics import ReducedMatcher, csp_matcher, default_matcher, is_usable

UNOBSERVED_LAMBDA = -5.0  # pymatgen's alpha: lambda of a substitution never observed
UNKNOWN_SELF_WEIGHT = 1.0  # weight of keeping an element that the table does not know


@dataclass(frozen=True)
class ElementSubstitutionTable:
    """Oxidation-state agnostic substitution weights between elements.

    ``weights[i, j]`` is the summed exp(lambda) of all observed ion pairs of ``symbols[i]`` and
    ``symbols[j]`` (exp(alpha) if none was observed); symmetric.
    """

    symbols: tuple[str, ...]
    weights: np.ndarray  # (n_elements, n_elements) symmetric, > 0

    def index(self, symbol: str) -> int | None:
        """Position of ``symbol`` in the table, None when the table does not know it."""
        return _symbol_index(self.symbols).get(symbol)

    def weight(self, old: str, new: str) -> float:
        """Joint weight of the pair (unnormalised); an unknown element only keeps itself."""
        i, j = self.index(old), self.index(new)
        if i is None or j is None:
            return UNKNOWN_SELF_WEIGHT if old == new else math.exp(UNOBSERVED_LAMBDA)
        return float(self.weights[i, j])

    def cond_prob(self, new: str, old: str) -> float:
        """P(new | old): probability that ``old`` is replaced by ``new`` (``new == old`` keeps it),
        normalised over every element of the table."""
        i = self.index(old)
        if i is None:
            total = UNKNOWN_SELF_WEIGHT + math.exp(UNOBSERVED_LAMBDA) * len(self.symbols)
            return self.weight(old, new) / total
        return self.weight(old, new) / float(self.weights[i].sum())


@lru_cache(maxsize=8)
def _symbol_index(symbols: tuple[str, ...]) -> dict[str, int]:
    return {symbol: i for i, symbol in enumerate(symbols)}


_ION = re.compile(r"^([A-Z][a-z]?)(\d*(?:\.\d+)?)([+-])$")  # "Fe2+", "Cl-", "O2-"


def _ion(text: str) -> tuple[str, float]:
    """("Fe", 2.0) for "Fe2+", as pymatgen's ``Species.from_str`` reads the table's ions."""
    match = _ION.match(text)
    if match is None:
        raise ValueError(f"unexpected ion {text!r} in pymatgen's substitution table")
    charge = float(match.group(2) or 1)
    return match.group(1), charge if match.group(3) == "+" else -charge


@lru_cache(maxsize=1)
def substitution_table() -> ElementSubstitutionTable:
    """The element table built from pymatgen's shipped lambda table (no network access).

    Reads ``lambda.json`` directly, as ``SubstitutionProbability`` does (rows with the dummy ion
    D1+ left out; a later row of the same ion pair replaces an earlier one), in 0.05 s instead of
    the 4-10 s that building pymatgen's ``Species`` objects for it takes; a test checks that both
    give the same table.
    """
    import pymatgen.core.structure_prediction as prediction

    path = Path(prediction.__file__).parent / "data" / "lambda.json"
    lambdas: dict[frozenset[tuple[str, float]], float] = {}
    for first, second, value in json.loads(path.read_text()):
        if "D1+" not in (first, second):
            lambdas[frozenset((_ion(first), _ion(second)))] = float(value)
    elements = {symbol for pair in lambdas for symbol, _ in pair}
    symbols = tuple(sorted(elements, key=lambda s: Element(s).Z))
    position = {symbol: i for i, symbol in enumerate(symbols)}
    observed = np.zeros((len(symbols), len(symbols)))
    for pair, value in lambdas.items():
        if value <= UNOBSERVED_LAMBDA:  # never observed: the default, not data
            continue
        (first, _), (second, _) = (tuple(pair) * 2)[:2]  # an ion with itself: one member
        i, j = position[first], position[second]
        observed[i, j] += math.exp(value)
        if i != j:
            observed[j, i] += math.exp(value)
    weights = np.where(observed > 0, observed, math.exp(UNOBSERVED_LAMBDA))
    return ElementSubstitutionTable(symbols, weights)


MIN_OCCURRENCES = 3  # training cells an element must appear in for its fitted atomic volume
MIN_FITTED_VOLUME = 1.0  # A^3; a smaller fitted atomic volume is not trusted
AVOGADRO_A3 = 0.602214076  # cm^3/mol -> A^3/atom: divide by N_A * 1e-24


def fit_atomic_volumes(
    structures: Sequence[Any], min_occurrences: int = MIN_OCCURRENCES
) -> dict[str, float]:
    """Atomic volumes (A^3/atom) that best add up to the cell volumes of ``structures``.

    Non-negative least squares of each cell volume on its element counts; only elements present
    in at least ``min_occurrences`` cells and fitted above 1 A^3 are returned.
    """
    usable = [s for s in structures if is_usable(s)]
    counts = [s.composition.get_el_amt_dict() for s in usable]
    symbols = sorted({symbol for row in counts for symbol in row})
    if not symbols:
        return {}
    design = np.array([[row.get(symbol, 0.0) for symbol in symbols] for row in counts])
    volumes, _ = nnls(design, np.array([s.volume for s in usable]))
    occurrences = (design > 0).sum(axis=0)
    return {
        symbol: float(volume)
        for symbol, volume, seen in zip(symbols, volumes, occurrences, strict=True)
        if seen >= min_occurrences and volume > MIN_FITTED_VOLUME
    }


def atomic_volume(symbol: str, volumes: dict[str, float] | None = None) -> float:
    """Volume per atom (A^3): ``volumes[symbol]`` when given, else that of the elemental solid
    (pymatgen's molar volume), else a sphere of the empirical atomic radius (1.5 A if unknown)."""
    if volumes and symbol in volumes:
        return volumes[symbol]
    element = Element(symbol)
    if element.molar_volume:
        return float(element.molar_volume) / AVOGADRO_A3
    radius = element.atomic_radius or 1.5
    return 4.0 / 3.0 * math.pi * float(radius) ** 3


def _summed_volume(counts: dict[str, float], volumes: dict[str, float] | None) -> float:
    return sum(atomic_volume(symbol, volumes) * amount for symbol, amount in counts.items())


def apply_substitution(
    structure: Structure, mapping: dict[str, str], volumes: dict[str, float] | None = None
) -> Structure:
    """A copy of ``structure`` with elements replaced by ``mapping`` (old -> new, all at once) and
    the cell scaled by the ratio of summed atomic volumes (:func:`atomic_volume` with
    ``volumes``); fractional coordinates are kept."""
    before = structure.composition.get_el_amt_dict()
    after: dict[str, float] = defaultdict(float)
    for symbol, amount in before.items():
        after[mapping.get(symbol, symbol)] += amount
    result = structure.copy()
    result.replace_species({old: new for old, new in mapping.items() if old != new})
    ratio = _summed_volume(after, volumes) / _summed_volume(before, volumes)
    result.scale_lattice(structure.volume * ratio)
    return result


def _group_by_formula(structures: Sequence[Structure]) -> dict[str, list[Structure]]:
    groups: dict[str, list[Structure]] = defaultdict(list)
    for structure in structures:
        groups[structure.composition.reduced_formula].append(structure)
    return groups


def _matches_any(matcher: ReducedMatcher, structure: Structure, known: Sequence[Structure]) -> bool:
    return any(matcher.fit(other, structure) for other in known)


ATTEMPTS_PER_CRYSTAL = 50  # draws per requested crystal before substitute() gives up


def substitute(
    train_structures: Sequence[Any],
    n: int,
    seed: int = 0,
    *,
    max_swaps: int = 1,
    allowed_elements: Sequence[str] | None = None,
    max_attempts: int | None = None,
    matcher: StructureMatcher | None = None,
) -> list[Structure]:
    """Up to ``n`` new crystals made by element substitution into training crystals.

    Each attempt draws a training crystal uniformly, swaps 1 to ``max_swaps`` of its elements, each
    for a new element drawn with probability P(new | old) of :func:`substitution_table` among
    ``allowed_elements`` (default: the elements of the training set) not already in the crystal,
    and rescales the volume (:func:`apply_substitution`, atomic volumes fitted to the training
    set). A result that matches (pymatgen's
    default StructureMatcher, same reduced formula only) an earlier result or a training crystal
    is discarded. Stops after ``max_attempts`` draws (default ``50 * n``,
    :data:`ATTEMPTS_PER_CRYSTAL`), so fewer than ``n``
    crystals can come back. Reproducible for the same inputs and ``seed``. Each result carries
    ``properties["parent"]`` (index in ``train_structures``) and ``properties["substitution"]``
    (e.g. ``"Nb->Ta"``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if max_swaps < 1:
        raise ValueError(f"max_swaps must be >= 1, got {max_swaps}")
    parents = [(i, s) for i, s in enumerate(train_structures) if is_usable(s)]
    if n and not parents:
        raise ValueError("no usable training structure to substitute into")
    table = substitution_table()
    if allowed_elements is None:
        allowed_elements = sorted({e.symbol for _, s in parents for e in s.composition.elements})
    unknown = [symbol for symbol in allowed_elements if not Element.is_valid_symbol(symbol)]
    if unknown:
        raise ValueError(f"unknown element(s) in allowed_elements: {', '.join(unknown)}")
    choices = [symbol for symbol in allowed_elements if table.index(symbol) is not None]
    reduced = ReducedMatcher(matcher or default_matcher())
    volumes = fit_atomic_volumes([s for _, s in parents])
    known = _group_by_formula([s for _, s in parents])
    made: dict[str, list[Structure]] = defaultdict(list)
    rng = np.random.default_rng(seed)
    results: list[Structure] = []
    attempts = 0
    limit = ATTEMPTS_PER_CRYSTAL * n if max_attempts is None else max_attempts
    while len(results) < n and attempts < limit:
        attempts += 1
        parent_index, parent = parents[int(rng.integers(len(parents)))]
        present = sorted(e.symbol for e in parent.composition.elements)
        n_swaps = int(rng.integers(1, min(max_swaps, len(present)) + 1))
        olds = [present[i] for i in rng.choice(len(present), size=n_swaps, replace=False)]
        mapping: dict[str, str] = {}
        for old in olds:
            taken = set(present) | set(mapping.values())
            options = [symbol for symbol in choices if symbol not in taken]
            if not options:
                break
            weights = np.array([table.weight(old, symbol) for symbol in options])
            mapping[old] = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        if len(mapping) != n_swaps:
            continue
        candidate = apply_substitution(parent, mapping, volumes)
        formula = candidate.composition.reduced_formula
        if _matches_any(reduced, candidate, made[formula]) or _matches_any(
            reduced, candidate, known.get(formula, [])
        ):
            continue
        candidate.properties = {
            "parent": parent_index,
            "substitution": ",".join(f"{old}->{new}" for old, new in sorted(mapping.items())),
        }
        made[formula].append(candidate)
        results.append(candidate)
    return results


_EXPLICIT_COUNT = re.compile(r"([A-Z][a-z]*)\s*(\d+(?:\.\d*)?|\.\d+)")  # element, its count


def parse_cell_formula(formula: str) -> dict[str, int]:
    """Atom counts per cell of a formula such as ``"Nb6Sn2"``.

    Raises ValueError for a formula that does not parse, an unknown element, an element beyond
    Z = 100 (the models' range), or a count that is not a positive integer (``"Nb0Sn2"`` too:
    pymatgen would silently drop the zero).
    """
    text = str(formula).strip()
    try:
        composition = Composition(text)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"formula {formula!r} does not parse ({exc})") from None
    for symbol, amount in _EXPLICIT_COUNT.findall(text):
        if float(amount) == 0:
            raise ValueError(
                f"formula {formula!r}: {symbol} count {amount} is not a positive whole number "
                "of atoms per cell"
            )
    counts: dict[str, int] = {}
    for specie, amount in composition.items():
        symbol = getattr(specie, "symbol", str(specie))
        if not Element.is_valid_symbol(symbol):
            raise ValueError(f"unknown element {symbol!r} in formula {formula!r}")
        if Element(symbol).Z > MAX_Z:
            raise ValueError(
                f"formula {formula!r}: element {symbol} (Z = {Element(symbol).Z}) is not "
                f"supported (Z 1-{MAX_Z})"
            )
        if amount <= 0 or abs(amount - round(amount)) > 1e-6:
            raise ValueError(
                f"formula {formula!r}: {symbol} count {amount:g} is not a positive whole number "
                "of atoms per cell"
            )
        counts[symbol] = counts.get(symbol, 0) + round(amount)
    if not counts:
        raise ValueError(f"formula {formula!r} has no atoms")
    return counts


def _reduced(counts: dict[str, int]) -> dict[str, int]:
    divisor = math.gcd(*counts.values())
    return {symbol: count // divisor for symbol, count in counts.items()}


def stoichiometry_pattern(counts: dict[str, int]) -> tuple[int, ...]:
    """Sorted reduced atom counts, e.g. ``{"Nb": 6, "Sn": 2}`` -> ``(1, 3)``."""
    return tuple(sorted(_reduced(counts).values()))


def _integer_counts(structure: Structure) -> dict[str, int]:
    return {
        symbol: round(amount) for symbol, amount in structure.composition.get_el_amt_dict().items()
    }


def _resize(structure: Structure, n_atoms: int) -> Structure:
    """The structure with ``n_atoms`` atoms per cell where a primitive cell or a supercell of it
    has that many; otherwise the primitive cell (same reduced composition, other cell size)."""
    if len(structure) == n_atoms:
        return structure
    primitive = structure.get_primitive_structure()
    if len(primitive) == n_atoms or n_atoms % len(primitive):
        return primitive
    multiple = n_atoms // len(primitive)
    scaling = [1, 1, 1]
    lengths = list(primitive.lattice.abc)
    factor = 2
    while multiple > 1:  # each prime factor lengthens the currently shortest vector
        while multiple % factor == 0:
            axis = int(np.argmin([lengths[i] * scaling[i] for i in range(3)]))
            scaling[axis] *= factor
            multiple //= factor
        factor += 1
    return primitive.make_supercell(scaling, in_place=False)


def template_scores(
    formula: str, train_structures: Sequence[Any]
) -> list[tuple[float, int, dict[str, str]]]:
    """Every (log-score, training index, element mapping template -> query) for ``formula``.

    A training crystal is a template when its sorted reduced counts equal the query's; a mapping
    assigns the query elements to the template elements with the same reduced count, and scores
    sum(log P(query element | template element)). Sorted best first (ties: training order).
    Raises ValueError for a bad formula or when no training crystal has its pattern.
    """
    query = parse_cell_formula(formula)
    reduced_query = _reduced(query)
    pattern = stoichiometry_pattern(query)
    table = substitution_table()
    query_symbols = list(query)
    scored: list[tuple[float, int, dict[str, str]]] = []
    for index, template in enumerate(train_structures):
        if not is_usable(template):
            continue
        counts = _integer_counts(template)
        if len(counts) != len(query) or stoichiometry_pattern(counts) != pattern:
            continue
        reduced_template = _reduced(counts)
        template_symbols = list(counts)
        for order in permutations(query_symbols):
            if any(
                reduced_template[old] != reduced_query[new]
                for old, new in zip(template_symbols, order, strict=True)
            ):
                continue
            mapping = dict(zip(template_symbols, order, strict=True))
            score = sum(math.log(table.cond_prob(new, old)) for old, new in mapping.items())
            scored.append((score, index, mapping))
    if not scored:
        ratio = ":".join(str(c) for c in pattern)
        raise ValueError(
            f"no template for {formula!r}: no training structure has the stoichiometry {ratio}"
        )
    scored.sort(key=lambda item: (-item[0], item[1]))
    return scored


TEMPLATE_PAIRS = 200  # (template, mapping) pairs built per composition by template_csp
# largest cell template_csp builds: supercells of thousands of atoms took many minutes per
# formula (a 4000-atom typo ran > 200 s); training cells have at most 18 atoms
TEMPLATE_MAX_ATOMS = 100

EnergyFunction = Callable[[Sequence[Structure]], Sequence[float]]


def template_csp(
    formula: str,
    train_structures: Sequence[Any],
    k: int = 5,
    *,
    max_candidates: int = TEMPLATE_PAIRS,
    matcher: StructureMatcher | None = None,
    volumes: dict[str, float] | None = None,
    primitive_cell: bool = True,
    energy: EnergyFunction | None = None,
    energy_weight: float = ENERGY_WEIGHT,
    energy_pool: int = ENERGY_POOL,
) -> list[Structure]:
    """Up to ``k`` distinct structures for a cell composition, most probable first, by template
    lookup.

    The ``max_candidates`` best (template, mapping) pairs of :func:`template_scores` are built
    (elements substituted, volume rescaled, cell resized to the query's atom count where a
    primitive cell or supercell allows) and grouped into distinct crystals (``matcher``, default
    the CSP matcher of :mod:`tcdesign.generate.metrics`; the first, best-scored pair of a group
    is its structure). A crystal's score is the log of the summed probabilities of every pair
    that builds it, so a prototype many training crystals share outranks a one-off with a
    slightly likelier substitution: on the 105 val compositions this raises the top-1 match rate
    from 0.571 (best pair alone) to 0.629 (top-5 0.838 -> 0.810). ``volumes`` (A^3/atom, default
    fitted to ``train_structures`` by :func:`fit_atomic_volumes`) can be passed to reuse one fit
    over many formulas.

    With ``primitive_cell`` (the default) the formula counts the atoms of a primitive cell, as in
    the JARVIS and CDVAE data, so a candidate whose primitive cell is smaller (a supercell of a
    smaller crystal, built from a template with fewer atoms) ranks after every candidate whose
    primitive cell has exactly the formula's atoms: such a candidate is a different crystal
    from any with that primitive cell. Measured on the 105 val compositions: top-1 0.629 ->
    0.676, top-5 0.810 -> 0.876 (benchmarks/results/generator_csp_n105.json); on the training
    formulas, each with itself left out of the templates, 0.600 -> 0.654. Pass False when the
    formula is a conventional cell or a supercell (e.g. ``Cu4`` for fcc copper).

    With ``energy`` (a function giving the energy per atom, eV, of each of a list of structures,
    NaN where it has none; :func:`tcdesign.screen.relax.static_energies_per_atom` for CHGNet),
    the ``max(k, energy_pool)`` best candidates are re-ranked by log-probability minus
    ``energy_weight`` times their energy above the lowest of them (all share the composition,
    so no elemental references are needed). The substitution statistics know which elements
    replace each other but not which arrangement the new chemistry prefers; the potential does,
    roughly, even for the unrelaxed rescaled cells. Measured by benchmarks/csp_energy.py at the
    default weight 2: on the training formulas, each left out of its own templates, top-1
    0.655 -> 0.678 (35 formulas gained, 15 lost, of 846; top-5 0.898 -> 0.901), and on the 105
    val compositions 0.686 -> 0.705 (top-5 0.886 both). A NaN energy counts as the highest of
    the pool; the ``primitive_cell`` demotion still comes first.

    A formula of more than ``TEMPLATE_MAX_ATOMS`` atoms is a ValueError.

    Each result carries ``properties["template"]`` (training index of its best pair),
    ``properties["log_probability"]`` (summed log-probability of its pairs),
    ``properties["score"]`` (the ranking score: the log-probability, minus the energy term when
    ``energy`` is given), ``properties["energy_per_atom"]`` (with ``energy``; else absent),
    ``properties["pairs"]`` (how many pairs build it), ``properties["primitive"]`` (its
    primitive cell has the formula's atom count) and ``properties["mapping"]``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    query = parse_cell_formula(formula)
    n_atoms = sum(query.values())
    if n_atoms > TEMPLATE_MAX_ATOMS:
        raise ValueError(
            f"formula {formula!r}: {n_atoms} atoms per cell, more than the {TEMPLATE_MAX_ATOMS} "
            "the template method builds"
        )
    scored = template_scores(formula, train_structures)
    reduced = ReducedMatcher(matcher or csp_matcher())
    if volumes is None:
        volumes = fit_atomic_volumes(train_structures)
    groups: list[Structure] = []
    for score, index, mapping in scored[:max_candidates]:
        candidate = _resize(apply_substitution(train_structures[index], mapping, volumes), n_atoms)
        same = next((g for g in groups if reduced.fit(g, candidate)), None)
        if same is not None:
            same.properties["score"] = float(np.logaddexp(same.properties["score"], score))
            same.properties["pairs"] += 1
            continue
        candidate.properties = {
            "template": index,
            "score": score,
            "pairs": 1,
            "primitive": len(candidate.get_primitive_structure()) == n_atoms,
            "mapping": ",".join(f"{old}->{new}" for old, new in mapping.items()),
        }
        groups.append(candidate)
    for group in groups:
        group.properties["log_probability"] = group.properties["score"]

    def order(candidates: list[Structure]) -> list[Structure]:  # stable: ties keep pair order
        def key(group: Structure) -> tuple[bool, float]:
            demoted = primitive_cell and not group.properties["primitive"]
            return demoted, -group.properties["score"]

        return sorted(candidates, key=key)

    groups = order(groups)
    if energy is not None and energy_weight:
        pool = groups[: max(k, energy_pool)]
        energies = np.asarray(energy(pool), dtype=float)  # (n_pool,) eV/atom
        above = _energy_above_lowest(energies)
        for group, value, excess in zip(pool, energies, above, strict=True):
            group.properties["energy_per_atom"] = float(value)
            group.properties["score"] -= energy_weight * float(excess)
        groups = order(pool)
    return groups[:k]


def _energy_above_lowest(energies: np.ndarray) -> np.ndarray:
    """Each energy minus the lowest finite one; NaN counts as the highest (0 if all are NaN)."""
    finite = np.isfinite(energies)
    if not finite.any():
        return np.zeros_like(energies)
    above = energies - energies[finite].min()
    return np.where(finite, above, above[finite].max())
