"""``tcdesign run`` end to end on a few crystals: every stage's output, funnel counts, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tcdesign.cli import main
from tcdesign.pipeline.run import funnel_counts, run_pipeline
from tcdesign.pipeline.settings import make_run_settings
from tcdesign.screen import candidate

# a few crystals per method, a short Langevin schedule and a short relaxation: minutes, not hours
FAST = {
    "run": {"n": 3, "methods": ["cdvae", "substitution"], "seed": 1},
    "generate": {"levels": 5, "steps_per_level": 2, "opt_steps": 5, "batch_size": 4},
    "screen": {"prescreen_tc": 0.0, "workers": 1, "max_steps": 15},
}


def quiet(line: str) -> None:
    """Stage lines are not needed in the test log."""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run_pipeline(out, make_run_settings(FAST), progress=False, echo=quiet)
    return out


def test_every_stage_leaves_its_output(finished_run: Path) -> None:
    for method in ("cdvae", "substitution"):
        folder = finished_run / method
        generated = pd.read_csv(folder / "generated.csv", dtype={"id": str})
        assert len(generated) == 3
        assert all((folder / "structures" / f"{i}.cif").is_file() for i in generated.id)
        screened = pd.read_csv(folder / "screened.csv", dtype={"id": str})
        assert set(screened.id) == set(generated.id[generated.status == "ok"])
        for row in screened[screened.status == "ok"].itertuples():
            assert (folder / row.relaxed_cif).is_file()
    assert (finished_run / "candidates.csv").is_file()
    assert (finished_run / "report.html").stat().st_size > 10_000
    assert any((finished_run / "figures").glob("*.png"))


def test_funnel_counts_add_up(finished_run: Path) -> None:
    state = json.loads((finished_run / "run.json").read_text())
    assert state["finished"] and state["methods"] == ["cdvae", "substitution"]
    candidates = pd.read_csv(finished_run / "candidates.csv")
    passed = 0
    for method in ("cdvae", "substitution"):
        counts = state["funnel"][method]
        assert counts["generated"] == 3
        assert counts["generated"] >= counts["valid"] >= counts["relaxed"] >= counts["passed"]
        assert counts["verified"] == 0
        on_disk = funnel_counts(finished_run / method)
        assert {k: counts[k] for k in on_disk} == on_disk
        passed += counts["passed"]
    assert len(candidates) == passed
    assert list(candidates.tc) == sorted(candidates.tc, reverse=True)
    assert set(state["seconds"]) >= {"generate", "screen", "report"}


def test_rerun_of_a_finished_run_recomputes_nothing(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_relax(*args, **kwargs):
        raise AssertionError("a finished candidate was relaxed again")

    monkeypatch.setattr(candidate, "relax_structure", must_not_relax)
    before = (finished_run / "cdvae" / "screened.csv").read_text()
    run_pipeline(finished_run, make_run_settings(FAST), progress=False, echo=quiet)
    assert (finished_run / "cdvae" / "screened.csv").read_text() == before


def test_killed_during_screening_resumes_without_redoing_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_run_settings({**FAST, "run": {**FAST["run"], "methods": ["substitution"]}})
    real_relax = candidate.relax_structure
    calls: list[str] = []

    def killed_on_the_second(structure, **kwargs):
        calls.append(structure.composition.reduced_formula)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user's Ctrl-C, or a killed job
        return real_relax(structure, **kwargs)

    monkeypatch.setattr(candidate, "relax_structure", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path, settings, progress=False, echo=quiet)
    assert not (tmp_path / "report.html").exists()

    resumed: list[str] = []

    def counting(structure, **kwargs):
        resumed.append(structure.composition.reduced_formula)
        return real_relax(structure, **kwargs)

    monkeypatch.setattr(candidate, "relax_structure", counting)
    run_pipeline(tmp_path, settings, progress=False, echo=quiet)
    valid = funnel_counts(tmp_path / "substitution")["valid"]
    assert len(resumed) == valid - 1  # the candidate finished before the kill is not redone
    assert (tmp_path / "report.html").is_file()


def test_a_rerun_without_dft_or_report_leaves_no_stale_state(finished_run: Path) -> None:
    """A --verify 0 rerun drops an earlier invocation's list of candidates skipped for DFT, and
    a --no-report rerun says that report.html is the earlier one."""
    state_path = finished_run / "run.json"
    state = json.loads(state_path.read_text())
    state["skipped_verify"] = [{"id": "x", "formula": "Nb", "reason": "no pseudopotential"}]
    state_path.write_text(json.dumps(state))
    lines: list[str] = []
    settings = make_run_settings({**FAST, "run": {**FAST["run"], "report": False}})
    run_pipeline(finished_run, settings, progress=False, echo=lines.append)
    assert "skipped_verify" not in json.loads(state_path.read_text())
    assert any("report.html is from an earlier invocation" in line for line in lines)


def test_other_settings_into_the_same_folder_is_exit_2(
    finished_run: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["run", "--out", str(finished_run), "--seed", "7", "--quiet"])
    assert code == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "run.toml"
    config.write_text("[screen]\ntc_minimum = 3\n")
    assert main(["run", "--out", str(tmp_path / "out"), "--config", str(config)]) == 2
    assert "tc_minimum" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--out naming an existing file was 'internal error: FileExistsError' (exit 1)."""
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert main(["run", "--out", str(out), "--n", "1", "--quiet"]) == 2
    assert "notes.txt: cannot be the run folder" in capsys.readouterr().err
    assert out.read_text() == "mine"


