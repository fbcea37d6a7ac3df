"""Generation metrics against hand-made cases (tcdesign.generate.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.core.operations import SymmOp

from tcdesign.generate.metrics import (
    ReducedMatcher,
    composition_validity,
    csp_matcher,
    csp_metrics,
    density_wasserstein,
    duplicate_groups,
    generation_metrics,
    is_usable,
    match_rms,
    non_p1_fraction,
    novel_flags,
    novelty,
    num_elements_wasserstein,
    space_group_number,
    structure_validity,
    uniqueness,
)


def nan_structure() -> Structure:
    return Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [math.nan, 0.5, 0.5]])


def rotated_perturbed(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal rotated by 37 degrees, translated and with sites moved by ~0.02 A."""
    copy = structure.copy()
    copy.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    copy.translate_sites(range(len(copy)), [0.13, 0.27, 0.41])
    copy.perturb(0.02, min_distance=0.0)
    return Structure(copy.lattice, copy.species, copy.frac_coords)  # a fresh object


def test_broken_inputs_are_not_usable() -> None:
    assert not is_usable(None)
    assert not is_usable("Nb3Sn")
    assert not is_usable(nan_structure())
    assert not structure_validity(None)
    assert not structure_validity(nan_structure())
    assert not composition_validity(None)
    assert not composition_validity(nan_structure())


def test_close_atoms_are_invalid(rocksalt: Structure) -> None:
    assert structure_validity(rocksalt)
    close = Structure(Lattice.cubic(5.0), ["Nb", "Nb"], [[0, 0, 0], [0.02, 0, 0]])  # 0.1 A
    assert not structure_validity(close)
    # one atom meeting its own periodic image 0.3 A away
    assert not structure_validity(Structure(Lattice.tetragonal(0.3, 20.0), ["Nb"], [[0, 0, 0]]))


def test_tiny_volume_is_invalid() -> None:
    flat = Structure(Lattice([[3, 0, 0], [0, 3, 0], [0, 0, 0.005]]), ["Nb"], [[0, 0, 0]])
    assert not structure_validity(flat, min_distance=0.0)


@pytest.mark.parametrize(
    ("formula", "valid"),
    [
        ("NaCl", True),
        ("NaCl2", False),
        ("MgO", True),
        ("MgO2", True),  # peroxide-like states are in SMACT's list
        ("Nb3Sn", True),  # all metals
        ("MgAl2", True),
        ("Nb", True),  # one element
        ("LiF2", False),
    ],
)
def test_composition_validity(formula: str, valid: bool) -> None:
    assert composition_validity(Composition(formula)) is valid


def test_composition_validity_rejects_unknown_and_fractional() -> None:
    assert not composition_validity(Composition("Xx2"))
    assert not composition_validity(Composition("Na0.5Cl"))
    assert not composition_validity("NaCl")  # not a Composition or Structure


def test_duplicate_is_not_unique(rocksalt: Structure, ternary: Structure) -> None:
    copy = rotated_perturbed(rocksalt)
    assert duplicate_groups([rocksalt, ternary, copy, None]) == [0, 1, 0, -1]
    assert uniqueness([rocksalt, ternary, copy]) == pytest.approx(2 / 3)
    assert uniqueness([rocksalt, ternary]) == 1.0
    assert uniqueness([rocksalt, None]) == 0.5
    assert math.isnan(uniqueness([]))


def test_training_structure_is_not_novel(rocksalt: Structure, ternary: Structure) -> None:
    training = [rocksalt.copy()]
    assert novel_flags([rotated_perturbed(rocksalt), ternary, None], training) == [
        False,
        True,
        False,
    ]
    assert novelty([rocksalt, ternary], training) == 0.5
    # the same lattice with other elements is a different crystal
    other = rocksalt.copy()
    other.replace_species({"Nb": "Ta"})
    assert novelty([other], training) == 1.0


def test_wasserstein_zero_for_identical_sets(val_structures: list[Structure]) -> None:
    copies = [s.copy() for s in val_structures]
    assert density_wasserstein(val_structures, copies) == pytest.approx(0.0, abs=1e-12)
    assert num_elements_wasserstein(val_structures, copies) == pytest.approx(0.0, abs=1e-12)
    assert density_wasserstein(val_structures, [s * 2 for s in copies]) == pytest.approx(
        0.0, abs=1e-9
    )  # supercells have the same density
    assert num_elements_wasserstein(val_structures[:1], [None]) != num_elements_wasserstein(
        val_structures[:1], val_structures[:1]
    )  # no usable reference: NaN


def test_density_distance_units(rocksalt: Structure) -> None:
    expanded = rocksalt.copy()
    expanded.scale_lattice(rocksalt.volume * 2)
    expected = rocksalt.density - expanded.density  # g/cm^3
    assert density_wasserstein([rocksalt], [expanded]) == pytest.approx(expected)


