"""Torch lattice utilities: parameters, coordinates, minimum image, periodic radius graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tcdesign.generate.lattice import (
    cart_to_frac,
    frac_to_cart,
    lattice_from_parameters,
    lattice_parameters,
    min_image_difference,
    periodic_radius_graph,
)


def as_batch(structures: list[Structure]):
    frac = torch.tensor(np.concatenate([s.frac_coords for s in structures]), dtype=torch.float64)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=torch.float64)
    num_atoms = torch.tensor([len(s) for s in structures])
    batch = torch.repeat_interleave(torch.arange(len(structures)), num_atoms)
    return frac, lattice, num_atoms, batch


def test_parameters_round_trip_and_volume() -> None:
    lengths = torch.tensor([[3.0, 4.0, 5.0], [2.5, 2.5, 7.0]], dtype=torch.float64)
    angles = torch.tensor([[80.0, 95.0, 110.0], [90.0, 90.0, 120.0]], dtype=torch.float64)
    matrix = lattice_from_parameters(lengths, angles)
    back_lengths, back_angles = lattice_parameters(matrix)
    assert back_lengths == pytest.approx(lengths)
    assert back_angles == pytest.approx(angles)
    expected = Lattice.from_parameters(3, 4, 5, 80, 95, 110).volume
    assert abs(float(torch.linalg.det(matrix[0]))) == pytest.approx(expected)


def test_frac_cart_round_trip(ternary: Structure) -> None:
    frac, lattice, _, batch = as_batch([ternary])
    cart = frac_to_cart(frac, lattice, batch)
    assert cart.numpy() == pytest.approx(ternary.cart_coords)
    assert cart_to_frac(cart, lattice, batch).numpy() == pytest.approx(frac.numpy())


def test_min_image_difference_wraps() -> None:
    lattice = torch.eye(3, dtype=torch.float64)[None] * 4.0
    batch = torch.zeros(1, dtype=torch.long)
    start = torch.tensor([[0.95, 0.5, 0.5]], dtype=torch.float64)
    end = torch.tensor([[0.05, 0.5, 0.5]], dtype=torch.float64)
    difference = min_image_difference(start, end, lattice, batch)
    assert difference[0].tolist() == pytest.approx([0.4, 0.0, 0.0])


@pytest.mark.parametrize("cutoff", [3.5, 6.0])
def test_radius_graph_matches_pymatgen(ternary: Structure, rocksalt: Structure, cutoff) -> None:
    structures = [ternary, rocksalt, rocksalt * (2, 1, 1)]
    frac, lattice, num_atoms, batch = as_batch(structures)
    edge_index, vectors = periodic_radius_graph(frac, lattice, batch, num_atoms, cutoff, 10_000)
    first = 0
    for k, structure in enumerate(structures):
        centers, _, _, distances = structure.get_neighbor_list(cutoff)
        mine = batch[edge_index[1]] == k
        assert np.sort(vectors[mine].norm(dim=1).numpy()) == pytest.approx(np.sort(distances))
        assert np.bincount(edge_index[1][mine].numpy() - first, minlength=len(structure)) == (
            pytest.approx(np.bincount(centers, minlength=len(structure)))
        )
        first += len(structure)
    # vectors are r_source + image - r_target
    cart = frac_to_cart(frac, lattice, batch)
    shift = vectors - (cart[edge_index[0]] - cart[edge_index[1]])
    image = torch.linalg.solve(lattice[batch[edge_index[1]]].transpose(1, 2), shift[..., None])
    assert torch.allclose(image, image.round(), atol=1e-6)


def test_radius_graph_keeps_the_nearest(rocksalt: Structure) -> None:
    frac, lattice, num_atoms, batch = as_batch([rocksalt])
    edge_index, vectors = periodic_radius_graph(frac, lattice, batch, num_atoms, 6.0, 6)
    assert np.bincount(edge_index[1].numpy()).tolist() == [6, 6]
    assert vectors.norm(dim=1).numpy() == pytest.approx(np.full(12, 4.47 / 2))
