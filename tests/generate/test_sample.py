"""Sampling settings: the composition temperature sharpens the element counts."""

from __future__ import annotations

import torch

from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.sample import LangevinSchedule, decode
from tests.generate.test_cdvae import TINY


def distinct_elements(temperature: float) -> list[int]:
    torch.manual_seed(0)
    model = CDVAE(TINY).eval()
    z = torch.randn(12, TINY.latent, generator=torch.Generator().manual_seed(1))
    schedule = LangevinSchedule(steps_per_level=0, composition_temperature=temperature)
    decoded = decode(model, z, schedule, torch.Generator().manual_seed(2))
    return [len(s.composition.elements) for s in decoded.structures()]


def test_composition_temperature_sharpens_the_composition() -> None:
    cdvae_rule = distinct_elements(1.0)
    sharp = distinct_elements(1e-4)  # the untrained head is nearly uniform: T must be tiny
    assert sharp == [1] * len(sharp)  # T -> 0: every atom takes the most likely element
    assert sum(cdvae_rule) > sum(sharp)
