"""Crystals as generator training data: Niggli-reduced cells, arrays, encoder graphs, batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from torch.utils.data import DataLoader, Dataset

from tcdesign.data.graphs import GraphSettings
from tcdesign.data.loader import training_loader
from tcdesign.generate.cdvae import CrystalBatch
from tcdesign.predict.dataset import GraphDataset


def canonical_cell(structure: Structure) -> Structure:
    """The Niggli-reduced cell with coordinates wrapped into [0, 1)."""
    reduced = structure.get_reduced_structure(reduction_algo="niggli")
    return Structure(reduced.lattice, reduced.species, reduced.frac_coords % 1.0)


class CrystalDataset(Dataset):
    """Structures (and Tc, NaN where unknown) prepared once for the generator."""

    def __init__(
        self,
        structures: Sequence[Structure],
        tc: Sequence[float] | None = None,
        graph_settings: GraphSettings | None = None,
        progress: bool = False,
    ) -> None:
        cells = [canonical_cell(s) for s in structures]
        self.structures = cells
        self.graphs = GraphDataset(cells, None, graph_settings, progress=progress)
        self.frac = [np.asarray(c.frac_coords, dtype=np.float32) for c in cells]
        self.types = [np.asarray(c.atomic_numbers, dtype=np.int64) for c in cells]
        self.lattices = np.stack([c.lattice.matrix for c in cells]).astype(np.float32)
        self.lengths = np.array([c.lattice.abc for c in cells], dtype=np.float32)
        self.angles = np.array([c.lattice.angles for c in cells], dtype=np.float32)
        self.tc = (
            np.full(len(cells), np.nan, np.float32)
            if tc is None
            else np.asarray(tc, dtype=np.float32)
        )

    def __len__(self) -> int:
        return len(self.structures)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> CrystalBatch:
        indices = list(indices)
        num_atoms = torch.tensor([len(self.types[i]) for i in indices])
        return CrystalBatch(
            graphs=self.graphs.collate(indices),
            frac_coords=torch.from_numpy(np.concatenate([self.frac[i] for i in indices])),
            atom_types=torch.from_numpy(np.concatenate([self.types[i] for i in indices])),
            lattice=torch.from_numpy(self.lattices[indices]),
            lengths=torch.from_numpy(self.lengths[indices]),
            angles=torch.from_numpy(self.angles[indices]),
            num_atoms=num_atoms,
            batch=torch.repeat_interleave(torch.arange(len(indices)), num_atoms),
            tc=torch.from_numpy(self.tc[indices]),
        )

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        return training_loader(self, batch_size, self.collate, shuffle, seed)

    def statistics(self) -> dict[str, torch.Tensor]:
        """Arrays that :meth:`CDVAE.set_statistics` fits its scalers on."""
        return {
            "lengths": torch.from_numpy(self.lengths),
            "angles": torch.from_numpy(self.angles),
            "num_atoms": torch.tensor([len(t) for t in self.types]),
            "tc": torch.from_numpy(self.tc),
        }
