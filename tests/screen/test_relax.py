"""CHGNet relaxation: physics on tiny cells, and failures recorded with a reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from tcdesign.screen.relax import (
    RelaxationError,
    _check,
    relax_structure,
    static_energies_per_atom,
    static_energy_and_moment,
    static_energy_per_atom,
)
from tests.screen.conftest import FCC, americium, fcc_al


def test_strained_fcc_al_relaxes_to_its_lattice_constant():
    result = relax_structure(fcc_al(4.30), fmax=0.02)
    assert result.status == "ok" and result.converged
    a = result.structure.volume ** (1 / 3)  # conventional cubic cell of 4 atoms
    assert a == pytest.approx(4.04, abs=0.04)  # experiment 4.05 A, PBE 4.04 A
    assert result.volume_change < 1.0
    assert result.max_force <= 0.02
    assert result.energy_per_atom == pytest.approx(-3.66, abs=0.1)


def test_compressed_and_stretched_cells_reach_the_same_minimum():
    small = relax_structure(fcc_al(3.85), fmax=0.02)
    large = relax_structure(fcc_al(4.25), fmax=0.02)
    assert small.energy_per_atom == pytest.approx(large.energy_per_atom, abs=2e-3)
    assert small.structure.volume == pytest.approx(large.structure.volume, rel=0.01)


def test_element_without_chgnet_embedding_fails_with_reason():
    result = relax_structure(americium())
    assert result.status == "failed"
    assert "Am" in result.error and math.isnan(result.energy_per_atom)


def test_check_catches_collapse_explosion_and_nan():
    cell = np.eye(3) * 4.0
    atoms = Atoms("Al2", positions=[(0, 0, 0), (0.3, 0, 0)], cell=cell, pbc=True)
    with pytest.raises(RelaxationError, match="collapsed"):
        _check(atoms, atoms.get_volume())
    atoms = Atoms("Al", positions=[(0, 0, 0)], cell=cell * 2, pbc=True)
    with pytest.raises(RelaxationError, match="volume"):
        _check(atoms, 64.0)
    atoms = Atoms("He4", scaled_positions=FCC, cell=np.eye(3) * 1.0, pbc=True)
    with pytest.raises(RelaxationError, match="too dense"):
        _check(atoms, atoms.get_volume())
    atoms = Atoms("Al", positions=[(np.nan, 0, 0)], cell=cell, pbc=True)
    with pytest.raises(RelaxationError, match="NaN"):
        _check(atoms, 64.0)


def test_step_cap_stops_an_unfinished_relaxation():
    result = relax_structure(fcc_al(4.6), max_steps=2, fmax=1e-4)
    assert result.status == "ok"
    assert result.steps == 2 and not result.converged


def test_chgnet_moments_flag_iron_and_not_aluminium():
    """The magmom column: mean |site moment| CHGNet predicts, bcc Fe about 2.2 Bohr magnetons
    (DFT 2.2), fcc Al none."""
    iron = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    relaxed = relax_structure(iron, max_steps=50)
    assert relaxed.status == "ok" and relaxed.magmom == pytest.approx(2.2, abs=0.4)
    energy, moment = static_energy_and_moment(iron)
    assert moment == pytest.approx(2.2, abs=0.4) and math.isfinite(energy)
    assert relax_structure(fcc_al(4.04), max_steps=20).magmom < 0.05
    assert math.isnan(relax_structure(americium()).magmom)  # failed: no moment


def test_static_energies_are_batched_single_energies_with_nan_for_the_unusable():
    strained = fcc_al(4.2)
    cells = [fcc_al(4.04), americium(), strained, Structure(Lattice.cubic(3.0), [], [])]
    energies = static_energies_per_atom(cells, batch_size=2)
    assert energies[0] == pytest.approx(static_energy_per_atom(fcc_al(4.04)), abs=1e-4)
    assert energies[2] == pytest.approx(static_energy_per_atom(strained), abs=1e-4)
    assert energies[2] > energies[0]  # 4.2 A is far from aluminium's 4.04 A
    assert math.isnan(energies[1]) and math.isnan(energies[3])  # Am: no embedding; empty cell


def test_static_energies_retry_a_failing_batch_one_by_one(monkeypatch):
    """A batch the model rejects is retried singly: only the bad cell loses its energy."""
    import tcdesign.screen.relax as relax

    good, bad = fcc_al(4.04), fcc_al(4.1)

    class Picky:
        calls: list[int] = []

        def predict_structure(self, structures, task, batch_size):
            self.calls.append(len(structures))
            if any(s is bad for s in structures):
                raise RuntimeError("cannot build graph")
            return [{"e": np.float32(-3.5)} for _ in structures]

    picky = Picky()
    monkeypatch.setattr(relax, "chgnet_model", lambda device="cpu": picky)
    energies = static_energies_per_atom([good, bad, good], batch_size=3)
    assert energies[0] == energies[2] == pytest.approx(-3.5)
    assert math.isnan(energies[1])
    assert picky.calls == [3, 1, 1, 1]
