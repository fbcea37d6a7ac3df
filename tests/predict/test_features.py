"""Pretrained CHGNet atom features (weights ship in the chgnet wheel, so this runs offline)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.predict.features import FEATURE_SIZES, atom_featurizer, chgnet_atom_features

pytest.importorskip("chgnet")


def test_chgnet_features_shape_and_permutation(ternary: Structure, rocksalt: Structure) -> None:
    first, second = chgnet_atom_features([ternary, rocksalt])
    assert first.shape == (len(ternary), FEATURE_SIZES["chgnet"])
    assert second.shape == (len(rocksalt), FEATURE_SIZES["chgnet"])
    order = [3, 1, 0, 2]
    permuted = Structure(
        ternary.lattice, [ternary[i].specie for i in order], [ternary[i].frac_coords for i in order]
    )
    (swapped,) = chgnet_atom_features([permuted])
    assert swapped == pytest.approx(first[order], abs=1e-4)
    assert np.all(np.isfinite(first))


def test_featurizer_lookup() -> None:
    assert atom_featurizer("none") is None
    assert atom_featurizer("chgnet") is chgnet_atom_features
    with pytest.raises(ValueError, match="unknown pretrained features"):
        atom_featurizer("mace")


def test_chgnet_features_of_an_isolated_atom(rocksalt: Structure) -> None:
    """An atom more than 6 A from every other made CHGNet raise, ending the whole run."""
    isolated = Structure(Lattice.cubic(12.0), ["Nb", "H"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    alone, together = chgnet_atom_features([rocksalt]), chgnet_atom_features([rocksalt, isolated])
    assert together[1].shape == (2, 64) and np.all(np.isfinite(together[1]))
    assert together[0] == pytest.approx(alone[0], abs=1e-4)
