"""Formation energy and hull on a hand-made chemical system with known answers; MP conversion."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from tcdesign.screen.hull import ReferenceSet, entries_to_references
from tcdesign.screen.references import (
    element_prototypes,
    elemental_energies,
    fit_element_corrections,
)


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


def test_fitted_corrections_recover_known_energy_errors():
    """Labels made as if compound energies were 0.1 eV per Nb and 0.5 eV per O too low (the
    same as chemical potentials 0.1 and 0.5 eV too high): the fit finds both."""
    mu = {"Nb": -10.0, "O": -5.0}
    true_mu = {"Nb": -10.1, "O": -5.5}
    compounds = {"a": ("Nb1 O1", -8.0), "b": ("Nb2 O1", -9.0), "c": ("Nb1 O2", -7.5)}
    table = pd.DataFrame(
        {
            "id": list(compounds),
            "formula": [f for f, _ in compounds.values()],
            "energy_per_atom": [e for _, e in compounds.values()],
        }
    )
    labels = {}
    for material_id, (formula, energy) in compounds.items():
        x = Composition(formula).fractional_composition
        labels[material_id] = energy - sum(x[el] * true_mu[el] for el in true_mu)
    corrections = fit_element_corrections(table, pd.Series(labels), mu, ridge=1e-9)
    assert corrections["Nb"] == pytest.approx(-0.1, abs=1e-6)
    assert corrections["O"] == pytest.approx(-0.5, abs=1e-6)
    # on the hull: the elements stay at zero, the compounds move by their corrections
    references = ReferenceSet.from_table(
        pd.DataFrame({"formula": ["Nb1", "O2"], "energy_per_atom": [-10.0, -5.0]})
    )
    references.corrections = corrections
    assert references.formation_energy(Composition("Nb"), -10.0) == pytest.approx(0.0)
    assert references.formation_energy(Composition("NbO"), -8.0) == pytest.approx(labels["a"])
    assert references.e_above_hull(Composition("O2"), -5.0)[0] == pytest.approx(0.0, abs=1e-9)
    # a strong ridge keeps the corrections near zero; no labelled compound is an error
    strong = fit_element_corrections(table, pd.Series(labels), mu, ridge=1e6)
    assert abs(strong["O"]) < 1e-3
    with pytest.raises(ValueError, match="no labelled compound"):
        fit_element_corrections(table, pd.Series({"zzz": 0.0}), mu)


def test_bundled_jarvis_scale_lowers_the_formation_energy_error():
    """On the labelled training crystals the fitted scale agrees with JARVIS better than CHGNet's
    own elemental energies (in-sample here; benchmarks/screening.py cross-validates)."""
    from tcdesign.screen.references import jarvis_formation_energies, load_references

    table = load_references()
    labels = jarvis_formation_energies()
    train = table[(table.kind == "train") & table["id"].isin(labels.index)]
    assert len(train) > 600

    def mae(references: ReferenceSet) -> float:
        errors = [
            references.formation_energy(Composition(f), e) - labels[i]
            for i, f, e in zip(train["id"], train.formula, train.energy_per_atom, strict=True)
        ]
        return float(pd.Series(errors).abs().mean())

    mp, jarvis = ReferenceSet.load(scale="mp"), ReferenceSet.load()
    assert jarvis.name == "chgnet/jarvis" and mp.name == "chgnet"
    assert mae(jarvis) < 0.08 < 0.1 < mae(mp)
    with pytest.raises(ValueError, match="unknown formation-energy scale"):
        ReferenceSet.load(scale="dft")


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
    row.update(
        candidate.reference_energies(fcc_al(4.04).composition, row["energy_per_atom"], settings)
    )
    candidate.mp_reference_set.cache_clear()
    assert asked == [frozenset({"Al"})]
    assert row["ehull_reference"] == "mp: elements + 0 compounds"
    assert row["e_hull"] == pytest.approx(row["energy_per_atom"] + 3.70, abs=1e-9)


def test_more_compounds_raise_a_candidate_to_its_true_hull_distance(nb_sn):
    # against the elements (and Nb3Sn) NbSn2 at -6.5 eV/atom sits 0.5 below the hull:
    # x_Sn = 2/3 lies between Nb3Sn (x 0.25, E_form -0.2) and Sn, where the hull is -0.2 * 4/9
    candidate = Composition("NbSn2")
    e_form = -6.5 - (-10 / 3 - 8 / 3)
    alone, note = nb_sn.e_above_hull(candidate, -6.5)
    assert alone == pytest.approx(e_form + 0.2 * 4 / 9)
    assert note == "hand-made: elements + 1 compounds"
    # a competing NbSn at E_form -0.9 eV/atom: the hull at x 2/3 is -0.9 * (1/3) / 0.5 = -0.6
    more = nb_sn.with_compounds([(Composition("NbSn"), -7.9)], "1 prototypes")
    extended, note = more.e_above_hull(candidate, -6.5)
    assert extended == pytest.approx(e_form + 0.6)
    assert note == "hand-made+1 prototypes: elements + 2 compounds"
    assert nb_sn.e_above_hull(candidate, -6.5)[0] == pytest.approx(alone)  # the original unchanged
