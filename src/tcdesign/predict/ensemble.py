"""An ensemble of ALIGNN members: mean prediction and a calibrated standard deviation.

The spread of independently seeded members is the uncertainty; one scale factor, fitted on the
validation set, makes about 95 % of validation errors fall within 2 standard deviations.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from tqdm.auto import tqdm

from tcdesign import jsonio
from tcdesign.data.batch import GraphBatch
from tcdesign.data.io import InputError
from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig
from tcdesign.predict.dataset import GraphDataset
from tcdesign.predict.features import unsupported_reason
from tcdesign.predict.train import TrainData, TrainSettings, member_dirs, seeds_for, train_member
from tcdesign.training import is_main_process


def _predict_one_thread(members: Sequence[ALIGNN], batch: GraphBatch) -> list[torch.Tensor]:
    """Predictions of ``members`` on ``batch`` in this (worker) thread, with one torch thread:
    grad mode and OpenMP's thread count are per thread, so both are set here."""
    torch.set_num_threads(1)
    with torch.no_grad():
        return [m.inverse_transform(m(batch)) for m in members]


BUNDLED_MODEL = "models/tc_ensemble/ensemble.pt"  # inside the tcdesign package
COVERAGE = 0.95  # fraction of validation errors meant to fall within 2 calibrated std


def calibrate_std_scale(errors: np.ndarray, stds: np.ndarray, coverage: float = COVERAGE) -> float:
    """Scale s such that a fraction ``coverage`` of |errors| <= 2 * s * stds."""
    ratios = np.abs(errors) / np.maximum(stds, 1e-6) / 2.0
    # "higher" puts one error exactly on the boundary; the 0.1 % margin keeps it inside when
    # the same model is rerun with other thread counts or batch sizes (float round-off)
    return float(np.quantile(ratios, coverage, method="higher")) * 1.001


