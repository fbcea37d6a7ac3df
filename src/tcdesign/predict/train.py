"""Training ALIGNN property models with Lightning: one member, and an ensemble of them.

Each member: AdamW, a one-cycle learning-rate schedule, early stopping on the validation MAE (in
target units), a checkpoint every epoch (``last.ckpt``) plus the best one, and resume from
``last.ckpt`` after a kill. Lightning supplies the progress bar, mixed precision and multi-GPU or
multi-node DDP (:class:`tcdesign.training.Devices` passes straight through).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch

from tcdesign.data.batch import GraphBatch
from tcdesign.data.io import InputError
from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig
from tcdesign.predict.dataset import GraphDataset
from tcdesign.training import Devices, build_trainer, quiet_lightning, resume_path


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one ensemble member."""

    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 1e-3  # peak of the one-cycle schedule
    weight_decay: float = 0.05
    loss: Literal["mse", "l1", "huber"] = "mse"  # on the transformed, standardised target
    patience: int = 15  # epochs without a better val MAE before stopping
    seed: int = 0
    progress: bool = True
    devices: Devices = Devices()

    @classmethod
    def from_dict(cls, values: dict) -> TrainSettings:
        """Rebuild from ``asdict`` output (as a Lightning checkpoint stores it)."""
        return cls(**{**values, "devices": Devices(**values["devices"])})


class PropertyModule(L.LightningModule):
    """Lightning wrapper: loss on transform(target), val MAE in target units."""

    def __init__(
        self,
        config: ALIGNNConfig | dict,
        settings: TrainSettings | dict,
        steps_per_epoch: int,
        target_stats: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        # from a Lightning checkpoint the dataclasses come back as dicts
        config = ALIGNNConfig(**config) if isinstance(config, dict) else config
        settings = TrainSettings.from_dict(settings) if isinstance(settings, dict) else settings
        self.save_hyperparameters(
            {
                "config": asdict(config),
                "settings": asdict(settings),
                "steps_per_epoch": steps_per_epoch,
                "target_stats": list(target_stats),
            }
        )
        self.model = ALIGNN(config)
        self.model.target_mean.fill_(target_stats[0])
        self.model.target_std.fill_(target_stats[1])
        self.settings = settings
        self.steps_per_epoch = steps_per_epoch
        self._val_errors: list[torch.Tensor] = []

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        std = self.model.target_std
        diff = (outputs - self.model.transform(targets)) / std  # (n_crystals,) standardised
        if self.settings.loss == "l1":
            return diff.abs().mean()
        if self.settings.loss == "huber":
            return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), delta=1.0)
        return (diff**2).mean()

    def training_step(self, batch: GraphBatch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(self.model(batch), batch.targets)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch.num_crystals)
        return loss

    def validation_step(self, batch: GraphBatch, batch_idx: int) -> None:
        outputs = self.model(batch)
        self.log(
            "val_loss",
            self._loss(outputs, batch.targets),
            prog_bar=True,
            batch_size=batch.num_crystals,
            sync_dist=True,
        )
        self._val_errors.append((self.model.inverse_transform(outputs) - batch.targets).abs())

    def on_validation_epoch_end(self) -> None:
        errors = torch.cat(self._val_errors) if self._val_errors else torch.zeros(1)
        self.log("val_mae", errors.mean(), prog_bar=True, sync_dist=True)
        self._val_errors.clear()

    def transfer_batch_to_device(
        self, batch: GraphBatch, device: torch.device, dataloader_idx: int
    ) -> GraphBatch:
        return batch.to(device)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.settings.learning_rate,
            weight_decay=self.settings.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.settings.learning_rate,
            # the optimizer steps this trainer takes: under DDP each rank sees 1/world of the
            # batches, so epochs * len(full loader) would leave the schedule half-finished
            total_steps=int(self.trainer.estimated_stepping_batches),
            pct_start=0.3,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


