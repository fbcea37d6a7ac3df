"""The pipeline figures (funnel, electron-phonon summary) are labelled with units."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tcdesign.report import pipeline_figures
from tests.report.test_figures import assert_labelled


def test_epc_and_funnel_figures_are_labelled() -> None:
    verified = pd.DataFrame(
        {
            "formula": ["MgB2", "Nb3Sn"],
            "lambda": [0.9, 0.6],
            "omega_log_K": [600.0, 200.0],
            "tc_K": [20.0, 4.0],
            "dynamically_stable": [True, False],
        }
    )
    omega = np.linspace(1, 600, 50)
    figure = pipeline_figures.epc_figure(verified, [("MgB2", omega, np.exp(-omega / 200))], 0.1)
    assert_labelled(figure)
    assert "(K)" in figure.axes[0].get_xlabel()
    counts = pd.DataFrame(
        {"generated": [100, 50], "valid": [90, 50], "relaxed": [80, np.nan]},
        index=["cdvae", "substitution"],
    )
    for stage in ("passed", "verified", "dft_above", "stable", "dft_above_stable"):
        counts[stage] = np.nan
    funnel = pipeline_figures.funnel_figure(counts, {"cdvae": "#1f77b4"}, 5.0)
    assert funnel.axes[0].get_xlabel() == "number of structures"
    ticks = [t.get_text() for t in funnel.axes[0].get_yticklabels()]
    assert ticks == ["generated", "valid", "relaxed", "passed screening", "verified (DFT ok)"]
