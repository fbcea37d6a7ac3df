"""The report's distribution figures (chemistry, density, Tc) and the shared figure style, as
matplotlib ``Figure`` objects (Agg canvas, no pyplot state).

Each function draws one figure from plain arrays and tables; the captions are written where the
data is chosen (the section modules). The funnel, structure and electron-phonon figures are in
:mod:`tcdesign.report.pipeline_figures`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from pymatgen.core import Composition, Element

from tcdesign.report.analysis import (
    formula_type,
    num_elements_label,
)

DPI = 110
TRAINING_COLOR = "#555555"
METHOD_COLORS = {"cdvae": "#1f77b4", "substitution": "#d62728"}
OTHER_COLORS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
HEATMAP_CMAP = "viridis"
ABSENT_COLOR = "#d9d9d9"
MAX_FORMULA_TYPES = 14  # most common stoichiometry patterns shown in the formula-type panel


def method_color(name: str, names: Sequence[str]) -> str:
    """A fixed colour per known method; others take the next free colour in order."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    others = [n for n in names if n not in METHOD_COLORS]
    index = others.index(name) if name in others else len(others)
    return OTHER_COLORS[index % len(OTHER_COLORS)]


@dataclass
class Series:
    """One labelled set of values in a comparison figure."""

    label: str
    values: np.ndarray
    color: str
    dashed: bool = False


def _table_position(element: Element) -> tuple[float, float]:
    """(column, row) of an element in the 18-column periodic table; lanthanides and actinides go
    in two rows below, separated by a gap."""
    z = element.Z
    if 57 <= z <= 71:
        return z - 57 + 3, 8.5
    if 89 <= z <= 103:
        return z - 89 + 3, 9.5
    return element.group, element.row


def periodic_table_figure(
    probabilities: pd.DataFrame, title: str, threshold: float, max_z: int = 103
) -> Figure:
    """Heat map of ``probabilities.probability`` (index: element symbols; ``n`` compounds,
    ``n_above`` of them above threshold) on the periodic table; grey where an element is absent."""
    figure = Figure(figsize=(11.5, 6.6), dpi=DPI)
    ax = figure.add_axes((0.01, 0.13, 0.98, 0.80))
    norm = Normalize(0.0, 1.0)
    cmap = colormaps[HEATMAP_CMAP]
    for z in range(1, max_z + 1):
        element = Element.from_Z(z)
        column, row = _table_position(element)
        symbol = element.symbol
        present = symbol in probabilities.index and probabilities.loc[symbol, "n"] > 0
        if present:
            value = float(probabilities.loc[symbol, "probability"])
            face = cmap(norm(value))
            text_color = "white" if value < 0.55 else "black"
        else:
            face, text_color = ABSENT_COLOR, "#7a7a7a"
        ax.add_patch(
            Rectangle((column - 0.5, row - 0.5), 0.94, 0.94, facecolor=face, edgecolor="white")
        )
        ax.text(
            column - 0.03,
            row - 0.14,
            symbol,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            color=text_color,
        )
        if present:
            count = (
                f"{int(probabilities.loc[symbol, 'n_above'])}/{int(probabilities.loc[symbol, 'n'])}"
            )
            ax.text(
                column - 0.03,
                row + 0.2,
                count,
                ha="center",
                va="center",
                fontsize=6,
                color=text_color,
            )
    for row, label in ((6, "57-71"), (7, "89-103")):
        ax.text(3 - 0.03, row, label, ha="center", va="center", fontsize=6, color="#7a7a7a")
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(10.1, 0.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    colorbar_ax = figure.add_axes((0.25, 0.07, 0.5, 0.025))
    mappable = scalar_mappable(cmap, norm)
    bar = figure.colorbar(mappable, cax=colorbar_ax, orientation="horizontal")
    bar.set_label(
        f"probability that a generated compound with the element has predicted Tc > "
        f"{threshold:g} K (numbers: compounds above / compounds with the element)",
        fontsize=8,
    )
    bar.ax.tick_params(labelsize=8)
    ax.legend(
        handles=[Patch(facecolor=ABSENT_COLOR, label="element in no generated compound")],
        loc="upper center",
        bbox_to_anchor=(0.45, 1.0),
        fontsize=8,
        frameon=False,
    )
    return figure


def scalar_mappable(cmap, norm: Normalize) -> ScalarMappable:
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    mappable.set_array([])
    return mappable


def formula_type_figure(sets: Sequence[tuple[str, Sequence[Composition], str]]) -> Figure:
    """Fractions of each set by number of elements (left) and by stoichiometry pattern (right).

    ``sets`` holds (label, compositions, colour)."""
    figure = Figure(figsize=(11.5, 4.2), dpi=DPI, layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 2.6])
    element_labels = [num_elements_label(k) for k in (1, 2, 3, 4, 5)]
    type_counts = []
    for _, compositions, _ in sets:
        types = pd.Series([formula_type(c) for c in compositions], dtype=object)
        type_counts.append(types.value_counts())
    combined = pd.concat([counts / max(counts.sum(), 1) for counts in type_counts], axis=1).fillna(
        0.0
    )
    if len(combined):
        order = combined.max(axis=1).sort_values(ascending=False).index[:MAX_FORMULA_TYPES]
        # group by number of distinct elements (letters), then by frequency
        order = sorted(
            order, key=lambda t: (sum(ch.isalpha() for ch in t), -combined.max(axis=1)[t])
        )
    else:
        order = []
    width = 0.8 / max(len(sets), 1)
    for k, (label, compositions, color) in enumerate(sets):
        n = max(len(compositions), 1)
        counts = pd.Series([num_elements_label(len(c.elements)) for c in compositions])
        fractions = [float((counts == name).sum()) / n for name in element_labels]
        offsets = np.arange(len(element_labels)) + (k - (len(sets) - 1) / 2) * width
        left.bar(offsets, fractions, width, color=color)
        type_fractions = [float(type_counts[k].get(name, 0)) / n for name in order]
        offsets = np.arange(len(order)) + (k - (len(sets) - 1) / 2) * width
        right.bar(
            offsets, type_fractions, width, color=color, label=f"{label} (n={len(compositions)})"
        )
    left.set_xticks(np.arange(len(element_labels)), element_labels)
    left.set_xlabel("number of elements (A = unary, AB = binary, ...)")
    left.set_ylabel("fraction of structures")
    left.set_title("(a) number of elements", fontsize=10)
    right.set_xticks(np.arange(len(order)), order, rotation=45, ha="right")
    right.set_xlabel("formula type (reduced stoichiometry, letters by increasing amount)")
    right.set_ylabel("fraction of structures")
    right.set_title(f"(b) the {len(order)} most common formula types", fontsize=10)
    right.legend(fontsize=7, loc="upper right")
    return figure


