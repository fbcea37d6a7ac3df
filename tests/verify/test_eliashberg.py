import math

import numpy as np
import pytest

from tcdesign.verify.eliashberg import (
    RY_TO_K,
    BroadeningResult,
    allen_dynes_tc,
    broadening_result,
    coupling_lambda,
    omega_log,
    summarize_broadenings,
)


def einstein_a2f(lam: float, omega0: float, width: float = 0.5):
    """A narrow box of alpha2F around omega0 holding lambda = lam (alpha2F = lam/2 omega0 delta)."""
    omega = np.linspace(omega0 - width, omega0 + width, 2001)
    a2f = np.full_like(omega, lam / 2 * omega0 / (2 * width))
    return omega, a2f


def test_einstein_spectrum_gives_lambda_and_omega_log():
    omega, a2f = einstein_a2f(0.8, 300.0)
    assert coupling_lambda(omega, a2f) == pytest.approx(0.8, rel=1e-4)
    assert omega_log(omega, a2f) == pytest.approx(300.0, rel=1e-4)


def test_allen_dynes_hand_values():
    # lambda 1, omega_log 300 K, mu* 0.1: 250 * exp(-2.08 / 0.838)
    assert allen_dynes_tc(1.0, 300.0, 0.1) == pytest.approx(250 * math.exp(-2.08 / 0.838))
    assert allen_dynes_tc(0.5, 400.0, 0.13) == pytest.approx(
        400 / 1.2 * math.exp(-1.04 * 1.5 / (0.5 - 0.13 * 1.31))
    )


def test_tc_vanishes_with_lambda_and_falls_with_mu_star():
    assert allen_dynes_tc(0.0, 300.0) == 0.0
    assert allen_dynes_tc(0.1, 300.0, 0.1) == 0.0  # denominator <= 0
    assert allen_dynes_tc(0.12, 300.0, 0.1) < 1e-6
    assert allen_dynes_tc(0.8, 300.0, 0.05) > allen_dynes_tc(0.8, 300.0, 0.1)
    assert allen_dynes_tc(0.8, 300.0, 0.1) > allen_dynes_tc(0.8, 300.0, 0.15)
    assert allen_dynes_tc(0.8, math.nan) == 0.0


def test_negative_frequencies_carry_no_weight():
    omega, a2f = einstein_a2f(0.5, 200.0)
    with_imaginary = np.concatenate([-omega[::-1], omega])
    a2f_twice = np.concatenate([a2f[::-1], a2f])
    assert coupling_lambda(with_imaginary, a2f_twice) == pytest.approx(0.5, rel=1e-4)


def _sweep(lambdas):
    return [BroadeningResult(0.005 * (i + 1), lam, 300.0, 1.0) for i, lam in enumerate(lambdas)]


def test_headline_is_median_of_middle_broadenings_and_plateau_flag():
    plateau = summarize_broadenings(_sweep([0.1, 0.5, 0.70, 0.72, 0.71, 0.73, 0.74, 0.72, 0.9, 1]))
    assert plateau.headline.lam == 0.72
    assert plateau.converged
    drifting = summarize_broadenings(_sweep([2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6]))
    assert not drifting.converged
    assert drifting.middle_spread == pytest.approx((1.6 - 0.8) / 1.15)


def test_omega_log_above_the_spectrum_is_flagged_and_not_the_headline():
    """A negative alpha2F at small omega (tetrahedron artefacts of a small broadening) can put
    omega_log above every phonon frequency, which a non-negative alpha2F cannot do: such a
    broadening is flagged and never the headline while a physical one remains."""
    omega_k = np.linspace(1.0, 500.0, 500)
    band = np.where((omega_k > 200) & (omega_k < 400), 0.5, 0.0)
    dipped = band - np.where(omega_k < 30, 0.02, 0.0)
    fine = broadening_result(0.01, omega_k / RY_TO_K, band, 0.1)
    odd = broadening_result(0.02, omega_k / RY_TO_K, dipped, 0.1)
    assert fine.physical and fine.omega_log_k < 400
    assert not odd.physical and odd.omega_log_k > 500 and odd.as_dict()["physical"] is False
    # seven broadenings, middle three: lambdas 0.48, 0.55 (odd), 0.62; the odd one would be the
    # lower median, the headline is the physical 0.48 instead
    results = [
        broadening_result(s, omega_k / RY_TO_K, band * f, 0.1)
        for s, f in ((0.005, 1.4), (0.01, 1.2), (0.025, 0.7), (0.03, 0.9), (0.04, 0.8), (0.05, 0.7))
    ]
    middle_odd = broadening_result(0.02, omega_k / RY_TO_K, dipped, 0.1)
    summary = summarize_broadenings([*results, middle_odd])
    assert sorted(r.lam for r in summary.broadenings[2:5])[1] == pytest.approx(middle_odd.lam)
    assert summary.headline.physical and summary.headline.sigma_ry == 0.025
    # with no physical broadening at all, the rule falls back to the usual median
    assert summarize_broadenings([odd]).headline == odd
