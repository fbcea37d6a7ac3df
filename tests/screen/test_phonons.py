"""CHGNet phonon check: known stable and unstable cells, invariances, supercells, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.screen import phonons
from tcdesign.screen.phonons import (
    PHONON_FILE,
    PhononSettings,
    check_candidates,
    estimated_cost,
    phonon_check,
    supercell_multiples,
)


def bcc_nb() -> Structure:
    return Structure(Lattice.cubic(3.3), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def simple_cubic_al() -> Structure:
    """One Al atom per 2.7 A cube: simple cubic, the packing a metal does not choose; it
    shears away (imaginary modes across the zone)."""
    return Structure(Lattice.cubic(2.7), ["Al"], [[0, 0, 0]])


def test_bcc_niobium_is_stable_and_simple_cubic_aluminium_is_not():
    stable = phonon_check(bcc_nb())
    assert stable["phonon_stable"] and stable["phonon_imaginary_fraction"] == 0.0
    assert stable["phonon_min_freq_cm1"] > -1.0  # acoustic modes at Gamma, nothing below
    assert stable["phonon_supercell_atoms"] == 27  # the 1-atom primitive cell, 3x3x3 >= 7 A
    unstable = phonon_check(simple_cubic_al())
    assert not unstable["phonon_stable"] and unstable["phonon_min_freq_cm1"] < -100.0
    assert 0.1 < unstable["phonon_imaginary_fraction"] < 0.6


def test_the_check_does_not_depend_on_orientation_origin_or_site_order():
    reference = phonon_check(simple_cubic_al())["phonon_min_freq_cm1"]
    moved = Structure(Lattice.cubic(2.7), ["Al"], [[0.3, 0.1, 0.7]])  # another origin
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, 0.6, -0.8], [0.0, 0.8, 0.6]]
    )
    rotated = Structure(Lattice(Lattice.cubic(2.7).matrix @ rotation.T), ["Al"], [[0, 0, 0]])
    conventional = Structure(Lattice.cubic(5.4), ["Al"] * 8, [
        [x, y, z] for x in (0, 0.5) for y in (0, 0.5) for z in (0, 0.5)
    ])  # fmt: skip
    shuffled = Structure.from_sites([conventional[i] for i in (5, 2, 7, 0, 1, 3, 6, 4)])
    for variant in (moved, rotated, shuffled):
        assert phonon_check(variant)["phonon_min_freq_cm1"] == pytest.approx(reference, abs=1.0)


def test_supercells_are_at_least_the_minimum_width_in_every_direction():
    assert list(supercell_multiples(Lattice.cubic(4.0).matrix, 7.0)) == [2, 2, 2]
    assert list(supercell_multiples(Lattice.orthorhombic(2.0, 7.5, 3.6).matrix, 7.0)) == [4, 1, 2]
    oblique = Lattice.from_parameters(3.0, 3.0, 3.0, 60, 60, 60).matrix  # fcc primitive
    multiples = supercell_multiples(oblique, 7.0)
    volume = abs(np.linalg.det(oblique))
    for i in range(3):  # width along axis i: volume over the area of the other two vectors
        area = np.linalg.norm(np.cross(oblique[(i + 1) % 3], oblique[(i + 2) % 3]))
        assert multiples[i] * volume / area >= 7.0
        assert (multiples[i] - 1) * volume / area < 7.0


def test_settings_are_validated():
    with pytest.raises(ValueError, match="positive"):
        PhononSettings(displacement=0.0)
    with pytest.raises(ValueError, match="at least 1"):
        PhononSettings(mesh=0)


def test_checks_are_cached_and_a_check_that_cannot_be_made_is_a_reason(tmp_path, monkeypatch):
    settings = PhononSettings(max_supercell_atoms=30)
    big = Structure(Lattice.cubic(3.0), ["Al"] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])  # bcc: 4^3
    results = check_candidates(
        [("nb", "f1", bcc_nb()), ("big", "f2", big)], tmp_path, settings, progress=False
    )
    assert results["nb"]["phonon_stable"] is True
    assert results["big"]["phonon_stable"] is None and np.isnan(
        results["big"]["phonon_min_freq_cm1"]
    )
    assert "supercell of 64 atoms (> max_supercell_atoms 30)" in results["big"]["phonon_error"]
    lines = (tmp_path / PHONON_FILE).read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["id"] in ("nb", "big") for line in lines)

    def never(*args, **kwargs):
        raise AssertionError("a cached check was computed again")

    monkeypatch.setattr(phonons, "phonon_check", never)
    with (tmp_path / PHONON_FILE).open("a") as handle:
        handle.write('{"id": "half-writ')  # a run killed while writing
    again = check_candidates(
        [("nb", "f1", bcc_nb()), ("big", "f2", big)], tmp_path, settings, progress=False
    )
    assert again["nb"] == results["nb"]
    assert again["big"]["phonon_error"] == results["big"]["phonon_error"]
    # a changed input structure (fingerprint) is computed again (the stand-in's error is kept)
    changed = check_candidates([("nb", "f3", bcc_nb())], tmp_path, settings, progress=False)
    assert "computed again" in changed["nb"]["phonon_error"]


def test_the_costliest_checks_run_first_and_results_keep_their_ids(tmp_path, monkeypatch):
    cscl = Structure(Lattice.cubic(3.3), ["Nb", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    settings = PhononSettings()
    assert estimated_cost(cscl, settings) > estimated_cost(bcc_nb(), settings)
    assert estimated_cost(cscl, settings) == estimated_cost(cscl.copy().make_supercell(2), settings)
    calls: list[str] = []

    def stand_in(structure, settings, device):
        calls.append(structure.composition.reduced_formula)
        return {"phonon_error": structure.composition.reduced_formula}

    monkeypatch.setattr(phonons, "phonon_check", stand_in)
    results = check_candidates(
        [("nb", "f1", bcc_nb()), ("nbal", "f2", cscl)], tmp_path, settings, progress=False
    )
    assert calls == ["NbAl", "Nb"]
    assert results["nb"]["phonon_error"] == "Nb" and results["nbal"]["phonon_error"] == "NbAl"
