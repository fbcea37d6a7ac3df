"""The DFT verification section: λ against ω_log with the Eliashberg spectra α²F(ω), the table
of the Quantum ESPRESSO runs, and the candidates that were passed over."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tcdesign.report import pipeline_figures
from tcdesign.report.context import ReportContext
from tcdesign.report.html import Figure, Markup, element, fmt, join, table
from tcdesign.report.rundata import RunData, find_setting, verify_result_folder
from tcdesign.verify.eliashberg import DEFAULT_MU_STAR

ALPHA2F_CSV = "alpha2F.csv"  # in each verify result folder: omega_cm1, a2F_sigma_<s>Ry, ...
RESULT_JSON = "result.json"  # in each verify result folder: headline_sigma_Ry, ...


def verify_section(ctx: ReportContext) -> Markup:
    """The λ-ω_log figure and the table of DFT runs, or why there are none; the skipped ones."""
    run = ctx.run
    parts: list[object] = [element("h2", "DFT verification")]
    if run.verify is None:
        parts.append(
            element("p", "DFT verification has not run in this folder (no verify/verify.csv).")
        )
    else:
        ok = run.verify[
            (run.verify.status == "ok")
            & np.isfinite(run.verify.omega_log_K)
            & np.isfinite(run.verify["lambda"])
        ]
        if len(ok):
            parts.append(ctx.figure_html(_epc_figure(ctx, ok)))
        else:
            parts.append(
                element("p", "No DFT run finished with status ok, so there is no λ-ω_log figure.")
            )
        parts.append(_verify_table(ctx))
    parts += _skipped(run.info.get("skipped_verify"))
    return join(parts)


def _skipped(skipped: object) -> list[Markup]:
    """Heading, note and table of run.json's ``skipped_verify`` list; nothing when it is empty."""
    if not isinstance(skipped, list) or not skipped:
        return []
    rows = [
        (item.get("id", "?"), item.get("formula", ""), item.get("reason", ""))
        if isinstance(item, dict)
        else (item, "", "")
        for item in skipped
    ]
    return [
        element("h3", f"Candidates not verified ({len(rows)})"),
        element(
            "p",
            "Better-ranked candidates that were passed over for DFT, with the reason "
            "(from run.json).",
        ),
        table(["id", "formula", "reason"], rows),
    ]


def mu_star_setting(settings: Mapping[str, Any]) -> float:
    """The run's Coulomb pseudopotential μ* (dimensionless), or DEFAULT_MU_STAR when unset or
    not a number."""
    mu_star = find_setting(settings, "mu_star")
    try:
        return float(mu_star) if mu_star is not None else DEFAULT_MU_STAR
    except (TypeError, ValueError):
        return DEFAULT_MU_STAR


def _epc_figure(ctx: ReportContext, ok: pd.DataFrame) -> Figure:
    """(c) λ against ω_log of the finished runs ``ok``; (d) α²F(ω) of the highest-Tc ones."""
    mu_star = mu_star_setting(ctx.run.settings)
    curves = []
    for _, row in ok.sort_values("tc_K", ascending=False).iterrows():
        if len(curves) >= pipeline_figures.MAX_A2F_CURVES:
            break
        curve = alpha2f(ctx.run, row)
        if curve is not None:
            label = f"{row.formula} ({fmt(row.tc_K, 1)} K)"
            curves.append((label, *curve))
    stable = int(ok.dynamically_stable.sum())
    caption = (
        f"(c) Electron-phonon coupling λ against the logarithmic average phonon frequency "
        f"ω_log for the {len(ok)} candidates whose Quantum ESPRESSO run finished "
        f"({stable} dynamically stable: circles; unstable, with imaginary modes: crosses), "
        "coloured by the DFT Tc from the McMillan-Allen-Dynes formula, as Fig. 3c of Wines "
        f"et al. 2023; grey lines are constant Allen-Dynes Tc at μ* = {mu_star:g}."
    )
    if curves:
        caption += (
            f" (d) Eliashberg spectral function α²F(ω) (from alpha2F.csv, headline "
            f"broadening) of the {len(curves)} highest-Tc verified candidates."
        )
    return ctx.add_figure(
        "lambda_omega_log",
        pipeline_figures.epc_figure(ok, curves, mu_star),
        "Electron-phonon coupling of the verified candidates",
        caption,
    )


def _verify_table(ctx: ReportContext) -> Markup:
    """Every row of verify.csv by DFT Tc: λ, ω_log (K), Tc (K), stability, status and error."""
    verify = ctx.run.verify.sort_values("tc_K", ascending=False, na_position="last")
    several = ctx.several_methods
    header = (["method"] if several else []) + [
        "id",
        "formula",
        "λ",
        "ω_log (K)",
        "DFT Tc (K)",
        "min frequency (cm⁻¹)",
        "dynamically stable",
        "converged",
        "status",
        "error",
    ]
    rows = []
    for _, row in verify.iterrows():
        ok = row.status == "ok"
        rows.append(
            ([row.method] if several else [])
            + [
                row.id,
                row.get("formula", ""),
                fmt(row["lambda"], 3),
                fmt(row.omega_log_K, 1),
                fmt(row.tc_K),
                fmt(row.min_freq_cm1, 1),
                fmt(bool(row.dynamically_stable)) if ok else "–",
                fmt(bool(row.converged)) if ok else "–",
                row.status,
                row.get("error", ""),
            ]
        )
    return table(header, rows)


def alpha2f(run: RunData, row: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(omega in cm^-1, alpha2F) of a verified row at its headline broadening, or None."""
    folder = verify_result_folder(run, row)
    if folder is None or not (folder / ALPHA2F_CSV).is_file():
        return None
    try:
        spectra = pd.read_csv(folder / ALPHA2F_CSV)
        result = json.loads((folder / RESULT_JSON).read_text())
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    columns = [c for c in spectra.columns if c.startswith("a2F_sigma_")]
    if "omega_cm1" not in spectra.columns or not columns:
        return None
    sigma = result.get("headline_sigma_Ry") if isinstance(result, dict) else None
    column = f"a2F_sigma_{sigma:g}Ry" if isinstance(sigma, int | float) else None
    if column not in spectra.columns:
        column = columns[len(columns) // 2]
    return spectra.omega_cm1.to_numpy(float), spectra[column].to_numpy(float)
