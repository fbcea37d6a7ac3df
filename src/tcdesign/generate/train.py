"""Training the CDVAE generator with Lightning (the set-up of :mod:`tcdesign.training`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch

from tcdesign.generate.cdvae import CDVAE, CDVAEConfig, CrystalBatch
from tcdesign.generate.data import CrystalDataset
from tcdesign.training import Devices, build_trainer, quiet_lightning, resume_path

LOSS_TERMS = ("natom", "lattice", "composition", "coord", "type", "kl", "property")


@dataclass(frozen=True)
class GeneratorSettings:
    """Optimisation settings of the generator."""

    epochs: int = 500
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5  # end of the cosine schedule
    weight_decay: float = 0.0
    patience: int = 100  # epochs without a better val loss before stopping
    gradient_clip: float = 1.0
    seed: int = 0
    progress: bool = True
    devices: Devices = Devices()

    @classmethod
    def from_dict(cls, values: dict) -> GeneratorSettings:
        """Rebuild from ``asdict`` output (as a Lightning checkpoint stores it)."""
        return cls(**{**values, "devices": Devices(**values["devices"])})


class GeneratorModule(L.LightningModule):
    """Lightning wrapper around :class:`CDVAE`; logs every loss term for train and val."""

    def __init__(
        self, config: CDVAEConfig | dict, settings: GeneratorSettings | dict, steps_per_epoch: int
    ) -> None:
        super().__init__()
        config = CDVAEConfig(**config) if isinstance(config, dict) else config
        if isinstance(settings, dict):  # from a Lightning checkpoint
            settings = GeneratorSettings.from_dict(settings)
        self.save_hyperparameters(
            {
                "config": asdict(config),
                "settings": asdict(settings),
                "steps_per_epoch": steps_per_epoch,
            }
        )
        self.model = CDVAE(config)
        self.settings = settings
        self.steps_per_epoch = steps_per_epoch

    def _log_terms(self, terms: dict[str, torch.Tensor], stage: str, size: int) -> None:
        for name in ("loss", *LOSS_TERMS):
            shown = name in ("loss", "coord", "type") or stage == "val"
            self.log(
                f"{stage}_{name}",
                terms[name],
                prog_bar=shown and name != "kl",
                batch_size=size,
                on_epoch=True,
                on_step=False,
                sync_dist=stage == "val",
            )

    def training_step(self, crystals: CrystalBatch, batch_idx: int) -> torch.Tensor:
        terms = self.model(crystals)
        self._log_terms(terms, "train", crystals.num_atoms.shape[0])
        return terms["loss"]

    def validation_step(self, crystals: CrystalBatch, batch_idx: int) -> None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(batch_idx)  # the same noise every epoch: val losses are comparable
        terms = self.model(crystals)
        torch.random.set_rng_state(generator_state)
        self._log_terms(terms, "val", crystals.num_atoms.shape[0])

    def transfer_batch_to_device(
        self, batch: CrystalBatch, device: torch.device, dataloader_idx: int
    ) -> CrystalBatch:
        return batch.to(device)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.settings.learning_rate,
            weight_decay=self.settings.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.settings.epochs, eta_min=self.settings.min_learning_rate
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "epoch"},
        }


def train_generator(
    train: CrystalDataset,
    val: CrystalDataset,
    config: CDVAEConfig,
    settings: GeneratorSettings,
    out_dir: Path,
    resume: bool = True,
    callbacks: list[L.Callback] | None = None,
) -> CDVAE:
    """Train CDVAE into ``out_dir`` (``last.ckpt`` every epoch, ``best.ckpt``), resumable.

    Writes ``generator.pt`` (self-describing, best epoch) and ``metrics.json`` at the end.
    """
    quiet_lightning()
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    train_loader = train.loader(settings.batch_size, shuffle=True, seed=settings.seed)
    val_loader = val.loader(max(settings.batch_size, 64))
    module = GeneratorModule(config, settings, len(train_loader))
    module.model.set_statistics(**train.statistics())
    module.model.set_sampling_prior(train.structures)
    trainer, checkpoint = build_trainer(
        out_dir,
        max_epochs=settings.epochs,
        monitor="val_loss",
        patience=settings.patience,
        devices=settings.devices,
        progress=settings.progress,
        callbacks=callbacks,
        gradient_clip_val=settings.gradient_clip,
    )
    started = time.time()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_path(out_dir, resume))
    if not trainer.is_global_zero:  # other DDP ranks train; rank 0 writes the results
        return module.model.eval()
    best = GeneratorModule.load_from_checkpoint(
        checkpoint.best_model_path, map_location="cpu", weights_only=False
    )
    torch.save(best.model.to_checkpoint(), out_dir / "generator.pt")
    metrics = {
        "best_val_loss": float(checkpoint.best_model_score),
        "epochs_run": int(trainer.current_epoch),
        "seconds_this_run": time.time() - started,
        "train_structures": len(train),
        "val_structures": len(val),
        "val": {
            k.removeprefix("val_"): float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val_")
        },
        "config": asdict(config),
        "settings": asdict(settings),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return best.model.eval()


def export_generator(run_dir: Path, which: str = "best") -> Path:
    """Write ``run_dir/generator.pt`` from ``run_dir/{which}.ckpt`` (a run stopped early)."""
    module = GeneratorModule.load_from_checkpoint(
        run_dir / f"{which}.ckpt", map_location="cpu", weights_only=False
    )
    path = run_dir / "generator.pt"
    torch.save(module.model.to_checkpoint(), path)
    return path
