"""The CLI contract of SPEC: predict on CSV, CIF and folder inputs; bad inputs; exit codes."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from tcdesign.cli import main
from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig
from tcdesign.predict.ensemble import Ensemble


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A small untrained two-member ensemble, so CLI tests do not depend on the bundled one."""
    torch.manual_seed(0)
    config = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden=8, embedding=8)
    path = tmp_path_factory.mktemp("model") / "ensemble.pt"
    Ensemble([ALIGNN(config), ALIGNN(config)], std_scale=1.5).save(path)
    return str(path)


@pytest.fixture()
def csv_input(tmp_path, val_frame) -> str:
    frame = val_frame.head(4).copy()
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    return str(path)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_csv(tmp_path, csv_input, tiny_model, val_frame, capsys) -> None:
    out = tmp_path / "pred.csv"
    code, stdout, _ = run(["predict", csv_input, "--out", str(out), "--model", tiny_model], capsys)
    assert code == 0
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["id", "formula", "tc", "tc_std"]
    assert list(table.id) == list(val_frame.material_id[:4])
    assert (table.status == "ok").all()
    assert np.all(table.tc >= 0) and np.all(table.tc_std >= 0)
    assert table.tc_ref.to_numpy() == pytest.approx(-val_frame.prop[:4].to_numpy(), abs=1e-3)
    assert "MAE vs tc_ref" in stdout
    # the screening rule's view of the same rows, from the same numbers
    above, truth = table.tc > 5, table.tc_ref > 5
    hits = int((above & truth).sum())
    precision = hits / max(int(above.sum()), 1)
    expected = f"Tc > 5 K: precision {precision:.2f} ({int(above.sum())} predicted above)"
    assert expected in stdout and f"(of {int(truth.sum())} above)" in stdout


def test_predict_cif_and_folder(tmp_path, val_frame, tiny_model, capsys) -> None:
    folder = tmp_path / "cifs"
    folder.mkdir()
    for rid, cif in zip(val_frame.material_id[:3], val_frame.cif[:3], strict=True):
        (folder / f"{rid}.cif").write_text(cif)
    out = tmp_path / "one.csv"
    assert (
        run(
            [
                "predict",
                str(folder / f"{val_frame.material_id[0]}.cif"),
                "--out",
                str(out),
                "--model",
                tiny_model,
            ],
            capsys,
        )[0]
        == 0
    )
    assert list(pd.read_csv(out).id) == [val_frame.material_id[0]]
    assert run(["predict", str(folder), "--out", str(out), "--model", tiny_model], capsys)[0] == 0
    assert sorted(pd.read_csv(out).id) == sorted(val_frame.material_id[:3])


