"""verify --plan: grids and irreducible q-points without running Quantum ESPRESSO."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.verify.plan import PLAN_COLUMNS, irreducible_q_points, plan_row
from tcdesign.verify.settings import make_settings

from .test_workflow import fake_pseudo_dir, fcc_al_conventional, run_cli


@pytest.mark.parametrize(
    ("structure", "grid", "expected"),
    [
        # ph.x's own counts on these crystals (QE 6.7, ldisp, unshifted grids)
        (fcc_al_conventional().get_primitive_structure(), (4, 4, 4), 8),
        (Structure(Lattice.cubic(2.7), ["Al"], [[0, 0, 0]]), (4, 4, 4), 10),
        (Structure(Lattice.cubic(2.7), ["Al"], [[0, 0, 0]]), (1, 1, 1), 1),
    ],
)
def test_irreducible_q_points_match_ph_x(structure, grid, expected):
    assert irreducible_q_points(structure, grid) == expected


def test_a_lower_symmetry_needs_more_q_points():
    """The same lattice with a distorted basis has fewer symmetries, so more q-points."""
    cubic = Structure(Lattice.cubic(3.0), ["V", "Ru"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    shifted = Structure(Lattice.cubic(3.0), ["V", "Ru"], [[0, 0, 0], [0.5, 0.5, 0.45]])
    assert irreducible_q_points(shifted, (4, 4, 4)) > irreducible_q_points(cubic, (4, 4, 4))


def test_plan_row_reads_the_cell_as_verify_would(tmp_path):
    row = plan_row(fcc_al_conventional(), make_settings("coarse"), fake_pseudo_dir(tmp_path), "al")
    assert set(row) == set(PLAN_COLUMNS)
    assert row["n_atoms"] == 1 and row["phonon_modes"] == 3  # the primitive cell, as verify
    assert row["q_grid"] == "4x4x4" and row["irreducible_q_points"] == 8
    assert row["ecutwfc_Ry"] == 25.0 and row["problem"] == ""
    assert row["magnetism_check"] is False  # no d- or f-block element
    nb = Structure(Lattice.cubic(3.3), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    missing = plan_row(nb, make_settings("coarse"), tmp_path / "pseudo")
    assert "Nb" in missing["problem"] and missing["ecutwfc_Ry"] is None
    assert missing["magnetism_check"] is True and missing["n_atoms"] == 1


def test_verify_cli_plan_writes_a_table_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no QE at all: the plan does not need it
    folder = tmp_path / "cifs"
    folder.mkdir()
    fcc_al_conventional().to(filename=str(folder / "al.cif"))
    Structure(Lattice.cubic(3.3), ["Nb"], [[0, 0, 0]]).to(filename=str(folder / "nb.cif"))
    pseudo = str(fake_pseudo_dir(tmp_path))
    out = tmp_path / "plan"
    assert (
        run_cli(["verify", str(folder), "--out", str(out), "--pseudo-dir", pseudo, "--plan"]) == 0
    )
    captured = capsys.readouterr()
    assert "1 of 2 structures can run: 8 ph.x q-point runs in all" in captured.out
    assert "nb cannot start" in captured.err
    table = pd.read_csv(out / "plan.csv")
    assert list(table.columns) == PLAN_COLUMNS and list(table.id) == ["al", "nb"]
    assert not (out / "al").exists()  # nothing was run
    single = ["verify", str(folder / "nb.cif"), "--out", str(tmp_path / "p2"), "--plan"]
    assert run_cli([*single, "--pseudo-dir", pseudo]) == 2  # nothing can start
