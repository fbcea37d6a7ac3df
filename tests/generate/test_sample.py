"""Sampling settings: the composition temperature, the composition rule and the atom counts of
Tc-optimised samples."""

from __future__ import annotations

import pytest
import torch

from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.metrics import composition_validity
from tcdesign.generate.sample import LangevinSchedule, decode, decode_optimized, draw_num_atoms
from tests.generate.test_cdvae import TINY


def distinct_elements(temperature: float) -> list[int]:
    torch.manual_seed(0)
    model = CDVAE(TINY).eval()
    z = torch.randn(12, TINY.latent, generator=torch.Generator().manual_seed(1))
    schedule = LangevinSchedule(
        steps_per_level=0, composition_temperature=temperature, composition="cdvae"
    )
    decoded = decode(model, z, schedule, torch.Generator().manual_seed(2))
    return [len(s.composition.elements) for s in decoded.structures()]


def test_composition_temperature_sharpens_the_composition() -> None:
    cdvae_rule = distinct_elements(1.0)
    sharp = distinct_elements(1e-4)  # the untrained head is nearly uniform: T must be tiny
    assert sharp == [1] * len(sharp)  # T -> 0: every atom takes the most likely element
    assert sum(cdvae_rule) > sum(sharp)


def prior_model(k: int = 2, volume: float = 10.0) -> CDVAE:
    """The tiny untrained model with a hand-set prior: every cell has ``k`` elements and every
    element an atomic volume of ``volume`` A^3."""
    torch.manual_seed(0)
    model = CDVAE(TINY).eval()
    model.element_counts[:, k] = 1.0
    model.atomic_volumes.fill_(volume)
    return model


def test_the_prior_rule_needs_a_prior() -> None:
    model = CDVAE(TINY).eval()
    z = torch.randn(2, TINY.latent)
    with pytest.raises(ValueError, match="no sampling prior"):
        decode(model, z, LangevinSchedule(steps_per_level=0, composition="prior"))
    assert len(decode(model, z, LangevinSchedule(steps_per_level=0, composition="cdvae")).tc) == 2


def test_prior_rule_element_counts_volumes_and_charge_balance() -> None:
    model = prior_model(k=2, volume=10.0)
    z = torch.randn(16, TINY.latent, generator=torch.Generator().manual_seed(1))
    schedule = LangevinSchedule(steps_per_level=2, levels=3, composition="prior")
    structures = decode(model, z, schedule, torch.Generator().manual_seed(2)).structures()
    for structure in structures:
        assert len(structure.composition) == min(len(structure), 2)
        assert structure.volume == pytest.approx(10.0 * len(structure), rel=1e-6)
    # the untrained head is nearly uniform over 100 elements; redraws make the compositions
    # charge-balanced (or all-metal) nonetheless
    assert sum(composition_validity(s) for s in structures) >= 15


def test_prior_rule_keeps_the_drawn_types_through_langevin() -> None:
    model = prior_model()
    z = torch.randn(6, TINY.latent, generator=torch.Generator().manual_seed(3))
    formulas = []
    for steps in (0, 3):
        schedule = LangevinSchedule(steps_per_level=steps, levels=4, composition="prior")
        decoded = decode(model, z, schedule, torch.Generator().manual_seed(4))
        formulas.append([s.composition.formula for s in decoded.structures()])
    assert formulas[0] == formulas[1]


def test_prior_rule_is_reproducible_with_a_seed() -> None:
    model = prior_model()
    z = torch.randn(4, TINY.latent, generator=torch.Generator().manual_seed(5))
    schedule = LangevinSchedule(steps_per_level=1, levels=2)
    first, second = (
        decode(model, z, schedule, torch.Generator().manual_seed(6)).structures() for _ in range(2)
    )
    assert [s.composition for s in first] == [s.composition for s in second]
    assert all(a.lattice == b.lattice for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("rule", ["prior", "cdvae"])
def test_optimised_samples_keep_the_atom_counts_of_their_starting_latents(rule: str) -> None:
    model = prior_model()
    z = torch.randn(8, TINY.latent, generator=torch.Generator().manual_seed(7))
    schedule = LangevinSchedule(steps_per_level=1, levels=2, composition=rule)
    expected = draw_num_atoms(model, z, schedule, torch.Generator().manual_seed(8))
    decoded = decode_optimized(
        model, z, schedule, torch.Generator().manual_seed(8), steps=30, lr=0.5
    )
    assert decoded.num_atoms.tolist() == expected.tolist()
    assert decoded.tc.mean() > model.predict_tc(z).mean()  # the latents did move uphill
    # no optimisation: the same crystals as plain decoding (same random stream)
    unmoved = decode_optimized(model, z, schedule, torch.Generator().manual_seed(8), steps=0)
    plain = decode(model, z, schedule, torch.Generator().manual_seed(8))
    assert torch.equal(unmoved.frac_coords, plain.frac_coords)
    assert torch.equal(unmoved.lattice, plain.lattice)
