"""Shuffled training batches that depend on (seed, epoch) alone."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from tcdesign.data.loader import EpochShuffle, training_loader


def _batches(loader, count: int) -> list[list[int]]:
    iterator = iter(loader)  # as Lightning reads an epoch: as many batches as the length
    return [next(iterator).tolist() for _ in range(count)]


@pytest.mark.parametrize("size", [12, 13])  # full batches only, and a partial last batch
def test_epochs_follow_the_seeded_dataloader_and_resume_at_any_epoch(size: int) -> None:
    data = list(range(size))
    plain = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    ours = training_loader(data, 4, None, shuffle=True, seed=3)
    count = len(plain)
    epochs = [_batches(plain, count) for _ in range(4)]
    assert [_batches(ours, count) for _ in range(4)] == epochs  # the orders of earlier releases
    assert len({str(e) for e in epochs}) == 4  # each epoch its own order
    resumed = training_loader(data, 4, None, shuffle=True, seed=3)
    resumed.sampler.set_epoch(2)  # what Lightning does as the resumed epoch starts
    assert _batches(resumed, count) == epochs[2]
    assert sorted(sum(epochs[0], [])) == data


def test_unshuffled_and_other_seeds() -> None:
    data = list(range(6))
    assert [b.tolist() for b in training_loader(data, 4, None)] == [[0, 1, 2, 3], [4, 5]]
    first, other = list(EpochShuffle(50, seed=0)), list(EpochShuffle(50, seed=1))
    assert sorted(first) == list(range(50)) and first != other and len(EpochShuffle(50)) == 50
