"""Training: a smoke run, resume after an interruption, the ensemble and its calibration."""

from __future__ import annotations

import json
from dataclasses import replace

import lightning as L
import numpy as np
import pytest
import torch

from tcdesign.cli import main
from tcdesign.data.io import InputError
from tcdesign.predict.alignn import ALIGNNConfig
from tcdesign.predict.api import bundled_csv, load_training_data
from tcdesign.predict.ensemble import Ensemble, calibrate_std_scale, train_ensemble
from tcdesign.predict.train import TrainSettings, train_member
from tcdesign.training import Devices

TINY = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden=8, embedding=8)
FAST = TrainSettings(epochs=2, batch_size=4, progress=False, devices=Devices(accelerator="cpu"))


@pytest.fixture(scope="module")
def small_csvs(tmp_path_factory, val_frame) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("csv")
    train, val = folder / "train.csv", folder / "val.csv"
    val_frame.iloc[:12].to_csv(train, index=False)
    val_frame.iloc[12:18].to_csv(val, index=False)
    return str(train), str(val)


@pytest.fixture(scope="module")
def data(small_csvs):
    return load_training_data(*small_csvs, "tc", TINY, progress=False)


class StopAfterEpoch(L.Callback):
    """Simulates a kill: raises as the epoch after ``epoch`` starts (its checkpoint is on disk)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch + 1:
            raise RuntimeError("killed")


class FirstEpoch(L.Callback):
    def __init__(self) -> None:
        self.first: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.first is None:
            self.first = trainer.current_epoch


def test_smoke_training_writes_a_loadable_member(data, tmp_path) -> None:
    result = train_member(data, TINY, FAST, tmp_path)
    assert result.epochs_run == 2
    assert np.isfinite(result.best_val_mae)
    for name in ("model.pt", "last.ckpt", "best.ckpt", "member.json"):
        assert (tmp_path / name).exists()
    model = Ensemble.load(tmp_path / "model.pt")
    mean, std = model.predict([data_structure for data_structure in _structures(data)])
    assert mean.shape == (len(data.val),) and np.all(mean >= 0)
    assert np.isnan(std).all()  # one model: the spread is unknown, not zero
    # the descriptor and target statistics travel with the weights
    assert float(model.members[0].target_std) != 1.0


def _structures(data):
    from tcdesign.data.io import read_structures

    records = read_structures(data.meta["data"]["val"]["path"], ["tc"], True)
    return [r.structure for r in records if r.ok]


def test_resume_continues_from_the_last_epoch(data, tmp_path, one_thread) -> None:
    settings = TrainSettings(
        epochs=4, batch_size=4, progress=False, devices=Devices(accelerator="cpu")
    )
    config = replace(TINY, dropout=0.3)  # random draws in every step
    with pytest.raises(RuntimeError, match="killed"):
        train_member(data, config, settings, tmp_path, callbacks=[StopAfterEpoch(1)])
    assert (tmp_path / "last.ckpt").exists() and not (tmp_path / "member.json").exists()
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["epoch"] == 1
    probe = FirstEpoch()
    result = train_member(data, config, settings, tmp_path, callbacks=[probe])
    assert probe.first == 2  # epochs 0 and 1 are not repeated
    assert result.epochs_run == 4
    # the training log keeps the epochs before the kill (Lightning's CSV logger deleted them)
    import pandas as pd

    log = pd.read_csv(tmp_path / "logs" / "version_0" / "metrics.csv")
    assert sorted(log.dropna(subset=["val_mae"]).epoch.astype(int)) == [0, 1, 2, 3]
    # the resumed run ends with the weights of one that never stopped (same batches, same
    # dropout draws: the sampler follows the epoch, the random state is in the checkpoint)
    straight = train_member(data, config, settings, tmp_path / "straight")
    assert straight.best_val_mae == result.best_val_mae
    for name in ("last.ckpt", "best.ckpt"):
        resumed_weights = torch.load(tmp_path / name, weights_only=False)["state_dict"]
        straight_weights = torch.load(tmp_path / "straight" / name, weights_only=False)
        for key, value in straight_weights["state_dict"].items():
            assert torch.equal(value, resumed_weights[key]), key
    # a finished member is not trained again
    again = FirstEpoch()
    train_member(data, config, settings, tmp_path, callbacks=[again])
    assert again.first is None


def test_a_one_member_ensemble_writes_strict_json(data, tmp_path) -> None:
    """One member has no spread: std_scale is null in metrics.json, not the token NaN that
    strict JSON readers reject."""
    train_ensemble(data, TINY, FAST, tmp_path, n_members=1)

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["std_scale"] is None


def test_ensemble_calibration_and_metrics(data, tmp_path) -> None:
    ensemble = train_ensemble(data, TINY, FAST, tmp_path, n_members=2)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["val_member_mae"]) == 2
    assert metrics["std_scale"] == pytest.approx(ensemble.std_scale)
    assert metrics["val"]["within_2std"] >= 0.95
    assert {"precision", "recall", "mae"} <= set(metrics["val"])
    reloaded = Ensemble.load(tmp_path / "ensemble.pt")
    assert len(reloaded.members) == 2 and reloaded.std_scale == ensemble.std_scale
    assert reloaded.std_scales == {2: pytest.approx(ensemble.std_scale)}


def test_fewer_members_keep_a_calibrated_std(data, tmp_path) -> None:
    """load(members=n): the first n members with the std scale calibrated for n on val, so
    the smaller ensemble still covers about 95 % of val errors within 2 std."""
    train_ensemble(data, TINY, FAST, tmp_path, n_members=3)
    path = tmp_path / "ensemble.pt"
    full = Ensemble.load(path)
    assert set(full.std_scales) == {2, 3} and full.std_scales[3] == full.std_scale
    two = Ensemble.load(path, members=2)
    assert len(two.members) == 2 and two.std_scale == full.std_scales[2]
    mean, std = two.predict_dataset(data.val)
    assert np.mean(np.abs(mean - data.val.targets) <= 2 * std) >= 0.95
    first_two = full.member_predictions(data.val)[:2].mean(axis=0)
    assert mean == pytest.approx(first_two)
    _, one_std = Ensemble.load(path, members=1).predict_dataset(data.val)
    assert np.isnan(one_std).all()  # one model has no spread
    with pytest.raises(InputError, match="has 3 members"):
        Ensemble.load(path, members=4)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["std_scales"]  # an ensemble saved before per-size scales existed
    torch.save(checkpoint, tmp_path / "old.pt")
    with pytest.raises(InputError, match="no std scale calibrated for 2"):
        Ensemble.load(tmp_path / "old.pt", members=2)
    assert len(Ensemble.load(tmp_path / "old.pt").members) == 3


def test_the_bundled_model_has_a_scale_for_every_size() -> None:
    bundled = Ensemble.load()
    assert set(bundled.std_scales) == set(range(2, len(bundled.members) + 1))
    assert bundled.std_scales[len(bundled.members)] == pytest.approx(bundled.std_scale)
    assert len(Ensemble.load(members=5).members) == 5


def test_calibrate_std_scale_hits_the_coverage() -> None:
    rng = np.random.default_rng(0)
    stds = rng.uniform(0.5, 2.0, 2000)
    errors = rng.normal(0.0, 3.0 * stds)  # true sigma is 3x the raw spread
    scale = calibrate_std_scale(errors, stds)
    assert scale == pytest.approx(3.0, rel=0.1)
    assert np.mean(np.abs(errors) <= 2 * scale * stds) == pytest.approx(0.95, abs=0.01)


def test_cli_trains_any_numeric_column(tmp_path, val_frame, capsys) -> None:
    frame = val_frame.iloc[:10].copy()
    frame["density_like"] = np.linspace(1.0, 3.0, len(frame))
    frame.loc[frame.index[3], "density_like"] = np.nan  # reported and left out
    train, val = tmp_path / "t.csv", tmp_path / "v.csv"
    frame.iloc[:7].to_csv(train, index=False)
    frame.iloc[7:].to_csv(val, index=False)
    argv = [
        "train",
        "predictor",
        "--train",
        str(train),
        "--val",
        str(val),
        "--out",
        str(tmp_path / "run"),
        "--target",
        "density_like",
        "--members",
        "2",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--embedding",
        "8",
        "--alignn-layers",
        "1",
        "--gcn-layers",
        "1",
        "--accelerator",
        "cpu",
        "--quiet",
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "density_like is NaN" in err and "val MAE" in out
    card = (tmp_path / "run" / "MODEL_CARD.md").read_text()
    assert "--target density_like" in card and "| MAE (target units) |" in card
    assert main(argv) == 2  # refuses to overwrite without --resume
    assert main([*argv, "--resume"]) == 0
    pred = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                str(val),
                "--out",
                str(pred),
                "--model",
                str(tmp_path / "run" / "ensemble.pt"),
                "--quiet",
            ]
        )
        == 0
    )
    import pandas as pd

    table = pd.read_csv(pred)
    assert {"density_like", "density_like_std", "density_like_ref"} <= set(table.columns)


def test_log1p_of_negative_targets_is_refused(tmp_path, val_frame, capsys) -> None:
    """log1p clamps negative targets to 0: a formation-energy model trained on all zeros and
    exited 0."""
    frame = val_frame.iloc[:6].copy()
    frame["e_form"] = np.linspace(-2.0, -0.5, len(frame))
    train = tmp_path / "t.csv"
    frame.to_csv(train, index=False)
    argv = ["train", "predictor", "--train", str(train), "--val", str(train)]
    argv += ["--out", str(tmp_path / "run"), "--target", "e_form", "--quiet"]
    argv += ["--members", "1", "--epochs", "1", "--hidden", "8", "--accelerator", "cpu"]
    assert main([*argv, "--transform", "log1p"]) == 2
    assert "--transform log1p needs e_form >= 0" in capsys.readouterr().err
    config = replace(TINY, target="e_form", transform="none")
    assert len(load_training_data(train, train, "e_form", config, progress=False).train) == 6


def test_bundled_paths_exist() -> None:
    assert bundled_csv("train").exists() and bundled_csv("val").exists()


def test_ddp_on_two_cpu_processes(small_csvs, tmp_path) -> None:
    """Lightning's DDP launcher re-runs the command per rank; rank 0 alone writes the ensemble."""
    import subprocess
    import sys

    train, val = small_csvs
    command = [
        sys.executable,
        "-m",
        "tcdesign.cli",
        "train",
        "predictor",
        "--train",
        train,
        "--val",
        val,
        "--out",
        str(tmp_path / "run"),
        "--members",
        "2",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--embedding",
        "8",
        "--alignn-layers",
        "1",
        "--gcn-layers",
        "1",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--quiet",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("val MAE") == 1
    assert Ensemble.load(tmp_path / "run" / "ensemble.pt").members[0].config.hidden == 8


def test_one_cycle_schedule_spans_the_steps_the_trainer_takes() -> None:
    """Under DDP each rank takes 1/world of the full loader's batches per epoch; the schedule
    was sized from the full loader, so with 2 ranks it stopped half-way at a high rate."""
    from types import SimpleNamespace

    from tcdesign.predict.train import PropertyModule

    settings = TrainSettings(epochs=3, batch_size=4, progress=False)
    module = PropertyModule(TINY, settings, steps_per_epoch=4)
    module.trainer = SimpleNamespace(estimated_stepping_batches=6)  # 3 epochs x 2 batches a rank
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert schedule.total_steps == 6


class CtrlCMidEpoch(L.Callback):
    """Ctrl-C (or SIGTERM, raised by tcdesign as a KeyboardInterrupt) in the middle of epoch 1."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise KeyboardInterrupt


def test_ctrl_c_mid_epoch_is_an_interrupt_and_resumes(data, tmp_path) -> None:
    """Lightning turned the interrupt into sys.exit(1) (exit status 1, no message) and left
    SIGINT ignored; now the interrupt propagates (the CLI exits 130, or 143 for SIGTERM)."""
    import signal

    settings = TrainSettings(
        epochs=3, batch_size=4, progress=False, devices=Devices(accelerator="cpu")
    )
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_member(data, TINY, settings, tmp_path, callbacks=[CtrlCMidEpoch()])
    assert signal.getsignal(signal.SIGINT) is handler
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 0
    probe = FirstEpoch()
    assert train_member(data, TINY, settings, tmp_path, callbacks=[probe]).epochs_run == 3
    assert probe.first == 1  # the interrupted epoch is run again, epoch 0 is not


def test_resume_with_another_schedule_is_refused_before_training(data, tmp_path) -> None:
    """The one-cycle schedule comes back from last.ckpt with its old length: resuming with more
    epochs trained to the old end and then failed with ValueError (exit 1)."""
    from tcdesign.data.io import InputError

    with pytest.raises(RuntimeError, match="killed"):
        train_member(data, TINY, FAST, tmp_path, callbacks=[StopAfterEpoch(0)])
    probe = FirstEpoch()
    with pytest.raises(InputError, match="resume with the same --epochs"):
        train_member(data, TINY, replace(FAST, epochs=3), tmp_path, callbacks=[probe])
    assert probe.first is None  # refused before any training
    assert train_member(data, TINY, FAST, tmp_path).epochs_run == 2


def test_a_checkpoint_without_random_state_still_resumes(data, tmp_path) -> None:
    """Checkpoints written before the random state was kept (earlier releases) resume too."""
    from tcdesign.training import RandomStateCheckpoint

    settings = TrainSettings(
        epochs=3, batch_size=4, progress=False, devices=Devices(accelerator="cpu")
    )
    with pytest.raises(RuntimeError, match="killed"):
        train_member(data, TINY, settings, tmp_path, callbacks=[StopAfterEpoch(0)])
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert RandomStateCheckpoint.KEY in checkpoint
    del checkpoint[RandomStateCheckpoint.KEY]
    torch.save(checkpoint, tmp_path / "last.ckpt")
    probe = FirstEpoch()
    result = train_member(data, TINY, settings, tmp_path, callbacks=[probe])
    assert probe.first == 1 and result.epochs_run == 3


@pytest.mark.parametrize("n_members", [2, 3])
def test_members_side_by_side_on_threads_equal_one_at_a_time(val_structures, n_members) -> None:
    """On several CPU threads the members run in parallel groups, one thread each; the result
    is the one-thread result to float32 rounding, and the thread setting comes back."""
    from tcdesign.predict.alignn import ALIGNN

    torch.manual_seed(3)
    config = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden=16, embedding=8)
    ensemble = Ensemble([ALIGNN(config) for _ in range(n_members)])
    data = ensemble.dataset(val_structures[:12])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert len(ensemble._thread_groups(torch.get_num_threads())) == 1
        alone = ensemble.member_predictions(data, batch_size=5)
        torch.set_num_threads(2)
        groups = ensemble._thread_groups(torch.get_num_threads())
        assert [len(g) for g in groups] == [1, 1] if n_members == 2 else [2, 1]
        assert [m for g in groups for m in g] == ensemble.members  # order kept
        together = ensemble.member_predictions(data, batch_size=5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert together.shape == (n_members, 12)
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-6)
