import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.verify.command import register
from tcdesign.verify.pseudo import DEBIAN_PSEUDO_DIR
from tcdesign.verify.settings import make_settings
from tcdesign.verify.workflow import StepRunner, verify
from tests.processes import survivors_of_killed_parent, wait_gone

FIXTURES = Path(__file__).parent / "fixtures"
HAVE_QE = shutil.which("pw.x") is not None and DEBIAN_PSEUDO_DIR.is_dir()


def fcc_al_conventional() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])


def fake_pseudo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pseudo"
    folder.mkdir()
    (folder / "Al.fake.UPF").write_text(
        '<UPF version="2.0.1">\n<PP_HEADER element="Al" pseudo_type="NC" functional="PZ" '
        'wfc_cutoff="0" rho_cutoff="0"/>\n</UPF>\n'
    )
    return folder


def fake_qe(tmp_path: Path, monkeypatch, script: str) -> None:
    """Put pw.x, ph.x, q2r.x and matdyn.x stand-ins (shell scripts) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("pw.x", "ph.x", "q2r.x", "matdyn.x"):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_missing_pw_x_is_a_clear_status(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = verify(fcc_al_conventional(), tmp_path / "run", pseudo_dir=fake_pseudo_dir(tmp_path))
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result.status == saved["status"] == "error"
    assert saved["error_kind"] == "qe_not_found" and "pw.x" in saved["error"]
    assert saved["pseudopotentials"]["Al"]["file"] == "Al.fake.UPF"
    assert (tmp_path / "run" / "structure_input.cif").exists()


def test_missing_pseudopotential_names_the_elements(tmp_path):
    structure = Structure(Lattice.cubic(3.0), ["Nb", "V"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    result = verify(structure, tmp_path / "run", pseudo_dir=fake_pseudo_dir(tmp_path))
    assert result.status == "error" and result.data["error_kind"] == "pseudopotential"
    assert "Nb" in result.error and "V" in result.error
    assert not (tmp_path / "run" / "qe").exists()  # nothing ran


def test_failing_qe_run_keeps_status_error_and_logs(tmp_path, monkeypatch):
    fake_qe(
        tmp_path, monkeypatch, 'echo "     convergence NOT achieved after 1 iterations: stopping"\n'
    )
    out = tmp_path / "run"
    result = verify(fcc_al_conventional(), out, pseudo_dir=fake_pseudo_dir(tmp_path))
    saved = json.loads((out / "result.json").read_text())
    assert saved["status"] == "error" and saved["failed_step"] == "relax"
    assert "convergence NOT achieved" in saved["error"] and saved["lambda"] is None
    assert (out / "qe" / "relax.in").exists() and (out / "qe" / "relax.out").exists()
    assert not (out / "qe" / "markers" / "relax.done").exists()
    assert result.data["error_kind"] == "qe_failed"


def test_timeout_is_reported(tmp_path, monkeypatch):
    fake_qe(tmp_path, monkeypatch, "exec /bin/sleep 30\n")
    settings = make_settings("coarse", timeout_s=0.5)
    start = time.perf_counter()
    result = verify(fcc_al_conventional(), tmp_path / "run", settings, fake_pseudo_dir(tmp_path))
    assert time.perf_counter() - start < 10
    assert result.data["error_kind"] == "timeout" and "timed out" in result.error


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tcdesign")
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_unusable_inputs_exit_2(tmp_path, capsys):
    assert (
        run_cli(
            [
                "verify",
                str(tmp_path / "x.cif"),
                "--out",
                str(tmp_path),
                "--config",
                str(tmp_path / "missing.toml"),
            ]
        )
        == 2
    )
    assert "cannot read TOML" in capsys.readouterr().err


@pytest.fixture(scope="module")
def al_run(tmp_path_factory):
    """One real coarse fcc-Al run through the CLI handler (ecutwfc 15 Ry as QE's Al example)."""
    if not HAVE_QE:
        pytest.skip("Quantum ESPRESSO (pw.x) is not installed")
    folder = tmp_path_factory.mktemp("al")
    cif = folder / "Al.cif"
    fcc_al_conventional().to(filename=str(cif))
    code = run_cli(["verify", str(cif), "--out", str(folder / "run"), "--ecutwfc", "15"])
    return code, folder


def test_real_al_end_to_end(al_run):
    code, folder = al_run
    result = json.loads((folder / "run" / "result.json").read_text())
    assert code == 0 and result["status"] == "ok", result.get("error")
    for key in ("lambda", "omega_log_K", "tc_K", "min_freq_cm1", "dynamically_stable"):
        assert result[key] is not None
    assert 0.2 < result["lambda"] < 0.5 and 250 < result["omega_log_K"] < 450
    assert result["dynamically_stable"] and result["min_freq_cm1"] > -10
    assert result["qe_version"].startswith("6") or result["qe_version"].startswith("7")
    assert result["pseudopotentials"]["Al"]["file"] == "Al.pz-vbc.UPF"
    assert len(result["broadenings"]) == 10 and result["n_q_points"] == 8
    assert set(result["timings_s"]) >= {"ph_q1", "ph_q8", "matdyn"}
    assert (folder / "run" / "alpha2F.csv").read_text().startswith("omega_cm1,omega_K,a2F_sigma")
    assert (folder / "run" / "phonon_dos.csv").exists()
    assert result["magnetic"] is None and result["magnetism_check"].startswith("not run")
    assert "magnetism" not in result["timings_s"]  # no d- or f-block element


def test_real_al_matches_lambda_x(al_run):
    _, folder = al_run
    result = json.loads((folder / "run" / "result.json").read_text())
    reference = {round(r["sigma_Ry"], 4): r for r in result["lambda_x"]}
    check = reference[round(result["headline_sigma_Ry"], 4)]
    assert result["lambda"] == pytest.approx(check["lambda"], rel=0.10)
    assert result["omega_log_K"] == pytest.approx(check["omega_log_K"], rel=0.10)


def test_real_al_rerun_skips_and_resumes(al_run):
    _, folder = al_run
    cif, out = folder / "Al.cif", folder / "run"
    before = json.loads((out / "result.json").read_text())
    assert run_cli(["verify", str(cif), "--out", str(out), "--ecutwfc", "15"]) == 0
    again = json.loads((out / "result.json").read_text())
    phonons = [f"ph_q{i}" for i in range(1, 9)]
    assert again["skipped_steps"] == [
        "relax",
        "scf_fit",
        "scf",
        *phonons,
        "q2r",
        "matdyn",
        "lambda_x",
    ]
    assert again["lambda"] == before["lambda"]
    # the QE time of the reused steps is still reported; this call's wall time is only its own
    assert again["qe_seconds"] == pytest.approx(before["qe_seconds"], abs=0.01)
    assert again["qe_seconds"] == pytest.approx(sum(before["timings_s"].values()), abs=0.01)
    (out / "qe" / "markers" / "matdyn.done").unlink()  # as if killed during matdyn
    assert run_cli(["verify", str(cif), "--out", str(out), "--ecutwfc", "15"]) == 0
    resumed = json.loads((out / "result.json").read_text())
    assert "ph_q8" in resumed["skipped_steps"] and "matdyn" not in resumed["skipped_steps"]
    assert resumed["lambda"] == pytest.approx(before["lambda"])
    # the scratch folder lost (another machine) with one q-point unfinished: the scf steps run
    # again, then only that q-point, and the result is the same
    shutil.rmtree(out / "qe" / "tmp")
    for name in ("markers/ph_q8.done", "dyn8", "markers/q2r.done", "markers/matdyn.done"):
        (out / "qe" / name).unlink()
    assert run_cli(["verify", str(cif), "--out", str(out), "--ecutwfc", "15"]) == 0
    rebuilt = json.loads((out / "result.json").read_text())
    assert rebuilt["status"] == "ok"
    assert set(phonons[:7]) <= set(rebuilt["skipped_steps"])
    assert not {"scf_fit", "scf", "ph_q8"} & set(rebuilt["skipped_steps"])
    assert rebuilt["lambda"] == pytest.approx(before["lambda"], rel=1e-3)


def test_many_structures_report_rows_and_go_on(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    Structure(Lattice.cubic(3.0), ["Nb"], [[0, 0, 0]]).to(filename=str(folder / "nb.cif"))
    (folder / "broken.cif").write_text("data_x\nnot a cif\n")
    out = tmp_path / "out"
    code = run_cli(
        ["verify", str(folder), "--out", str(out), "--pseudo-dir", str(fake_pseudo_dir(tmp_path))]
    )
    assert code == 0
    table = (out / "verify.csv").read_text().splitlines()
    assert table[0].startswith("id,formula,lambda,omega_log_K,tc_K,min_freq_cm1")
    rows = {line.split(",")[0]: line for line in table[1:]}
    assert set(rows) == {"nb", "broken"}
    assert "no pseudopotential" in rows["nb"] and ",error," in rows["broken"]
    assert json.loads((out / "nb" / "result.json").read_text())["status"] == "error"


def test_interrupt_ends_the_running_qe_step(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM turned into an interrupt by the CLI) while a QE step runs ends that step:
    QE runs in its own session, so without this it would go on as an orphan."""
    import os
    import signal
    import threading

    pid_file = tmp_path / "qe.pid"
    fake_qe(tmp_path, monkeypatch, f"echo $$ > {pid_file}\nexec /bin/sleep 60\n")

    def interrupt_once_qe_runs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pid_file.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, whatever an earlier test or library installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_once_qe_runs, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            verify(fcc_al_conventional(), tmp_path / "run", pseudo_dir=fake_pseudo_dir(tmp_path))
    finally:
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended and reaped, not left sleeping


def test_relaxation_at_its_step_limit_is_finished_not_failed(tmp_path, monkeypatch):
    """pw.x exits with status 3 when a vc-relax reaches nstep, after JOB DONE: the relaxation
    keeps its last geometry; any other non-zero exit is still a failure."""
    from tcdesign.verify.workflow import QEError, StepRunner

    fake_qe(
        tmp_path,
        monkeypatch,
        'echo "     The maximum number of steps has been reached."\necho "   JOB DONE."\nexit 3\n',
    )
    runner = StepRunner(tmp_path / "qe")
    output = runner.run("relax", "pw.x", "&control\n/\n", step_limit_ok=True)
    assert "maximum number of steps" in output and (runner.markers / "relax.done").exists()
    with pytest.raises(QEError, match="exit status 3"):
        StepRunner(tmp_path / "qe2").run("scf", "pw.x", "&control\n/\n")


def test_an_interrupted_step_runs_again_from_its_start(tmp_path, monkeypatch):
    """A step whose earlier attempt was killed (its ``.started`` marker holds the same hash) runs
    again with the same input, never ph.x's recover (unreliable for one q-point in QE 6.7), and
    the files it writes as it goes are removed first."""
    from tcdesign.verify.workflow import StepRunner, _hash

    fake_qe(tmp_path, monkeypatch, 'echo "   JOB DONE."\n')
    messages: list[str] = []
    runner = StepRunner(tmp_path / "qe", report=messages.append)
    fresh = "&inputph\n/\n"
    (runner.markers / "ph_q2.started").write_text(_hash(runner.chain, fresh))  # a killed attempt
    (runner.workdir / "dyn2").write_text("partial")
    output = runner.run("ph_q2", "ph.x", fresh, outputs=("dyn2",))
    assert "JOB DONE" in output and (runner.workdir / "ph_q2.in").read_text() == fresh
    assert not (runner.workdir / "dyn2").exists()
    assert any("interrupted earlier, started again" in m for m in messages)
    assert (runner.markers / "ph_q2.done").exists()
    assert not (runner.markers / "ph_q2.started").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_qe_ends_when_its_parent_is_killed_outright(tmp_path, monkeypatch):
    """QE runs in its own session (so a timeout can end mpirun's ranks); a parent killed with
    SIGKILL cannot clean up, so the kernel must end QE with it."""
    pid_file = tmp_path / "qe.pid"
    fake_qe(tmp_path, monkeypatch, f"echo $$ > {pid_file}\nexec /bin/sleep 60\n")
    script = (
        "from pathlib import Path\n"
        "from tcdesign.verify.workflow import StepRunner\n"
        f"StepRunner(Path({str(tmp_path / 'qe')!r})).run('scf', 'pw.x', '&control\\n/\\n')\n"
    )
    assert survivors_of_killed_parent(script, pid_file) == []


def test_a_branch_step_leaves_the_hashes_of_the_later_steps_alone(tmp_path, monkeypatch):
    """The magnetism check is a side branch: a run that adds it (a run started before the check
    existed, then resumed) must not compute its finished scf and phonons again."""
    fake_qe(tmp_path, monkeypatch, "cat > /dev/null\necho '   JOB DONE.'\n")

    def markers(with_branch: bool) -> dict[str, str]:
        runner = StepRunner(tmp_path / f"run_{with_branch}")
        runner.run("relax", "pw.x", "relax input")
        if with_branch:
            runner.run("magnetism", "pw.x", "spin input", branch=True)
        runner.run("scf", "pw.x", "scf input")
        folder = runner.markers
        return {p.stem: json.loads(p.read_text())["hash"] for p in folder.glob("*.done")}

    plain, branched = markers(False), markers(True)
    assert set(branched) == {"relax", "magnetism", "scf"}
    assert branched["scf"] == plain["scf"] and branched["relax"] == plain["relax"]


@pytest.mark.skipif(not HAVE_QE, reason="Quantum ESPRESSO (pw.x) is not installed")
def test_real_ferromagnetic_iron_is_reported_magnetic_without_phonons(tmp_path, capsys):
    """bcc Fe keeps its moment in the spin-polarised check (cheap grids: about 3 Bohr
    magnetons here, 2.2 converged), so it gets status 'magnetic' and ph.x never runs."""
    cif = tmp_path / "Fe.cif"
    Structure(Lattice.cubic(2.83), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(cif))
    out = tmp_path / "run"
    argv = ["verify", str(cif), "--out", str(out), "--no-relax", "--k-spacing", "0.7"]
    code = run_cli(argv + ["--ecutwfc", "30", "--ecutrho", "240"])
    assert code == 0
    saved = json.loads((out / "result.json").read_text())
    assert saved["status"] == "magnetic" and saved["error_kind"] == "magnetic"
    assert saved["magnetic"] is True and saved["magnetization_muB"]["absolute_per_atom"] > 1.0
    assert saved["tc_K"] is None and "magnetic" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "qe" / "markers").glob("*.done")) == ["magnetism.done"]
    assert not (out / "qe" / "ph.in").exists()
    assert not list((out / "qe" / "tmp").glob("qe_spin*"))  # its scratch files are removed


def test_a_transition_metal_without_a_moment_goes_on_to_the_phonons(tmp_path, monkeypatch):
    """Nb keeps no moment in the spin-polarised check (stand-in QE prints 0.01 Bohr magnetons):
    the run goes past it; with the check off it is not run at all."""
    fake_qe(
        tmp_path,
        monkeypatch,
        "cat > /dev/null\necho '     total magnetization = 0.00 Bohr mag/cell'\n"
        "echo '     absolute magnetization = 0.01 Bohr mag/cell'\necho '   JOB DONE.'\n",
    )
    pseudo = fake_pseudo_dir(tmp_path)
    (pseudo / "Nb.fake.UPF").write_text(
        (pseudo / "Al.fake.UPF").read_text().replace('element="Al"', 'element="Nb"')
    )
    nb = Structure(Lattice.cubic(3.3), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    result = verify(nb, tmp_path / "run", make_settings("coarse", relax=False), pseudo)
    assert result.data["magnetic"] is False
    assert result.data["magnetization_muB"]["absolute_per_atom"] == pytest.approx(0.01)
    assert result.status == "error"  # the stand-ins write no phonons, but every step ran
    assert {"magnetism", "scf_fit", "scf", "ph_q1"} <= set(result.data["timings_s"])
    off = make_settings("coarse", relax=False, magnetism_check=False)
    result = verify(nb, tmp_path / "off", off, pseudo)
    assert result.data["magnetic"] is None and "magnetism" not in result.data["timings_s"]


FAKE_QE = """\
echo "$(/usr/bin/basename "$0") $2" >> ../calls.log
case "$0" in
*pw.x)  /bin/mkdir -p tmp/qe.save; /bin/touch tmp/qe.save/data-file-schema.xml tmp/qe.a2Fsave;;
*ph.x)  q=$(/bin/sed -n 's/ *start_q = *//p' "$2")
        d=$(/bin/sed -n "s/ *outdir = '\\(.*\\)'/\\1/p" "$2")
        [ -f "$d/qe.save/data-file-schema.xml" ] || { echo "no scf in $d"; exit 1; }
        [ -f ../ph_sleep ] && /bin/sleep "$(/bin/cat ../ph_sleep)"
        printf '   2   2   2\\n   3\\n 0.0 0.0 0.0\\n 0.5 0.0 0.0\\n 0.5 0.5 0.0\\n' > dyn0
        echo "q-point $q" > dyn$q; /bin/mkdir -p elph_dir; echo x > elph_dir/a2Fq2r.51.$q;;
esac
echo '   JOB DONE.'
"""


def fake_run(tmp_path: Path, lines: list[str] | None = None):
    """verify on fcc Al with stand-ins: pw.x writes the scratch files ph.x needs, ph.x writes a
    list of 3 q-points and the files of the one it is given (start_q); nothing is summarised,
    so the run ends in an error after the phonons."""
    settings = make_settings("coarse", relax=False)
    report = lines.append if lines is not None else None
    pseudo = tmp_path / "pseudo"
    if not pseudo.is_dir():
        fake_pseudo_dir(tmp_path)
    return verify(fcc_al_conventional(), tmp_path / "run", settings, pseudo, report=report)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "run" / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_ph_runs_one_q_point_at_a_time_and_reports_each(tmp_path, monkeypatch):
    """Each irreducible q-point is its own ph.x run and step (start_q = last_q), so a finished
    q-point survives anything that happens to the rest; progress is reported per q-point."""
    fake_qe(tmp_path, monkeypatch, FAKE_QE)
    lines: list[str] = []
    fake_run(tmp_path, lines)
    assert calls(tmp_path)[:5] == [
        "pw.x scf_fit.in",
        "pw.x scf.in",
        "ph.x ph_q1.in",
        "ph.x ph_q2.in",
        "ph.x ph_q3.in",
    ]
    qe = tmp_path / "run" / "qe"
    for i in (1, 2, 3):
        text = (qe / f"ph_q{i}.in").read_text()
        assert f"start_q = {i}\n" in text and f"last_q = {i}\n" in text and "recover" not in text
        assert (qe / f"dyn{i}").read_text() == f"q-point {i}\n"
    done = [line for line in lines if line.startswith("ph: ")]
    assert done == [f"ph: {i} of 3 q-points done" for i in (1, 2, 3)]
    assert "ph_q2 (ph.x) started" in lines and any(x.startswith("ph_q3 finished in") for x in lines)
    fake_run(tmp_path)  # everything reused; only q2r onwards runs again
    assert not [c for c in calls(tmp_path) if c.startswith(("pw.x", "ph.x"))]


def test_lost_scratch_reruns_the_scf_and_only_the_missing_q_points(tmp_path, monkeypatch):
    """A run folder without qe/tmp (a new machine, a purged cluster scratch) with q-point 3
    unfinished: scf_fit and scf run again, then ph.x for q-point 3 only."""
    fake_qe(tmp_path, monkeypatch, FAKE_QE)
    fake_run(tmp_path)
    calls(tmp_path)
    qe = tmp_path / "run" / "qe"
    shutil.rmtree(qe / "tmp")
    (qe / "markers" / "ph_q3.done").unlink()
    lines: list[str] = []
    result = fake_run(tmp_path, lines)
    assert calls(tmp_path)[:3] == ["pw.x scf_fit.in", "pw.x scf.in", "ph.x ph_q3.in"]
    assert any(x.startswith("ph_q3: the scf scratch files are not in") for x in lines)
    assert {"ph_q1", "ph_q2"} <= set(result.data["skipped_steps"])
    shutil.rmtree(qe / "tmp")  # every q-point finished: the scratch is not needed again
    fake_run(tmp_path)
    assert not [c for c in calls(tmp_path) if c.startswith(("pw.x", "ph.x"))]


def test_a_fresh_q_point_run_removes_only_its_own_files_of_an_earlier_run(tmp_path, monkeypatch):
    """A q-point run from the start (its input changed, or no restart to recover) removes that
    q-point's dynamical matrix and electron-phonon files of an earlier run, not the others'."""
    fake_qe(tmp_path, monkeypatch, "/bin/sleep 0.1\necho '   JOB DONE.'\n")
    workdir = tmp_path / "qe"
    (workdir / "elph_dir").mkdir(parents=True)
    names = [
        "dyn1",
        "dyn2",
        "dyn12",
        "elph_dir/a2Fq2r.51.2",
        "elph_dir/a2Fq2r.51.1",
        "elph_dir/elph.inp_lambda.2",
        "elph_dir/a2Fmatdyn.62",
    ]
    for name in names:
        (workdir / name).write_text("old")
    runner = StepRunner(workdir)
    runner.run("ph_q2", "ph.x", "&inputph\n/\n", outputs=("dyn2", "elph_dir/*.2"))
    left = sorted(n for n in names if (workdir / n).exists())
    assert left == ["dyn1", "dyn12", "elph_dir/a2Fmatdyn.62", "elph_dir/a2Fq2r.51.1"]


def test_a_run_folder_with_one_whole_grid_ph_run_is_reused(tmp_path, monkeypatch):
    """Run folders from before the split hold one finished whole-grid ph.x step: it is reused,
    and the steps after it keep their hashes (nothing finished is computed again)."""
    from tcdesign.verify import inputs
    from tcdesign.verify.workflow import _hash

    fake_qe(tmp_path, monkeypatch, FAKE_QE)
    fake_run(tmp_path)
    calls(tmp_path)
    qe = tmp_path / "run" / "qe"
    q2r_hash = json.loads((qe / "markers" / "q2r.done").read_text())["hash"]
    settings = make_settings("coarse", relax=False)
    ph_in = inputs.ph_input(
        settings, json.loads((tmp_path / "run" / "result.json").read_text())["grids"]["q"]
    )
    scf_hash = json.loads((qe / "markers" / "scf.done").read_text())["hash"]
    for marker in (qe / "markers").glob("ph_q*.done"):
        marker.unlink()
    (qe / "markers" / "ph.done").write_text(json.dumps({"hash": _hash(scf_hash, ph_in)}))
    (qe / "ph.out").write_text("   JOB DONE.\n")
    result = fake_run(tmp_path)
    assert not [c for c in calls(tmp_path) if c.startswith(("pw.x", "ph.x"))]
    assert "ph" in result.data["skipped_steps"] and "q2r" in result.data["skipped_steps"]
    assert json.loads((qe / "markers" / "q2r.done").read_text())["hash"] == q2r_hash


def test_verify_cli_prints_progress_unless_quiet(tmp_path, monkeypatch, capsys):
    fake_qe(tmp_path, monkeypatch, "exit 1\n")
    cif = tmp_path / "Al.cif"
    fcc_al_conventional().to(filename=str(cif))
    pseudo = str(fake_pseudo_dir(tmp_path))
    run_cli(["verify", str(cif), "--out", str(tmp_path / "a"), "--pseudo-dir", pseudo])
    err = capsys.readouterr().err
    assert "verify Al: relax (pw.x) started" in err and err.startswith("[")
    run_cli(["verify", str(cif), "--out", str(tmp_path / "b"), "--pseudo-dir", pseudo, "--quiet"])
    assert "started" not in capsys.readouterr().err
    folder = tmp_path / "many"
    folder.mkdir()
    for name in ("x", "y"):
        fcc_al_conventional().to(filename=str(folder / f"{name}.cif"))
    run_cli(["verify", str(folder), "--out", str(tmp_path / "c"), "--pseudo-dir", pseudo])
    err = capsys.readouterr().err
    assert "verify x: relax (pw.x) started" in err
    assert "verify: y error; 2 of 2 done (0 ok, 0 magnetic, 2 failed)" in err


def test_a_run_folder_reuses_its_steps_when_the_pseudopotentials_move(tmp_path, monkeypatch):
    """The same pseudopotential files in another folder (a run copied to another machine)
    reuse every finished step; a changed file computes them again."""
    fake_qe(tmp_path, monkeypatch, FAKE_QE)
    fake_run(tmp_path)
    calls(tmp_path)
    moved = tmp_path / "elsewhere"
    (tmp_path / "pseudo").rename(moved)
    settings = make_settings("coarse", relax=False)
    verify(fcc_al_conventional(), tmp_path / "run", settings, moved)
    assert not [c for c in calls(tmp_path) if c.startswith(("pw.x", "ph.x"))]
    upf = moved / "Al.fake.UPF"
    upf.write_text(upf.read_text().replace('functional="PZ"', 'functional="PZ" '))
    verify(fcc_al_conventional(), tmp_path / "run", settings, moved)
    assert calls(tmp_path)[0] == "pw.x scf_fit.in"


def test_q_points_at_once_give_the_steps_of_one_at_a_time(tmp_path, monkeypatch):
    """--q-workers 2: the q-points after the first run two at a time, each on a copy of the
    scf scratch (removed when done); their markers are those of a one-at-a-time run, so either
    way reuses the other's finished q-points."""
    fake_qe(tmp_path, monkeypatch, FAKE_QE)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ph_sleep").write_text("0.5")
    settings = make_settings("coarse", relax=False, q_workers=2)
    fake_pseudo_dir(tmp_path)
    lines: list[str] = []
    verify(
        fcc_al_conventional(), tmp_path / "run", settings, tmp_path / "pseudo", report=lines.append
    )
    qe = tmp_path / "run" / "qe"
    assert "outdir = 'tmp_q2'" in (qe / "ph_q2.in").read_text()
    assert "outdir = 'tmp'" in (qe / "ph_q1.in").read_text()
    assert sorted(p.name for p in qe.glob("tmp*")) == ["tmp"]  # the copies are removed
    assert lines.index("ph_q3 (ph.x) started") < min(
        i for i, line in enumerate(lines) if line.startswith("ph_q2 finished")
    )  # q-points 2 and 3 ran at the same time
    assert [x for x in lines if x.startswith("ph: ")][-1] == "ph: 3 of 3 q-points done"
    at_once = {p.name: p.read_text() for p in (qe / "markers").glob("ph_q*.done")}
    calls(tmp_path)
    (tmp_path / "run" / "ph_sleep").unlink()
    fake_run(tmp_path)  # one at a time: everything reused
    assert not [c for c in calls(tmp_path) if c.startswith(("pw.x", "ph.x"))]
    (qe / "markers" / "ph_q2.done").unlink()
    shutil.rmtree(qe / "tmp")
    result = fake_run(tmp_path)
    assert calls(tmp_path)[:3] == ["pw.x scf_fit.in", "pw.x scf.in", "ph.x ph_q2.in"]
    one_by_one = {p.name: p.read_text() for p in (qe / "markers").glob("ph_q*.done")}
    assert {k: json.loads(v)["hash"] for k, v in one_by_one.items()} == {
        k: json.loads(v)["hash"] for k, v in at_once.items()
    }
    assert "ph_q3" in result.data["skipped_steps"]


def test_a_failed_q_point_lets_the_others_finish(tmp_path, monkeypatch):
    """With q-points at once, one failing q-point is the run's error, after the others end."""
    fails = 'case "$0" in *ph.x) /bin/grep -q \'start_q = 2\' "$2" && exit 1;; esac\n'
    script = FAKE_QE.replace('case "$0" in', fails + 'case "$0" in', 1)
    assert script != FAKE_QE
    fake_qe(tmp_path, monkeypatch, script)
    settings = make_settings("coarse", relax=False, q_workers=2)
    result = verify(fcc_al_conventional(), tmp_path / "run", settings, fake_pseudo_dir(tmp_path))
    assert result.status == "error" and result.data["failed_step"] == "ph_q2"
    assert (tmp_path / "run" / "qe" / "markers" / "ph_q3.done").exists()


def test_an_interrupt_ends_every_q_point_running_at_once(tmp_path, monkeypatch):
    """Ctrl-C while q-points run at once ends all of them, not only the one a thread waits on."""
    import os
    import signal
    import threading

    sleeper = 'case "$0" in *ph.x) /bin/grep -q \'start_q = 1\' "$2" || '
    sleeper += "{ echo $$ > ../pid.$(/bin/sed -n 's/ *start_q = *//p' \"$2\"); "
    sleeper += "exec /bin/sleep 60; };; esac\n"
    fake_qe(tmp_path, monkeypatch, FAKE_QE.replace('case "$0" in', sleeper + 'case "$0" in', 1))
    run = tmp_path / "run"

    def interrupt_once_both_run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(run.glob("pid.*"))) < 2:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_once_both_run, daemon=True)
    watcher.start()
    settings = make_settings("coarse", relax=False, q_workers=2)
    pseudo = fake_pseudo_dir(tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):
            verify(fcc_al_conventional(), run, settings, pseudo)
    finally:
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    pids = [int(p.read_text()) for p in run.glob("pid.*")]
    assert len(pids) == 2
    assert wait_gone(pids, timeout=10) == []
    # resumed one at a time: the killed q-points start again, and their scratch copies go
    fake_qe(tmp_path, monkeypatch, FAKE_QE)
    lines: list[str] = []
    settings = make_settings("coarse", relax=False)
    verify(fcc_al_conventional(), run, settings, pseudo, report=lines.append)
    assert "ph: 3 of 3 q-points done" in lines  # (the stand-ins stop the run after q2r)
    assert "ph_q2 (ph.x) interrupted earlier, started again" in lines
    assert sorted(p.name for p in (run / "qe").glob("tmp*")) == ["tmp"]


