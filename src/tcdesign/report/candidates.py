"""The candidates section: the table of screened (or, before screening, generated) structures
with their DFT results where verification ran, and pictures of the top structures."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from tcdesign.generate import metrics
from tcdesign.report import pipeline_figures
from tcdesign.report.analysis import (
    generated_structure,
    read_cif_file,
    relaxed_path,
    structure_path,
)
from tcdesign.report.context import ReportContext, file_stem
from tcdesign.report.html import Markup, element, fmt, join, table
from tcdesign.report.rundata import MethodRun, as_bool, as_float

N_PICTURES = 6  # structures drawn under the candidates table
MAX_TABLE_ROWS = 200  # candidates listed in the table
N_UNSCREENED = 20  # top generated structures listed when nothing was screened
N_FAILED_SHOWN = 10  # relaxed structures listed when none passed the screening rules


def candidates_section(ctx: ReportContext) -> Markup:
    """The passed candidates by predicted Tc; the best relaxed ones when none passed; the best
    generated ones when nothing was screened."""
    frames = []
    for method in ctx.run.methods:
        if method.screened is None:
            continue
        frame = method.screened.copy()
        frame["method"] = method.name
        frame["tc"] = as_float(frame["tc"]) if "tc" in frame.columns else math.nan
        frame["passed"] = as_bool(frame.passed) if "passed" in frame.columns else False
        frames.append(frame)
    parts: list[object] = [element("h2", "Candidates")]
    if not frames:
        return join(parts + [_unscreened_table(ctx)])
    screened = pd.concat(frames, ignore_index=True)
    passed = screened[screened.passed].sort_values("tc", ascending=False)
    if len(passed):
        relaxed = all(m.relaxed for m in ctx.run.methods if m.screened is not None)
        title = (
            f"{len(passed)} candidates passed the screening rules, sorted by predicted Tc of "
            + ("the relaxed structure" if relaxed else "the structure as screened")
        )
        shown = passed
    elif (screened.status == "ok").any():
        title = (
            "No candidate passed the screening rules; the relaxed structures with the "
            "highest predicted Tc are listed instead (they did not pass)"
        )
        relaxed = screened[screened.status == "ok"]
        shown = relaxed.sort_values("tc", ascending=False).head(N_FAILED_SHOWN)
    else:
        parts.append(
            element(
                "p",
                f"No candidate passed the screening rules: none of the {len(screened)} "
                "screened structures was relaxed and scored (status ok). Their statuses and "
                "errors, most frequent first:",
            )
        )
        return join(parts + [_failure_table(screened)])
    if len(shown) > MAX_TABLE_ROWS:
        title += f" (the first {MAX_TABLE_ROWS} shown)"
        shown = shown.head(MAX_TABLE_ROWS)
    parts.append(element("p", title + "."))
    if len(shown):
        parts.append(_candidate_table(ctx, shown))
        parts.append(_gallery(ctx, shown))
    return join(parts)


def _failure_table(screened: pd.DataFrame) -> Markup:
    """Status and error of the screened rows with their counts, most frequent first."""
    errors = screened.get("error", pd.Series("", index=screened.index)).fillna("")
    counts = (
        pd.DataFrame({"status": screened.status, "error": errors.astype(str)})
        .value_counts(sort=True)
        .head(N_FAILED_SHOWN)
    )
    rows = [[status, error or "–", count] for (status, error), count in counts.items()]
    return table(["status", "error", "structures"], rows)


def _leading_header(several: bool) -> list[str]:
    """The first columns of every structure table (the method only with several methods)."""
    return ["#"] + (["method"] if several else []) + ["id", "formula", "space group"]


def _leading_cells(rank: int, row: pd.Series, several: bool, space_group: str) -> list[object]:
    """The cells under :func:`_leading_header` for one structure."""
    return (
        [rank]
        + ([row["method"]] if several else [])
        + [row["id"], row.get("formula", ""), space_group]
    )


def _structure_file(ctx: ReportContext, row: pd.Series) -> Path | None:
    """The CIF of a table row (relaxed when there is one), or None."""
    method = ctx.run.method(row["method"])
    return structure_path(method, row) if method is not None else None


def _candidate_table(ctx: ReportContext, shown: pd.DataFrame) -> Markup:
    """Screened structures: predicted Tc, energies, novelty, and the DFT results if any."""
    verify = ctx.run.verify
    verified = {} if verify is None else {(r.method, r.source_id): r for _, r in verify.iterrows()}
    several = ctx.several_methods
    header = _leading_header(several) + [
        "Tc (K) ± std",
        "E_form (eV/atom)",
        "E_hull (eV/atom)",
        "novel",
    ]
    phonons = "phonon_stable" in shown.columns and shown.phonon_stable.notna().any()
    if phonons:
        header.append("CHGNet phonons")
    nef = "nef" in shown.columns and shown.nef.notna().any()
    if nef:
        header.append("N(E_F) (states/eV/atom, DFT)")
    failed_rules = "rules_failed" in shown.columns and not shown.passed.all()
    if failed_rules:
        header.append("rules failed")
    if verify is not None:
        header += ["DFT Tc (K)", "λ", "dynamically stable"]
    header.append("structure")
    rows = []
    for rank, (_, row) in enumerate(shown.iterrows(), start=1):
        group = space_group(row.get("spacegroup"), row.get("spacegroup_number"))
        cells = _leading_cells(rank, row, several, group)
        cells += [
            f"{fmt(row.get('tc'))} ± {fmt(row.get('tc_std'))}",
            fmt(row.get("e_form"), 3),
            fmt(row.get("e_hull"), 3),
            fmt(as_bool(pd.Series([row.get("novel")]))[0]) if "novel" in row else "–",
        ]
        if phonons:
            cells.append(_phonon_cell(row))
        if nef:
            cells.append(fmt(row.get("nef"), 2))
        if failed_rules:
            cells.append(fmt(row.get("rules_failed")))
        if verify is not None:
            dft = verified.get((row["method"], str(row["id"])))
            if dft is None:
                cells += ["not run", "–", "–"]
            elif dft.status == "unstable":  # phonons stopped at an imaginary mode
                cells += [element("span", "unstable", title=str(dft.error)), "–", fmt(False)]
            elif dft.status != "ok":
                label = "magnetic" if dft.status == "magnetic" else "failed"
                cells += [element("span", label, title=str(dft.error)), "–", "–"]
            else:
                cells += [fmt(dft.tc_K), fmt(dft["lambda"]), fmt(bool(dft.dynamically_stable))]
        cells.append(ctx.cif_link(_structure_file(ctx, row)))
        rows.append(cells)
    return table(header, rows, class_="candidates")


def _phonon_cell(row: pd.Series) -> str:
    """'stable', 'unstable (lowest -87 cm^-1)' or '–' (not checked) for a screened row."""
    if pd.isna(row.get("phonon_stable")):
        return "–"
    stable = as_bool(pd.Series([row.get("phonon_stable")]))[0]
    return "stable" if stable else f"unstable ({fmt(row.get('phonon_min_freq_cm1'), 0)} cm⁻¹)"


def _unscreened_table(ctx: ReportContext) -> Markup:
    """Top generated structures by predicted Tc when nothing was screened."""
    frames = []
    for method in ctx.run.methods:
        frame = ctx.unrelaxed_frame(method.name)
        if frame is not None:
            frames.append(frame.assign(method=method.name))
    if not frames:
        return element("p", "No screened or generated structures to list.")
    top = pd.concat(frames, ignore_index=True).sort_values("tc", ascending=False)
    top = top.head(N_UNSCREENED)
    several = ctx.several_methods
    header = _leading_header(several) + ["predicted Tc (K) ± std", "structure"]
    rows = []
    for rank, (_, row) in enumerate(top.iterrows(), start=1):
        path = _structure_file(ctx, row)
        structure = read_cif_file(path) if path is not None else None
        group = space_group(metrics.space_group_number(structure) if structure else None)
        cells = _leading_cells(rank, row, several, group)
        cells += [f"{fmt(row.tc)} ± {fmt(row.tc_std)}", ctx.cif_link(path)]
        rows.append(cells)
    note = element(
        "p",
        f"Screening has not run, so there are no candidates yet. The {len(top)} valid "
        "generated structures with the highest predicted Tc (bundled ALIGNN ensemble, "
        "unrelaxed structures, no formation-energy, hull or gap screening) are listed.",
    )
    return join([note, table(header, rows), _gallery(ctx, top)])


def _gallery(ctx: ReportContext, shown: pd.DataFrame) -> Markup:
    """Pictures of the unit cells of the first :data:`N_PICTURES` structures of a table."""
    pictures = []
    for rank, (_, row) in enumerate(shown.head(N_PICTURES).iterrows(), start=1):
        method = ctx.run.method(row["method"])
        if method is None:
            continue
        structure, kind = _candidate_structure(method, row)
        if structure is None:
            continue
        title = f"#{rank} {structure.composition.reduced_formula}, predicted Tc "
        title += f"{fmt(row.get('tc'))} K"
        item = ctx.add_figure(
            f"structure_{rank}_{file_stem(str(row['id']))}",
            pipeline_figures.structure_figure(structure, title),
            f"#{rank}: {row['id']} ({row['method']})",
            f"Unit cell of the {kind} structure ({len(structure)} atoms), drawn with ASE "
            "(plot_atoms); colours are Jmol's element colours.",
        )
        pictures.append(ctx.figure_html(item))
    if not pictures:
        return Markup("")
    return join(
        [
            element("h3", f"The top {len(pictures)} structures"),
            element("div", join(pictures), class_="gallery"),
        ]
    )


def _candidate_structure(method: MethodRun, row: pd.Series) -> tuple[Structure | None, str]:
    """The relaxed structure of a candidate when there is one, else the generated one."""
    relaxed = relaxed_path(method, row) if method.screened is not None else None
    structure = read_cif_file(relaxed) if relaxed is not None else None
    if structure is not None:
        return structure, "relaxed"
    if method.generated is not None:
        rows = method.generated[method.generated.id == str(row["id"])]
        if len(rows):
            return generated_structure(method, rows.iloc[0]), "generated"
    return None, "generated"


def space_group(value: object, number: object = None) -> str:
    """A space group as written by screen (symbol, number or both): 'Fm-3m (225)', '225'."""
    try:
        numeric = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        numeric = None
    if numeric is not None:
        return str(int(numeric)) if math.isfinite(numeric) else "–"
    text = "" if value is None else str(value).strip()
    try:
        extra = float(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        extra = math.nan
    if text and math.isfinite(extra):
        return f"{text} ({int(extra)})"
    return text or "–"
