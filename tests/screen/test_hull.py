"""Formation energy and hull on a hand-made chemical system with known answers; MP conversion."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from tcdesign.screen.hull import ReferenceSet, entries_to_references
from tcdesign.screen.references import element_prototypes, elemental_energies


@pytest.fixture()
def nb_sn() -> ReferenceSet:
    """Nb at -10, Sn at -4 eV/atom (two prototypes each: the lowest counts), Nb3Sn at -8.7."""
    table = pd.DataFrame(
        {
            "formula": ["Nb2", "Nb1", "Sn4", "Sn2", "Nb6 Sn2"],
            "energy_per_atom": [-10.0, -9.5, -4.0, -3.9, -8.7],
        }
    )
    return ReferenceSet.from_table(table, "hand-made")


def test_elemental_energies_take_the_lowest_prototype(nb_sn):
    assert nb_sn.mu == {"Nb": -10.0, "Sn": -4.0}


def test_formation_energy_of_a_compound_and_of_an_element(nb_sn):
    # Nb3Sn: -8.7 - (0.75 * -10 + 0.25 * -4) = -0.2 eV/atom
    assert nb_sn.formation_energy(Composition("Nb3Sn"), -8.7) == pytest.approx(-0.2)
    assert nb_sn.formation_energy(Composition("Nb"), -10.0) == pytest.approx(0.0)


def test_energy_above_hull(nb_sn):
    # on the hull
    e_hull, note = nb_sn.e_above_hull(Composition("Nb3Sn"), -8.7)
    assert e_hull == pytest.approx(0.0, abs=1e-9)
    assert note == "hand-made: elements + 1 compounds"
    # NbSn: hull between Nb3Sn (x_Sn 0.25, -8.7) and Sn (x_Sn 1, -4): at x 0.5 the hull is
    # -8.7 + (0.25 / 0.75) * (-4 + 8.7) = -7.1333; a candidate at -7.0 is 0.1333 above it
    e_hull, _ = nb_sn.e_above_hull(Composition("NbSn"), -7.0)
    assert e_hull == pytest.approx(-7.0 + 8.7 - 4.7 / 3, abs=1e-6)
    # below the hull: negative
    e_hull, _ = nb_sn.e_above_hull(Composition("Nb3Sn"), -8.8)
    assert e_hull == pytest.approx(-0.1, abs=1e-9)


def test_missing_element_gives_nan_with_a_reason(nb_sn):
    assert math.isnan(nb_sn.formation_energy(Composition("NbGe"), -7.0))
    e_hull, note = nb_sn.e_above_hull(Composition("NbGe"), -7.0)
    assert math.isnan(e_hull) and "no reference for Ge" in note


def test_materials_project_entries_convert_offline():
    entries = [
        ComputedEntry("Nb2", -20.0),
        ComputedEntry("Sn", -3.9),
        ComputedEntry("Sn2", -8.0),
        ComputedEntry("Nb3Sn", -34.8),
    ]
    references = entries_to_references(entries)
    assert references.name == "mp"
    assert references.mu == {"Nb": -10.0, "Sn": -4.0}
    assert references.formation_energy(Composition("Nb3Sn"), -8.7) == pytest.approx(-0.2)


def test_bundled_references_cover_the_training_elements():
    from tcdesign.screen.references import load_references

    table = load_references()
    mu = elemental_energies(table)
    for symbol in ("Nb", "Sn", "Mg", "B", "Al", "H", "N", "O"):
        assert symbol in mu
    assert mu["Al"] == pytest.approx(-3.66, abs=0.1)  # CHGNet fcc Al
    assert (table.kind == "train").sum() >= 800


def test_prototypes_include_known_ground_states():
    names = {name for name, _, _ in element_prototypes("Ga")}
    assert {"Ga:fcc", "Ga:bcc", "Ga:alpha"} <= names
    molecule = element_prototypes("N")
    assert [name for name, _, _ in molecule] == ["N:molecule"] and molecule[0][2] is False


def test_mp_hull_reference_path_offline(monkeypatch, tmp_path):
    """The mp-api path with the download replaced by hand-made MP-style entries."""
    import tcdesign.screen.candidate as candidate
    from tcdesign.screen.settings import ScreenSettings
    from tests.screen.conftest import fcc_al

    asked: list[frozenset[str]] = []

    def fake_fetch(elements):
        asked.append(frozenset(elements))
        return entries_to_references([ComputedEntry("Al", -3.70)])

    monkeypatch.setattr(candidate, "fetch_mp_references", fake_fetch)
    candidate.mp_reference_set.cache_clear()
    settings = ScreenSettings(hull_reference="mp", relax=False)
    job = candidate.CandidateJob("al", fcc_al(4.04), "al", str(tmp_path), settings)
    row = candidate.screen_candidate(job)
    candidate.mp_reference_set.cache_clear()
    assert asked == [frozenset({"Al"})]
    assert row["ehull_reference"] == "mp: elements + 0 compounds"
    assert row["e_hull"] == pytest.approx(row["energy_per_atom"] + 3.70, abs=1e-9)