def test_a_running_q_point_reports_its_representations(tmp_path, monkeypatch):
    """A q-point can take an hour: each irreducible representation ph.x finishes is a line."""
    fake_qe(
        tmp_path,
        monkeypatch,
        "echo '     There are    3 irreducible representations'\n"
        "for i in 1 2 3; do /bin/sleep 0.4; echo '     Convergence has been achieved '; done\n"
        "/bin/sleep 0.4\necho '   JOB DONE.'\n",
    )
    lines: list[str] = []
    runner = StepRunner(tmp_path / "qe", report=lines.append, poll_s=0.1)
    runner.run("ph_q2", "ph.x", "&inputph\n/\n")
    progress = [line for line in lines if "representations done" in line]
    counts = [int(line.split()[1]) for line in progress]
    assert counts == sorted(set(counts)) and counts[-1] == 3 and len(counts) >= 2
    assert all(line.startswith("ph_q2: ") and "of 3 representations" in line for line in progress)
    lines.clear()
    StepRunner(tmp_path / "qe2", report=lines.append, poll_s=0.1).run("scf", "pw.x", "x")
    assert not [line for line in lines if "representations" in line]  # ph.x q-points only


def test_q_point_progress_estimates_the_time_to_go(tmp_path):
    """Once q-points take minutes, each progress line says roughly how long the rest will take,
    from the mean time of the q-points finished so far and the q-points run at once."""
    from tcdesign.verify.workflow import _q_progress

    runner = StepRunner(tmp_path / "qe")
    runner.timings.update({"scf": 500.0, "ph_q1": 300.0})
    assert _q_progress(runner, 1, 10, 1) == "ph: 1 of 10 q-points done"  # Gamma alone: no guess
    runner.timings.update({"ph_q2": 600.0, "ph_q3": 1200.0})
    assert _q_progress(runner, 3, 10, 1) == (
        "ph: 3 of 10 q-points done (about 1.8 h to go at 15.0 min per q-point)"
    )
    assert "about 60.0 min to go" in _q_progress(runner, 3, 10, 2)
    assert _q_progress(runner, 10, 10, 1) == "ph: 10 of 10 q-points done"
    runner.timings.update({"ph_q2": 2.0, "ph_q3": 3.0})  # seconds: no estimate worth a line
    assert _q_progress(runner, 3, 10, 1) == "ph: 3 of 10 q-points done"


