"""Batching crystal graphs: concatenate arrays and shift indices (shapes in ``keys``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from tcdesign.data.graphs import CrystalGraph


@dataclass
class GraphBatch:
    """Several crystal graphs as one disconnected graph."""

    atomic_numbers: torch.Tensor  # (n_atoms,) int64
    edge_index: torch.Tensor  # (2, n_edges) int64, atom indices into the batch
    edge_vectors: torch.Tensor  # (n_edges, 3) float32, Angstrom
    line_index: torch.Tensor  # (2, n_triplets) int64, edge indices into the batch
    angle_cosines: torch.Tensor  # (n_triplets,) float32
    batch: torch.Tensor  # (n_atoms,) int64, crystal of each atom
    num_atoms: torch.Tensor  # (n_crystals,) int64
    extra_atom_features: torch.Tensor | None = None  # (n_atoms, d_extra) float32
    descriptors: torch.Tensor | None = None  # (n_crystals, d_descriptors) float32
    targets: torch.Tensor | None = None  # (n_crystals,) float32, in target units

    @property
    def num_crystals(self) -> int:
        return int(self.num_atoms.shape[0])

    def to(self, device: torch.device | str) -> GraphBatch:
        moved = {
            f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
            for f in fields(self)
        }
        return GraphBatch(**moved)


def collate(
    graphs: Sequence[CrystalGraph],
    targets: Sequence[float] | None = None,
    extra_atom_features: Sequence[np.ndarray] | None = None,
    descriptors: np.ndarray | None = None,
) -> GraphBatch:
    """Join graphs into one batch; edge and line-graph indices are offset per crystal."""
    num_atoms = np.array([g.num_atoms for g in graphs], dtype=np.int64)  # (n_crystals,)
    num_edges = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
    atom_offsets = np.concatenate(([0], np.cumsum(num_atoms)[:-1]))  # (n_crystals,)
    edge_offsets = np.concatenate(([0], np.cumsum(num_edges)[:-1]))  # (n_crystals,)
    edge_index = np.concatenate(
        [g.edge_index + off for g, off in zip(graphs, atom_offsets, strict=True)], axis=1
    )  # (2, n_edges)
    line_index = np.concatenate(
        [g.line_index + off for g, off in zip(graphs, edge_offsets, strict=True)], axis=1
    )  # (2, n_triplets)
    extra = None
    if extra_atom_features is not None:
        extra = torch.from_numpy(np.concatenate(extra_atom_features).astype(np.float32))
    return GraphBatch(
        atomic_numbers=torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs])),
        edge_index=torch.from_numpy(edge_index),
        edge_vectors=torch.from_numpy(np.concatenate([g.edge_vectors for g in graphs])),
        line_index=torch.from_numpy(line_index),
        angle_cosines=torch.from_numpy(np.concatenate([g.angle_cosines for g in graphs])),
        batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), num_atoms)),
        num_atoms=torch.from_numpy(num_atoms),
        extra_atom_features=extra,
        descriptors=None if descriptors is None else torch.as_tensor(descriptors).float(),
        targets=None if targets is None else torch.tensor(targets, dtype=torch.float32),
    )
