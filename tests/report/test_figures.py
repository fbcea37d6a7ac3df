"""The figures' axes are labelled with units; the descriptors behind them have golden values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Element, Lattice, Structure

from tcdesign.predict.api import bundled_csv
from tcdesign.report import figures
from tcdesign.report.analysis import (
    element_probabilities,
    formula_type,
    num_elements_label,
    packing_fraction,
    training_csv,
)
from tcdesign.report.rundata import as_bool, find_setting


def plotted_axes(figure) -> list:
    """Axes that show data (not colour bars, not switched off)."""
    return [
        ax
        for ax in figure.axes
        if ax.axison and not hasattr(ax, "_colorbar") and ax.get_label() != "<colorbar>"
    ]


def assert_labelled(figure) -> None:
    axes = plotted_axes(figure)
    assert axes
    for ax in axes:
        assert ax.get_xlabel().strip(), ax
        assert ax.get_ylabel().strip(), ax


def test_comparison_figures_are_labelled() -> None:
    rng = np.random.default_rng(0)
    sets = [
        ("training", [Composition("MgB2"), Composition("Nb3Sn"), Composition("NbC")], "#555555"),
        ("generated", [Composition("YBa2Cu3O7"), Composition("Fe")], "#1f77b4"),
    ]
    assert_labelled(figures.formula_type_figure(sets))
    series = [
        figures.Series("training", rng.uniform(2, 12, 50), "#555555"),
        figures.Series("generated", rng.uniform(2, 12, 20), "#1f77b4", dashed=True),
    ]
    assert_labelled(figures.density_packing_figure(series, series))
    figure = figures.tc_distribution_figure(rng.exponential(4, 100), series, 5.0)
    assert_labelled(figure)
    assert "K" in figure.axes[0].get_xlabel()


def test_periodic_table_colours_present_elements_only() -> None:
    probabilities = element_probabilities(["MgB2", "NbC", "Nb3Sn"], [20.0, 10.0, 1.0], 3.0)
    figure = figures.periodic_table_figure(probabilities, "test", 3.0)
    cells = [p for p in figure.axes[0].patches]
    assert len(cells) == 103
    grey = [c for c in cells if tuple(c.get_facecolor()[:3]) == (217 / 255,) * 3]
    assert len(grey) == 103 - 5  # Mg, B, Nb, C, Sn are coloured


def test_element_probabilities() -> None:
    table = element_probabilities(["MgB2", "NbC", "Nb3Sn", "bad!"], [20.0, 10.0, 1.0, 50.0])
    assert table.loc["Nb", "n"] == 2 and table.loc["Nb", "n_above"] == 1
    assert table.loc["Nb", "probability"] == pytest.approx(0.5)
    assert table.loc["Sn", "probability"] == 0.0 and table.loc["Mg", "probability"] == 1.0
    assert "bad!" not in table.index


def test_formula_types() -> None:
    assert formula_type(Composition("Nb6Sn2")) == "AB3"
    assert formula_type(Composition("MgB2")) == "AB2"
    assert formula_type(Composition("Al")) == "A"
    assert formula_type(Composition("YBa2Cu3O7")) == "AB2C3D7"
    assert [num_elements_label(k) for k in (1, 2, 3, 4, 6)] == ["A", "AB", "ABC", "ABCD", "5+"]


def test_packing_fraction_of_touching_fcc_spheres() -> None:
    """fcc with the lattice constant at which the Slater spheres touch: pi / (3 sqrt 2)."""
    radius = float(Element("Cu").atomic_radius)
    a = 2 * math.sqrt(2) * radius
    fcc = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Cu"], [[0, 0, 0]])
    assert packing_fraction(fcc) == pytest.approx(math.pi / (3 * math.sqrt(2)), rel=1e-6)
    assert packing_fraction(fcc.get_primitive_structure()) == pytest.approx(0.7405, abs=1e-3)


def test_training_csv_is_the_bundled_split() -> None:
    assert training_csv() == bundled_csv("train")
    assert training_csv().is_file()


def test_settings_and_flags() -> None:
    assert find_setting({"run": {"n": 5}, "screen": {"tc_min": 7}}, "tc_min") == 7
    assert find_setting({"a": 1}, "tc_min") is None
    flags = as_bool(pd.Series([True, "False", "true", 1, 0.0, np.nan, "", "yes"]))
    assert flags.tolist() == [True, False, True, True, False, False, False, True]