UNSTABLE_AT_Q2 = (
    'case "$0" in *ph.x) f=100.0; /bin/grep -q \'start_q = 2\' "$2" && f=-85.0\n'
    "  printf '     Diagonalizing the dynamical matrix\\n\\n     q = (    0.5 0.0 0.0 ) \\n\\n"
    '     freq (    1) =       1.0 [THz] =     %s [cm-1]\\n\' "$f";; esac\n'
)


@pytest.mark.parametrize("q_workers", [1, 2])
def test_stop_if_unstable_skips_the_rest_and_a_rerun_without_it_continues(
    tmp_path, monkeypatch, q_workers
):
    """With stop_if_unstable, a q-point with a mode below -10 cm^-1 ends the phonons: status
    'unstable' with the lowest frequency, the q-points not yet started are not computed, and a
    rerun without the setting continues from the finished ones."""
    fake_qe(
        tmp_path,
        monkeypatch,
        FAKE_QE.replace("echo '   JOB DONE.'", UNSTABLE_AT_Q2, 1) + "echo '   JOB DONE.'\n",
    )
    pseudo = fake_pseudo_dir(tmp_path)
    settings = make_settings("coarse", relax=False, stop_if_unstable=True, q_workers=q_workers)
    result = verify(fcc_al_conventional(), tmp_path / "run", settings, pseudo)
    assert result.status == "unstable", result.error
    assert "q-point 2 of 3" in result.error and "-85.0 cm^-1" in result.error
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["dynamically_stable"] is False and saved["min_freq_cm1"] == -85.0
    assert saved["unstable_q_point"] == 2 and saved["tc_K"] is None
    ran = calls(tmp_path)
    assert not [c for c in ran if c.startswith(("q2r.x", "matdyn.x"))]
    if q_workers == 1:
        assert "ph.x ph_q3.in" not in ran and saved["q_points_computed"] == 2
    settings = make_settings("coarse", relax=False, q_workers=q_workers)
    verify(fcc_al_conventional(), tmp_path / "run", settings, pseudo)
    ph = [c for c in calls(tmp_path) if c.startswith("ph.x")]
    assert "ph.x ph_q1.in" not in ph and "ph.x ph_q2.in" not in ph
    assert (tmp_path / "run" / "qe" / "markers" / "ph_q3.done").exists()


