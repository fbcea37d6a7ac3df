"""Shared fixtures: a few real structures from the bundled data, and small crystals."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tcdesign.predict.api import bundled_csv

warnings.filterwarnings("ignore", module="pymatgen")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def no_user_pseudopotentials(monkeypatch, tmp_path_factory):
    """The default pseudopotential folder is Debian's in every test, whatever this machine's
    user has fetched (``tcdesign fetch-pseudos``) or set in TCDESIGN_PSEUDO_DIR."""
    monkeypatch.delenv("TCDESIGN_PSEUDO_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))  # per test


@pytest.fixture()
def one_thread():
    """One torch thread for the test: parallel CPU kernels add in a varying order, so only
    one thread repeats a training run bit for bit (the suite runs on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def val_frame() -> pd.DataFrame:
    return pd.read_csv(bundled_csv("val"))


@pytest.fixture(scope="session")
def val_structures(val_frame: pd.DataFrame) -> list[Structure]:
    return [Structure.from_str(cif, fmt="cif") for cif in val_frame.cif[:12]]


@pytest.fixture()
def rocksalt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.47), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


@pytest.fixture()
def ternary() -> Structure:
    """A low-symmetry three-element cell, so that permutations and rotations matter."""
    lattice = Lattice.from_parameters(3.9, 4.3, 5.1, 84, 97, 105)
    return Structure(
        lattice,
        ["Nb", "Sn", "Sn", "B"],
        [[0.02, 0.05, 0.01], [0.51, 0.47, 0.12], [0.22, 0.71, 0.55], [0.73, 0.18, 0.81]],
    )
