"""Batching crystal graphs (tcdesign.data.batch.collate): index offsets and bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tcdesign.data.batch import GraphBatch, collate
from tcdesign.data.graphs import CrystalGraph, crystal_graph


@pytest.fixture(scope="module")
def graphs() -> list[CrystalGraph]:
    """Three crystals of 1, 2 and 3 atoms, with different edge and triplet counts."""
    fcc = Structure(Lattice([[0, 2, 2], [2, 0, 2], [2, 2, 0]]), ["Al"], [[0, 0, 0]])
    nbc = Structure(
        Lattice([[0, 2.2, 2.2], [2.2, 0, 2.2], [2.2, 2.2, 0]]),
        ["Nb", "C"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )
    low = Structure(
        Lattice.from_parameters(3.9, 4.3, 5.1, 84, 97, 105),
        ["Nb", "Sn", "B"],
        [[0.02, 0.05, 0.01], [0.51, 0.47, 0.12], [0.73, 0.18, 0.81]],
    )
    return [crystal_graph(s) for s in (fcc, nbc, low)]


def test_collate_two_graphs_offsets_indices(graphs: list[CrystalGraph]) -> None:
    g0, g1 = graphs[:2]
    batch = collate([g0, g1])
    n_edges0 = g0.edge_index.shape[1]
    expected_edges = np.concatenate((g0.edge_index, g1.edge_index + g0.num_atoms), axis=1)
    expected_lines = np.concatenate((g0.line_index, g1.line_index + n_edges0), axis=1)
    assert torch.equal(batch.edge_index, torch.from_numpy(expected_edges))
    assert torch.equal(batch.line_index, torch.from_numpy(expected_lines))
    assert batch.batch.tolist() == [0, 1, 1]
    assert batch.num_atoms.tolist() == [1, 2]
    assert batch.num_crystals == 2
    assert batch.atomic_numbers.tolist() == [13, 41, 6]
    assert torch.equal(
        batch.edge_vectors, torch.from_numpy(np.concatenate((g0.edge_vectors, g1.edge_vectors)))
    )
    assert torch.equal(
        batch.angle_cosines, torch.from_numpy(np.concatenate((g0.angle_cosines, g1.angle_cosines)))
    )
    assert batch.targets is None and batch.extra_atom_features is None


def test_collate_three_graphs(graphs: list[CrystalGraph]) -> None:
    batch = collate(graphs, targets=[1.5, 0.0, 9.2])
    atoms = [g.num_atoms for g in graphs]  # 1, 2, 3
    edges = [g.edge_index.shape[1] for g in graphs]
    assert batch.batch.tolist() == [0, 1, 1, 2, 2, 2]
    assert batch.num_atoms.tolist() == atoms
    third = slice(edges[0] + edges[1], sum(edges))
    assert torch.equal(
        batch.edge_index[:, third], torch.from_numpy(graphs[2].edge_index + atoms[0] + atoms[1])
    )
    n_lines = [g.line_index.shape[1] for g in graphs]
    assert torch.equal(
        batch.line_index[:, n_lines[0] + n_lines[1] :],
        torch.from_numpy(graphs[2].line_index + edges[0] + edges[1]),
    )
    assert batch.targets.dtype == torch.float32
    assert batch.targets.tolist() == pytest.approx([1.5, 0.0, 9.2])


def test_batch_stays_a_disjoint_union(graphs: list[CrystalGraph]) -> None:
    batch = collate(graphs)
    src, dst = batch.edge_index
    assert torch.equal(batch.batch[src], batch.batch[dst])  # no bond between crystals
    a, b = batch.line_index
    assert torch.equal(dst[a], src[b])  # bond k->j feeds bond j->i, as in each graph
    assert int(batch.edge_index.max()) == sum(g.num_atoms for g in graphs) - 1
    assert int(batch.line_index.max()) == batch.edge_index.shape[1] - 1


def test_dtypes_extra_features_and_device(graphs: list[CrystalGraph]) -> None:
    extra = [np.full((g.num_atoms, 2), float(i)) for i, g in enumerate(graphs)]
    batch = collate(graphs, extra_atom_features=extra)
    for name in ("atomic_numbers", "edge_index", "line_index", "batch", "num_atoms"):
        assert getattr(batch, name).dtype == torch.int64, name
    assert batch.edge_vectors.dtype == torch.float32
    assert batch.angle_cosines.dtype == torch.float32
    assert batch.extra_atom_features.dtype == torch.float32
    assert batch.extra_atom_features.shape == (6, 2)
    assert batch.extra_atom_features[:, 0].tolist() == [0, 1, 1, 2, 2, 2]
    moved = batch.to("cpu")
    assert isinstance(moved, GraphBatch)
    assert torch.equal(moved.edge_index, batch.edge_index)


def test_single_graph_is_unchanged(graphs: list[CrystalGraph]) -> None:
    g = graphs[2]
    batch = collate([g])
    assert torch.equal(batch.edge_index, torch.from_numpy(g.edge_index))
    assert torch.equal(batch.line_index, torch.from_numpy(g.line_index))
    assert batch.batch.tolist() == [0, 0, 0]
