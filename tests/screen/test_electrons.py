"""The optional DFT N(E_F) stage of screening: cache, failures, the nef rule, the CLI."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.cli import main
from tcdesign.screen import ScreenSettings, electrons, screen_records
from tcdesign.screen.electrons import CACHE_FILE, check_candidates
from tcdesign.verify import fermi
from tcdesign.verify.pseudo import DEBIAN_PSEUDO_DIR
from tests.screen.conftest import fcc_al, mgb2, rocksalt_nacl

HAVE_QE = shutil.which("pw.x") is not None and DEBIAN_PSEUDO_DIR.is_dir()


def fake_pseudo_dir(tmp_path, elements=("Al", "Mg", "B", "Nb")):
    folder = tmp_path / "pseudo"
    folder.mkdir(exist_ok=True)
    for element in elements:
        (folder / f"{element}.fake.UPF").write_text(
            f'<UPF version="2.0.1">\n<PP_HEADER element="{element}" pseudo_type="NC" '
            'functional="PBE" wfc_cutoff="30" rho_cutoff="120"/>\n</UPF>\n'
        )
    return folder


def stand_in(calls):
    def run(structure, pseudo_dir, work, pw_command="pw.x"):
        calls.append(structure.composition.reduced_formula)
        if structure.composition.reduced_formula == "Al":
            raise RuntimeError("N(E_F) scf failed: c_bands: eigenvalues not converged")
        work.mkdir(parents=True)
        (work / "tmp").mkdir()  # the scratch folder pw.x leaves behind
        return {"seconds": 1.0, "kpts": [4, 4, 4], "nef_0.05": 9.0, "nef_0.1": 9.0, "nef_0.2": 0.7}

    return run


def bcc_nb() -> Structure:
    return Structure(Lattice.cubic(3.3), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_results_are_cached_failures_are_reasons_and_scratch_is_removed(
    tmp_path, monkeypatch, capsys
):
    pseudo = fake_pseudo_dir(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(fermi, "fermi_dos", stand_in(calls))

    def moment(structure, pseudo_dir, work, pw_command="pw.x"):
        calls.append("spin " + structure.composition.reduced_formula)
        (work / "tmp").mkdir(exist_ok=True)
        if structure.composition.reduced_formula == "V":
            raise RuntimeError("spin (pw.x) failed: convergence NOT achieved")
        return {"magmom_abs": 0.31234, "magmom_total": 0.3, "seconds": 2.0}

    monkeypatch.setattr(fermi, "magnetic_moment", moment)
    out = tmp_path / "out"
    candidates = [
        ("mgb2", "f1", mgb2()),
        ("al", "f2", fcc_al(4.05)),
        ("nacl", "f3", rocksalt_nacl()),
        ("nb", "f4", bcc_nb()),
    ]
    results = check_candidates(candidates, out, pseudo, progress=False)
    # the larger cells first; NaCl has no pseudopotential; only Nb (d-block) is spin-polarised
    assert calls == ["Al", "MgB2", "Nb", "spin Nb"]
    assert results["mgb2"]["nef"] == 0.7 and results["mgb2"]["nef_error"] == ""
    assert results["mgb2"]["dft_magmom"] == 0.0 and results["nb"]["dft_magmom"] == 0.3123
    assert not (out / electrons.WORK_FOLDER / "nb" / "tmp").exists()
    assert (
        math.isnan(results["al"]["nef"])
        and "eigenvalues not converged" in results["al"]["nef_error"]
    )
    assert math.isnan(results["nacl"]["nef"]) and "Na" in results["nacl"]["nef_error"]
    # one line says how many lack pseudopotentials, for which elements, and what fixes it
    warning = capsys.readouterr().err
    assert "1 of 4 candidates cannot be computed" in warning
    assert "(no file for Cl, Na)" in warning and "tcdesign fetch-pseudos" in warning
    assert not (out / electrons.WORK_FOLDER / "mgb2" / "tmp").exists()
    lines = (out / CACHE_FILE).read_text().splitlines()
    # one line per scf: Nb's plain and spin-polarised ones are two
    assert sorted(json.loads(line)["id"] for line in lines) == ["al", "mgb2", "nb", "nb"]

    with (out / CACHE_FILE).open("a") as handle:
        handle.write('{"id": "half-wri')  # a run killed while writing
    calls.clear()
    again = check_candidates(candidates, out, pseudo, progress=False)
    assert calls == [] and again["mgb2"] == results["mgb2"]
    assert "1 of 4 candidates cannot be computed" in capsys.readouterr().err  # cached: not 4
    assert again["al"]["nef_error"] == results["al"]["nef_error"]
    # a failed spin-polarised scf keeps the N(E_F) of the first and says why
    vanadium = Structure(Lattice.cubic(3.0), ["V", "V"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    v = check_candidates(
        [("v", "f5", vanadium)], out, fake_pseudo_dir(tmp_path, ("V",)), progress=False
    )
    assert v["v"]["nef"] == 0.7 and math.isnan(v["v"]["dft_magmom"])
    assert "spin-polarised scf: spin (pw.x) failed: convergence NOT" in v["v"]["nef_error"]
    assert not (out / electrons.WORK_FOLDER / "v" / "tmp").exists()
    calls.clear()
    # a changed input structure (fingerprint) is computed again
    check_candidates([("mgb2", "f9", mgb2())], out, pseudo, progress=False)
    assert calls == ["MgB2"]


def test_the_spin_scf_runs_only_where_nef_reaches_spin_min(tmp_path, monkeypatch):
    """A candidate below the nef rule fails whatever its moment, so its spin-polarised scf (two
    to three times the plain one) is skipped; lowering the bar later runs only that scf."""
    pseudo = fake_pseudo_dir(tmp_path, ("Nb", "V", "Mg", "B"))
    nef = {"Nb": 1.5, "V": 0.3, "MgB2": 0.3}
    calls: list[str] = []

    def plain(structure, pseudo_dir, work, pw_command="pw.x"):
        formula = structure.composition.reduced_formula
        calls.append(formula)
        return {"seconds": 1.0, "kpts": [4, 4, 4], "nef_0.2": nef[formula]}

    def moment(structure, pseudo_dir, work, pw_command="pw.x"):
        calls.append("spin " + structure.composition.reduced_formula)
        return {"magmom_abs": 0.5, "magmom_total": 0.5, "seconds": 3.0}

    monkeypatch.setattr(fermi, "fermi_dos", plain)
    monkeypatch.setattr(fermi, "magnetic_moment", moment)
    vanadium = Structure(Lattice.cubic(3.0), ["V", "V"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    candidates = [("nb", "f1", bcc_nb()), ("v", "f2", vanadium), ("mgb2", "f3", mgb2())]
    out = tmp_path / "out"
    first = check_candidates(candidates, out, pseudo, spin_min=0.7, progress=False)
    assert sorted(calls) == ["MgB2", "Nb", "V", "spin Nb"]
    assert first["nb"]["dft_magmom"] == 0.5 and first["nb"]["spin_seconds"] == 3.0
    assert math.isnan(first["v"]["dft_magmom"]) and first["v"]["nef"] == 0.3
    assert first["v"]["nef_error"] == ""  # skipped, not failed
    assert first["mgb2"]["dft_magmom"] == 0.0  # no d or f shell: no scf needed
    calls.clear()
    assert check_candidates(candidates, out, pseudo, spin_min=0.7, progress=False) == first
    assert calls == []
    lower = check_candidates(candidates, out, pseudo, spin_min=0.2, progress=False)
    assert calls == ["spin V"] and lower["v"]["dft_magmom"] == 0.5
    assert lower["nb"] == first["nb"]


def test_cache_lines_holding_both_scfs_are_still_read(tmp_path, monkeypatch):
    """Before the spin-polarised scf was a step of its own, one cache line held both."""
    pseudo = fake_pseudo_dir(tmp_path)
    monkeypatch.setattr(fermi, "fermi_dos", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(fermi, "magnetic_moment", lambda *a, **k: pytest.fail("recomputed"))
    key = electrons._keys("f1", bcc_nb(), pseudo)["both"]
    old = {"nef": 1.2, "dft_magmom": 0.0, "nef_error": "", "nef_seconds": 5.0, "spin_seconds": 9.0}
    out = tmp_path / "out"
    out.mkdir()
    (out / CACHE_FILE).write_text(json.dumps({"id": "nb", "key": key, "result": old}) + "\n")
    assert check_candidates([("nb", "f1", bcc_nb())], out, pseudo, progress=False) == {"nb": old}


def test_the_rule_applies_only_with_the_stage():
    from tcdesign.screen.api import rule_failures
    from tcdesign.screen.settings import NEF_MIN

    with pytest.raises(ValueError, match="nef_min must be a finite number"):
        ScreenSettings(fermi_dos=True, nef_min=math.nan)
    assert ScreenSettings().nef_min == NEF_MIN and not ScreenSettings().fermi_dos
    row = {"tc": 10.0, "tc_std": 1.0, "e_form": -0.1, "gap": 0.0, "e_hull": 0.0, "nef": 0.1}
    assert rule_failures(row, ScreenSettings()) == []  # no stage, no rule
    assert rule_failures(row, ScreenSettings(fermi_dos=True)) == ["nef"]
    assert rule_failures(row, ScreenSettings(fermi_dos=True, nef_min=None)) == []
    magnet = {**row, "nef": 1.2, "dft_magmom": 0.6}
    strict = ScreenSettings(fermi_dos=True, dft_magmom_max=0.05)
    assert rule_failures(magnet, strict) == ["dft_magmom"]
    assert rule_failures({**magnet, "dft_magmom": 0.0}, strict) == []
    assert rule_failures({**magnet, "dft_magmom": math.nan}, strict) == ["dft_magmom"]
    assert rule_failures(magnet, ScreenSettings(dft_magmom_max=0.05)) == []  # no stage


def test_flags_reach_the_settings_and_missing_programs_exit_2(tmp_path, capsys, monkeypatch):
    import tcdesign.screen.api as api
    from tcdesign.screen.settings import NEF_MIN

    cif = tmp_path / "al.cif"
    fcc_al(4.05).to(filename=str(cif))
    seen = []
    monkeypatch.setattr(
        api,
        "screen_records",
        lambda records, out, settings, progress: seen.append(settings) or pd.DataFrame(),
    )
    out = str(tmp_path / "o")
    main(["screen", str(cif), "--out", out, "--nef-min", "0.6", "--pseudo-dir", "/p"])
    main(["screen", str(cif), "--out", out, "--fermi-dos"])
    main(["screen", str(cif), "--out", out, "--fermi-dos", "--nef-min", "none"])
    main(["screen", str(cif), "--out", out, "--nef-min", "none"])
    main(["screen", str(cif), "--out", out, "--dft-magmom-max", "0.05"])
    assert [(s.fermi_dos, s.nef_min, s.pseudo_dir) for s in seen] == [
        (True, 0.6, "/p"),
        (True, NEF_MIN, None),
        (True, None, None),
        (False, None, None),
        (True, NEF_MIN, None),
    ]
    assert seen[-1].dft_magmom_max == 0.05 and seen[0].dft_magmom_max is None
    monkeypatch.undo()
    monkeypatch.setenv("PATH", str(tmp_path))  # no pw.x
    code = main(["screen", str(cif), "--out", out, "--fermi-dos", "--no-relax", "--quiet"])
    assert code == 2 and "needs Quantum ESPRESSO's pw.x" in capsys.readouterr().err
    assert not (tmp_path / "o" / "screened.csv").exists()


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_real_scf_for_the_passing_candidate_and_the_nef_rule(candidates, tmp_path, monkeypatch):
    """MgB2 passes the paper's rules and gets a real pw.x scf; Al and NaCl fail them unchecked."""
    records = [r for r in candidates if r.id in ("al", "nacl", "mgb2")]
    settings = ScreenSettings(relax=False, phonons=False, fermi_dos=True, nef_min=None)
    table = screen_records(records, tmp_path, settings, progress=False)
    rows = {row.id: row for row in table.itertuples()}
    assert rows["mgb2"].passed and rows["mgb2"].nef_error == "" and rows["mgb2"].dft_magmom == 0
    assert 0.1 < rows["mgb2"].nef < 0.6  # DFT: about 0.24 states/eV/atom (0.71 per cell)
    assert math.isnan(rows["al"].nef) and math.isnan(rows["nacl"].nef)
    assert (tmp_path / "fermi_dos" / "mgb2" / "scf.out").is_file()

    def never(*args, **kwargs):
        raise AssertionError("a cached scf was computed again")

    monkeypatch.setattr(fermi, "fermi_dos", never)
    strict = ScreenSettings(relax=False, phonons=False, fermi_dos=True, nef_min=1.0)
    table = screen_records(records, tmp_path, strict, progress=False)
    row = table.set_index("id").loc["mgb2"]
    assert not row.passed and row.rules_failed == "nef"
    loose = ScreenSettings(relax=False, phonons=False, fermi_dos=True, nef_min=0.1)
    assert (
        screen_records(records, tmp_path, loose, progress=False).set_index("id").loc["mgb2"].passed
    )


