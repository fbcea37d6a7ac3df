"""``tcdesign screen`` per SPEC: columns, bad rows reported, exit codes, help."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter

from tcdesign.cli import main
from tests.screen.conftest import fcc_al, mgb2


@pytest.fixture()
def csv_input(tmp_path) -> str:
    frame = pd.DataFrame(
        {
            "material_id": ["al", "garbage"],
            "cif": [str(CifWriter(fcc_al(4.1))), "data_x\n_cell_length_a 3\n"],
        }
    )
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_screen_csv_with_a_bad_row(csv_input, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["screen", csv_input, "--out", str(out), "--tc-sigma", "1", "--ehull-max", "0.1"])
    captured = capsys.readouterr()
    assert code == 0
    assert "garbage" in captured.err  # the bad row is reported on stderr
    assert "2 input -> 1 valid -> 1 relaxed" in captured.out
    table = pd.read_csv(out / "screened.csv", dtype={"id": str})
    spec = "id, formula, tc, tc_std, e_form, gap, e_hull, spacegroup, novel, passed, status, error"
    assert list(table.columns[:12]) == spec.split(", ")
    assert dict(zip(table.id, table.status, strict=True)) == {"al": "ok", "garbage": "error"}
    assert (out / "relaxed" / "al.cif").is_file()


def test_the_summary_counts_the_passed_candidates_stable_in_chgnet_phonons(tmp_path, capsys):
    path = tmp_path / "mgb2.csv"
    pd.DataFrame({"material_id": ["mgb2"], "cif": [str(CifWriter(mgb2()))]}).to_csv(path)
    assert main(["screen", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "-> 1 passed (1 of 1 stable in CHGNet phonons)" in out
    assert "phonon_stable" in out  # a column of the printed top candidates


def test_unusable_input_and_settings_exit_2(tmp_path, csv_input, capsys):
    assert main(["screen", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("tc_minimum = 3\n")
    code = main(["screen", csv_input, "--out", str(tmp_path / "o"), "--config", str(config)])
    assert code == 2 and "unknown screen setting" in capsys.readouterr().err
    code = main(["screen", csv_input, "--out", str(tmp_path / "o"), "--gap-model", "nope.pt"])
    assert code == 2 and "no such file" in capsys.readouterr().err
    assert main(["screen", csv_input, "--out", str(tmp_path / "o"), "--workers", "0"]) == 2


def test_help_names_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["screen", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--tc-min", "--eform-max", "--gap-max", "--ehull-max", "--tc-sigma", "--no-relax",
        "--prescreen-tc", "--workers", "--scheduler", "--config", "--eform-model", "--gap-model",
        "--fmax", "--max-steps", "--quiet", "--hull-prototypes", "--hull-reference",
        "--no-phonons", "--require-stable", "--phonon-tolerance", "--fermi-dos", "--nef-min",
        "--pseudo-dir", "--dft-magmom-max",
    ):  # fmt: skip
        assert flag in text


def test_phonon_flags_reach_the_settings(csv_input, tmp_path, capsys, monkeypatch):
    import tcdesign.screen.api as api

    seen = []
    monkeypatch.setattr(
        api,
        "screen_records",
        lambda records, out, settings, progress: seen.append(settings) or pd.DataFrame(),
    )
    out = str(tmp_path / "o")
    code = main(["screen", csv_input, "--out", out, "--no-phonons", "--require-stable"])
    assert code == 2 and "require_stable needs the phonon check" in capsys.readouterr().err
    main(["screen", csv_input, "--out", out, "--require-stable", "--phonon-tolerance", "25"])
    main(["screen", csv_input, "--out", out, "--no-phonons"])
    assert [(s.require_stable, s.phonons, s.phonon_tolerance) for s in seen] == [
        (True, True, 25.0),
        (False, False, 10.0),
    ]


def test_a_bad_hull_prototypes_value_exits_2(csv_input, tmp_path, capsys):
    code = main(["screen", csv_input, "--out", str(tmp_path / "o"), "--hull-prototypes", "-1"])
    assert code == 2 and "hull_prototypes must be an integer >= 0" in capsys.readouterr().err


def test_a_bad_reference_table_exits_2_before_any_relaxation(csv_input, tmp_path, capsys):
    references = tmp_path / "references.csv"
    references.write_text("kind,id,formula\nelement,x,Al\n")  # not a reference table
    out = tmp_path / "out"
    code = main(["screen", csv_input, "--out", str(out), "--references", str(references)])
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err
    assert f"references {references}" in err
    assert not (out / "screen_progress.jsonl").exists()


def test_no_relax_summary_names_only_what_was_written(csv_input, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["screen", csv_input, "--out", str(out), "--no-relax"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'screened.csv'}" in printed
    assert "relaxed/" not in printed and not (out / "relaxed").exists()


def test_run_help_states_the_tc_rule_as_applied(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "pass when Tc >= this" in text and "Tc > this" not in text


@pytest.mark.parametrize("verb", ["screen", "run"])
def test_ehull_help_says_few_references_give_a_lower_bound(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "lower bound on the true energy above the hull" in text
