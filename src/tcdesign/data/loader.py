"""Data loaders whose shuffled order depends on (seed, epoch) alone, so that training resumed
after a kill sees the batches an uninterrupted run would have seen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffle(Sampler[int]):
    """Shuffled indices for epoch after epoch, the same orders as ``DataLoader(shuffle=True,
    generator=torch.Generator().manual_seed(seed), batch_size=batch_size)`` gives in one
    uninterrupted run, but made from (seed, epoch) alone: Lightning sets the epoch
    (``set_epoch``) before each one, so a run resumed at epoch k sees epoch k's order, not epoch
    0's again. Without Lightning each pass counts as the next epoch."""

    def __init__(self, size: int, seed: int = 0, batch_size: int = 1) -> None:
        self.size = size
        self.seed = seed
        # with a partial last batch the DataLoader ran its sampler to the end, and torch's
        # RandomSampler then drew one more (empty) permutation
        self.trailing_draw = size % batch_size != 0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def _permutation(self, generator: torch.Generator) -> torch.Tensor:
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the loader's base seed
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch):  # the draws of the epochs before this one
            self._permutation(generator)
            if self.trailing_draw:
                torch.randperm(self.size, generator=generator)
        order = self._permutation(generator)
        self.epoch += 1
        yield from order.tolist()


def training_loader(
    dataset: Any, batch_size: int, collate: Callable, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A DataLoader over ``dataset``; shuffled with :class:`EpochShuffle` when ``shuffle``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffle(len(dataset), seed, batch_size) if shuffle else None,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
