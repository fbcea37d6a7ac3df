"""The report's pipeline figures: the funnel, a candidate's cell and the electron-phonon
summary of the verified candidates, as matplotlib ``Figure`` objects (Agg canvas, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from pymatgen.core import Structure

from tcdesign.report.analysis import STAGE_LABELS
from tcdesign.report.figures import DPI, TRAINING_COLOR, scalar_mappable
from tcdesign.verify.eliashberg import allen_dynes_tc

MAX_A2F_CURVES = 6
MAIN_STAGES = ("generated", "valid", "relaxed", "passed", "verified")


def epc_figure(
    verified: pd.DataFrame, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], mu_star: float
) -> Figure:
    """(c) lambda versus omega_log coloured by DFT Tc with Allen-Dynes iso-Tc lines;
    (d) alpha2F(omega) of the given curves (label, omega in cm^-1, alpha2F)."""
    panels = 2 if curves else 1
    figure = Figure(figsize=(11.5 if panels == 2 else 6.5, 4.6), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, panels)
    ax = axes[0] if panels == 2 else axes
    omega = verified.omega_log_K.to_numpy(float)
    lam = verified["lambda"].to_numpy(float)
    tc = verified.tc_K.to_numpy(float)
    stable = verified.dynamically_stable.to_numpy(bool)
    omega_max = max(float(np.nanmax(omega)) * 1.25, 100.0) if omega.size else 500.0
    lam_max = max(float(np.nanmax(lam)) * 1.25, 1.0) if lam.size else 1.5
    grid_omega, grid_lam = np.meshgrid(
        np.linspace(1.0, omega_max, 160), np.linspace(0.05, lam_max, 160)
    )
    grid_tc = np.vectorize(lambda la, om: allen_dynes_tc(la, om, mu_star))(grid_lam, grid_omega)
    levels = [level for level in (1, 2, 5, 10, 20, 40, 80) if level < np.nanmax(grid_tc)]
    if levels:
        contours = ax.contour(
            grid_omega, grid_lam, grid_tc, levels=levels, colors="#999999", linewidths=0.8
        )
        ax.clabel(contours, fmt=lambda v: f"{v:g} K", fontsize=7)
    vmax = max(float(np.nanmax(tc)), 1.0) if tc.size else 1.0
    norm = Normalize(0.0, vmax)
    for mask, marker, label in ((stable, "o", "dynamically stable"), (~stable, "X", "unstable")):
        if mask.any():
            ax.scatter(
                omega[mask],
                lam[mask],
                c=tc[mask],
                cmap="plasma",
                norm=norm,
                marker=marker,
                s=60,
                edgecolors="black",
                linewidths=0.6,
                label=label,
            )
    if len(verified) <= 25:
        for x, y, formula in zip(omega, lam, verified.formula, strict=True):
            if np.isfinite(x) and np.isfinite(y):
                ax.annotate(
                    str(formula), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7
                )
    bar = figure.colorbar(scalar_mappable("plasma", norm), ax=ax)
    bar.set_label("DFT Tc (K), Allen-Dynes")
    ax.set_xlim(0, omega_max)
    ax.set_ylim(0, lam_max)
    ax.set_xlabel(r"$\omega_{\log}$ (K)")
    ax.set_ylabel(r"electron-phonon coupling $\lambda$ (dimensionless)")
    ax.set_title(
        rf"(c) verified candidates; grey lines: Allen-Dynes Tc at $\mu^*$={mu_star:g}",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper right")
    if panels == 2:
        right = axes[1]
        for label, frequencies, a2f in curves:
            right.plot(frequencies, a2f, linewidth=1.3, label=label)
        right.set_xlabel(r"phonon frequency $\omega$ (cm$^{-1}$)")
        right.set_ylabel(r"Eliashberg function $\alpha^2F(\omega)$ (dimensionless)")
        right.set_title(
            r"(d) $\alpha^2F(\omega)$ of the highest-Tc verified candidates", fontsize=10
        )
        right.set_xlim(left=0)
        right.legend(fontsize=7)
    return figure


def funnel_figure(counts: pd.DataFrame, colors: Mapping[str, str], tc_min: float) -> Figure:
    """Horizontal bars of each stage's count per method (NaN = stage not run)."""
    # the five main stages always (a missing one says "not run"); the DFT outcomes when present
    stages = [s for s in counts.columns if s in MAIN_STAGES or counts[s].notna().any()]
    methods = list(counts.index)
    height = 0.8 / max(len(methods), 1)
    figure = Figure(
        figsize=(9.0, 0.75 + 0.42 * len(stages) * max(len(methods), 1) ** 0.5 + 0.6),
        dpi=DPI,
        layout="constrained",
    )
    ax = figure.add_subplot()
    positive = counts[stages].to_numpy(float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    log_scale = positive.size > 0 and positive.max() / positive.min() > 30
    upper = positive.max() if positive.size else 1.0
    for k, method in enumerate(methods):
        for s, stage in enumerate(stages):
            y = s + (k - (len(methods) - 1) / 2) * height
            value = counts.loc[method, stage]
            if not np.isfinite(value):
                ax.text(
                    0.6 if log_scale else 0,
                    y,
                    "  not run",
                    va="center",
                    fontsize=7,
                    color="#777777",
                )
                continue
            if value > 0:
                ax.barh(
                    y,
                    value,
                    height * 0.95,
                    color=colors.get(method, TRAINING_COLOR),
                    label=method if s == 0 or stage == stages[0] else None,
                )
            ax.text(
                max(value, 0.6 if log_scale else 0), y, f" {int(value)}", va="center", fontsize=8
            )
    labels = [STAGE_LABELS[s].format(tc_min=tc_min) for s in stages]
    ax.set_yticks(np.arange(len(stages)), labels)
    ax.invert_yaxis()
    if log_scale:
        ax.set_xscale("log")
        ax.set_xlim(0.5, upper * 3)
    else:
        ax.set_xlim(0, upper * 1.18 + 1)
    ax.set_xlabel("number of structures" + (" (log scale)" if log_scale else ""))
    handles = [Patch(facecolor=colors.get(m, TRAINING_COLOR), label=m) for m in methods]
    ax.legend(handles=handles, fontsize=8, loc="lower right" if not log_scale else "upper right")
    return figure


def structure_figure(structure: Structure, title: str) -> Figure:
    """A picture of the cell (ASE's ``plot_atoms``, Jmol colours) with an element legend."""
    from ase.data import atomic_numbers
    from ase.data.colors import jmol_colors
    from ase.visualize.plot import plot_atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    figure = Figure(figsize=(3.0, 3.2), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    atoms = AseAtomsAdaptor.get_atoms(structure)
    plot_atoms(atoms, ax, rotation="15x,-25y,0z", radii=0.45)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    symbols = sorted({site.specie.symbol for site in structure}, key=lambda s: atomic_numbers[s])
    handles = [
        Patch(facecolor=jmol_colors[atomic_numbers[s]], edgecolor="black", label=s) for s in symbols
    ]
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=min(len(handles), 5),
        frameon=False,
    )
    return figure
