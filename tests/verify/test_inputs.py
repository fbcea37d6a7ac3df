import io
import re
from pathlib import Path

import numpy as np
import pytest
from ase.io.espresso import read_espresso_in, read_fortran_namelist
from pymatgen.core import Lattice, Structure

from tcdesign.verify import inputs
from tcdesign.verify.pseudo import Pseudopotential
from tcdesign.verify.settings import make_settings, read_settings_toml

AL_PSEUDO = {"Al": Pseudopotential("Al", Path("Al.pz-vbc.UPF"), "lda", "NC", 0, 0, "no")}


@pytest.fixture
def fcc_al() -> Structure:
    return Structure(
        Lattice([[0, 2.025, 2.025], [2.025, 0, 2.025], [2.025, 2.025, 0]]), ["Al"], [[0, 0, 0]]
    )


def test_grids_are_commensurate_with_the_q_grid(fcc_al):
    settings = make_settings("coarse")
    q = inputs.grid_from_spacing(fcc_al, settings.q_spacing)
    assert q == (4, 4, 4)
    assert inputs.grid_from_spacing(fcc_al, settings.k_spacing, q) == (8, 8, 8)
    assert inputs.grid_from_spacing(fcc_al, settings.fit_k_spacing, q) == (16, 16, 16)
    assert inputs.grid_from_spacing(fcc_al, 0.5, (3, 3, 3)) == (6, 6, 6)


@pytest.mark.parametrize("preset", ["coarse", "standard"])
def test_dense_grid_is_a_multiple_of_the_k_grid(preset, fcc_al):
    """ph.x interpolates from k to the dense la2F grid by integer division of their sizes: a
    dense grid that is not a multiple of k gives wrong lambdas without an error. The cells are
    those where the spacing alone gave 40 over 16 (fcc Al, bcc Nb at standard) or 8x6x6 over
    4x4x4 (a triclinic generated cell at coarse)."""
    bcc_nb = Structure(Lattice.cubic(3.3), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mgb2 = Structure(
        Lattice.hexagonal(3.08, 3.52),
        ["Mg", "B", "B"],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]],
    )
    p1 = Structure(Lattice.from_parameters(5.1, 6.3, 7.4, 80, 85, 95), ["Nb"], [[0, 0, 0]])
    settings = make_settings(preset)
    for structure in (fcc_al, bcc_nb.get_primitive_structure(), mgb2, p1):
        grids = inputs.epc_grids(structure, settings)
        for fine, coarse in (("k", "q"), ("k_fit", "k")):
            assert all(f % c == 0 for f, c in zip(grids[fine], grids[coarse], strict=True)), (
                structure.formula,
                grids,
            )
        assert all(f > k for f, k in zip(grids["k_fit"], grids["k"], strict=True))


def _grid_is_invariant(structure: Structure, grid: tuple[int, int, int]) -> bool:
    """Every symmetry operation maps the grid onto itself: for the integer matrix M acting on
    reciprocal fractional coordinates, M[a, b] * n[a] / n[b] is an integer wherever M[a, b] != 0."""
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    for rotation in spglib.get_symmetry_dataset(cell, symprec=1e-3).rotations:
        m = np.rint(np.linalg.inv(rotation).T).astype(int)
        for a in range(3):
            for b in range(3):
                if m[a, b] and (m[a, b] * grid[a]) % grid[b]:
                    return False
    return True


