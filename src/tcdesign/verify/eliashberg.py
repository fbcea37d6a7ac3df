"""Eliashberg-function moments and the McMillan-Allen-Dynes Tc (MISSION.md step 4).

Frequencies enter in any unit; ``omega_log`` comes out in the unit of the frequencies given, so
callers pass Kelvin (``RY_TO_K`` converts QE's Rydberg) and read Kelvin back.

The electron-phonon run gives one alpha2F(omega) per electronic (Gaussian) broadening of the
double-delta Fermi-surface average (QE's ``el_ph_sigma`` sweep). :func:`summarize_broadenings`
computes lambda, omega_log and Tc for every broadening and picks the headline value:

- the *middle* broadenings are the sweep without its two smallest members (too noisy on a coarse
  k-grid) and its two largest (over-smoothed Fermi surface);
- the headline is the middle broadening whose lambda is the (lower) median of the middle set, so
  that one outlier cannot move the reported value; broadenings whose omega_log exceeds the highest
  frequency with positive alpha2F (impossible for a non-negative alpha2F: negative tetrahedron
  artefacts at small omega cause it) are left out of that choice while any other remains, and
  flagged ``physical: false``;
- ``converged`` is true when the spread (max - min) / mean of lambda over the middle set is at
  most ``spread_tolerance`` (default 0.1): a plateau, as TiN shows and a 2^3-q MgB2 run does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RY_TO_K = 157887.51  # 1 Ry / k_B in K (13.605693 eV / 8.617333e-5 eV/K)
RY_TO_CM1 = 109737.316  # 1 Ry in cm^-1
CM1_TO_K = RY_TO_K / RY_TO_CM1  # 1.43877 K per cm^-1
DEFAULT_MU_STAR = 0.1


def _positive(frequencies: np.ndarray, a2f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep omega > 0: the 1/omega kernels diverge at 0 and imaginary modes carry no weight."""
    frequencies = np.asarray(frequencies, dtype=float)  # (n_points,)
    a2f = np.asarray(a2f, dtype=float)  # (n_points,)
    if frequencies.shape != a2f.shape:
        raise ValueError(f"frequency and alpha2F shapes differ: {frequencies.shape}, {a2f.shape}")
    keep = frequencies > 0
    return frequencies[keep], a2f[keep]


def coupling_lambda(frequencies: np.ndarray, a2f: np.ndarray) -> float:
    """lambda = 2 * int alpha2F(omega) / omega d omega (dimensionless; any frequency unit)."""
    omega, weight = _positive(frequencies, a2f)
    if omega.size < 2:
        return 0.0
    return float(2.0 * np.trapezoid(weight / omega, omega))


def omega_log(frequencies: np.ndarray, a2f: np.ndarray) -> float:
    """omega_log = exp[(2 / lambda) int ln(omega) alpha2F(omega) / omega d omega].

    Returned in the unit of ``frequencies``; NaN when lambda <= 0 (no coupling, no average).
    """
    omega, weight = _positive(frequencies, a2f)
    lam = coupling_lambda(omega, weight)
    if not lam > 0:
        return math.nan
    return float(math.exp(2.0 / lam * np.trapezoid(np.log(omega) * weight / omega, omega)))


def allen_dynes_tc(lam: float, omega_log_k: float, mu_star: float = DEFAULT_MU_STAR) -> float:
    """McMillan-Allen-Dynes Tc (K), MISSION.md step 4; mu* default 0.1.

    Tc = omega_log / 1.2 * exp(-1.04 (1 + lambda) / (lambda - mu* (1 + 0.62 lambda))), and 0 when
    the denominator is <= 0 (the Coulomb repulsion wins) or omega_log is not a positive number.
    """
    denominator = lam - mu_star * (1.0 + 0.62 * lam)
    if not denominator > 0 or not omega_log_k > 0:
        return 0.0
    return float(omega_log_k / 1.2 * math.exp(-1.04 * (1.0 + lam) / denominator))


@dataclass(frozen=True)
class BroadeningResult:
    """lambda, omega_log (K) and Tc (K) from the alpha2F of one electronic broadening (Ry)."""

    sigma_ry: float  # electronic broadening (Ry)
    lam: float  # lambda
    omega_log_k: float  # K
    tc_k: float  # K
    omega_max_k: float = math.nan  # K, highest frequency with positive alpha2F

    @property
    def physical(self) -> bool:
        """False when omega_log lies above every frequency with positive alpha2F."""
        return not (self.omega_log_k > self.omega_max_k * (1 + 1e-9))

    def as_dict(self) -> dict[str, float | bool]:
        """The keys of result.json: sigma_Ry, lambda, omega_log_K, tc_K, physical."""
        return {
            "sigma_Ry": self.sigma_ry,
            "lambda": self.lam,
            "omega_log_K": self.omega_log_k,
            "tc_K": self.tc_k,
            "physical": self.physical,
        }


@dataclass(frozen=True)
class EliashbergSummary:
    """All broadenings, the headline one, and whether lambda has plateaued."""

    broadenings: tuple[BroadeningResult, ...]
    headline: BroadeningResult
    middle_spread: float  # (max - min) / mean of lambda over the middle broadenings
    converged: bool


def broadening_result(
    sigma_ry: float, frequencies_ry: np.ndarray, a2f: np.ndarray, mu_star: float
) -> BroadeningResult:
    """lambda, omega_log (K) and Tc (K) of one alpha2F with frequencies in Ry."""
    frequencies_K = np.asarray(frequencies_ry, dtype=float) * RY_TO_K
    lam = coupling_lambda(frequencies_K, a2f)
    wlog = omega_log(frequencies_K, a2f)
    positive = frequencies_K[(np.asarray(a2f) > 0) & (frequencies_K > 0)]
    omega_max = float(positive.max()) if positive.size else math.nan
    return BroadeningResult(sigma_ry, lam, wlog, allen_dynes_tc(lam, wlog, mu_star), omega_max)


def middle_indices(n_broadenings: int, trim: int = 2) -> list[int]:
    """Indices of the middle broadenings: all but ``trim`` at each end (all when too few)."""
    if n_broadenings > 2 * trim:
        return list(range(trim, n_broadenings - trim))
    return list(range(n_broadenings))


def summarize_broadenings(
    results: list[BroadeningResult], spread_tolerance: float = 0.1
) -> EliashbergSummary:
    """Headline value and convergence flag over a broadening sweep (rules in the module doc)."""
    if not results:
        raise ValueError("no broadenings to summarise")
    ordered = sorted(results, key=lambda r: r.sigma_ry)
    middle = [ordered[i] for i in middle_indices(len(ordered))]
    by_lambda = sorted([r for r in middle if r.physical] or middle, key=lambda r: r.lam)
    headline = by_lambda[(len(by_lambda) - 1) // 2]
    lambdas = np.array([r.lam for r in middle])
    mean = float(lambdas.mean())
    spread = float((lambdas.max() - lambdas.min()) / mean) if mean > 0 else math.inf
    return EliashbergSummary(tuple(ordered), headline, spread, spread <= spread_tolerance)