def test_space_group(rocksalt: Structure, ternary: Structure) -> None:
    assert space_group_number(rocksalt) == 225
    assert space_group_number(ternary) == 1
    rng = np.random.default_rng(3)
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 71, 83, 102)
    random_cell = Structure(lattice, ["Nb", "Nb", "Sn", "B", "C"], rng.random((5, 3)))
    assert space_group_number(random_cell) == 1
    assert space_group_number(None) is None
    assert non_p1_fraction([rocksalt, ternary, random_cell, nan_structure()]) == 0.25


def test_csp_match_of_rotated_copy_is_top1(rocksalt: Structure, ternary: Structure) -> None:
    copy = rotated_perturbed(ternary)
    rms = match_rms(ternary, [copy, rocksalt, None, nan_structure()])
    assert rms[0] is not None and rms[0] < 0.05
    assert rms[1:] == [None, None, None]
    scores = csp_metrics([(ternary, [copy, rocksalt]), (rocksalt, [ternary, rocksalt])], k=2)
    assert scores["match_rate_top1"] == 0.5
    assert scores["match_rate_topk"] == 1.0
    assert scores["rms_top1"] == pytest.approx(rms[0])
    assert scores["k"] == 2 and scores["n"] == 2
    top1_only = csp_metrics([(rocksalt, [ternary, rocksalt])], k=1)
    assert top1_only["match_rate_topk"] == 0.0
    assert math.isnan(top1_only["rms_topk"])
    assert csp_metrics([(None, [rocksalt])])["match_rate_topk"] == 0.0


def test_generation_metrics_with_broken_samples(rocksalt: Structure, ternary: Structure) -> None:
    close = Structure(Lattice.cubic(5.0), ["Nb", "Nb"], [[0, 0, 0], [0.02, 0, 0]])
    generated = [rocksalt, rotated_perturbed(rocksalt), ternary, close, None, nan_structure()]
    result = generation_metrics(generated, [rocksalt])
    assert result["n_generated"] == 6
    assert result["n_broken"] == 2
    assert result["struct_validity"] == pytest.approx(3 / 6)
    assert result["uniqueness"] == pytest.approx(3 / 6)  # rocksalt twice, ternary, close pair
    assert result["novelty"] == pytest.approx(2 / 6)  # ternary and the close pair
    assert result["unique_novel"] == pytest.approx(2 / 6)
    assert result["non_p1_fraction"] == pytest.approx(non_p1_fraction(generated))
    assert non_p1_fraction(generated[:3]) == pytest.approx(2 / 3)  # the two rocksalts
    for key in ("wdist_density", "wdist_num_elements"):
        assert math.isfinite(result[key])
    assert generation_metrics([], [rocksalt]) == {"n_generated": 0, "n_broken": 0}


def test_reduced_matcher_answers_as_structure_matcher():
    """Reducing each structure once gives the answers of StructureMatcher.fit, pair by pair."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    fcc = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    bcc = Structure.from_spacegroup("Im-3m", Lattice.cubic(2.9), ["Cu"], [[0, 0, 0]])
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    cscl = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    strained = rocksalt.copy()
    strained.apply_strain([0.25, -0.1, 0.0])
    structures = [
        fcc,
        fcc.get_primitive_structure(),
        rotated_perturbed(fcc),
        bcc,
        rocksalt,
        rotated_perturbed(rocksalt, seed=1),
        rocksalt * (1, 1, 2),
        strained,
        cscl,
    ]
    for matcher in (StructureMatcher(), csp_matcher(), StructureMatcher(primitive_cell=False)):
        reduced = ReducedMatcher(matcher)
        answers = [[reduced.fit(a, b) for b in structures] for a in structures]
        assert answers == [[matcher.fit(a, b) for b in structures] for a in structures]
        assert answers[0][2] and not answers[0][3] and not answers[4][8]
        assert answers[4][6] == matcher.as_dict()["primitive_cell"]  # a supercell: same crystal


def test_reduced_matcher_degenerate_and_ignored_species():
    fcc = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    broken = nan_structure()  # its reduction fails: it matches nothing, and does not raise
    reduced = ReducedMatcher(csp_matcher())
    assert reduced.reduce(broken) is None
    assert not reduced.fit(fcc, broken) and not reduced.fit(broken, fcc)
    # a matcher that ignores Li compares the Li-free crystals: it is called unchanged
    from pymatgen.analysis.structure_matcher import StructureMatcher

    with_li = fcc.copy()
    with_li.append("Li", [0.5, 0.5, 0.5])
    ignoring = StructureMatcher(ignored_species=["Li"])
    assert ReducedMatcher(ignoring).fit(with_li, fcc) == ignoring.fit(with_li, fcc)