def calibrate_member_scales(values: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """The std scale of the first n members, n = 2 .. all, from (n_members, n_structures)
    validation predictions: a smaller ensemble (``Ensemble.load(members=n)``) is as well
    calibrated as the whole one."""
    scales = {}
    for n in range(2, len(values) + 1):
        subset = values[:n]
        scales[n] = calibrate_std_scale(subset.mean(axis=0) - truth, subset.std(axis=0))
    return scales


class Ensemble:
    """Members of one target; ``predict`` gives mean and calibrated std in target units.

    ``std_scales`` maps n to the calibrated scale of the first n members (2 .. all), so that
    :meth:`load` can give a faster ensemble of fewer members with an honest std."""

    def __init__(
        self,
        members: Sequence[ALIGNN],
        std_scale: float = 1.0,
        metrics: dict | None = None,
        std_scales: dict[int, float] | None = None,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        shared = {
            (c.cutoff, c.max_neighbors, c.target, c.pretrained_features, c.descriptors)
            for c in (m.config for m in members)
        }
        if len(shared) != 1:
            raise ValueError("ensemble members disagree on graph settings, target or features")
        self.members = [m.eval() for m in members]
        self.std_scale = std_scale
        self.std_scales = dict(std_scales or {})
        self.metrics = metrics or {}
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> Ensemble:
        """Run the members on ``device`` (graphs are still built on the CPU; each batch moves
        there and its predictions come back); returns self."""
        self.device = torch.device(device)
        self.members = [m.to(self.device) for m in self.members]
        return self

    @property
    def config(self) -> ALIGNNConfig:
        return self.members[0].config

    @property
    def target(self) -> str:
        return self.config.target

    def dataset(self, structures: Sequence[Structure], progress: bool = False) -> GraphDataset:
        return GraphDataset(
            structures,
            None,
            self.config.graph_settings,
            self.config.pretrained_features,
            self.config.descriptors,
            progress=progress,
        )

    @torch.no_grad()
    def member_predictions(
        self, data: GraphDataset, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """(n_members, n_structures) predictions in target units.

        On a CPU with several torch threads the members are split into that many groups that
        run side by side, one thread each, instead of one member at a time on all threads: the
        operations of these small networks split poorly across threads, so on 2 cores this
        takes the 10 bundled members from 2.2 to 1.5 s per 105 val structures. The results
        agree with the one-at-a-time ones to float32 rounding (~1e-7).
        """
        threads = torch.get_num_threads()
        groups = self._thread_groups(threads)
        pool = ThreadPoolExecutor(len(groups)) if len(groups) > 1 else None
        outputs = []
        bar = tqdm(
            total=len(data), desc="predict", unit="structure", disable=not progress, leave=False
        )
        try:
            for batch in data.loader(batch_size):
                batch = batch.to(self.device)
                if pool is None:
                    values = [m.inverse_transform(m(batch)) for m in self.members]
                else:
                    futures = [pool.submit(_predict_one_thread, g, batch) for g in groups]
                    values = [v for future in futures for v in future.result()]
                outputs.append(torch.stack(values).cpu())
                bar.update(batch.num_crystals)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown()
                torch.set_num_threads(threads)  # the workers' setting reaches MKL's global one
        return torch.cat(outputs, dim=1).numpy() if outputs else np.zeros((len(self.members), 0))

    def _thread_groups(self, threads: int) -> list[list[ALIGNN]]:
        """Consecutive groups of members, one per CPU thread (one group on a GPU)."""
        n_groups = min(threads, len(self.members)) if self.device.type == "cpu" else 1
        bounds = np.linspace(0, len(self.members), max(n_groups, 1) + 1).round().astype(int)
        return [self.members[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def predict_dataset(
        self, data: GraphDataset, batch_size: int = 32, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        values = self.member_predictions(data, batch_size, progress)
        if len(self.members) < 2:  # one model has no spread: unknown, not zero
            return values.mean(axis=0), np.full(values.shape[1], np.nan)
        return values.mean(axis=0), values.std(axis=0) * self.std_scale

    def predict(
        self, structures: Sequence[Structure], batch_size: int = 32, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and calibrated std (target units, e.g. K) for each structure; the std is NaN
        for a single model (a member's ``model.pt``), which has no spread to calibrate. Both are
        NaN for a structure the model cannot describe (:meth:`unsupported`)."""
        usable = [k for k, s in enumerate(structures) if self.unsupported(s) is None]
        if len(usable) == len(structures):
            return self.predict_dataset(self.dataset(structures, progress), batch_size, progress)
        mean = np.full(len(structures), np.nan)
        std = np.full(len(structures), np.nan)
        if usable:
            data = self.dataset([structures[k] for k in usable], progress)
            mean[usable], std[usable] = self.predict_dataset(data, batch_size, progress)
        return mean, std

    def unsupported(self, structure: Structure) -> str | None:
        """Why this model cannot predict ``structure`` (an element beyond its pretrained atom
        features), or None. Structures the data layer accepts have Z <= 100, which the CGCNN
        features and descriptors cover."""
        return unsupported_reason(self.config.pretrained_features, structure)

    def to_checkpoint(self) -> dict:
        return {
            "model": "ensemble",
            "members": [m.to_checkpoint() for m in self.members],
            "std_scale": self.std_scale,
            "std_scales": {str(n): s for n, s in self.std_scales.items()},
            "metrics": self.metrics,
            "version": 1,
        }

    def save(self, path: Path) -> None:
        torch.save(self.to_checkpoint(), path)

    @classmethod
    def load(cls, path: str | Path | None = None, members: int | None = None) -> Ensemble:
        """Load an ensemble file, a single member's ``model.pt``, or the bundled Tc model.

        ``members``: keep only the first n members (faster in proportion), with the std scale
        calibrated for those n; InputError when the file has fewer members or no scale for n
        (ensembles trained before the per-size scales were stored)."""
        ensemble = cls._load(path)
        if members is None or members == len(ensemble.members):
            return ensemble
        where = path or "the bundled model"
        if not 1 <= members <= len(ensemble.members):
            raise InputError(f"--members {members}: {where} has {len(ensemble.members)} members")
        if members == 1:
            scale = float("nan")  # one model has no spread
        elif members in ensemble.std_scales:
            scale = ensemble.std_scales[members]
        else:
            raise InputError(
                f"--members {members}: {where} holds no std scale calibrated for {members} "
                "members (retrain it with this version of tcdesign)"
            )
        return cls(ensemble.members[:members], scale, ensemble.metrics, ensemble.std_scales)

    @classmethod
    def _load(cls, path: str | Path | None = None) -> Ensemble:
        if path is None:
            with resources.as_file(resources.files("tcdesign").joinpath(BUNDLED_MODEL)) as p:
                if not p.exists():
                    raise FileNotFoundError(f"bundled model missing: {p}; reinstall tcdesign")
                checkpoint = torch.load(p, map_location="cpu", weights_only=False)
        else:
            path = Path(path)
            if path.is_dir():  # e.g. the --out folder of 'tcdesign train predictor'
                raise InputError(f"{path}: a folder, not a model file; pass its ensemble.pt")
            if not path.is_file():
                raise InputError(f"{path}: model file not found")
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
                raise InputError(f"{path}: not a tcdesign model file ({exc})") from None
        if not isinstance(checkpoint, dict):
            raise InputError(f"{path}: not a tcdesign model file")
        if checkpoint.get("model") == "ensemble":
            members = [ALIGNN.from_checkpoint(c) for c in checkpoint["members"]]
            scales = {int(n): float(s) for n, s in checkpoint.get("std_scales", {}).items()}
            return cls(members, checkpoint["std_scale"], checkpoint.get("metrics"), scales)
        if checkpoint.get("model") == "alignn":
            return cls([ALIGNN.from_checkpoint(checkpoint)])
        raise InputError(f"{path}: not a tcdesign model file")


def regression_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    std: np.ndarray | None = None,
    threshold: float | None = None,
) -> dict[str, float]:
    """MAE, RMSE, R^2; coverage of 2 std; precision/recall above ``threshold``."""
    errors = pred - truth
    metrics = {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": float(1 - np.sum(errors**2) / max(np.sum((truth - truth.mean()) ** 2), 1e-12)),
        "n": int(len(truth)),
    }
    if std is not None:
        finite = np.isfinite(std)
        metrics["within_2std"] = (
            float(np.mean(np.abs(errors[finite]) <= 2 * std[finite])) if finite.any() else np.nan
        )
        metrics["mean_std"] = float(np.mean(std))
    if threshold is not None:
        predicted, actual = pred > threshold, truth > threshold
        tp = int(np.sum(predicted & actual))
        metrics["threshold"] = threshold
        metrics["precision"] = float(tp / max(predicted.sum(), 1))
        metrics["recall"] = float(tp / max(actual.sum(), 1))
        metrics["n_predicted_above"] = int(predicted.sum())
        metrics["n_above"] = int(actual.sum())
    return metrics


def train_ensemble(
    data: TrainData,
    config: ALIGNNConfig,
    settings: TrainSettings,
    out_dir: Path,
    n_members: int = 5,
    resume: bool = True,
    threshold: float | None = 5.0,
) -> Ensemble | None:
    """Train ``n_members`` seeds, calibrate the std on val, write ensemble.pt and metrics.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for k, (member_dir, seed) in enumerate(
        zip(member_dirs(out_dir, n_members), seeds_for(n_members, settings.seed), strict=True)
    ):
        if settings.progress:
            print(f"member {k + 1}/{n_members} (seed {seed}) -> {member_dir}", flush=True)
        results.append(train_member(data, config, replace(settings, seed=seed), member_dir, resume))
    if not is_main_process():
        return None  # an extra DDP process: rank 0 calibrates and writes the ensemble
    members = [
        ALIGNN.from_checkpoint(torch.load(d / "model.pt", map_location="cpu", weights_only=False))
        for d in member_dirs(out_dir, n_members)
    ]
    ensemble = Ensemble(members)
    values = ensemble.member_predictions(data.val)
    mean, spread = values.mean(axis=0), values.std(axis=0)
    truth = data.val.targets
    # one member has no spread to calibrate: its std is reported as NaN
    ensemble.std_scale = (
        calibrate_std_scale(mean - truth, spread) if n_members > 1 else float("nan")
    )
    ensemble.std_scales = calibrate_member_scales(values, truth)
    std = spread * ensemble.std_scale
    member_maes = [float(np.mean(np.abs(v - truth))) for v in values]
    ensemble.metrics = {
        "target": config.target,
        "val": regression_metrics(mean, truth, std, threshold if config.target == "tc" else None),
        "val_member_mae": member_maes,
        "std_scale": ensemble.std_scale,
        "members": [asdict(r) for r in results],
        "train_seconds": float(sum(r.seconds for r in results)),
        "config": asdict(config),
        "settings": asdict(settings),
        **data.meta,
    }
    ensemble.save(out_dir / "ensemble.pt")
    jsonio.write_json(out_dir / "metrics.json", ensemble.metrics)
    return ensemble
