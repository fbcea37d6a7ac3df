"""Crystal descriptors and pretrained atom features: shapes, invariances, values."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.core.operations import SymmOp

from tcdesign.predict.descriptors import (
    DESCRIPTOR_SIZES,
    ELEMENT_PROPERTIES,
    composition_descriptors,
    descriptors,
    element_table,
)


def test_element_table_is_complete_and_right_for_niobium() -> None:
    table = element_table()
    assert table.shape == (101, len(ELEMENT_PROPERTIES))
    assert np.all(np.isfinite(table))
    niobium = dict(zip(ELEMENT_PROPERTIES, table[41], strict=True))
    assert niobium["atomic_mass"] == pytest.approx(92.906, abs=1e-3)
    assert niobium["group"] == 5 and niobium["valence_electrons"] == 5
    assert table[50, ELEMENT_PROPERTIES.index("valence_electrons")] == 4  # Sn


def test_rocksalt_values(rocksalt: Structure) -> None:
    values = composition_descriptors(rocksalt)
    assert values.shape == (DESCRIPTOR_SIZES["composition"],)
    mass_mean = values[ELEMENT_PROPERTIES.index("atomic_mass")]
    assert mass_mean == pytest.approx((92.906 + 12.011) / 2, abs=1e-2)
    assert values[-2] == pytest.approx(4.47 / 2, abs=1e-3)  # shortest distance Nb-C


def test_invariant_to_rotation_permutation_and_supercell(ternary: Structure) -> None:
    reference = composition_descriptors(ternary)
    rotated = ternary.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([0, 1, 1], 71.0))
    permuted = Structure(ternary.lattice, ternary.species[::-1], ternary.frac_coords[::-1])
    for other in (rotated, permuted, ternary * (2, 1, 2)):
        assert composition_descriptors(other) == pytest.approx(reference, rel=1e-5, abs=1e-5)


def test_descriptor_sets(ternary: Structure) -> None:
    assert descriptors("none", [ternary]) is None
    assert descriptors("composition", [ternary, ternary]).shape == (2, 45)
    # no structures: an empty table (np.stack raised, so Ensemble.predict([]) failed)
    assert descriptors("composition", []).shape == (0, 45)
    with pytest.raises(ValueError, match="unknown descriptors"):
        descriptors("magic", [ternary])


def test_oxidation_state_labels_change_nothing() -> None:
    """Mixed valence (Fe2+ and Fe3+) used to count as two elements in num_elements."""
    lattice = [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]]
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0.5]]
    plain = Structure(lattice, ["Fe", "Fe", "O", "O"], coords)
    labelled = Structure(lattice, ["Fe2+", "Fe3+", "O2-", "O2-"], coords)
    assert composition_descriptors(labelled) == pytest.approx(composition_descriptors(plain))


def test_an_ensemble_with_descriptors_predicts_an_empty_list() -> None:
    from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig
    from tcdesign.predict.ensemble import Ensemble

    config = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden=8, embedding=8)
    ensemble = Ensemble([ALIGNN(replace(config, descriptors="composition"))])
    mean, std = ensemble.predict([])
    assert mean.shape == (0,) and std.shape == (0,)


def test_density_equals_pymatgens(rocksalt: Structure, ternary: Structure) -> None:
    """The density column is computed from the element table, not pymatgen's slow unit
    classes; it must agree with Structure.density, also for oxidation-state labels and
    partial occupancies."""
    column = len(ELEMENT_PROPERTIES) * 4 + 1  # after the statistics and the volume per atom
    charged = rocksalt.copy()
    charged.add_oxidation_state_by_element({"Nb": 4, "C": -4})
    disordered = ternary.copy()
    disordered.replace(0, {disordered[0].specie.symbol: 0.5, "Ti": 0.5})
    for structure in (rocksalt, ternary, charged, disordered):
        value = composition_descriptors(structure)[column]
        assert value == pytest.approx(structure.density, rel=1e-6)
