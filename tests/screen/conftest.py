"""Small crystals for the screening tests (CHGNet relaxes each in about a second)."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure

from tcdesign.data.io import StructureRecord

FCC = [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One thread: on a shared 2-core machine two threads per process oversubscribe the cores
    and make CHGNet several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fcc_al(a: float) -> Structure:
    """Conventional 4-atom fcc Al with lattice constant ``a`` (A)."""
    return Structure(Lattice.cubic(a), ["Al"] * 4, FCC)


def rocksalt_nacl(a: float = 5.7) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def mgb2(a: float = 3.1, c: float = 3.5) -> Structure:
    return Structure(
        Lattice.hexagonal(a, c),
        ["Mg", "B", "B"],
        [(0, 0, 0), (1 / 3, 2 / 3, 0.5), (2 / 3, 1 / 3, 0.5)],
    )


def americium() -> Structure:
    """fcc Am: an element CHGNet has no embedding for (Z = 95)."""
    return Structure(Lattice.cubic(4.9), ["Am"] * 4, FCC)


@pytest.fixture(scope="session")
def candidates() -> list[StructureRecord]:
    """Strained Al twice (a duplicate), NaCl, MgB2, an unrelaxable Am cell and a bad row."""
    return [
        StructureRecord("al", fcc_al(4.25)),
        StructureRecord("nacl", rocksalt_nacl()),
        StructureRecord("mgb2", mgb2()),
        StructureRecord("al-copy", fcc_al(3.9)),
        StructureRecord("am", americium()),
        StructureRecord("broken", None, error="CIF does not parse: no atoms"),
    ]