@dataclass
class MemberResult:
    seed: int
    best_val_mae: float
    epochs_run: int
    seconds: float
    checkpoint: str


@dataclass
class TrainData:
    """Training and validation graphs of one target."""

    train: GraphDataset
    val: GraphDataset
    target: str
    meta: dict = field(default_factory=dict)


def train_member(
    data: TrainData,
    config: ALIGNNConfig,
    settings: TrainSettings,
    out_dir: Path,
    resume: bool = True,
    callbacks: list[L.Callback] | None = None,
) -> MemberResult:
    """Train one model into ``out_dir``; resume from ``out_dir/last.ckpt`` when it exists.

    Writes ``best.ckpt`` (Lightning), ``model.pt`` (self-describing, best epoch) and
    ``member.json``. A member whose ``member.json`` exists is already done and is not retrained.
    """
    quiet_lightning()
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / "member.json"
    if resume and done.exists():
        return MemberResult(**json.loads(done.read_text()))
    L.seed_everything(settings.seed, workers=True, verbose=False)
    model_probe = ALIGNN(config)
    transformed = model_probe.transform(torch.as_tensor(data.train.targets))
    stats = (float(transformed.mean()), float(transformed.std().clamp_min(1e-6)))
    train_loader = data.train.loader(settings.batch_size, shuffle=True, seed=settings.seed)
    val_loader = data.val.loader(max(settings.batch_size, 64))
    _check_resumable(out_dir, resume, settings, len(train_loader))
    module = PropertyModule(config, settings, len(train_loader), stats)
    if data.train.descriptors is not None:
        module.model.set_descriptor_statistics(torch.as_tensor(data.train.descriptors))
    trainer, checkpoint = build_trainer(
        out_dir,
        max_epochs=settings.epochs,
        monitor="val_mae",
        patience=settings.patience,
        devices=settings.devices,
        progress=settings.progress,
        callbacks=callbacks,
    )
    started = time.time()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_path(out_dir, resume))
    if not trainer.is_global_zero:  # other DDP ranks train; rank 0 writes the results
        return MemberResult(
            settings.seed,
            float(checkpoint.best_model_score or "nan"),
            int(trainer.current_epoch),
            time.time() - started,
            "",
        )
    best = PropertyModule.load_from_checkpoint(
        checkpoint.best_model_path, map_location="cpu", weights_only=False
    )
    torch.save(best.model.to_checkpoint(), out_dir / "model.pt")
    result = MemberResult(
        seed=settings.seed,
        best_val_mae=float(checkpoint.best_model_score),
        epochs_run=int(trainer.current_epoch),
        seconds=time.time() - started,
        checkpoint=str((out_dir / "model.pt").name),
    )
    done.write_text(json.dumps(asdict(result), indent=2))
    return result


def _check_resumable(out_dir: Path, resume: bool, settings: TrainSettings, steps: int) -> None:
    """Raise InputError when ``last.ckpt`` was written with another learning-rate schedule.

    The one-cycle schedule comes back from the checkpoint with its old length: with more
    epochs, a larger training set or a smaller batch, training failed at the old end
    ("Tried to step 9 times. The specified number of total steps is 8").
    """
    last = resume_path(out_dir, resume)
    if last is None:
        return
    saved = torch.load(last, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    before = (saved.get("settings", {}).get("epochs"), saved.get("steps_per_epoch"))
    if None not in before and before != (settings.epochs, steps):
        raise InputError(
            f"{out_dir}: the interrupted run had {before[0]} epochs of {before[1]} batches, this "
            f"one {settings.epochs} of {steps}; resume with the same --epochs, --batch-size and "
            "--train, or train into a new --out"
        )


def seeds_for(n_members: int, seed: int) -> list[int]:
    return [seed + k for k in range(n_members)]


def member_dirs(out_dir: Path, n_members: int) -> list[Path]:
    return [out_dir / f"member_{k}" for k in range(n_members)]


def summarize(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}
