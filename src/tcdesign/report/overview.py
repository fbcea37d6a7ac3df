"""The top of the report: the header with the run's facts and headline, and the design funnel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

from tcdesign.report import pipeline_figures
from tcdesign.report.analysis import STAGE_LABELS, STAGES
from tcdesign.report.context import ReportContext
from tcdesign.report.html import Markup, element, fmt, join, key_values, table
from tcdesign.report.rundata import as_bool, as_float

FUNNEL_DEFINITIONS = (
    "generated = rows of generated.csv; valid = generated with status ok (finite, atoms "
    "at least 0.5 Å apart); relaxed = screened.csv rows with status ok (relaxed and "
    "scored); passed = screened rows with passed true (the screening rules); verified = "
    "verify.csv rows with status ok (a finished Quantum ESPRESSO electron-phonon run); "
    "DFT Tc > {tc_min:g} K = verified with Allen-Dynes Tc above the run's tc_min; "
    "dynamically stable = verified with no imaginary phonon mode beyond the tolerance."
)


def tool_version() -> str:
    """The installed tcdesign version, or "unknown"."""
    try:
        return version("tcdesign")
    except PackageNotFoundError:
        return "unknown"


def header_section(ctx: ReportContext, counts: pd.DataFrame) -> Markup:
    """Title, the run's facts, the headline, the settings and the notes on what is missing.

    ``counts`` is the funnel table (methods x stages) of :func:`tcdesign.report.analysis.funnel`.
    """
    run, info = ctx.run, ctx.run.info
    pairs: list[tuple[object, object]] = [
        ("run folder", str(run.folder.resolve())),
        ("report written", dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("tcdesign version", tool_version()),
        ("methods", ", ".join(ctx.names) or "none"),
    ]
    if info.get("tcdesign_version"):
        pairs.append(("tcdesign version of the run", info["tcdesign_version"]))
    for key in ("created", "started", "finished", "command", "seed", "n"):
        if key in info and not isinstance(info[key], dict | list):
            pairs.append((key, info[key]))
    seconds = info.get("seconds")
    if isinstance(seconds, dict) and seconds:
        pairs.append(
            ("time per stage", ", ".join(f"{k} {fmt(v, 0)} s" for k, v in seconds.items()))
        )
    parts = [
        element("h1", ctx.title),
        element(
            "p",
            "Inverse design of conventional superconductors: generated crystals, their "
            "screening with the bundled ALIGNN Tc ensemble and universal-potential "
            "relaxation, and DFT electron-phonon verification where it ran.",
            class_="small",
        ),
        key_values(pairs),
        element("p", headline(ctx, counts)),
    ]
    if run.settings:
        flat = flatten_settings(run.settings)
        summary = element("summary", f"settings from run.json ({len(flat)})")
        parts.append(element("details", join([summary, key_values(flat)])))
    if run.notes:
        title = element("b", "What is missing or was inferred")
        notes = element("ul", join(element("li", n) for n in run.notes))
        parts.append(element("div", join([title, notes]), class_="notes"))
    return join(parts)


def headline(ctx: ReportContext, counts: pd.DataFrame) -> str:
    """One sentence: the count after each stage that ran, the best predicted and DFT Tc (K)."""
    totals = counts.sum(axis=0, min_count=1)
    words = []
    for stage in STAGES:
        if np.isfinite(totals[stage]):
            words.append(f"{int(totals[stage])} {STAGE_LABELS[stage]}")
    text = "; ".join(words).format(tc_min=ctx.run.tc_min)
    best = best_predicted(ctx)
    if best:
        text += f". Highest predicted Tc: {best}"
    if ctx.run.verify is not None:
        ok = ctx.run.verify[ctx.run.verify.status == "ok"]
        if len(ok) and np.isfinite(ok.tc_K).any():
            top = ok.loc[ok.tc_K.idxmax()]
            text += f". Highest DFT Tc: {top.formula} {fmt(top.tc_K)} K"
    return text + "."


def best_predicted(ctx: ReportContext) -> str:
    """ "formula Tc K (kind)" of the highest predicted Tc among the passed candidates, or among
    the unrelaxed generated structures when none passed; "" when there is no finite Tc."""
    rows = []
    for method in ctx.run.methods:
        if method.screened is not None and "passed" in method.screened.columns:
            passed = method.screened[as_bool(method.screened.passed)]
            kind = "passed, relaxed" if method.relaxed else "passed, unrelaxed"
            for _, row in passed.iterrows():
                tc = as_float(pd.Series([row.get("tc")]))[0]
                rows.append((tc, row.get("formula"), kind))
    if not rows:
        for frame in ctx.unrelaxed.values():
            for _, row in frame.iterrows():
                rows.append((row.tc, row.formula, "as generated"))
    rows = [r for r in rows if np.isfinite(r[0])]
    if not rows:
        return ""
    tc, formula, kind = max(rows, key=lambda r: r[0])
    return f"{formula} {tc:.2f} K ({kind})"


def funnel_section(ctx: ReportContext, counts: pd.DataFrame) -> Markup:
    """The funnel table (stages x methods; 'not run' where a stage has no output) and figure."""
    tc_min = ctx.run.tc_min
    stages = [s for s in STAGES if counts[s].notna().any() or s in STAGES[:5]]
    header = ["stage", *counts.index]
    rows = []
    for stage in stages:
        cells = [STAGE_LABELS[stage].format(tc_min=tc_min)]
        for method in counts.index:
            value = counts.loc[method, stage]
            cells.append("not run" if not np.isfinite(value) else str(int(value)))
        rows.append(cells)
    item = ctx.add_figure(
        "funnel",
        pipeline_figures.funnel_figure(counts, ctx.colors, tc_min),
        "The design funnel",
        "Number of structures left after each stage, per generator method. "
        + FUNNEL_DEFINITIONS.format(tc_min=tc_min)
        + " 'not run' marks a stage with no output in the run folder.",
    )
    return join([element("h2", "Funnel"), table(header, rows), ctx.figure_html(item)])


def flatten_settings(settings: Mapping[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """Nested settings as ("outer.inner", value) pairs; lists joined with ", "."""
    pairs: list[tuple[str, object]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += flatten_settings(value, f"{name}.")
        elif isinstance(value, list):
            pairs.append((name, ", ".join(map(str, value))))
        else:
            pairs.append((name, value))
    return pairs