def _step_histograms(ax, series: Sequence[Series], bins: np.ndarray) -> None:
    for item in series:
        values = item.values[np.isfinite(item.values)]
        if values.size == 0:
            continue
        weights = np.full(values.size, 1.0 / values.size)
        ax.hist(
            np.clip(values, bins[0], bins[-1]),
            bins=bins,
            weights=weights,
            histtype="step",
            linewidth=1.8,
            linestyle="--" if item.dashed else "-",
            color=item.color,
            label=f"{item.label} (n={values.size})",
        )


def _bins(series: Sequence[Series], count: int, low: float | None = None) -> np.ndarray:
    values = np.concatenate([s.values[np.isfinite(s.values)] for s in series] or [np.zeros(0)])
    if values.size == 0:
        return np.linspace(0.0, 1.0, count + 1)
    lower = float(np.percentile(values, 0.5)) if low is None else low
    upper = float(np.percentile(values, 99.5))
    if not upper > lower:
        upper = lower + 1.0
    return np.linspace(lower, upper, count + 1)


def density_packing_figure(density: Sequence[Series], packing: Sequence[Series]) -> Figure:
    """Histograms (fraction of each set per bin) of density (g/cm^3) and packing fraction."""
    figure = Figure(figsize=(11.5, 4.0), dpi=DPI, layout="constrained")
    left, right = figure.subplots(1, 2)
    _step_histograms(left, density, _bins(density, 40, 0.0))
    left.set_xlabel("density (g/cm$^3$)")
    left.set_ylabel("fraction of structures per bin")
    left.set_title("(c) density", fontsize=10)
    left.legend(fontsize=7)
    _step_histograms(right, packing, _bins(packing, 40, 0.0))
    right.set_xlabel("packing fraction (atomic sphere volume / cell volume, dimensionless)")
    right.set_ylabel("fraction of structures per bin")
    right.set_title("(d) packing fraction", fontsize=10)
    return figure


def tc_bins(training: np.ndarray, generated: Sequence[Series], tc_min: float) -> np.ndarray:
    """Bin edges (K) of the Tc histograms: from 0 to the 99.5th percentile of all values (at
    least tc_min + 1 and 5 K), one kelvin wide up to 60 bins, wider beyond."""
    finite = [training[np.isfinite(training)]] + [
        s.values[np.isfinite(s.values)] for s in generated
    ]
    upper = max(float(np.percentile(np.concatenate(finite), 99.5)), tc_min + 1.0, 5.0)
    return np.linspace(0.0, math.ceil(upper), min(int(math.ceil(upper)) + 1, 61))


def tc_distribution_figure(
    training: np.ndarray, generated: Sequence[Series], tc_min: float
) -> Figure:
    """(a) training DFT Tc histogram; (b) predicted Tc histograms of the generated sets."""
    figure = Figure(figsize=(11.5, 4.0), dpi=DPI, layout="constrained")
    left, right = figure.subplots(1, 2, sharex=True)
    bins = tc_bins(training, generated, tc_min)
    values = training[np.isfinite(training)]
    left.hist(np.clip(values, 0, bins[-1]), bins=bins, color=TRAINING_COLOR, alpha=0.85)
    left.set_title(f"(a) training set, DFT Tc (n={values.size})", fontsize=10)
    left.set_ylabel("number of structures")
    for item in generated:
        finite_values = item.values[np.isfinite(item.values)]
        if finite_values.size:
            right.hist(
                np.clip(finite_values, 0, bins[-1]),
                bins=bins,
                histtype="step",
                linewidth=1.8,
                linestyle="--" if item.dashed else "-",
                color=item.color,
                label=f"{item.label} (n={finite_values.size})",
            )
    right.set_title("(b) generated structures, predicted Tc", fontsize=10)
    right.set_ylabel("number of structures")
    for ax in (left, right):
        ax.axvline(tc_min, color="black", linestyle=":", linewidth=1.2)
        ax.set_xlabel("Tc (K); last bin includes everything above")
    right.text(
        tc_min,
        0.97,
        f" Tc = {tc_min:g} K",
        transform=right.get_xaxis_transform(),
        fontsize=8,
        va="top",
    )
    if generated:
        right.legend(fontsize=7)
    return figure
