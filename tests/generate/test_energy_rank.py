"""CSP candidates relaxed with CHGNet and ranked by energy (tcdesign.generate.energy_rank)."""

from __future__ import annotations

import math

import pandas as pd
from pymatgen.core import Lattice, Structure

from tcdesign.cli import main
from tcdesign.generate.energy_rank import rank_by_energy


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


def test_csp_cli_bad_pool_is_exit_2(tmp_path, capsys) -> None:
    argv = ["csp", "--formula", "Nb1C1", "--method", "template", "--relax", "--pool", "0"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert "--pool must be >= 1, got 0" in capsys.readouterr().err


def test_csp_cli_relax(tmp_path) -> None:
    argv = ["csp", "--formula", "Nb1C1", "--n", "2", "--method", "template", "--relax"]
    assert main([*argv, "--pool", "3", "--out", str(tmp_path), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "csp.csv")
    assert table["rank"].tolist() == [1, 2] and (table.status == "ok").all()
    assert table.energy_per_atom.is_monotonic_increasing
    assert set(table.source_rank) <= {1, 2, 3}
    first = Structure.from_str(table.cif[0], fmt="cif")
    assert first.composition.reduced_formula == "NbC"
