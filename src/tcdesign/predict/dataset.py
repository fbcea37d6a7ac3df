"""Structures -> cached crystal graphs (and optional pretrained atom features) -> batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tcdesign.data.batch import GraphBatch, collate
from tcdesign.data.graphs import CrystalGraph, GraphSettings, crystal_graph
from tcdesign.data.loader import training_loader
from tcdesign.predict.descriptors import descriptors
from tcdesign.predict.features import atom_featurizer


class GraphDataset(Dataset):
    """Graphs built once from structures, with targets (target units) and extra atom features."""

    def __init__(
        self,
        structures: Sequence[Structure],
        targets: Sequence[float] | None = None,
        settings: GraphSettings | None = None,
        pretrained_features: str = "none",
        descriptor_set: str = "none",
        progress: bool = False,
    ) -> None:
        iterator = tqdm(
            structures, desc="graphs", unit="structure", disable=not progress, leave=False
        )
        settings = settings or GraphSettings()
        self.graphs: list[CrystalGraph] = [crystal_graph(s, settings) for s in iterator]
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        featurize = atom_featurizer(pretrained_features)
        self.extra: list[np.ndarray] | None = (
            None if featurize is None else featurize(structures, progress=progress)
        )
        self.descriptors: np.ndarray | None = descriptors(descriptor_set, structures)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> GraphBatch:
        return collate(
            [self.graphs[i] for i in indices],
            None if self.targets is None else self.targets[list(indices)],
            None if self.extra is None else [self.extra[i] for i in indices],
            None if self.descriptors is None else self.descriptors[list(indices)],
        )

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        return training_loader(self, batch_size, self.collate, shuffle, seed)
