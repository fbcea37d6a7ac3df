"""Competing prototypes for the hull: which compositions and crystals, relaxation, resume."""

from __future__ import annotations

import pandas as pd
from pymatgen.core import Composition, Lattice, Structure

from tcdesign.data.io import StructureRecord
from tcdesign.screen import prototypes
from tcdesign.screen.prototypes import (
    PrototypeBuilder,
    build_prototypes,
    competing_formulas,
    prototype_compounds,
    prototype_patterns,
)


def rocksalt(a: str, b: str, lattice: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def cscl(a: str, b: str, lattice: float) -> Structure:
    return Structure(Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def fluorite(a: str, b: str, lattice: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.25, 0.25, 0.25]]
    ).get_primitive_structure()


TEMPLATES = [
    StructureRecord("tic", rocksalt("Ti", "C", 4.33)),
    StructureRecord("zrc", rocksalt("Zr", "C", 4.70)),
    StructureRecord("nbn", rocksalt("Nb", "N", 4.39)),
    StructureRecord("cscl", cscl("Cs", "Cl", 4.12)),
    StructureRecord("caf2", fluorite("Ca", "F", 5.46)),
]


def test_patterns_need_enough_crystals_and_formulas_cover_every_subsystem():
    structures = [r.structure for r in TEMPLATES]
    assert prototype_patterns(structures, min_count=1) == {2: [(1, 1), (1, 2)]}
    assert prototype_patterns(structures, min_count=2) == {2: [(1, 1)]}
    patterns = {2: [(1, 1), (1, 2)], 3: [(1, 1, 2)]}
    assert competing_formulas(["V", "N"], patterns) == ["N1V1", "N1V2", "N2V1"]
    ternary = competing_formulas(["Sc", "B", "C"], patterns)
    assert ternary[:3] == ["B1C1", "B1C2", "B2C1"]  # each binary subsystem first
    assert ternary[-3:] == ["B1C1Sc2", "B1C2Sc1", "B2C1Sc1"]  # then each assignment of 1:1:2
    assert len(ternary) == 3 * 3 + 3
    assert competing_formulas(["Nb"], patterns) == []


def test_crystals_are_the_likeliest_distinct_substitutions_with_stable_ids():
    builder = PrototypeBuilder(TEMPLATES, per_composition=1, min_count=1)
    made = dict(builder.crystals(["Sc", "Sb"]))
    assert sorted(i.split("|")[0] for i in made) == ["Sb1Sc1", "Sb1Sc2", "Sb2Sc1"]
    for rid, structure in made.items():
        formula, template, _ = rid.split("|")
        assert structure.composition.reduced_composition == Composition(formula)
        assert template in {r.id for r in TEMPLATES}
        assert {str(e) for e in structure.composition.elements} == {"Sc", "Sb"}
    assert dict(builder.crystals(["Sb", "Sc"])).keys() == made.keys()  # order of elements
    assert len(PrototypeBuilder(TEMPLATES, 2, 1).crystals(["Sc", "Sb"])) > len(made)


def test_build_relaxes_appends_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "prototypes.csv"
    table = build_prototypes(
        out, [("Sc", "Sb")], TEMPLATES, per_composition=1, min_count=2, progress=False
    )
    assert len(table) == 1 and table.kind.tolist() == ["prototype"]  # ScSb from a rocksalt
    assert table.status.tolist() == ["ok"] and table.formula.tolist() == ["Sc1 Sb1"]
    compounds = prototype_compounds(table)
    assert len(compounds) == 1 and compounds[0][1] < -4  # CHGNet eV/atom of a bound solid

    def no_relaxation(job):
        raise AssertionError(f"relaxed {job.id} again")

    monkeypatch.setattr(prototypes, "relax_prototype", no_relaxation)
    again = build_prototypes(
        out, [("Sb", "Sc")], TEMPLATES, per_composition=1, min_count=2, progress=False
    )
    pd.testing.assert_frame_equal(again, table)
    # a system with nothing to build (one element) relaxes nothing
    assert build_prototypes(out, [("Sc",)], TEMPLATES, min_count=2, progress=False).empty
