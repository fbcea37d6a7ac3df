"""Substitution and template baselines (tcdesign.generate.substitution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure

from tcdesign.data.io import read_structures
from tcdesign.generate.metrics import csp_matcher, match_rms, novel_flags
from tcdesign.generate.substitution import (
    UNOBSERVED_LAMBDA,
    apply_substitution,
    fit_atomic_volumes,
    parse_cell_formula,
    stoichiometry_pattern,
    substitute,
    substitution_table,
    template_csp,
    template_scores,
)
from tcdesign.predict.api import bundled_csv


@pytest.fixture(scope="module")
def train_structures() -> list[Structure]:
    return [r.structure for r in read_structures(bundled_csv("train")) if r.ok]


def rocksalt_of(cation: str, anion: str, a: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def test_table_is_shipped_with_pymatgen() -> None:
    import pymatgen.core.structure_prediction as package

    assert (Path(package.__file__).parent / "data" / "lambda.json").is_file()
    table = substitution_table()
    assert {"Nb", "Ta", "Sn", "O", "B"} <= set(table.symbols)
    assert np.allclose(table.weights, table.weights.T)
    total = sum(table.cond_prob(new, "Nb") for new in table.symbols)
    assert total == pytest.approx(1.0)
    assert table.cond_prob("Ta", "Nb") > 10 * table.cond_prob("O", "Nb")
    assert table.cond_prob("Ne", "Ne") > table.cond_prob("Nb", "Ne")  # unknown to the table


def test_table_equals_pymatgen_substitution_probability() -> None:
    """The direct reader of lambda.json gives the table that pymatgen's own parser gives."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    probability = SubstitutionProbability(alpha=UNOBSERVED_LAMBDA)
    table = substitution_table()
    assert set(table.symbols) == {s.symbol for s in probability.species}
    position = {symbol: i for i, symbol in enumerate(table.symbols)}
    observed = np.zeros_like(table.weights)
    species = sorted(probability.species, key=str)
    for a, first in enumerate(species):
        for second in species[a:]:  # each unordered ion pair once, an ion with itself too
            value = probability.get_lambda(first, second)
            if value > UNOBSERVED_LAMBDA:
                i, j = position[first.symbol], position[second.symbol]
                observed[i, j] += np.exp(value)
                observed[j, i] += np.exp(value) if i != j else 0.0
    expected = np.where(observed > 0, observed, np.exp(UNOBSERVED_LAMBDA))
    assert np.allclose(table.weights, expected, rtol=1e-12, atol=0.0)


def test_fitted_atomic_volumes(train_structures: list[Structure]) -> None:
    volumes = fit_atomic_volumes(train_structures)
    assert 10.0 < volumes["Nb"] < 25.0  # A^3 per atom; bcc Nb has 18
    assert volumes["Ba"] > volumes["Be"]


def test_apply_substitution_keeps_coordinates_and_scales_volume(rocksalt: Structure) -> None:
    volumes = {"Nb": 18.0, "C": 6.0, "Ta": 18.0, "N": 7.0}
    swapped = apply_substitution(rocksalt, {"C": "N"}, volumes)
    assert swapped.composition == Composition("NbN")
    assert swapped.volume == pytest.approx(rocksalt.volume * 25.0 / 24.0)
    assert np.allclose(swapped.frac_coords, rocksalt.frac_coords)
    exchanged = apply_substitution(rocksalt, {"Nb": "C", "C": "Nb"}, volumes)
    swap = {"Nb": "C", "C": "Nb"}
    assert [str(s) for s in exchanged.species] == [swap[str(s)] for s in rocksalt.species]


def test_substitute_is_reproducible(train_structures: list[Structure]) -> None:
    first = substitute(train_structures, 12, seed=7)
    again = substitute(train_structures, 12, seed=7)
    other = substitute(train_structures, 12, seed=8)
    assert len(first) == 12
    assert [s.formula for s in first] == [s.formula for s in again]
    for a, b in zip(first, again, strict=True):
        assert np.allclose(a.lattice.matrix, b.lattice.matrix)
        assert np.allclose(a.frac_coords, b.frac_coords)
    assert [s.formula for s in first] != [s.formula for s in other]


