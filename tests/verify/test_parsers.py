import re
from pathlib import Path

import numpy as np
import pytest

from tcdesign.verify import parsers
from tcdesign.verify.eliashberg import RY_TO_K, coupling_lambda, omega_log

FIXTURES = Path(__file__).parent / "fixtures"
AL = FIXTURES / "al_coarse"  # real QE 6.7 outputs: fcc Al, coarse preset (ecutwfc 25, q 4^3)


def test_a2f_dos_and_our_lambda_match_matdyn():
    qe = {round(r["sigma_Ry"], 4): r for r in parsers.read_matdyn_lambda(AL / "lambda")}
    assert len(qe) == 10
    for index, sigma in ((1, 0.005), (5, 0.025), (10, 0.05)):
        a2f = parsers.read_a2f_dos(AL / f"a2F.dos{index}")
        assert a2f.frequencies_ry.shape == a2f.total.shape
        ours = coupling_lambda(a2f.frequencies_ry, a2f.total)
        assert ours == pytest.approx(a2f.lambda_qe, rel=0.03)
        assert ours == pytest.approx(qe[sigma]["lambda"], rel=0.03)
    a2f = parsers.read_a2f_dos(AL / "a2F.dos5")
    assert omega_log(a2f.frequencies_ry * RY_TO_K, a2f.total) == pytest.approx(365.5, rel=0.01)


def test_frequencies_from_ph_and_matdyn(tmp_path):
    blocks = parsers.read_ph_frequencies((AL / "ph.out").read_text())
    assert len(blocks) == 8 and all(len(f) == 3 for _, f in blocks)
    assert np.allclose(blocks[0][0], 0.0)
    assert max(f.max() for _, f in blocks) == pytest.approx(340, abs=40)
    mesh = parsers.read_matdyn_freq(AL / "matdyn.freq")
    assert mesh.shape[1] == 3 and mesh.min() > -1.0
    # QE prints nks with i4: more than 9999 q-points come out as ****
    starred = re.sub(r"nks=\s*\d+", "nks=****", (AL / "matdyn.freq").read_text(), count=1)
    (tmp_path / "matdyn.freq").write_text(starred)
    assert np.array_equal(parsers.read_matdyn_freq(tmp_path / "matdyn.freq"), mesh)
    omega, dos = parsers.read_phonon_dos(AL / "phonon.dos")
    assert omega.shape == dos.shape and dos.min() >= 0


def test_q_grid_and_star_weights():
    grid, qpoints = parsers.read_dyn0(AL / "dyn0")
    assert grid == (4, 4, 4) and qpoints.shape == (8, 3)
    assert parsers.star_size(AL / "dyn5") == 24


def test_lambda_x_output():
    rows = parsers.read_lambda_x((AL / "lambda_x.out").read_text())
    assert len(rows) == 10
    assert rows[4]["sigma_Ry"] == pytest.approx(0.025)
    assert rows[4]["lambda"] == pytest.approx(0.348569)
    assert rows[4]["omega_log_K"] == pytest.approx(351.543)
    assert rows[4]["tc_K"] == pytest.approx(0.607)


def test_lambda_x_output_of_an_unstable_crystal_keeps_its_nan():
    # real lambda.x output of a crystal with imaginary modes: omega_log and Tc print as NaN
    rows = parsers.read_lambda_x((FIXTURES / "bmo_unstable" / "lambda_x.out").read_text())
    assert len(rows) == 10
    assert [round(r["sigma_Ry"], 3) for r in rows] == pytest.approx(
        [0.005 * i for i in range(1, 11)]
    )
    assert rows[1]["lambda"] == pytest.approx(-0.189355)
    assert rows[1]["dos_ef"] == pytest.approx(7.641565)
    assert all(np.isnan(r["omega_log_K"]) and np.isnan(r["tc_K"]) for r in rows)


def test_version_failure_and_relaxed_structure():
    relax = (AL / "relax.out").read_text()
    assert parsers.qe_version(relax) == "6.7MaX"
    assert parsers.qe_failure(relax) is None and parsers.relaxation_converged(relax)
    structure = parsers.read_relaxed_structure(AL / "relax.out")
    assert len(structure) == 1 and 15 < structure.volume < 17.5
    failed = (FIXTURES / "ph_failed.out").read_text()
    assert parsers.qe_failure(failed) == "phq_readin: El-ph needs a DeltaVscf file"
    assert "convergence NOT achieved" in parsers.qe_failure(
        "     convergence NOT achieved after 1 iterations: stopping\n"
    )
    assert parsers.qe_failure("Program PWSCF v.6.7 starts on\n") is not None


def test_magnetization_is_the_last_iteration_of_a_spin_polarised_run():
    text = """
     total magnetization       =     3.10 Bohr mag/cell
     absolute magnetization    =     3.20 Bohr mag/cell
     iteration #  2     ecut=    30.00 Ry     beta= 0.50
     total magnetization       =     2.21 Bohr mag/cell
     absolute magnetization    =     2.35 Bohr mag/cell
!    total energy              =    -329.0 Ry
"""
    assert parsers.magnetization(text) == (2.21, 2.35)
    assert parsers.magnetization("!    total energy              =    -39.0 Ry\n") is None


def test_ph_representations_counts_converged_ones(tmp_path):
    from tcdesign.verify.parsers import ph_representations

    log = tmp_path / "ph_q1.out"
    assert ph_representations(log) is None  # not written yet
    log.write_text("     Calculation of q =    0.0   0.0   0.0\n")
    assert ph_representations(log) is None  # the list of representations not yet printed
    log.write_text(
        "     There are    4 irreducible representations\n"
        "     Representation #   1 modes #   1   2\n     Convergence has been achieved \n"
        "     Representation #   2 modes #   3   4\n"
    )
    assert ph_representations(log) == (1, 4)