def test_q_point_min_frequency_leaves_out_the_acoustic_modes_at_gamma():
    from tcdesign.verify.workflow import q_point_min_frequency

    def block(q: str, freqs: list[float]) -> str:
        lines = [
            f"     freq ({i:5d}) =   0.0 [THz] = {f:12.4f} [cm-1]" for i, f in enumerate(freqs)
        ]
        return (
            "     Diagonalizing the dynamical matrix\n\n     q = ( "
            + q
            + " ) \n\n"
            + "\n".join(lines)
        )

    gamma = block("0.0 0.0 0.0", [-30.0, -2.0, 1.0, 150.0])
    assert q_point_min_frequency(gamma) == 150.0
    assert q_point_min_frequency(gamma + block("0.5 0.0 0.0", [-40.0, 90.0])) == -40.0
    assert q_point_min_frequency("no frequencies") == float("inf")


def test_verify_cli_stop_if_unstable(tmp_path, monkeypatch, capsys):
    """--stop-if-unstable reaches the settings; the per-structure tally and the summary count
    the unstable crystal on its own."""
    fake_qe(
        tmp_path,
        monkeypatch,
        FAKE_QE.replace("echo '   JOB DONE.'", UNSTABLE_AT_Q2, 1) + "echo '   JOB DONE.'\n",
    )
    folder = tmp_path / "cifs"
    folder.mkdir()
    for name in ("x", "y"):
        fcc_al_conventional().to(filename=str(folder / f"{name}.cif"))
    pseudo = str(fake_pseudo_dir(tmp_path))
    out = tmp_path / "out"
    args = ["verify", str(folder), "--out", str(out), "--pseudo-dir", pseudo, "--no-relax"]
    run_cli([*args, "--stop-if-unstable"])
    captured = capsys.readouterr()
    assert "verify: y unstable; 2 of 2 done (0 ok, 0 magnetic, 2 unstable, 0 failed)" in (
        captured.err
    )
    assert "0 verified, 0 magnetic (no phonons), 2 unstable (phonons stopped), 0 failed" in (
        captured.out
    )
    saved = json.loads((out / "x" / "result.json").read_text())
    assert saved["settings"]["stop_if_unstable"] is True


