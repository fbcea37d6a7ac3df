"""JARVIS dft_3d records -> CDVAE-layout CSV, read back by tcdesign.data.io; no network.

The fixture holds four hand-made records in the dft_3d format (fcc Al, bcc Nb, rocksalt NbC with
Cartesian coordinates, rocksalt MgO with Tc_supercon "na"); ids and values are illustrative, not
copied from JARVIS.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tcdesign.data import jarvis
from tcdesign.data.io import read_structures
from tcdesign.data.jarvis import (
    fetch_dft_3d,
    jarvis_atoms_to_structure,
    records_to_frame,
    write_csv,
)

FIXTURE = Path(__file__).parent / "fixtures" / "dft_3d_sample.json"
EXPECTED_TC = {"JVASP-90001": 1.12, "JVASP-90002": 9.31, "JVASP-90003": 11.24}  # K
EXPECTED_FORMULA = {"JVASP-90001": "Al", "JVASP-90002": "Nb", "JVASP-90003": "NbC"}


@pytest.fixture()
def records() -> list[dict]:
    return json.loads(FIXTURE.read_text())


def test_fixture_is_in_dft_3d_format(records: list[dict]) -> None:
    for record in records:
        assert {"jid", "atoms", "Tc_supercon", "formation_energy_peratom", "ehull"} <= set(record)
        atoms = record["atoms"]
        assert set(atoms) == {
            "lattice_mat",
            "coords",
            "elements",
            "abc",
            "angles",
            "cartesian",
            "props",
        }
        lattice = np.array(atoms["lattice_mat"])
        assert np.allclose(np.linalg.norm(lattice, axis=1), atoms["abc"], atol=1e-5)


def test_round_trip_through_csv(records: list[dict], tmp_path: Path) -> None:
    frame = records_to_frame(records)
    assert list(frame.columns) == ["material_id", "cif", "prop"]
    assert frame.attrs["n_skipped_missing_target"] == 1  # MgO, Tc_supercon "na"
    path = write_csv(frame, tmp_path / "dft_3d.csv")

    read = read_structures(path, ["tc"], require_targets=True)
    assert [r.id for r in read] == list(EXPECTED_TC)
    for record in read:
        assert record.ok, record.error
        assert record.targets["tc"] == pytest.approx(EXPECTED_TC[record.id])
        assert record.formula == EXPECTED_FORMULA[record.id]
    # prop = -Tc, as in the CDVAE layout; the first column is an unnamed row index
    raw = pd.read_csv(path)
    assert raw.columns[0].startswith("Unnamed")
    assert np.allclose(raw["prop"], [-tc for tc in EXPECTED_TC.values()])


def test_structures_match_the_atoms_dicts(records: list[dict], tmp_path: Path) -> None:
    path = write_csv(records_to_frame(records), tmp_path / "dft_3d.csv")
    by_id = {r.id: r.structure for r in read_structures(path)}
    nb = by_id["JVASP-90002"]
    assert len(nb) == 2
    assert nb.lattice.abc == pytest.approx((3.31, 3.31, 3.31))
    # bcc nearest-neighbour distance a*sqrt(3)/2
    assert nb.get_distance(0, 1) == pytest.approx(3.31 * math.sqrt(3) / 2, abs=1e-5)
    nbc = by_id["JVASP-90003"]
    assert nbc.get_distance(0, 1) == pytest.approx(4.48 / 2, abs=1e-5)  # rocksalt: a/2


@pytest.mark.parametrize("symbol", ["na", "NA", None, float("nan"), ""])
def test_missing_targets_are_skipped(
    records: list[dict], symbol: object, caplog: pytest.LogCaptureFixture
) -> None:
    records[0]["Tc_supercon"] = symbol
    with caplog.at_level(logging.INFO, logger=jarvis.__name__):
        frame = records_to_frame(records)
    assert list(frame.material_id) == ["JVASP-90002", "JVASP-90003"]
    assert frame.attrs["n_skipped_missing_target"] == 2
    assert "2 skipped" in caplog.text


def test_record_without_the_key_is_skipped(records: list[dict]) -> None:
    del records[1]["Tc_supercon"]
    frame = records_to_frame(records)
    assert list(frame.material_id) == ["JVASP-90001", "JVASP-90003"]


def test_misspelt_target_raises(records: list[dict]) -> None:
    with pytest.raises(ValueError, match="Tc_superconn"):
        records_to_frame(records, target="Tc_superconn")


def test_bad_atoms_are_skipped_and_counted(records: list[dict]) -> None:
    records[0]["atoms"]["elements"] = ["Al", "Al"]  # two symbols for one coordinate
    del records[1]["atoms"]
    frame = records_to_frame(records)
    assert list(frame.material_id) == ["JVASP-90003"]
    assert frame.attrs["n_skipped_bad_structure"] == 2


def test_cartesian_and_fractional_coords_agree(records: list[dict]) -> None:
    cartesian = records[2]["atoms"]  # NbC, Cartesian coordinates
    assert cartesian["cartesian"] is True
    lattice = np.array(cartesian["lattice_mat"])  # rows are lattice vectors
    fractional = copy.deepcopy(cartesian)
    fractional["coords"] = (np.array(cartesian["coords"]) @ np.linalg.inv(lattice)).tolist()
    fractional["cartesian"] = False
    a = jarvis_atoms_to_structure(cartesian)
    b = jarvis_atoms_to_structure(fractional)
    assert np.allclose(a.frac_coords, [[0, 0, 0], [0.5, 0.5, 0.5]], atol=1e-8)
    assert np.allclose(a.frac_coords, b.frac_coords, atol=1e-8)
    assert np.allclose(a.cart_coords, cartesian["coords"], atol=1e-8)
    assert np.allclose(a.lattice.matrix, lattice)  # rows are kept as the lattice vectors
    assert [str(s) for s in a.species] == ["Nb", "C"]


def test_fractional_coords_of_a_skewed_cell(records: list[dict]) -> None:
    al = records[0]["atoms"]  # fcc primitive cell, 60 degree angles
    al["elements"] = ["Al", "Al"]
    al["coords"] = [[0.0, 0.0, 0.0], [0.25, 0.5, 0.0]]
    structure = jarvis_atoms_to_structure(al)
    lattice = np.array(al["lattice_mat"])
    assert np.allclose(structure.cart_coords[1], 0.25 * lattice[0] + 0.5 * lattice[1])
    assert structure.lattice.angles == pytest.approx((60, 60, 60))


def test_malformed_atoms_raise_value_error() -> None:
    good = {
        "lattice_mat": np.eye(3).tolist(),
        "coords": [[0, 0, 0]],
        "elements": ["Nb"],
        "cartesian": False,
    }
    with pytest.raises(ValueError, match="lattice_mat"):
        jarvis_atoms_to_structure({**good, "lattice_mat": [[1, 0, 0], [0, 1, 0]]})
    with pytest.raises(ValueError, match="elements"):
        jarvis_atoms_to_structure({**good, "elements": ["Nb", "Nb"]})
    with pytest.raises(ValueError, match="coords"):
        jarvis_atoms_to_structure({k: v for k, v in good.items() if k != "coords"})


def test_other_target_column(records: list[dict], tmp_path: Path) -> None:
    frame = records_to_frame(records, target="ehull", extra_keys=["formation_energy_peratom"])
    assert "prop" not in frame.columns
    assert list(frame.columns) == ["material_id", "cif", "ehull", "formation_energy_peratom"]
    # NbC has ehull "na": skipped; MgO has no Tc but an ehull: kept
    assert list(frame.material_id) == ["JVASP-90001", "JVASP-90002", "JVASP-90004"]
    assert frame.attrs["n_skipped_missing_target"] == 1
    path = write_csv(frame, tmp_path / "ehull.csv")
    read = read_structures(path, ["ehull", "formation_energy_peratom"], require_targets=True)
    assert [r.ok for r in read] == [True, True, True]
    assert read[2].formula == "MgO"
    assert read[2].targets == pytest.approx({"ehull": 0.0, "formation_energy_peratom": -2.937})


def test_extra_keys_keep_missing_values_as_nan(records: list[dict]) -> None:
    frame = records_to_frame(records, extra_keys=["ehull", "optb88vdw_bandgap", "formula"])
    assert list(frame.columns) == [
        "material_id",
        "cif",
        "prop",
        "ehull",
        "optb88vdw_bandgap",
        "formula",
    ]
    assert frame.ehull.isna().tolist() == [False, False, True]  # NbC ehull "na"
    assert frame.formula.tolist() == ["Al", "Nb", "NbC"]


def _hide_jarvis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import jarvis...`` fail as if jarvis-tools were not installed."""
    for name in list(sys.modules):
        if name == "jarvis" or name.startswith("jarvis."):
            monkeypatch.delitem(sys.modules, name)
    for name in ("jarvis", "jarvis.db", "jarvis.db.figshare"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules -> ImportError


def test_fetch_without_jarvis_tools_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_jarvis(monkeypatch)
    out = tmp_path / "dft_3d.csv"
    with pytest.raises(RuntimeError, match="pip install jarvis-tools"):
        fetch_dft_3d(out_csv=out)
    assert not out.exists()


def test_fetch_with_a_stand_in_jarvis(
    records: list[dict], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """fetch_dft_3d asks jarvis-tools for dft_3d and writes the CSV (a stand-in: no network)."""
    asked: list[tuple] = []

    def data(dataset: str, store_dir: str | None = None) -> list[dict]:
        asked.append((dataset, store_dir))
        return records

    _hide_jarvis(monkeypatch)
    figshare = types.ModuleType("jarvis.db.figshare")
    figshare.data = data
    monkeypatch.setitem(sys.modules, "jarvis", types.ModuleType("jarvis"))
    monkeypatch.setitem(sys.modules, "jarvis.db", types.ModuleType("jarvis.db"))
    monkeypatch.setitem(sys.modules, "jarvis.db.figshare", figshare)

    out = tmp_path / "sub" / "dft_3d.csv"
    frame = fetch_dft_3d(out_csv=out, store_dir=tmp_path)
    assert asked == [("dft_3d", str(tmp_path))]
    assert len(frame) == 3
    assert [r.id for r in read_structures(out, ["tc"], require_targets=True)] == list(EXPECTED_TC)


def test_agrees_with_jarvis_tools_when_installed(records: list[dict]) -> None:
    """Cross-check with jarvis-tools' own converter (offline; skipped without jarvis-tools)."""
    atoms_module = pytest.importorskip("jarvis.core.atoms")
    for record in records:
        theirs = atoms_module.Atoms.from_dict(record["atoms"]).pymatgen_converter()
        ours = jarvis_atoms_to_structure(record["atoms"])
        assert np.allclose(ours.lattice.matrix, theirs.lattice.matrix)
        assert np.allclose(ours.frac_coords, theirs.frac_coords, atol=1e-8)
        assert ours.species == theirs.species


def test_fetch_jarvis_verb(
    records: list[dict],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """`tcdesign fetch-jarvis` writes the CSV, and says clearly when jarvis-tools is missing."""
    from tcdesign.cli import main

    _hide_jarvis(monkeypatch)
    out = tmp_path / "dft_3d.csv"
    assert main(["fetch-jarvis", "--out", str(out)]) == 1
    assert "pip install jarvis-tools" in capsys.readouterr().err
    figshare = types.ModuleType("jarvis.db.figshare")
    figshare.data = lambda dataset, store_dir=None: records
    monkeypatch.setitem(sys.modules, "jarvis", types.ModuleType("jarvis"))
    monkeypatch.setitem(sys.modules, "jarvis.db", types.ModuleType("jarvis.db"))
    monkeypatch.setitem(sys.modules, "jarvis.db.figshare", figshare)
    assert main(["fetch-jarvis", "--out", str(out)]) == 0
    assert "wrote 3 structures" in capsys.readouterr().out
    # a misspelt key is a bad argument (exit 2), not an internal error (exit 1)
    assert main(["fetch-jarvis", "--target", "Tc_superconn", "--out", str(out)]) == 2
    assert "no record has the key 'Tc_superconn'" in capsys.readouterr().err
    assert len(read_structures(out, ["tc"], require_targets=True)) == 3
