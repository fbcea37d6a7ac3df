"""`tcdesign generate`: a tiny trained CDVAE samples, resumes and reproduces; the baseline runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Structure

from tcdesign.cli import main
from tcdesign.generate.cdvae import CDVAEConfig
from tcdesign.generate.data import CrystalDataset
from tcdesign.generate.train import GeneratorSettings, train_generator

TINY = CDVAEConfig(
    latent=8,
    encoder_hidden=16,
    encoder_alignn_layers=1,
    encoder_gcn_layers=1,
    head_hidden=16,
    decoder_hidden=16,
    decoder_layers=1,
    max_atoms=20,
)
SCHEDULE = ["--steps-per-level", "2", "--levels", "3", "--quiet"]
FAST = [*SCHEDULE, "--batch-size", "2"]


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory, val_structures) -> str:
    out = tmp_path_factory.mktemp("gen")
    train = CrystalDataset(val_structures[:8], [float(k) for k in range(8)])
    val = CrystalDataset(val_structures[8:12], [1.0, 2.0, 3.0, 4.0])
    settings = GeneratorSettings(epochs=2, batch_size=4, progress=False)
    train_generator(train, val, TINY, settings, out, resume=False)
    return str(out / "generator.pt")


def test_export_from_a_lightning_checkpoint(tiny_generator) -> None:
    from pathlib import Path

    from tcdesign.generate.api import load_generator
    from tcdesign.generate.train import export_generator

    run_dir = Path(tiny_generator).parent
    exported = export_generator(run_dir, "last")
    assert load_generator(exported).config == TINY


def run_generate(out, model, n, *extra) -> pd.DataFrame:
    assert (
        main(["generate", "--n", str(n), "--out", str(out), "--model", model, *FAST, *extra]) == 0
    )
    return pd.read_csv(out / "generated.csv")


def test_generate_writes_cifs_and_table(tmp_path, tiny_generator) -> None:
    table = run_generate(tmp_path, tiny_generator, 3)
    assert list(table.columns[:3]) == ["id", "formula", "cif"]
    assert len(table) == 3 and set(table.status) <= {"ok", "invalid", "broken"}
    for row in table.itertuples():
        if row.status != "broken":
            parsed = Structure.from_file(tmp_path / "structures" / f"{row.id}.cif")
            assert len(parsed) >= 1


def test_generate_is_reproducible_and_resumes(tmp_path, tiny_generator) -> None:
    first = run_generate(tmp_path / "a", tiny_generator, 3)
    second = run_generate(tmp_path / "b", tiny_generator, 3)
    assert first.cif.tolist() == second.cif.tolist()
    # a longer rerun in the same folder adds only the missing crystals
    grown = run_generate(tmp_path / "a", tiny_generator, 5)
    assert grown.id.tolist() == [f"gen-{k:05d}" for k in range(5)]
    assert grown.cif[:3].tolist() == first.cif.tolist()
    uninterrupted = run_generate(tmp_path / "c", tiny_generator, 5)
    assert grown.cif.tolist() == uninterrupted.cif.tolist()


def test_generate_rerun_with_other_settings_is_refused(tmp_path, tiny_generator, capsys) -> None:
    """A rerun with another --seed used to skip every finished id and return the old seed's
    crystals as if they were the new seed's (or mix both when n grew)."""
    first = run_generate(tmp_path, tiny_generator, 2)
    argv = ["generate", "--n", "3", "--out", str(tmp_path), "--model", tiny_generator, *FAST]
    assert main([*argv, "--seed", "7"]) == 2
    assert "seed: 0 -> 7" in capsys.readouterr().err
    assert main([*argv, "--batch-size", "3"]) == 2  # another random stream per crystal
    assert main([*argv, "--composition", "cdvae"]) == 2
    assert pd.read_csv(tmp_path / "generated.csv").cif.tolist() == first.cif.tolist()
    # the same settings still resume and extend the run
    assert run_generate(tmp_path, tiny_generator, 3).cif[:2].tolist() == first.cif.tolist()


def test_batch_size_help_says_it_changes_the_crystals(tmp_path, tiny_generator, capsys) -> None:
    """--batch-size was described as a speed setting only, but the random streams are per
    batch: the same seed with another batch size gives other crystals."""
    base = ["generate", "--n", "2", "--model", tiny_generator, *SCHEDULE]
    assert main([*base, "--out", str(tmp_path / "one"), "--batch-size", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "two"), "--batch-size", "2"]) == 0
    one = pd.read_csv(tmp_path / "one" / "generated.csv")
    two = pd.read_csv(tmp_path / "two" / "generated.csv")
    assert one.cif.tolist() != two.cif.tolist()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "batch size gives other" in " ".join(capsys.readouterr().out.split())


