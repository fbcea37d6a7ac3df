"""tcdesign.data.io against the input contract of SPEC.md ("Inputs every verb accepts")."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

import tcdesign.data
from tcdesign.data.io import InputError, read_structures, validate_structure

BUNDLED_TRAIN = Path(tcdesign.data.__file__).parent / "bundled" / "train.csv"
MALFORMED_CIF = "data_broken\n_cell_length_a 4.0\nthis is not a CIF loop\n"


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    """The first rows of the bundled training CSV: real CIF text and prop = -Tc."""
    return pd.read_csv(BUNDLED_TRAIN, nrows=3, index_col=0)


def nbc() -> Structure:
    return Structure(Lattice.cubic(4.47), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cif_of(structure: Structure) -> str:
    return str(CifWriter(structure))


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def formula_of(cif: str) -> str:
    return Structure.from_str(cif, fmt="cif").composition.reduced_formula


# --- CSV in the JARVIS/CDVAE layout -----------------------------------------------------------


def test_csv_with_material_id(bundled: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    bundled.to_csv(path)  # as CDVAE writes it: unnamed index column first
    records = read_structures(path, ["tc"], require_targets=True)
    assert [r.id for r in records] == list(bundled.material_id)
    for record, (_, row) in zip(records, bundled.iterrows(), strict=True):
        assert record.ok and record.error is None and record.warning is None
        assert record.targets["tc"] == pytest.approx(-row.prop)  # Tc = -prop (K)
        assert record.formula == formula_of(row.cif)
        assert len(record.structure) == len(Structure.from_str(row.cif, fmt="cif"))


def test_csv_without_material_id_uses_row_numbers(bundled: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    bundled[["cif", "prop"]].to_csv(path, index=False)
    records = read_structures(path, ["tc"])
    assert [r.id for r in records] == ["0", "1", "2"]
    assert [r.targets["tc"] for r in records] == pytest.approx(list(-bundled.prop))


def test_csv_blank_material_id_falls_back_to_row_number(
    bundled: pd.DataFrame, tmp_path: Path
) -> None:
    rows = [
        {"material_id": "A-1", "cif": bundled.cif.iloc[0]},
        {"material_id": "", "cif": bundled.cif.iloc[1]},
    ]
    assert [r.id for r in read_structures(write_csv(tmp_path / "in.csv", rows))] == ["A-1", "1"]


def test_csv_id_column_of_tcdesign_tables(bundled: pd.DataFrame, tmp_path: Path) -> None:
    """generated.csv and screened.csv name their ids 'id'; material_id wins when both exist."""
    rows = [{"id": "gen-00007", "cif": bundled.cif.iloc[0]}]
    assert read_structures(write_csv(tmp_path / "gen.csv", rows))[0].id == "gen-00007"
    both = [{"material_id": "JVASP-1", "id": "x", "cif": bundled.cif.iloc[0]}]
    assert read_structures(write_csv(tmp_path / "both.csv", both))[0].id == "JVASP-1"


def test_csv_ids_stay_strings(bundled: pd.DataFrame, tmp_path: Path) -> None:
    rows = [{"material_id": "007", "cif": bundled.cif.iloc[0]}]
    assert read_structures(write_csv(tmp_path / "in.csv", rows))[0].id == "007"


def test_repeated_csv_ids_are_renamed_with_a_warning(bundled: pd.DataFrame, tmp_path: Path) -> None:
    """Ids name output rows, files and folders: a repeat used to give two predict rows with one
    id, and two verify runs one folder."""
    rows = [
        {"material_id": "a", "cif": bundled.cif.iloc[0], "prop": -1.0},
        {"material_id": "a", "cif": bundled.cif.iloc[1], "prop": np.nan},
        {"material_id": "a_2", "cif": bundled.cif.iloc[2], "prop": -2.0},
        {"material_id": "a", "cif": "not a cif", "prop": -3.0},
    ]
    records = read_structures(write_csv(tmp_path / "in.csv", rows), ["tc"])
    assert [r.id for r in records] == ["a", "a_3", "a_2", "a_4"]
    assert records[0].warning is None and records[2].warning is None
    assert "NaN" in records[1].warning and "'a' repeated" in records[1].warning
    assert "this row is 'a_4'" in records[3].warning and "does not parse" in records[3].error
    assert [r.formula for r in records[:3]] == [formula_of(c) for c in bundled.cif]


def test_repeated_folder_ids_are_renamed(bundled: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "x.cif").write_text(bundled.cif.iloc[0])
    (tmp_path / "x.vasp").write_text(Poscar(nbc()).get_str())
    records = read_structures(tmp_path)
    assert [r.id for r in records] == ["x", "x_2"] and records[1].formula == "NbC"


def test_csv_without_prop_has_no_targets(bundled: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    bundled[["material_id", "cif"]].to_csv(path, index=False)
    records = read_structures(path, ["tc"])
    assert all(r.ok and r.targets == {} for r in records)
    with pytest.raises(InputError, match="prop"):
        read_structures(path, ["tc"], require_targets=True)


def test_nan_prop_is_bad_when_targets_are_required(bundled: pd.DataFrame, tmp_path: Path) -> None:
    frame = bundled.copy()
    frame.loc[frame.index[1], "prop"] = np.nan
    path = tmp_path / "in.csv"
    frame.to_csv(path)
    records = read_structures(path, ["tc"], require_targets=True)
    assert [r.ok for r in records] == [True, False, True]
    bad = records[1]
    assert bad.id == bundled.material_id.iloc[1]
    assert bad.structure is None
    assert "prop" in bad.error and "NaN" in bad.error


def test_nan_prop_is_a_warning_otherwise(bundled: pd.DataFrame, tmp_path: Path) -> None:
    frame = bundled.copy()
    frame.loc[frame.index[1], "prop"] = np.nan
    path = tmp_path / "in.csv"
    frame.to_csv(path)
    records = read_structures(path, ["tc"], require_targets=False)
    assert [r.ok for r in records] == [True, True, True]
    kept = records[1]
    assert kept.structure is not None and "tc" not in kept.targets
    assert "NaN" in kept.warning
    assert records[0].warning is None


def test_non_numeric_prop(bundled: pd.DataFrame, tmp_path: Path) -> None:
    rows = [{"cif": bundled.cif.iloc[0], "prop": "-1.5"}, {"cif": bundled.cif.iloc[1], "prop": "x"}]
    records = read_structures(write_csv(tmp_path / "in.csv", rows), ["tc"], require_targets=True)
    assert records[0].ok and records[0].targets["tc"] == pytest.approx(1.5)
    assert not records[1].ok and "not a number" in records[1].error


def test_other_numeric_target_column(bundled: pd.DataFrame, tmp_path: Path) -> None:
    rows = [{"cif": bundled.cif.iloc[0], "ehull": 0.02}]
    records = read_structures(write_csv(tmp_path / "in.csv", rows), ["ehull"])
    assert records[0].targets == {"ehull": pytest.approx(0.02)}


# --- single files and folders -----------------------------------------------------------------


def test_single_cif(tmp_path: Path) -> None:
    path = tmp_path / "NbC_rocksalt.cif"
    path.write_text(cif_of(nbc()))
    [record] = read_structures(path)
    assert record.id == "NbC_rocksalt"
    assert record.ok and record.formula == "NbC"
    assert record.structure.lattice.abc == pytest.approx((4.47, 4.47, 4.47))


@pytest.mark.parametrize("name", ["POSCAR", "CONTCAR", "nbc.vasp", "nbc.poscar"])
def test_single_poscar(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(Poscar(nbc()).get_str())
    [record] = read_structures(path)
    assert record.id == Path(name).stem
    assert record.ok and record.formula == "NbC"
    assert np.allclose(record.structure.frac_coords, nbc().frac_coords)


def test_folder_of_cifs_and_poscar(bundled: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "a.cif").write_text(bundled.cif.iloc[0])
    (tmp_path / "b_broken.cif").write_text(MALFORMED_CIF)
    (tmp_path / "c.cif").write_text(bundled.cif.iloc[1])
    (tmp_path / "d.vasp").write_text(Poscar(nbc()).get_str())
    (tmp_path / "notes.txt").write_text("not a structure")  # ignored
    (tmp_path / "sub").mkdir()  # ignored
    records = read_structures(tmp_path)
    assert [r.id for r in records] == ["a", "b_broken", "c", "d"]
    assert [r.ok for r in records] == [True, False, True, True]
    assert "does not parse" in records[1].error
    assert records[0].formula == formula_of(bundled.cif.iloc[0])
    assert records[3].formula == "NbC"


def test_folder_with_bad_files_reports_each(tmp_path: Path) -> None:
    (tmp_path / "empty.cif").write_text("")
    (tmp_path / "binary.cif").write_bytes(b"\x00\x01\x02data")
    text = Poscar(nbc()).get_str().replace("Nb C", "Nb Xx")  # unknown element in a POSCAR
    (tmp_path / "unknown.vasp").write_text(text)
    (tmp_path / "good.cif").write_text(cif_of(nbc()))
    records = {r.id: r for r in read_structures(tmp_path)}
    assert records["good"].ok
    assert "empty" in records["empty"].error
    assert "binary" in records["binary"].error
    assert "unknown element" in records["unknown"].error


def test_folder_without_structures(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no CIF or POSCAR"):
        read_structures(tmp_path)


# --- inputs that cannot be used at all: InputError naming the path ----------------------------


@pytest.mark.parametrize("name", ["missing.csv", "missing.cif", "missing_dir"])
def test_missing_input(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(InputError, match="no such file") as info:
        read_structures(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["empty.csv", "empty.cif", "POSCAR"])
@pytest.mark.parametrize("content", [b"", b"  \n\n"])
def test_empty_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_structures(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["data.csv", "data.cif"])
def test_binary_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="binary") as info:
        read_structures(path)
    assert str(path) in str(info.value)


def test_non_utf8_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("cif,prop\nNb\xe9,1\n".encode("latin-1"))
    with pytest.raises(InputError) as info:
        read_structures(path)
    assert str(path) in str(info.value)


def test_csv_without_cif_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", [{"material_id": "x", "structure": "?", "prop": -1.0}])
    with pytest.raises(InputError, match="'cif' column") as info:
        read_structures(path)
    assert str(path) in str(info.value)


def test_single_unparsable_cif(tmp_path: Path) -> None:
    path = tmp_path / "broken.cif"
    path.write_text(MALFORMED_CIF)
    with pytest.raises(InputError) as info:
        read_structures(path)
    assert str(path) in str(info.value)


# --- bad rows in a usable CSV: reported with id and reason, the good rows still read -----------


def read_rows(tmp_path: Path, good_cif: str, bad_cif: object) -> tuple:
    rows = [
        {"material_id": "good-1", "cif": good_cif, "prop": -1.0},
        {"material_id": "bad", "cif": bad_cif, "prop": -2.0},
        {"material_id": "good-2", "cif": good_cif, "prop": -3.0},
    ]
    records = read_structures(write_csv(tmp_path / "in.csv", rows), ["tc"], require_targets=True)
    assert [r.id for r in records] == ["good-1", "bad", "good-2"]
    assert records[0].ok and records[2].ok
    assert records[2].targets["tc"] == pytest.approx(3.0)
    bad = records[1]
    assert not bad.ok and bad.structure is None and bad.error
    return bad


def test_malformed_cif_row(tmp_path: Path) -> None:
    bad = read_rows(tmp_path, cif_of(nbc()), MALFORMED_CIF)
    assert "does not parse" in bad.error


def test_empty_cif_cell(tmp_path: Path) -> None:
    bad = read_rows(tmp_path, cif_of(nbc()), "")
    assert "empty" in bad.error


@pytest.mark.parametrize("symbol", ["Xx", "Q"])
def test_unknown_element_row(tmp_path: Path, symbol: str) -> None:
    cif = cif_of(nbc())
    bad_cif = cif.replace("  C  C1  1", f"  {symbol}  {symbol}1  1")
    assert bad_cif != cif
    bad = read_rows(tmp_path, cif, bad_cif)
    assert "unknown element" in bad.error


def test_unknown_element_as_dummy_species() -> None:
    """pymatgen makes an unknown symbol a DummySpecies (e.g. from a POSCAR): a reason, no crash."""
    structure = Structure(
        Lattice.cubic(4.0), ["Nb", DummySpecies("Xx")], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    assert "unknown element" in validate_structure(structure)


def test_atoms_too_close_row(tmp_path: Path) -> None:
    close = Structure(Lattice.cubic(4.0), ["Nb", "C"], [[0, 0, 0], [0.1, 0, 0]])  # 0.4 A
    bad = read_rows(tmp_path, cif_of(nbc()), cif_of(close))
    assert "0.400 A apart" in bad.error


def test_atoms_close_through_periodic_image(tmp_path: Path) -> None:
    close = Structure(Lattice.cubic(4.0), ["Nb", "C"], [[0.02, 0, 0], [0.95, 0, 0]])  # 0.28 A
    bad = read_rows(tmp_path, cif_of(nbc()), cif_of(close))
    assert "apart" in bad.error


def test_atom_close_to_its_own_image_in_a_skewed_cell() -> None:
    # every lattice vector is 1 A long, but a - b is only 2 sin(5 deg) = 0.17 A long
    skewed = Structure(Lattice.from_parameters(1.0, 1.0, 3.0, 90, 90, 170), ["Nb"], [[0, 0, 0]])
    assert "apart" in validate_structure(skewed)


def test_just_above_the_minimum_distance_is_fine() -> None:
    structure = Structure(Lattice.cubic(6.0), ["H", "H"], [[0, 0, 0], [0.51 / 6.0, 0, 0]])
    assert validate_structure(structure) is None


def test_nan_coordinate_in_cif_row(tmp_path: Path) -> None:
    cif = cif_of(nbc())
    bad_cif = cif.replace("0.50000000  0.50000000  0.50000000", "nan  0.50000000  0.50000000")
    assert bad_cif != cif
    read_rows(tmp_path, cif, bad_cif)  # a bad row with a reason, whatever pymatgen says


def test_nan_lattice_in_cif_row(tmp_path: Path) -> None:
    cif = cif_of(nbc())
    bad_cif = cif.replace("_cell_length_a   4.47000000", "_cell_length_a   nan")
    assert bad_cif != cif
    bad = read_rows(tmp_path, cif, bad_cif)
    assert "NaN" in bad.error


def test_nan_coordinate_in_poscar(tmp_path: Path) -> None:
    text = Poscar(nbc()).get_str()
    lines = text.splitlines()
    lines[-1] = "   nan   0.5   0.5 C"  # the last site line
    (tmp_path / "nan.vasp").write_text("\n".join(lines) + "\n")
    (tmp_path / "ok.vasp").write_text(text)
    records = read_structures(tmp_path)
    assert [r.id for r in records] == ["nan", "ok"]
    assert not records[0].ok and "NaN" in records[0].error
    assert records[1].ok


def test_nan_in_structure_object() -> None:
    structure = nbc()
    structure.replace(1, "C", [math.nan, 0.5, 0.5])
    assert "NaN" in validate_structure(structure)


def test_element_beyond_z_100_is_a_bad_row(tmp_path: Path) -> None:
    """The models have atom features for Z 1-100 only; Lr used to pass and crash the model."""
    lawrencium = Structure(Lattice.cubic(4.0), ["Nb", "Lr"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert "Z = 103" in validate_structure(lawrencium)
    bad = read_rows(tmp_path, cif_of(nbc()), cif_of(lawrencium))
    assert "not supported" in bad.error
    fermium = Structure(Lattice.cubic(4.0), ["Nb", "Fm"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert validate_structure(fermium) is None


def test_vasp4_poscar_without_element_names_is_refused(tmp_path: Path) -> None:
    """pymatgen names the species of a POSCAR without an element line H, He, ...: this Nb
    cell was read as H2 and predicted as such."""
    path = tmp_path / "POSCAR"
    path.write_text("Nb bcc\n1.0\n3.3 0 0\n0 3.3 0\n0 0 3.3\n2\nDirect\n0 0 0\n0.5 0.5 0.5\n")
    with pytest.raises(InputError, match="names no elements"):
        read_structures(path)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "POSCAR").write_text(path.read_text())
    (folder / "good.vasp").write_text(Poscar(nbc()).get_str())
    records = read_structures(folder)
    assert [r.ok for r in records] == [False, True]
    assert "names no elements" in records[0].error


def test_infinite_prop_is_called_infinite(bundled: pd.DataFrame, tmp_path: Path) -> None:
    """An infinite target was reported as 'prop is NaN'."""
    rows = [{"material_id": "inf", "cif": bundled.cif.iloc[0], "prop": -math.inf}]
    records = read_structures(write_csv(tmp_path / "in.csv", rows), ["tc"], require_targets=True)
    assert records[0].error == "prop is infinite"