def test_grids_keep_the_crystal_symmetry():
    """ph.x stops with "q-mesh breaks symmetry" on a grid that a symmetry operation does not map
    onto itself. The spacing alone gave 3x4x4 for this relaxed TaN2 (Imm2, primitive cell with
    three equal vectors, the unequal reciprocal lengths of a body-centred cell)."""
    tan2 = Structure.from_file(Path(__file__).parent / "fixtures" / "tan2_body_centred.cif")
    lengths = tan2.lattice.reciprocal_lattice.abc
    assert max(lengths) / min(lengths) > 1.2  # the spacing alone gives unequal divisions
    mgb2 = Structure(
        Lattice.hexagonal(3.08, 3.52),
        ["Mg", "B", "B"],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]],
    )
    bct = Structure(Lattice.tetragonal(3.1, 5.9), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    p1 = Structure(Lattice.from_parameters(5.1, 6.3, 7.4, 80, 85, 95), ["Nb"], [[0, 0, 0]])
    settings = make_settings("coarse")
    for structure in (tan2, mgb2, bct.get_primitive_structure(), p1):
        grids = inputs.epc_grids(structure, settings)
        for name, grid in grids.items():
            assert _grid_is_invariant(structure, grid), (structure.formula, name, grid)
    assert inputs.epc_grids(tan2, settings)["q"] == (4, 4, 4)
    q = inputs.epc_grids(mgb2, settings)["q"]
    assert q[0] == q[1]
    assert inputs.symmetry_linked_axes(p1) == []  # a triclinic cell keeps its own divisions
    # equal divisions on linked axes stay multiples of a coarser grid given per axis
    assert inputs.grid_from_spacing(tan2, settings.k_spacing, (2, 3, 3)) == (12, 12, 12)


def test_pw_input_reads_back_with_ase(fcc_al):
    settings = make_settings("coarse", ecutwfc_ry=15.0)
    text = inputs.pw_input(
        fcc_al,
        AL_PSEUDO,
        settings,
        calculation="scf",
        kpts=(16, 16, 16),
        pseudo_dir="/p",
        la2F=True,
    )
    atoms = read_espresso_in(io.StringIO(text))
    assert np.allclose(atoms.cell[:], fcc_al.lattice.matrix)
    namelists, cards = read_fortran_namelist(io.StringIO(text))
    system = namelists["system"]
    assert system["ecutwfc"] == 15.0 and system["ecutrho"] == 60.0
    assert system["la2f"] is True and system["occupations"] == "smearing"
    assert namelists["control"]["calculation"] == "scf"
    assert "&FCP" not in text and "&CELL" not in text
    assert any("16 16 16" in line for line in cards)


def test_relax_input_keeps_cell_namelist(fcc_al):
    text = inputs.pw_input(
        fcc_al, AL_PSEUDO, make_settings(), calculation="vc-relax", kpts=(8, 8, 8), pseudo_dir="/p"
    )
    namelists, _ = read_fortran_namelist(io.StringIO(text))
    assert namelists["control"]["calculation"] == "vc-relax"
    assert namelists["cell"]["press_conv_thr"] == 0.5
    assert namelists["system"]["ecutwfc"] == 25.0  # the preset: the file suggests no cutoff


def test_spin_polarised_input_starts_ferromagnetic_under_its_own_prefix(fcc_al):
    """The magnetism check's scf: nspin 2, every species half polarised, and a prefix of its
    own so that it never overwrites the charge density the phonons start from."""
    plain = inputs.pw_input(
        fcc_al, AL_PSEUDO, make_settings(), calculation="scf", kpts=(8, 8, 8), pseudo_dir="/p"
    )
    spin = inputs.pw_input(
        fcc_al,
        AL_PSEUDO,
        make_settings(),
        calculation="scf",
        kpts=(8, 8, 8),
        pseudo_dir="/p",
        spin=True,
    )
    plain_lists, _ = read_fortran_namelist(io.StringIO(plain))
    spin_lists, _ = read_fortran_namelist(io.StringIO(spin))
    assert "nspin" not in plain_lists["system"] and "starting_magnetization" not in plain
    assert plain_lists["control"]["prefix"] == inputs.PREFIX
    assert spin_lists["system"]["nspin"] == 2
    assert re.search(r"starting_magnetization\(1\)\s*=\s*0\.5\n", spin)
    assert spin_lists["control"]["prefix"] == inputs.SPIN_PREFIX != inputs.PREFIX
    assert spin_lists["control"]["outdir"] == plain_lists["control"]["outdir"]


def test_ph_q2r_matdyn_inputs_parse_back():
    settings = make_settings("coarse")
    ph, _ = read_fortran_namelist(
        io.StringIO(inputs.ph_input(settings, (4, 4, 3)).split("\n", 1)[1])
    )
    ph = ph["inputph"]
    assert ph["electron_phonon"] == "interpolated" and ph["ldisp"] is True
    assert (ph["nq1"], ph["nq2"], ph["nq3"]) == (4, 4, 3)
    assert ph["el_ph_nsigma"] == 10 and ph["el_ph_sigma"] == pytest.approx(0.005)
    assert ph["tr2_ph"] == pytest.approx(1e-12)
    assert "recover" not in inputs.ph_input(settings, (2, 2, 2), q_index=3)
    q2r, _ = read_fortran_namelist(io.StringIO(inputs.q2r_input()))
    assert q2r["input"]["la2f"] is True and q2r["input"]["fildyn"] == inputs.FILDYN
    matdyn, _ = read_fortran_namelist(io.StringIO(inputs.matdyn_input((10, 11, 12), 2.0)))
    matdyn = matdyn["input"]
    assert matdyn["dos"] is True and matdyn["la2f"] is True
    assert (matdyn["nk1"], matdyn["nk2"], matdyn["nk3"]) == (10, 11, 12)
    # both read as many broadenings as ph.x wrote (their default, 10, breaks any other number)
    assert q2r["input"]["el_ph_nsigma"] == matdyn["el_ph_nsigma"] == 10
    q2r7, _ = read_fortran_namelist(io.StringIO(inputs.q2r_input(7)))
    matdyn7, _ = read_fortran_namelist(io.StringIO(inputs.matdyn_input((4, 4, 4), 2.0, 7)))
    assert q2r7["input"]["el_ph_nsigma"] == matdyn7["input"]["el_ph_nsigma"] == 7
    relax = inputs.pw_input(
        Structure(Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]),
        AL_PSEUDO,
        settings,
        calculation="vc-relax",
        kpts=(4, 4, 4),
        pseudo_dir="/p",
    )
    assert read_fortran_namelist(io.StringIO(relax))[0]["control"]["nstep"] == 100


def test_lambda_input_layout():
    text = inputs.lambda_input(np.zeros((2, 3)), [1, 8], ["a", "b"], 0.12, 15.0)
    lines = text.splitlines()
    assert lines[1] == "2" and lines[3].endswith(" 8") and lines[4:6] == ["a", "b"]
    assert lines[-1] == "0.12"


def test_toml_overrides(tmp_path):
    path = tmp_path / "verify.toml"
    path.write_text('q_spacing = 0.5\nrelax = false\n[pseudopotentials]\nAl = "Al.pz-vbc.UPF"\n')
    settings = make_settings("standard", **read_settings_toml(path))
    assert settings.q_spacing == 0.5 and settings.relax is False
    assert settings.pseudopotentials == {"Al": "Al.pz-vbc.UPF"}
    assert settings.fit_k_spacing == 0.08  # the rest of the preset
    # a [verify] table beside [pseudopotentials]: both are read
    path.write_text('[verify]\nmu_star = 0.13\n[pseudopotentials]\nH = "H.pbe-kjpaw.UPF"\n')
    expected = {"mu_star": 0.13, "pseudopotentials": {"H": "H.pbe-kjpaw.UPF"}}
    assert read_settings_toml(path) == expected
    path.write_text("q_spacin = 0.5\n")
    with pytest.raises(ValueError, match="q_spacin"):
        read_settings_toml(path)
