"""Shared by the DFT benchmarks (verify_jarvis.py, verify_candidates.py): their QE flags, one
verify.csv row as JSON-ready values, and its cells in the printed table."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping


def add_qe_arguments(parser: argparse.ArgumentParser, timeout_s: float) -> None:
    """The QE settings both benchmarks take: preset, cutoffs for every crystal, parallelism."""
    parser.add_argument("--preset", default="coarse", choices=["coarse", "standard"])
    parser.add_argument("--ecutwfc", type=float, default=45.0, help="Ry, every crystal")
    parser.add_argument("--ecutrho", type=float, default=360.0, help="Ry, every crystal")
    parser.add_argument("--workers", type=int, default=1, help="crystals at a time")
    parser.add_argument("--np", type=int, default=1, help="MPI ranks per crystal")
    parser.add_argument("--q-workers", type=int, default=1, help="q-points at once per crystal")
    parser.add_argument("--timeout", type=float, default=timeout_s, help="s per QE step")


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: object) -> float | None:
    return None if missing(value) else round(float(value), 4)


def flag(value: object) -> bool | None:
    return None if missing(value) else bool(value)


def dft_values(row: Mapping[str, object]) -> dict[str, object]:
    """The DFT columns of a verify.csv row (absent ones None), rounded, NaN as None."""
    error = row.get("error")
    return {
        "tc_K": number(row.get("tc_K")),
        "lambda": number(row.get("lambda")),
        "omega_log_K": number(row.get("omega_log_K")),
        "min_freq_cm1": number(row.get("min_freq_cm1")),
        "dynamically_stable": flag(row.get("dynamically_stable")),
        "converged": flag(row.get("converged")),
        "status": row.get("status"),
        "error": None if missing(error) else str(error),
    }


def dft_cells(row: Mapping[str, object]) -> str:
    """Tc, lambda, omega_log and stability (or the status) as table cells."""
    tc = "-" if row["tc_K"] is None else f"{row['tc_K']:.2f}"
    lam = "-" if row["lambda"] is None else f"{row['lambda']:.3f}"
    wlog = "-" if row["omega_log_K"] is None else f"{row['omega_log_K']:.0f}"
    stable = row["status"] if row["status"] != "ok" else str(row["dynamically_stable"])
    return f"{tc:>7} {lam:>7} {wlog:>6} {stable}"