def test_bad_rows_are_reported_and_good_rows_written(
    tmp_path, val_frame, tiny_model, capsys
) -> None:
    good = val_frame.cif[0]
    nbc = Structure(Lattice.cubic(4.47), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    unknown = re.sub(r"^(\s+)C(\s+)C(\d)", r"\1Xx\2Xx\3", str(CifWriter(nbc)), flags=re.M)
    close = Structure(Lattice.cubic(4.47), ["Nb", "C"], [[0, 0, 0], [0.04, 0, 0]])
    frame = pd.DataFrame(
        {
            "material_id": ["good", "malformed", "unknown", "close", "nanprop"],
            "cif": [
                good,
                "data_x\n_cell_length_a 3\nnot a cif",
                unknown,
                str(CifWriter(close)),
                good,
            ],
            "prop": [-1.0, -1.0, -1.0, -1.0, math.nan],
        }
    )
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "pred.csv"
    code, _, err = run(["predict", str(path), "--out", str(out), "--model", tiny_model], capsys)
    assert code == 0
    table = pd.read_csv(out).set_index("id")
    assert table.loc["good", "status"] == "ok"
    assert table.loc["nanprop", "status"] == "ok"  # a NaN label does not stop a prediction
    assert "NaN" in table.loc["nanprop", "error"]
    for rid, reason in (("malformed", "parse"), ("unknown", "unknown element"), ("close", "apart")):
        assert table.loc[rid, "status"] == "error"
        assert reason in table.loc[rid, "error"]
        assert math.isnan(table.loc[rid, "tc"])
        assert f"{rid}:" in err


def test_element_without_atom_features_is_a_bad_row(tmp_path, val_frame, tiny_model, capsys):
    """Lawrencium (Z = 103) has no CGCNN features: a reported row, not a crash of the run."""
    heavy = Structure(Lattice.cubic(4.47), ["Nb", "Lr"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path = tmp_path / "heavy.csv"
    pd.DataFrame(
        {"material_id": ["good", "heavy"], "cif": [val_frame.cif[0], str(CifWriter(heavy))]}
    ).to_csv(path, index=False)
    out = tmp_path / "pred.csv"
    code, _, err = run(["predict", str(path), "--out", str(out), "--model", tiny_model], capsys)
    assert code == 0
    table = pd.read_csv(out).set_index("id")
    assert table.loc["good", "status"] == "ok"
    assert table.loc["heavy", "status"] == "error" and "Z = 103" in table.loc["heavy", "error"]
    assert "heavy:" in err


def test_csv_with_a_header_and_no_rows(tmp_path, tiny_model, capsys) -> None:
    """Used to end in 'internal error: StopIteration' (exit 1) and a CSV without a header."""
    path = tmp_path / "header_only.csv"
    path.write_text("material_id,cif,prop\n")
    out = tmp_path / "pred.csv"
    code, stdout, err = run(
        ["predict", str(path), "--out", str(out), "--model", tiny_model], capsys
    )
    assert code == 0, err
    table = pd.read_csv(out)
    assert len(table) == 0 and list(table.columns[:4]) == ["id", "formula", "tc", "tc_std"]
    assert "0 predicted, 0 failed" in stdout


def test_out_that_is_a_folder_is_exit_2(tmp_path, csv_input, tiny_model, capsys) -> None:
    """Used to fail with 'internal error: IsADirectoryError' (exit 1) after all predictions."""
    code, _, err = run(
        ["predict", csv_input, "--out", str(tmp_path), "--model", tiny_model], capsys
    )
    assert code == 2
    assert "--out is a folder" in err and len(err.strip().splitlines()) == 1


def test_model_that_is_a_folder_says_so(tmp_path, csv_input, capsys) -> None:
    """A training --out folder as --model was reported as 'model file not found'."""
    out = str(tmp_path / "o.csv")
    code, _, err = run(["predict", csv_input, "--out", out, "--model", str(tmp_path)], capsys)
    assert code == 2 and "a folder, not a model file" in err


@pytest.mark.parametrize("kind", ["missing", "empty", "no_cif_column", "binary", "bad_cif_file"])
def test_unusable_input_is_one_line_and_exit_2(tmp_path, tiny_model, kind, capsys) -> None:
    path = tmp_path / {"bad_cif_file": "x.cif"}.get(kind, "x.csv")
    if kind == "empty":
        path.write_text("")
    elif kind == "no_cif_column":
        path.write_text("material_id,prop\nA,-1\n")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "bad_cif_file":
        path.write_text("this is not a crystal\n")
    code, _, err = run(
        ["predict", str(path), "--out", str(tmp_path / "o.csv"), "--model", tiny_model], capsys
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in err


def test_version_names_the_package_and_torch(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    assert out.startswith(f"tcdesign {version('tcdesign')} (")
    assert f"torch {torch.__version__}" in out


def test_bad_arguments_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "x.cif", "--out", "o.csv", "--batch-size", "0"],
        ["train", "predictor", "--out", "run", "--members", "0"],
        ["train", "predictor", "--out", "run", "--epochs", "0"],
        ["train", "predictor", "--out", "run", "--batch-size", "-4"],
        ["train", "predictor", "--out", "run", "--max-neighbors", "0"],
        ["train", "predictor", "--out", "run", "--cutoff", "0"],
        ["train", "generator", "--out", "run", "--epochs", "0"],
    ],
)
def test_counts_below_one_are_usage_errors(argv, capsys) -> None:
    """These used to pass the parser and fail later as 'internal error' with exit status 1."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--precision", "17"], ["--strategy", "nonsense"]])
def test_device_flags_lightning_refuses_are_exit_2(flag, tmp_path, csv_input, capsys) -> None:
    """These were 'internal error' (exit 1) from Lightning, after the graphs were built."""
    argv = ["train", "predictor", "--train", csv_input, "--val", csv_input]
    code, _, err = run([*argv, "--out", str(tmp_path / "run"), "--quiet", *flag], capsys)
    assert code == 2
    assert "--precision" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_console_script_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tcdesign.cli", "train", "predictor", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--train", "--val", "--out", "--target", "--members", "--resume"):
        assert flag in result.stdout


def test_sigterm_stops_a_command_like_ctrl_c(monkeypatch, capsys):
    """SIGTERM (a scheduler's time limit) unwinds the command as Ctrl-C does, exit status 143,
    and the process's own SIGTERM handler is restored afterwards."""
    import os
    import signal

    import tcdesign.cli as cli

    def terminated(args) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the command")

    def build_parser():
        parser = argparse.ArgumentParser(prog="tcdesign")
        parser.set_defaults(func=terminated)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main([]) == 143
    assert "tcdesign: terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_predict_members_uses_the_first_ones(tmp_path, csv_input, capsys) -> None:
    """--members N predicts with the first N members of the bundled ensemble; more members
    than it has is one clear error line and exit status 2."""
    out = tmp_path / "pred.csv"
    argv = ["predict", csv_input, "--out", str(out), "--quiet"]
    assert run([*argv, "--members", "3"], capsys)[0] == 0
    table = pd.read_csv(out)
    three = Ensemble.load(members=3)
    structures = [Structure.from_str(c, fmt="cif") for c in pd.read_csv(csv_input).cif]
    mean, std = three.predict(structures)
    assert table.tc.to_numpy() == pytest.approx(mean, abs=1e-3)
    assert table.tc_std.to_numpy() == pytest.approx(std, abs=1e-3)
    code, _, err = run([*argv, "--members", "11"], capsys)
    assert code == 2 and "--members 11" in err and "has 10 members" in err


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_help_text_formats_and_explains_every_flag() -> None:
    """Each verb's --help renders (a stray '%' in a flag's help breaks it), shows no doubled
    '%%' (a description is not %-formatted, so one showed '95%%'), and every flag has a help."""
    from tcdesign.cli import build_parser

    parsers = list(_all_parsers(build_parser()))
    assert len(parsers) > 10
    for parser in parsers:
        text = parser.format_help()
        assert "%%" not in text, parser.prog
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{parser.prog} {action.option_strings[0]}: no help"