def test_optimize_tc_raises_the_head_prediction(tmp_path, tiny_generator) -> None:
    plain = run_generate(tmp_path / "plain", tiny_generator, 4)
    raised = run_generate(
        tmp_path / "opt",
        tiny_generator,
        4,
        "--optimize-tc",
        "--opt-steps",
        "20",
        "--opt-lr",
        "0.05",
    )
    assert raised.tc_head.mean() > plain.tc_head.mean()


def test_optimize_tc_from_encoded_training_crystals(tmp_path, tiny_generator) -> None:
    args = ["--optimize-tc", "--opt-steps", "5", "--opt-start", "train"]
    first = run_generate(tmp_path / "a", tiny_generator, 3, *args)
    assert len(first) == 3 and set(first.status) <= {"ok", "invalid", "broken"}
    assert run_generate(tmp_path / "b", tiny_generator, 3, *args).cif.tolist() == first.cif.tolist()
    random_start = run_generate(tmp_path / "c", tiny_generator, 3, *args[:3])
    assert random_start.cif.tolist() != first.cif.tolist()


def test_substitution_baseline(tmp_path) -> None:
    assert (
        main(
            ["generate", "--n", "3", "--out", str(tmp_path), "--method", "substitution", "--quiet"]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "generated.csv")
    assert len(table) == 3 and (table.method == "substitution").all()
    assert (table.status == "ok").all()


def test_a_substitution_shortfall_is_reported(tmp_path, capsys, monkeypatch) -> None:
    """substitute() gives up after 50 draws per crystal; the missing ids used to go unmentioned."""
    import tcdesign.generate.api as api

    real = api.substitute
    monkeypatch.setattr(api, "substitute", lambda train, n, seed: real(train, 2, seed))
    argv = ["generate", "--n", "4", "--out", str(tmp_path), "--method", "substitution", "--quiet"]
    assert main(argv) == 0
    assert len(pd.read_csv(tmp_path / "generated.csv")) == 2
    err = capsys.readouterr().err
    assert "found 2 distinct new crystals in 200 draws, not 4" in err and "gen-00002 on" in err


def test_missing_model_is_exit_2(tmp_path, capsys) -> None:
    assert (
        main(["generate", "--n", "2", "--out", str(tmp_path), "--model", str(tmp_path / "nope.pt")])
        == 2
    )
    assert "model file not found" in capsys.readouterr().err
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "flags",
    [
        ["--levels", "0"],  # used to anneal through no level: random positions reported "ok"
        ["--levels", "-2"],  # used to be an internal error, exit 1
        ["--batch-size", "0"],  # internal error, exit 1
        ["--steps-per-level", "-1"],  # silently no Langevin dynamics
        ["--step-lr", "-1"],  # NaN coordinates: every sample broken
        ["--optimize-tc", "--opt-steps", "-3"],  # silently no optimisation
        ["--optimize-tc", "--opt-lr", "0"],
        ["--target-tc", "nan"],  # internal error, exit 1
        ["--composition-temperature", "nan"],  # silently accepted: NaN element draws
        ["--n", "0"],  # the last --n wins: nothing to generate
    ],
)
def test_generate_bad_schedule_is_a_usage_error(tmp_path, flags, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--n", "2", "--out", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err
    assert not (tmp_path / "generated.csv").exists()


def test_unreadable_model_or_compositions_is_exit_2(tmp_path, capsys) -> None:
    """A text file as --model and a binary or malformed --compositions CSV used to end as
    'internal error' with exit status 1."""
    model = tmp_path / "model.pt"
    model.write_text("hello world\n")
    assert main(["generate", "--n", "1", "--out", str(tmp_path / "g"), "--model", str(model)]) == 2
    assert "not a tcdesign generator file" in capsys.readouterr().err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('formula\n"Nb3Sn\n')
    for path in (binary, quoted):
        argv = ["csp", "--compositions", str(path), "--out", str(tmp_path / "c"), "--quiet"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not a readable CSV" in err and len(err.strip().splitlines()) == 1


def test_csp_cdvae_fixes_the_composition(tmp_path, tiny_generator) -> None:
    out = tmp_path / "csp"
    argv = [
        "csp",
        "--formula",
        "Nb2C2",
        "Xx3",
        "--n",
        "2",
        "--out",
        str(out),
        "--model",
        tiny_generator,
        *SCHEDULE,
    ]
    assert main(argv) == 0  # one bad formula among good ones is a row, not a failure
    table = pd.read_csv(out / "csp.csv")
    good = table[table.formula == "Nb2C2"]
    assert good["rank"].tolist() == [1, 2]
    assert good.score.is_monotonic_decreasing
    for cif in good.cif:
        assert Structure.from_str(cif, fmt="cif").composition.formula.replace(" ", "") == "Nb2C2"
    bad = table[table.formula == "Xx3"]
    assert bad.status.tolist() == ["error"]


def test_csp_bad_input_is_exit_2(tmp_path, tiny_generator, capsys) -> None:
    too_big = [
        "csp",
        "--formula",
        "Nb30",
        "--out",
        str(tmp_path),
        "--model",
        tiny_generator,
        *SCHEDULE,
    ]
    assert main(too_big) == 2
    assert "more than the 20" in capsys.readouterr().err
    assert main(["csp", "--compositions", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    # an empty --formula was written as a row that the summary then counted neither way
    assert main(["csp", "--formula", " ", "--out", str(tmp_path / "empty"), "--quiet"]) == 2
    assert "an empty formula" in capsys.readouterr().err
    blank = tmp_path / "blank.csv"
    blank.write_text("formula\n \n\n")  # only blank rows: no formula to run
    assert main(["csp", "--compositions", str(blank), "--out", str(tmp_path / "b")]) == 2
    assert "at least one formula" in capsys.readouterr().err


def test_csp_template(tmp_path, val_frame) -> None:
    assert (
        main(
            [
                "csp",
                "--formula",
                "Nb1C1",
                "--n",
                "2",
                "--method",
                "template",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "csp.csv")
    assert table["rank"].tolist()[:1] == [1] and (table.status == "ok").all()
    # a rerun asking for more structures per formula used to skip the formula silently
    argv = ["csp", "--formula", "Nb1C1", "--n", "3", "--method", "template", "--out"]
    assert main([*argv, str(tmp_path), "--quiet"]) == 2
    assert pd.read_csv(tmp_path / "csp.csv").equals(table)
    # by default the candidates were re-ranked with their CHGNet static energies
    assert np.isfinite(table.energy_per_atom).all() and (table.energy_per_atom < 0).all()
    argv = ["csp", "--formula", "Nb1C1", "--n", "2", "--method", "template", "--quiet"]
    assert main([*argv, "--energy-weight", "0", "--out", str(tmp_path)]) == 2  # other settings
    assert main([*argv, "--energy-weight", "0", "--out", str(tmp_path / "off")]) == 0
    assert main([*argv, "--energy-weight", "-1", "--out", str(tmp_path / "bad")]) == 2
    with pytest.raises(SystemExit) as usage:  # argparse rejects it
        main([*argv, "--energy-weight", "nan", "--out", str(tmp_path / "bad")])
    assert usage.value.code == 2
    off = pd.read_csv(tmp_path / "off" / "csp.csv")
    assert off.energy_per_atom.isna().all() and (off.status == "ok").all()
    assert off.score.is_monotonic_decreasing


def test_killed_and_resumed_training_ends_with_the_uninterrupted_weights(
    tmp_path, val_structures, one_thread
) -> None:
    """CDVAE draws noise levels, noise and latents in every step; a resumed run used to draw
    them afresh (and replay epoch 0's batch order), ending about 1e-3 away from a run that never
    stopped. The random state now travels in the checkpoint and the order follows the epoch."""
    import lightning as L

    class Kill(L.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            if trainer.current_epoch == 2:
                raise RuntimeError("killed")

    train = CrystalDataset(val_structures[:9], [float(k) for k in range(9)])  # a partial batch
    val = CrystalDataset(val_structures[9:12], [1.0, 2.0, 3.0])
    settings = GeneratorSettings(epochs=3, batch_size=4, progress=False)
    train_generator(train, val, TINY, settings, tmp_path / "straight", resume=False)
    with pytest.raises(RuntimeError, match="killed"):
        train_generator(train, val, TINY, settings, tmp_path / "resumed", callbacks=[Kill()])
    train_generator(train, val, TINY, settings, tmp_path / "resumed")
    straight = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=False)
    assert straight["epoch"] == resumed["epoch"] == 2
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
