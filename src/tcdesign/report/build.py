"""``write_report``: read a run folder, draw the figures, write figures/*.png and report.html.

The sections live in their own modules (:mod:`~tcdesign.report.overview`,
:mod:`~tcdesign.report.candidates`, :mod:`~tcdesign.report.distributions`,
:mod:`~tcdesign.report.verification`); this module predicts what the run lacks, calls the
sections in page order (which numbers the figures) and writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tcdesign.data.io import InputError
from tcdesign.report.analysis import funnel, unrelaxed_tc, valid_generated
from tcdesign.report.candidates import candidates_section
from tcdesign.report.context import FIGURES_DIR, ReportContext
from tcdesign.report.distributions import generated_sections, tc_section
from tcdesign.report.html import document, element
from tcdesign.report.overview import funnel_section, header_section, tool_version
from tcdesign.report.rundata import MethodRun, load_run
from tcdesign.report.verification import verify_section

REPORT_HTML = "report.html"  # default file name of the report in the run folder


def write_report(
    run_dir: str | Path, *, out: str | Path | None = None, progress: bool = True
) -> Path:
    """Write ``run_dir/report.html`` (or ``out``; a folder gets report.html in it) and
    ``run_dir/figures/*.png``; returns the HTML path.

    Raises :class:`tcdesign.data.io.InputError` when ``run_dir`` holds nothing to report.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    target = Path(out) if out is not None else run_dir / REPORT_HTML
    if target.is_dir():
        target = target / REPORT_HTML
    try:  # before any figure is drawn: an unusable --out is an input error, not a late crash
        target.parent.mkdir(parents=True, exist_ok=True)
        (run_dir / FIGURES_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write the report: {exc.filename}: {exc.strerror}") from None
    return _write(ReportContext(run, target, progress))


def _write(ctx: ReportContext) -> Path:
    """Clear the old figures, predict the missing Tc, build the sections, write the page."""
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    for old in ctx.figures_dir.glob("*.png"):
        old.unlink()  # figures of an earlier report of this folder
    _predict_unrelaxed(ctx)
    counts = funnel(ctx.run)
    ctx.say("funnel")
    funnel_html = funnel_section(ctx, counts)
    ctx.say("candidates")
    candidates_html = candidates_section(ctx)
    ctx.say("periodic table")
    generated_html = generated_sections(ctx)
    ctx.say("Tc distributions")
    tc_html = tc_section(ctx)
    ctx.say("DFT verification")
    verify_html = verify_section(ctx)
    body = [
        header_section(ctx, counts),
        funnel_html,
        candidates_html,
        generated_html,
        tc_html,
        verify_html,
        element(
            "p",
            f"Written by tcdesign {tool_version()}; figures also in "
            f"{ctx.figures_dir.name}/ as PNG.",
            class_="small",
        ),
    ]
    ctx.out.parent.mkdir(parents=True, exist_ok=True)
    ctx.out.write_text(document(ctx.title, body), encoding="utf-8")
    return ctx.out


def _predict_unrelaxed(ctx: ReportContext) -> None:
    """Fill ``ctx.unrelaxed`` per method and note in ``run.notes`` what is missing or predicted."""
    notes = ctx.run.notes
    for method in ctx.run.methods:
        notes += _missing_notes(method)
        ctx.say(f"predicted Tc of the generated structures ({method.name})")
        ctx.unrelaxed[method.name] = unrelaxed_tc(method, ctx.predictor_cache)
        predicted = int((ctx.unrelaxed[method.name].source == "predicted").sum())
        if predicted:
            notes.append(
                f"{method.name}: Tc of {predicted} valid generated structures that are not in "
                "a screened.csv was predicted for this report with the bundled ALIGNN "
                "ensemble (structures as generated, unrelaxed)."
            )
    if ctx.run.verify is None:
        notes.append(
            "No verify/verify.csv: DFT verification has not run, so the λ-ω_log figure and "
            "the DFT columns are left out."
        )


def _missing_notes(method: MethodRun) -> list[str]:
    """Notes on the generation and screening output that ``method`` lacks."""
    notes = []
    if method.generated is None:
        notes.append(f"{method.name}: no generated.csv (generation output not in this folder).")
    elif not len(valid_generated(method)):
        notes.append(f"{method.name}: generated.csv has no valid (status ok) structure.")
    if method.screened is None:
        notes.append(
            f"{method.name}: not screened yet (no screened.csv): relaxed and passed are "
            "'not run', and the Tc figures use predictions on the unrelaxed structures."
        )
    elif not method.relaxed:
        notes.append(
            f"{method.name}: screened without relaxation (screen --no-relax): 'relaxed' "
            "counts the structures scored as generated, and their Tc, energies and space "
            "groups are those of the unrelaxed structures."
        )
    if method.screened is not None and "tc_unrelaxed" not in method.screened.columns:
        notes.append(
            f"{method.name}: screened.csv has no tc_unrelaxed column; the Tc of the "
            "unrelaxed structures was predicted for this report."
        )
    return notes


__all__: Sequence[str] = ["write_report", "REPORT_HTML", "FIGURES_DIR"]