def test_substitute_changes_the_intended_elements(train_structures: list[Structure]) -> None:
    samples = substitute(train_structures, 20, seed=1, max_swaps=2)
    for sample in samples:
        parent = train_structures[sample.properties["parent"]]
        mapping = dict(pair.split("->") for pair in sample.properties["substitution"].split(","))
        assert 1 <= len(mapping) <= 2
        expected = {}
        for symbol, amount in parent.composition.get_el_amt_dict().items():
            expected[mapping.get(symbol, symbol)] = amount
        assert sample.composition == Composition(expected)
        assert set(mapping.values()).isdisjoint(parent.composition.get_el_amt_dict())
        assert np.allclose(sample.frac_coords, parent.frac_coords)
        parsed = Structure.from_str(sample.to(fmt="cif"), fmt="cif")
        assert parsed.composition == sample.composition
        assert StructureMatcher().fit(parsed, sample)
    # deduplicated against each other and against training
    assert all(novel_flags(samples, train_structures))
    assert len({(s.formula, round(s.volume, 3)) for s in samples}) == len(samples)


def test_substitute_arguments(train_structures: list[Structure]) -> None:
    assert substitute(train_structures, 0) == []
    with pytest.raises(ValueError, match="no usable training structure"):
        substitute([None], 3)
    with pytest.raises(ValueError, match="unknown element"):
        substitute(train_structures[:5], 3, allowed_elements=["Nb", "Xx"])
    only = substitute(train_structures, 5, seed=0, allowed_elements=["Nb", "Ta", "V"])
    for sample in only:
        new = {pair.split("->")[1] for pair in sample.properties["substitution"].split(",")}
        assert new <= {"Nb", "Ta", "V"}


def test_parse_cell_formula() -> None:
    assert parse_cell_formula("Nb6Sn2") == {"Nb": 6, "Sn": 2}
    assert stoichiometry_pattern({"Nb": 6, "Sn": 2}) == (1, 3)
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        parse_cell_formula("Xx2")
    with pytest.raises(ValueError, match="not a positive whole number"):
        parse_cell_formula("Nb1.5Sn")
    with pytest.raises(ValueError, match="does not parse"):
        parse_cell_formula("nb3sn")
    with pytest.raises(ValueError):
        parse_cell_formula("")
    # pymatgen drops zero amounts: "Nb0Sn2" must not become Sn2
    for zero in ("Nb0Sn2", "Nb3Sn0.0", "Nb 0 Sn2"):
        with pytest.raises(ValueError, match="Nb|Sn"):
            parse_cell_formula(zero)
    assert parse_cell_formula("Nb10Sn2") == {"Nb": 10, "Sn": 2}
    assert parse_cell_formula("Nb3Sn") == {"Nb": 3, "Sn": 1}
    # the generator and every model cover Z 1-100 only (Og once crashed `csp` with exit 1)
    with pytest.raises(ValueError, match="Z = 118"):
        parse_cell_formula("Og2")


def test_template_refuses_huge_cells() -> None:
    """A 4000-atom formula once ran for minutes building supercells; now it is one error."""
    templates = [rocksalt_of("Nb", "C", 4.47)]
    with pytest.raises(ValueError, match="4000 atoms per cell"):
        template_csp("Nb2000C2000", templates)


def test_template_on_hand_made_rocksalt() -> None:
    templates = [rocksalt_of("Nb", "C", 4.47), Structure(Lattice.cubic(3.3), ["Nb"], [[0, 0, 0]])]
    result = template_csp("Ta4N4", templates, k=3)
    assert len(result) == 1  # one template with the 1:1 pattern
    # a 4x supercell of the 2-atom primitive cell
    assert result[0].composition == Composition("Ta4N4")
    assert result[0].properties["template"] == 0
    assert match_rms(rocksalt_of("Ta", "N", 4.33), result)[0] == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="no template for 'TaN3'"):
        template_csp("TaN3", templates)
    with pytest.raises(ValueError, match="unknown element"):
        template_csp("Ta4Qq4", templates)


