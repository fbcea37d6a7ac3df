"""CSP candidates relaxed with CHGNet and ranked by energy (tcdesign.generate.energy_rank)."""

from __future__ import annotations

import math

import pandas as pd
from pymatgen.core import Lattice, Structure

from tcdesign.cli import main
from tcdesign.generate.energy_rank import (
    RELAX_ENERGY_WEIGHT,
    RankedCandidate,
    order_by_energy,
    rank_by_energy,
)


def nacl(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0] * 3, [0.5] * 3])


def cscl_nacl(a: float) -> Structure:
    """NaCl in the CsCl arrangement: higher in energy than rocksalt."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_lowest_energy_first_duplicates_merged_failures_last() -> None:
    strained = nacl(6.0)  # relaxes to the same rocksalt crystal as the next one
    candidates = [
        cscl_nacl(3.4),
        None,
        strained,
        nacl(5.6),
        Structure(Lattice.cubic(3), ["Na", "Am"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ]
    ranked = rank_by_energy(candidates, max_steps=100)
    # rocksalt first (one entry for the two rocksalt inputs), CsCl second, then the failures
    assert [c.source_rank for c in ranked[:2]] in ([3, 1], [4, 1])
    assert ranked[0].structure.get_space_group_info()[1] == 225
    assert ranked[0].energy_per_atom < ranked[1].energy_per_atom
    assert [c.source_rank for c in ranked[2:]] == [2, 5]
    assert ranked[2].error == "broken candidate" and "Am" in ranked[3].error
    assert all(math.isnan(c.energy_per_atom) for c in ranked[2:])


def test_with_scores_the_method_score_and_the_energy_are_weighed_and_supercells_go_last() -> None:
    cells = [nacl(5.6), cscl_nacl(3.4), nacl(5.6).make_supercell(2, in_place=False), None]
    relaxed = [
        RankedCandidate(cells[0], -3.00, 1),  # lowest energy, poor score
        RankedCandidate(cells[1], -2.99, 2),  # 10 meV/atom higher, much better score
        RankedCandidate(cells[2], -3.00, 3),  # best score of all, but a supercell: demoted
        RankedCandidate(None, math.nan, 4, "broken candidate"),
    ]
    scores = [-5.0, -2.0, 0.0, 1.0]
    demoted = [False, False, True, False]
    by_energy = order_by_energy(relaxed)
    assert [c.source_rank for c in by_energy] == [1, 2, 4]  # the supercell is rocksalt again
    weighed = order_by_energy(relaxed, scores, demoted, weight=RELAX_ENERGY_WEIGHT)
    assert [c.source_rank for c in weighed] == [2, 1, 4]  # 3 merged into 1, the better one kept
    heavy = order_by_energy(relaxed, scores, demoted, weight=1000.0)  # energy dominates
    assert [c.source_rank for c in heavy] == [1, 2, 4]


def test_csp_cli_bad_pool_is_exit_2(tmp_path, capsys) -> None:
    argv = ["csp", "--formula", "Nb1C1", "--method", "template", "--relax", "--pool", "0"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert "--pool must be >= 1, got 0" in capsys.readouterr().err


def test_csp_cli_relax(tmp_path) -> None:
    argv = ["csp", "--formula", "Nb1C1", "--n", "3", "--method", "template", "--relax"]
    assert main([*argv, "--pool", "3", "--out", str(tmp_path), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "csp.csv")
    assert table["rank"].tolist() == list(range(1, len(table) + 1)) and (table.status == "ok").all()
    assert set(table.source_rank) <= {1, 2, 3}
    # template candidates: own score minus the weighed relaxed energy above the lowest, best first
    lowest = table.energy_per_atom.min()
    combined = table.score - RELAX_ENERGY_WEIGHT * (table.energy_per_atom - lowest)
    assert combined.is_monotonic_decreasing
    first = Structure.from_str(table.cif[0], fmt="cif")
    assert first.composition.reduced_formula == "NbC"