def test_a_candidate_without_nef_fails_the_rule_only_if_it_passes_the_rest():
    from tcdesign.screen.api import rule_failures

    settings = ScreenSettings(fermi_dos=True, nef_min=0.5)
    base = {"tc": 10.0, "tc_std": 1.0, "e_form": -0.1, "gap": 0.0, "e_hull": 0.0}
    assert rule_failures({**base, "nef": 0.7}, settings) == []
    assert rule_failures({**base, "nef": 0.3}, settings) == ["nef"]
    assert rule_failures({**base, "nef": math.nan}, settings) == ["nef"]  # not computed
    assert rule_failures({**base, "tc": 1.0, "nef": math.nan}, settings) == ["tc"]
    assert rule_failures({**base, "tc": 1.0, "nef": 0.3}, settings) == ["tc", "nef"]


def test_jobs_pickle_for_worker_processes_and_dask(tmp_path):
    """Local pools and dask send jobs to other processes: job and function must pickle."""
    import pickle

    job = electrons.FermiJob("mgb2", mgb2(), str(tmp_path), str(tmp_path / "w"))
    back = pickle.loads(pickle.dumps(job))
    assert back.id == "mgb2" and back.structure == job.structure and back.work == job.work
    assert pickle.loads(pickle.dumps(electrons._run_job)) is electrons._run_job


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_two_local_workers_give_the_results_of_one(tmp_path):
    candidates = [("al", "f1", fcc_al(4.05).get_primitive_structure()), ("mgb2", "f2", mgb2())]
    one = check_candidates(candidates, tmp_path / "one", DEBIAN_PSEUDO_DIR, progress=False)
    two = check_candidates(
        candidates, tmp_path / "two", DEBIAN_PSEUDO_DIR, workers=2, progress=False
    )
    for key in ("al", "mgb2"):
        assert two[key]["nef"] == pytest.approx(one[key]["nef"], abs=1e-4)
        assert two[key]["nef_error"] == ""