def test_template_score_sums_the_pairs_that_build_one_crystal() -> None:
    """Both rocksalt templates, under either element mapping (swapping the two sublattices of
    rocksalt gives the same crystal), build one TaN candidate whose probability is the sum of
    all four pairs'; the CsCl-type template's two pairs build the other candidate."""
    cscl = Structure(Lattice.cubic(2.9), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    templates = [rocksalt_of("Nb", "C", 4.47), rocksalt_of("Ta", "C", 4.45), cscl]
    pairs = template_scores("TaN", templates)
    rocksalt_pairs = [score for score, index, _ in pairs if index in (0, 1)]
    cscl_pairs = [score for score, index, _ in pairs if index == 2]
    result = template_csp("Ta1N1", templates, k=5)
    assert len(result) == 2
    rocksalt = next(c for c in result if c.properties["template"] in (0, 1))
    assert rocksalt.properties["pairs"] == len(rocksalt_pairs) == 4
    assert rocksalt.properties["score"] == pytest.approx(np.logaddexp.reduce(rocksalt_pairs))
    other = next(c for c in result if c.properties["template"] == 2)
    assert other.properties["pairs"] == len(cscl_pairs) == 2
    assert other.properties["score"] == pytest.approx(np.logaddexp.reduce(cscl_pairs))
    assert [c.properties["score"] for c in result] == sorted(
        (c.properties["score"] for c in result), reverse=True
    )


def test_template_scores_prefer_likely_substitutions() -> None:
    templates = [rocksalt_of("Ta", "O", 4.4), rocksalt_of("Nb", "C", 4.47)]
    scored = template_scores("NbN", templates)
    assert [index for _, index, _ in scored][:2] == [1, 0]
    assert scored[0][2] == {"Nb": "Nb", "C": "N"}


def test_template_finds_val_structure(train_structures: list[Structure], val_frame) -> None:
    row = val_frame[val_frame.material_id == "JVASP-40237"].iloc[0]  # TaTiOs2, Heusler
    true = Structure.from_str(row.cif, fmt="cif")
    candidates = template_csp("Ta1Ti1Os2", train_structures, k=3)
    assert 1 <= len(candidates) <= 3
    assert all(c.composition == true.composition for c in candidates)
    assert csp_matcher().fit(true, candidates[0])
    scores = [c.properties["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)


def test_template_of_training_composition_returns_it(train_structures: list[Structure]) -> None:
    structure = train_structures[0]
    counts = structure.composition.get_el_amt_dict()
    formula = "".join(f"{symbol}{round(amount)}" for symbol, amount in counts.items())
    candidates = template_csp(formula, train_structures, k=5)
    assert any(value is not None for value in match_rms(structure, candidates))


def test_template_ranks_supercells_of_smaller_crystals_last() -> None:
    """Zn2O2 from rocksalt templates (2-atom primitive cells, doubled) and a wurtzite template
    (4-atom primitive cell): by default the candidates whose primitive cell has the formula's
    4 atoms come first; ``primitive_cell=False`` ranks by probability alone."""
    wurtzite = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.19, 5.19),
        ["Ga", "N"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]],
    )
    assert len(wurtzite) == 4
    templates = [rocksalt_of("Mg", "O", 4.21), rocksalt_of("Ca", "O", 4.81), wurtzite]
    ranked = template_csp("Zn2O2", templates, k=5)
    by_score = template_csp("Zn2O2", templates, k=5, primitive_cell=False)
    flags = [c.properties["primitive"] for c in ranked]
    assert True in flags and False in flags
    assert flags == sorted(flags, reverse=True)  # primitive-cell matches first
    for block in (True, False):
        scores = [c.properties["score"] for c in ranked if c.properties["primitive"] is block]
        assert scores == sorted(scores, reverse=True)
    scores = [c.properties["score"] for c in by_score]
    assert scores == sorted(scores, reverse=True)
    assert sorted(scores) == sorted(c.properties["score"] for c in ranked)
    assert next(c for c in ranked if c.properties["template"] == 2).properties["primitive"]


