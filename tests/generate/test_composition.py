"""The training-set sampling prior: element-count table, atomic volumes, composition draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.composition import (
    MAX_ELEMENTS,
    allocate_counts,
    atomic_volume_table,
    draw_composition,
    draw_num_elements,
    element_count_table,
    scale_to_volume,
    summed_volumes,
)
from tcdesign.generate.lattice import lattice_from_parameters
from tcdesign.generate.metrics import composition_validity
from tests.generate.test_cdvae import TINY


def rocksalt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )


def fcc_al() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])


def test_element_count_table_counts_cells_by_atoms_and_elements() -> None:
    table = element_count_table([rocksalt(), rocksalt(), fcc_al()], max_atoms=10)
    assert table.shape == (11, MAX_ELEMENTS + 1)
    assert table[8, 2] == 2 and table[4, 1] == 1 and table.sum() == 3


def test_atomic_volume_table_covers_every_element() -> None:
    volumes = atomic_volume_table([fcc_al()] * 3)  # Al fitted from three cells
    assert volumes.shape == (100,) and torch.all(volumes > 0)
    assert volumes[13 - 1] == pytest.approx(4.05**3 / 4, rel=1e-6)


def test_allocate_counts_gives_every_chosen_element_an_atom() -> None:
    probs = np.full(100, 1e-4)
    probs[[25, 7]] = [0.9, 0.05]  # Fe dominant, O rare
    classes = allocate_counts(probs, np.array([25, 7]), 5)
    assert len(classes) == 5 and sorted(set(classes)) == [7, 25]
    assert list(classes).count(25) == 4


def test_draw_num_elements_follows_the_row_and_never_exceeds_n() -> None:
    rng = np.random.default_rng(0)
    row = np.zeros(MAX_ELEMENTS + 1)
    row[3] = 1.0
    assert {draw_num_elements(row, 6, rng) for _ in range(20)} == {3}
    assert draw_num_elements(row, 2, rng) == 2  # k = 3 impossible with 2 atoms: fallback
    assert draw_num_elements(np.zeros(MAX_ELEMENTS + 1), 1, rng) == 1


def test_draw_composition_redraws_until_charge_balanced() -> None:
    probs = np.full(100, 1e-6)
    probs[[8, 9, 10]] = [0.4, 0.3, 0.3]  # F, Ne, Na: only NaF is charge-balanced
    row = np.zeros(MAX_ELEMENTS + 1)
    row[2] = 1.0
    rng = np.random.default_rng(1)
    for _ in range(10):
        numbers = draw_composition(probs, 2, row, rng, retries=50)
        composition = Composition({z: numbers.count(z) for z in set(numbers)})
        assert composition_validity(composition)
        assert sorted(numbers) == [9, 11]


def test_scale_to_volume_keeps_the_shape() -> None:
    lattice = lattice_from_parameters(
        torch.tensor([[3.0, 4.0, 5.0]]), torch.tensor([[80.0, 95.0, 100.0]])
    )
    scaled = scale_to_volume(lattice, torch.tensor([123.0]))
    assert float(torch.linalg.det(scaled).abs()) == pytest.approx(123.0, rel=1e-5)
    before = Lattice(lattice[0].numpy()).angles
    after = Lattice(scaled[0].numpy()).angles
    assert np.allclose(before, after, atol=1e-4)


def test_summed_volumes_per_crystal() -> None:
    volumes = torch.arange(1, 101, dtype=torch.float32)  # element class Z - 1 -> Z A^3
    types = torch.tensor([1, 2, 26])
    batch = torch.tensor([0, 0, 1])
    assert summed_volumes(types, batch, 2, volumes).tolist() == [3.0, 26.0]


def test_checkpoint_keeps_the_prior_and_old_checkpoints_load_without_it() -> None:
    model = CDVAE(TINY)
    model.set_sampling_prior([rocksalt(), fcc_al()])
    assert model.has_sampling_prior
    restored = CDVAE.from_checkpoint(model.to_checkpoint())
    assert torch.equal(restored.element_counts, model.element_counts)
    assert torch.equal(restored.atomic_volumes, model.atomic_volumes)
    old = model.to_checkpoint()
    del old["state_dict"]["element_counts"], old["state_dict"]["atomic_volumes"]
    assert not CDVAE.from_checkpoint(old).has_sampling_prior
    del old["state_dict"]["tc_std"]
    with pytest.raises(ValueError, match="does not fit"):
        CDVAE.from_checkpoint(old)
