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


def test_elements_beyond_chgnet_are_bad_rows_not_a_crash(rocksalt: Structure) -> None:
    """CHGNet embeds Z 1-94; a model with CHGNet features raised IndexError on an americium
    crystal (Z 95, which the data layer accepts), losing every row of the input."""
    import torch

    from tcdesign.data.io import StructureRecord
    from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig
    from tcdesign.predict.api import predict_records
    from tcdesign.predict.ensemble import Ensemble
    from tcdesign.predict.features import unsupported_reason

    americium = Structure(Lattice.cubic(3.5), ["Am", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert unsupported_reason("chgnet", americium) == (
        "element Am (Z = 95) is beyond this model's chgnet features (Z 1-94)"
    )
    assert unsupported_reason("chgnet", rocksalt) is None
    assert unsupported_reason("none", americium) is None

    torch.manual_seed(0)
    config = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden=16, pretrained_features="chgnet")
    ensemble = Ensemble([ALIGNN(config), ALIGNN(config)])
    mean, std = ensemble.predict([rocksalt, americium, rocksalt])
    alone, alone_std = ensemble.predict([rocksalt])
    assert np.isnan(mean[1]) and np.isnan(std[1])
    assert mean[[0, 2]] == pytest.approx([alone[0]] * 2, abs=1e-5)
    assert std[0] == pytest.approx(alone_std[0], abs=1e-5)

    records = [StructureRecord("a", rocksalt), StructureRecord("b", americium)]
    table = predict_records(records, ensemble)
    assert table.status.tolist() == ["ok", "error"]
    assert "Am (Z = 95)" in table.error[1]
    assert records[1].ok  # the caller's records are left as they were