def test_a_bug_inside_a_stage_is_exit_1_not_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ValueError raised anywhere in the pipeline was printed as an input error with
    exit status 2; only settings and the --out folder are the user's input."""

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr("tcdesign.pipeline.run.generate_stage", broken)
    assert main(["run", "--out", str(tmp_path / "out"), "--n", "1", "--quiet"]) == 1
    assert "internal error: ValueError: operands" in capsys.readouterr().err


def test_rule_flags_reach_the_screen_settings(tmp_path: Path, monkeypatch) -> None:
    """--magmom-max, --ehull-max and --hull-prototypes of 'tcdesign run' end up in the screen
    stage's settings."""
    seen = {}

    def stop(out, settings, progress=True):
        seen.update(settings.screen)
        raise KeyboardInterrupt

    monkeypatch.setattr("tcdesign.pipeline.run.run_pipeline", stop)
    argv = ["run", "--out", str(tmp_path / "out"), "--magmom-max", "0.5", "--ehull-max", "0.1"]
    assert main(argv + ["--hull-prototypes", "2", "--require-stable", "--quiet"]) == 130
    assert seen["magmom_max"] == 0.5 and seen["ehull_max"] == 0.1
    assert seen["hull_prototypes"] == 2 and seen["require_stable"] is True
    assert "phonons" not in seen  # the screen default (on)
    assert main(["run", "--out", str(tmp_path / "o2"), "--no-phonons", "--quiet"]) == 130
    assert seen["phonons"] is False


def test_fermi_dos_flags_reach_the_screen_settings(tmp_path: Path, monkeypatch) -> None:
    """--nef-min implies the N(E_F) stage; --pseudo-dir serves it as well as verify."""
    seen: list[dict] = []

    def stop(out, settings, progress=True):
        seen.append(dict(settings.screen))
        raise KeyboardInterrupt

    monkeypatch.setattr("tcdesign.pipeline.run.run_pipeline", stop)
    out = str(tmp_path / "out")
    assert main(["run", "--out", out, "--nef-min", "0.6", "--pseudo-dir", str(tmp_path)]) == 130
    assert main(["run", "--out", out, "--fermi-dos", "--quiet"]) == 130
    assert main(["run", "--out", out, "--quiet"]) == 130
    assert main(["run", "--out", out, "--dft-magmom-max", "0.05", "--quiet"]) == 130
    assert seen[3]["fermi_dos"] is True and seen[3]["dft_magmom_max"] == 0.05
    assert (seen[0]["fermi_dos"], seen[0]["nef_min"], seen[0]["pseudo_dir"]) == (
        True,
        0.6,
        str(tmp_path),
    )
    assert seen[1]["fermi_dos"] is True and "nef_min" not in seen[1]
    assert "fermi_dos" not in seen[2]