def _tan_templates() -> list[Structure]:
    """Rocksalt NbC and TaC (the likelier prototype for TaN) and a CsCl-type NbC."""
    cscl = Structure(Lattice.cubic(2.9), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [rocksalt_of("Nb", "C", 4.47), rocksalt_of("Ta", "C", 4.45), cscl]


def _energy_by_prototype(rocksalt: float, cscl: float):
    """A stand-in potential: ``rocksalt`` eV/atom for cells with 6 nearest neighbours, ``cscl``
    for those with 8; records every call."""
    calls: list[int] = []

    def energy(structures):
        calls.append(len(structures))
        out = []
        for s in structures:
            neighbours = s.get_neighbors(s[0], min(s.lattice.abc) * 0.9)
            shortest = min(n.nn_distance for n in neighbours)
            first_shell = sum(n.nn_distance < shortest + 0.1 for n in neighbours)
            out.append(rocksalt if first_shell == 6 else cscl)
        return out

    return energy, calls


def test_energy_reranks_template_candidates() -> None:
    """Without energies rocksalt TaN comes first; a potential that puts the CsCl cell
    0.5 eV/atom lower moves it up at weight 10 (10 x 0.5 nats outweighs the probability gap)
    but not at weight 0.1; the ranking score is log-probability - weight x (E - E_min)."""
    templates = _tan_templates()
    plain = template_csp("Ta1N1", templates, k=5)
    assert plain[0].properties["template"] in (0, 1)
    assert "energy_per_atom" not in plain[0].properties
    gap = plain[0].properties["log_probability"] - plain[1].properties["log_probability"]
    assert 0 < gap < 5

    energy, calls = _energy_by_prototype(rocksalt=-9.0, cscl=-9.5)
    strong = template_csp("Ta1N1", templates, k=5, energy=energy, energy_weight=10.0)
    assert calls == [2]  # one batched call over the pool
    assert strong[0].properties["template"] == 2
    assert strong[0].properties["energy_per_atom"] == -9.5
    assert strong[0].properties["score"] == pytest.approx(strong[0].properties["log_probability"])
    assert strong[1].properties["score"] == pytest.approx(
        strong[1].properties["log_probability"] - 10.0 * 0.5
    )
    weak = template_csp("Ta1N1", templates, k=5, energy=energy, energy_weight=0.1)
    assert weak[0].properties["template"] in (0, 1)
    off = template_csp("Ta1N1", templates, k=5, energy=energy, energy_weight=0.0)
    assert [c.properties["template"] for c in off] == [c.properties["template"] for c in plain]
    assert len(calls) == 2  # weight 0 never calls the potential


def test_energy_nan_counts_as_highest_and_only_the_pool_is_reranked() -> None:
    templates = _tan_templates()

    def nan_for_rocksalt(structures):
        energy, _ = _energy_by_prototype(rocksalt=float("nan"), cscl=-9.0)
        return energy(structures)

    ranked = template_csp("Ta1N1", templates, k=5, energy=nan_for_rocksalt, energy_weight=10.0)
    # the NaN candidate counts as the highest energy of the pool: here the only other one,
    # so neither gets an energy penalty and the probability order stays
    assert [c.properties["template"] in (0, 1) for c in ranked] == [True, False]
    assert np.isnan(ranked[0].properties["energy_per_atom"])

    energy, calls = _energy_by_prototype(rocksalt=-9.0, cscl=-9.5)
    top = template_csp("Ta1N1", templates, k=1, energy=energy, energy_pool=1)
    assert calls == [1] and top[0].properties["template"] in (0, 1)  # CsCl was outside the pool


def test_energy_reranking_keeps_supercells_of_smaller_crystals_last() -> None:
    """A doubled rocksalt cell stays behind the wurtzite-type one whatever its energy."""
    wurtzite = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.19, 5.19),
        ["Ga", "N"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]],
    )
    templates = [rocksalt_of("Mg", "O", 4.21), wurtzite]

    def rocksalt_much_lower(structures):
        return [-20.0 if not s.properties["primitive"] else -5.0 for s in structures]

    ranked = template_csp("Zn2O2", templates, k=5, energy=rocksalt_much_lower, energy_weight=100.0)
    assert [c.properties["primitive"] for c in ranked] == [True, False]
