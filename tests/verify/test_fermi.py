import math
import shutil
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.verify.fermi import (
    BROADENINGS_EV,
    dos_at_fermi,
    fermi_dos,
    magnetic_moment,
    scf_input,
)
from tcdesign.verify.pseudo import DEBIAN_PSEUDO_DIR, PseudopotentialError
from tests.processes import survivors_of_killed_parent

HAVE_QE = shutil.which("pw.x") is not None and DEBIAN_PSEUDO_DIR.is_dir()


def fcc_al() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])


def test_single_level_at_the_fermi_energy():
    sigma = 0.1
    value = dos_at_fermi(np.array([[0.0]]), np.array([1.0]), 0.0, sigma)
    assert value == pytest.approx(2 / (sigma * math.sqrt(2 * math.pi)))  # two spins


def test_weights_are_normalised_and_far_levels_do_not_count():
    eigenvalues = np.array([[-5.0, 0.0, 5.0], [-4.0, 0.0, 4.0]])
    one = dos_at_fermi(eigenvalues, np.array([1.0, 1.0]), 0.0, 0.05)
    scaled = dos_at_fermi(eigenvalues, np.array([0.25, 0.25]), 0.0, 0.05)
    assert one == pytest.approx(scaled)
    assert one == pytest.approx(dos_at_fermi(np.zeros((2, 1)), np.ones(2), 0.0, 0.05))


def test_uniform_levels_give_their_density():
    """Levels every 0.01 eV, one per k-point and band: 100 levels/eV, 200 states/eV."""
    levels = np.arange(-3.0, 3.0, 0.01)[None, :]
    for sigma in BROADENINGS_EV:
        assert dos_at_fermi(levels, np.ones(1), 0.003, sigma) == pytest.approx(200.0, rel=1e-3)


def test_mismatched_shapes_and_bad_broadening_are_errors():
    with pytest.raises(ValueError, match="do not match"):
        dos_at_fermi(np.zeros((3, 2)), np.ones(2), 0.0, 0.1)
    with pytest.raises(ValueError, match="positive"):
        dos_at_fermi(np.zeros((2, 2)), np.ones(2), 0.0, 0.0)


def test_missing_pseudopotential_is_named(tmp_path):
    with pytest.raises(PseudopotentialError, match="Al"):
        scf_input(fcc_al(), tmp_path)


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_input_has_the_fixed_settings():
    text, kpts = scf_input(fcc_al(), DEBIAN_PSEUDO_DIR)
    assert "ecutwfc" in text and "35" in text and "'mv'" in text and "verbosity" in text
    assert kpts == (7, 7, 7)  # conventional cube, 4.05 A: |b| = 1.55 1/A, 6.2 divisions


def test_failed_pw_x_is_a_clear_error(tmp_path):
    folder = tmp_path / "pseudo"
    folder.mkdir()
    (folder / "Al.fake.UPF").write_text(
        '<UPF version="2.0.1">\n<PP_HEADER element="Al" pseudo_type="NC" functional="PZ" '
        'wfc_cutoff="0" rho_cutoff="0"/>\n</UPF>\n'
    )
    fake = tmp_path / "pw.sh"
    fake.write_text(
        "#!/bin/sh\necho ' Error in routine readpp (1):'\necho '     file not found'\nexit 1\n"
    )
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match="readpp: file not found"):
        fermi_dos(fcc_al(), folder, tmp_path / "run", pw_command=str(fake))


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_real_fcc_aluminium(tmp_path):
    """Free electrons with aluminium's density give 0.41 states/eV/atom; DFT gives about 0.4."""
    structure = fcc_al().get_primitive_structure()
    result = fermi_dos(structure, DEBIAN_PSEUDO_DIR, tmp_path)
    assert (tmp_path / "scf.in").is_file() and (tmp_path / "scf.out").is_file()
    assert result["seconds"] > 0 and len(result["kpts"]) == 3
    assert 0.25 < result["nef_0.2"] < 0.55
    assert all(result[f"nef_{s:g}"] > 0 for s in BROADENINGS_EV)


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_spin_input_starts_ferromagnetic_under_its_own_prefix():
    text, _ = scf_input(fcc_al(), DEBIAN_PSEUDO_DIR, spin=True)
    assert "nspin" in text and "starting_magnetization(1) = 0.5" in text and "dos_spin" in text
    plain, _ = scf_input(fcc_al(), DEBIAN_PSEUDO_DIR)
    assert "nspin" not in plain and "starting_magnetization" not in plain


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_real_moments_of_iron_and_aluminium(tmp_path):
    """bcc Fe keeps about 2.2 Bohr magnetons (experiment 2.2); fcc Al loses its start."""
    iron = Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    iron = iron.get_primitive_structure()
    fe = magnetic_moment(iron, DEBIAN_PSEUDO_DIR, tmp_path / "fe")
    assert 1.8 < fe["magmom_abs"] < 2.8 and fe["magmom_total"] == pytest.approx(
        fe["magmom_abs"], rel=0.1
    )
    al = magnetic_moment(fcc_al().get_primitive_structure(), DEBIAN_PSEUDO_DIR, tmp_path / "al")
    assert al["magmom_abs"] < 0.05 and (tmp_path / "al" / "spin.out").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_pw_x_ends_when_its_parent_is_killed_outright(tmp_path):
    """A screening pool worker killed outright (its parent interrupted) must not leave its pw.x
    running: the kernel ends it with the worker."""
    pid_file = tmp_path / "pw.pid"
    fake = tmp_path / "pw.x"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec /bin/sleep 60\n")
    fake.chmod(0o755)
    script = (
        "from pathlib import Path\n"
        "from tcdesign.verify.fermi import _run_pw\n"
        f"_run_pw('&control\\n/\\n', Path({str(tmp_path / 'w')!r}), 'scf', {str(fake)!r}, None)\n"
    )
    assert survivors_of_killed_parent(script, pid_file) == []
