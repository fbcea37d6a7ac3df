"""The Lightning set-up shared by every tcdesign model: checkpoints, resume, progress, devices.

Each run writes ``last.ckpt`` every epoch and ``best.ckpt`` for the best monitored value,
resumes from ``last.ckpt`` after a kill, stops early on the monitored value, and passes the
accelerator, devices, nodes, strategy (e.g. DDP) and precision straight to Lightning.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class RandomStateCheckpoint(L.Callback):
    """Keeps the random state (torch, numpy, Python) in every checkpoint and restores it on
    resume, so that dropout and the generator's noise continue the draws of the interrupted run:
    a run killed and resumed ends with the weights of one that never stopped."""

    KEY = "tcdesign_random_state"

    def on_save_checkpoint(
        self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        name, keys, position, has_gauss, cached = np.random.get_state()
        checkpoint[self.KEY] = {  # tensors and plain numbers: loadable with weights_only
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
            "python": random.getstate(),
        }

    def on_load_checkpoint(
        self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(self.KEY)
        if state is None:  # a checkpoint from an older tcdesign
            return
        torch.set_rng_state(state["torch"])
        name, keys, position, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        random.setstate(state["python"])


@dataclass(frozen=True)
class Devices:
    """Where Lightning runs (https://lightning.ai/docs/pytorch/stable/common/trainer.html)."""

    accelerator: str = "auto"  # cpu, gpu, auto
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "32-true"  # e.g. bf16-mixed


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one appends to it, so the
    epochs logged before a kill stay in the log of the resumed run."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])  # the columns written so far


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``metrics.csv`` with :class:`_AppendingWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class _RememberInterrupt(L.Callback):
    """Keeps the exception that interrupted a fit (Lightning hands it to ``on_exception``)."""

    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def on_exception(
        self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException
    ) -> None:
        self.exception = exception


class InterruptibleTrainer(L.Trainer):
    """A Trainer whose ``fit`` lets Ctrl-C and SIGTERM through.

    Lightning turns a KeyboardInterrupt during ``fit`` into ``sys.exit(1)`` and leaves SIGINT
    ignored: a killed training ended with exit status 1 (an internal error) and no message.
    Here the interrupt is raised again (``tcdesign`` reports it: 130, or 143 for SIGTERM) and
    the SIGINT handler is restored.
    """

    def fit(self, *args, **kwargs) -> None:
        remember = _RememberInterrupt()
        self.callbacks.append(remember)
        in_main_thread = threading.current_thread() is threading.main_thread()
        sigint = signal.getsignal(signal.SIGINT) if in_main_thread else None
        try:
            super().fit(*args, **kwargs)
        except SystemExit:
            if isinstance(remember.exception, KeyboardInterrupt):
                raise remember.exception from None
            raise
        finally:
            self.callbacks.remove(remember)
            if in_main_thread and sigint is not None:
                signal.signal(signal.SIGINT, sigint)


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter and warnings that do not apply to small CPU runs."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*_pytree.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")


def _device_arguments(devices: Devices) -> dict:
    # the last layers' edge (and angle) updates feed no output, so plain DDP would refuse them
    strategy = "ddp_find_unused_parameters_true" if devices.strategy == "ddp" else devices.strategy
    return {
        "accelerator": devices.accelerator,
        "devices": devices.devices,
        "num_nodes": devices.num_nodes,
        "strategy": strategy,
        "precision": devices.precision,
    }


def check_devices(devices: Devices) -> None:
    """Raise InputError (exit status 2) when Lightning refuses the device flags, e.g.
    ``--accelerator gpu`` without a GPU or an unknown --precision; before any data is read."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from tcdesign.data.io import InputError

    quiet_lightning()
    try:
        L.Trainer(**_device_arguments(devices), logger=False, enable_checkpointing=False)
    except (MisconfigurationException, ValueError) as exc:
        flags = "--accelerator, --devices, --num-nodes, --strategy or --precision"
        raise InputError(f"{flags}: {str(exc).splitlines()[0]}") from None


def build_trainer(
    out_dir: Path,
    *,
    max_epochs: int,
    monitor: str,
    patience: int,
    devices: Devices,
    progress: bool,
    callbacks: list[L.Callback] | None = None,
    gradient_clip_val: float | None = None,
) -> tuple[InterruptibleTrainer, ModelCheckpoint]:
    """A Trainer that checkpoints into ``out_dir`` every epoch and stops early on ``monitor``."""
    quiet_lightning()
    checkpoint = ModelCheckpoint(
        dirpath=out_dir,
        filename="best",
        monitor=monitor,
        mode="min",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )
    all_callbacks: list[L.Callback] = [
        RandomStateCheckpoint(),
        checkpoint,
        EarlyStopping(monitor=monitor, mode="min", patience=patience),
        *(callbacks or []),
    ]
    if progress:
        all_callbacks.append(TQDMProgressBar(refresh_rate=10))
    trainer = InterruptibleTrainer(
        max_epochs=max_epochs,
        **_device_arguments(devices),
        callbacks=all_callbacks,
        logger=ResumableCSVLogger(out_dir, name="logs", version=0),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        gradient_clip_val=gradient_clip_val,
    )
    return trainer, checkpoint


def is_main_process() -> bool:
    """False in the extra processes that Lightning's DDP launcher starts (they only train)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def resume_path(out_dir: Path, resume: bool) -> str | None:
    """``out_dir/last.ckpt`` when resuming and it exists, else None (a fresh start)."""
    last = out_dir / "last.ckpt"
    return str(last) if resume and last.exists() else None