def test_negative_zeros_do_not_make_a_finished_step_run_again(tmp_path, monkeypatch):
    """Which sign a coordinate of zero prints with is rounding noise (another numpy, another
    CPU): an input that differs only there reuses the step, also in a run folder whose markers
    were hashed with the sign (before this rule), where the input on disk proves what ran."""
    from tcdesign.verify.workflow import StepRunner, _hash, unsigned_zeros

    assert unsigned_zeros("N -0.0000 -0.00 -0 -0.001 x-0.0 1e-0.0") == (
        "N 0.0000 0.00 0 -0.001 x-0.0 1e-0.0"
    )
    fake_qe(tmp_path, monkeypatch, "cat > /dev/null\necho '   JOB DONE.'\n")
    old = "pseudo_dir = '/old/pseudo'\nMn 0.0000 -0.0000 2.8\nN 0.0000 0.0000 4.6\n"
    new = "pseudo_dir = '/new/pseudo'\nMn 0.0000 0.0000 2.8\nN 0.0000 -0.0000 4.6\n"
    runner = StepRunner(tmp_path / "qe")
    runner.aliases["'/new/pseudo'"] = "pseudopotentials abc"
    # a folder from before the rule: the marker hashes the input as it was, signs included
    (runner.workdir / "relax.in").write_text(old)
    (runner.workdir / "relax.out").write_text("JOB DONE")
    as_before = old.replace("'/old/pseudo'", "pseudopotentials abc")
    legacy = _hash("", as_before)
    (runner.markers / "relax.done").write_text(json.dumps({"hash": legacy, "seconds": 5}))
    (runner.markers / "scf.done").write_text(json.dumps({"hash": _hash(legacy, "scf")}))
    (runner.workdir / "scf.out").write_text("JOB DONE")
    runner.run("relax", "pw.x", new)
    runner.run("scf", "pw.x", "scf")
    assert runner.skipped == ["relax", "scf"]
    # other pseudopotentials, or another coordinate, run it again
    for aliases, text in (({"'/new/pseudo'": "pseudopotentials xyz"}, new), ({}, new + "X")):
        other = StepRunner(tmp_path / "qe")
        other.aliases.update(aliases or runner.aliases)
        assert not other.done("relax", text)
    # a step run now is known by its unsigned input: either sign reuses it
    fresh = StepRunner(tmp_path / "fresh")
    fresh.run("scf", "pw.x", "Mn -0.0 0.5\n")
    again = StepRunner(tmp_path / "fresh")
    assert again.done("scf", "Mn 0.0 0.5\n") and again.done("scf", "Mn -0.0 0.5\n")
