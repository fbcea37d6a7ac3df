"""``write_report``: read a run folder, draw the figures, write figures/*.png and report.html."""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex, to_rgba
from matplotlib.figure import Figure as MplFigure
from pymatgen.core import Structure

from tcdesign.generate import metrics
from tcdesign.report import figures
from tcdesign.report.analysis import (
    HEATMAP_TC,
    RADII_NOTE,
    STAGE_LABELS,
    STAGES,
    element_probabilities,
    funnel,
    generated_set,
    generated_structure,
    packing_fractions,
    read_cif_file,
    relaxed_path,
    relaxed_set,
    structure_path,
    training_data,
    unrelaxed_tc,
    valid_generated,
)
from tcdesign.report.html import (
    Figure,
    Markup,
    document,
    element,
    fmt,
    join,
    key_values,
    link,
    table,
)
from tcdesign.report.rundata import (
    MethodRun,
    RunData,
    as_bool,
    as_float,
    find_setting,
    load_run,
    verify_result_folder,
)
from tcdesign.verify.eliashberg import DEFAULT_MU_STAR

FIGURES_DIR = "figures"
REPORT_HTML = "report.html"
N_PICTURES = 6  # structures drawn under the candidates table
MAX_TABLE_ROWS = 200  # candidates listed in the table
N_UNSCREENED = 20  # top generated structures listed when nothing was screened


def _version() -> str:
    try:
        return version("tcdesign")
    except PackageNotFoundError:
        return "unknown"


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "run"


class ReportBuilder:
    """Collects figures and sections for one run; :meth:`write` produces the files."""

    def __init__(self, run: RunData, out: Path, progress: bool) -> None:
        self.run = run
        self.out = out
        self.progress = progress
        self.figures_dir = run.folder / FIGURES_DIR
        self.figures: list[Figure] = []
        self.names = [m.name for m in run.methods]
        self.colors = {m: figures.method_color(m, self.names) for m in self.names}
        self.predictor_cache: dict[str, object] = {}
        self.unrelaxed: dict[str, pd.DataFrame] = {}

    # ---- helpers
    def say(self, message: str) -> None:
        if self.progress:
            print(f"report: {message}", file=sys.stderr, flush=True)

    def add_figure(self, name: str, figure: MplFigure, title: str, caption: str) -> Figure:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=figures.DPI)
        png = buffer.getvalue()
        (self.figures_dir / f"{name}.png").write_bytes(png)
        item = Figure(name, png, caption, title)
        self.figures.append(item)
        return item

    def figure_html(self, item: Figure) -> Markup:
        return item.html(self.figures.index(item) + 1)

    def href(self, path: Path) -> str:
        """A link to ``path`` relative to the report file (URL-quoted)."""
        relative = os.path.relpath(path.resolve(), self.out.parent.resolve())
        return quote(relative.replace(os.sep, "/"))

    # ---- sections
    def header(self, counts: pd.DataFrame) -> Markup:
        run, info = self.run, self.run.info
        pairs: list[tuple[object, object]] = [
            ("run folder", str(run.folder.resolve())),
            ("report written", dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
            ("tcdesign version", _version()),
            ("methods", ", ".join(self.names) or "none"),
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
            element("h1", f"tcdesign report: {run.folder.resolve().name}"),
            element(
                "p",
                "Inverse design of conventional superconductors: generated crystals, their "
                "screening with the bundled ALIGNN Tc ensemble and universal-potential "
                "relaxation, and DFT electron-phonon verification where it ran.",
                class_="small",
            ),
            key_values(pairs),
            element("p", self.headline(counts)),
        ]
        if run.settings:
            flat = _flatten(run.settings)
            parts.append(
                element(
                    "details",
                    join(
                        [
                            element("summary", f"settings from run.json ({len(flat)})"),
                            key_values(flat),
                        ]
                    ),
                )
            )
        if run.notes:
            parts.append(
                element(
                    "div",
                    join(
                        [
                            element("b", "What is missing or was inferred"),
                            element("ul", join(element("li", n) for n in run.notes)),
                        ]
                    ),
                    class_="notes",
                )
            )
        return join(parts)

    def headline(self, counts: pd.DataFrame) -> str:
        totals = counts.sum(axis=0, min_count=1)
        words = []
        for stage in STAGES:
            if np.isfinite(totals[stage]):
                words.append(f"{int(totals[stage])} {STAGE_LABELS[stage]}")
        text = "; ".join(words).format(tc_min=self.run.tc_min)
        best = self.best_predicted()
        if best:
            text += f". Highest predicted Tc: {best}"
        if self.run.verify is not None:
            ok = self.run.verify[self.run.verify.status == "ok"]
            if len(ok) and np.isfinite(ok.tc_K).any():
                top = ok.loc[ok.tc_K.idxmax()]
                text += f". Highest DFT Tc: {top.formula} {fmt(top.tc_K)} K"
        return text + "."

    def best_predicted(self) -> str:
        rows = []
        for method in self.run.methods:
            if method.screened is not None and "passed" in method.screened.columns:
                passed = method.screened[as_bool(method.screened.passed)]
                for _, row in passed.iterrows():
                    rows.append(
                        (
                            as_float(pd.Series([row.get("tc")]))[0],
                            row.get("formula"),
                            "passed, relaxed",
                        )
                    )
        if not rows:
            for frame in self.unrelaxed.values():
                for _, row in frame.iterrows():
                    rows.append((row.tc, row.formula, "as generated"))
        rows = [r for r in rows if np.isfinite(r[0])]
        if not rows:
            return ""
        tc, formula, kind = max(rows, key=lambda r: r[0])
        return f"{formula} {tc:.2f} K ({kind})"

    def funnel_section(self, counts: pd.DataFrame) -> Markup:
        tc_min = self.run.tc_min
        stages = [s for s in STAGES if counts[s].notna().any() or s in STAGES[:5]]
        header = ["stage", *counts.index]
        rows = []
        for stage in stages:
            cells = [STAGE_LABELS[stage].format(tc_min=tc_min)]
            for method in counts.index:
                value = counts.loc[method, stage]
                cells.append("not run" if not np.isfinite(value) else str(int(value)))
            rows.append(cells)
        definitions = (
            "generated = rows of generated.csv; valid = generated with status ok (finite, atoms "
            "at least 0.5 Å apart); relaxed = screened.csv rows with status ok (relaxed and "
            "scored); passed = screened rows with passed true (the screening rules); verified = "
            "verify.csv rows with status ok (a finished Quantum ESPRESSO electron-phonon run); "
            f"DFT Tc > {tc_min:g} K = verified with Allen-Dynes Tc above the run's tc_min; "
            "dynamically stable = verified with no imaginary phonon mode beyond the tolerance."
        )
        item = self.add_figure(
            "funnel",
            figures.funnel_figure(counts, self.colors, tc_min),
            "The design funnel",
            "Number of structures left after each stage, per generator method. "
            + definitions
            + " 'not run' marks a stage with no output in the run folder.",
        )
        return join([element("h2", "Funnel"), table(header, rows), self.figure_html(item)])

    def candidates_section(self) -> Markup:
        frames = []
        for method in self.run.methods:
            if method.screened is None:
                continue
            frame = method.screened.copy()
            frame["method"] = method.name
            frame["tc"] = as_float(frame["tc"]) if "tc" in frame.columns else math.nan
            frame["passed"] = as_bool(frame.passed) if "passed" in frame.columns else False
            frames.append(frame)
        parts: list[object] = [element("h2", "Candidates")]
        if not frames:
            return join(parts + [self.unscreened_table()])
        screened = pd.concat(frames, ignore_index=True)
        passed = screened[screened.passed].sort_values("tc", ascending=False)
        if len(passed):
            title = (
                f"{len(passed)} candidates passed the screening rules, sorted by predicted Tc of "
                "the relaxed structure"
            )
            shown = passed
        else:
            title = (
                "No candidate passed the screening rules; the relaxed structures with the "
                "highest predicted Tc are listed instead (they did not pass)"
            )
            shown = screened[screened.status == "ok"].sort_values("tc", ascending=False).head(10)
        if len(shown) > MAX_TABLE_ROWS:
            title += f" (the first {MAX_TABLE_ROWS} shown)"
            shown = shown.head(MAX_TABLE_ROWS)
        parts.append(element("p", title + "."))
        if len(shown):
            parts.append(self.candidate_table(shown))
            parts.append(self.gallery(shown))
        return join(parts)

    def verify_lookup(self) -> dict[tuple[str, str], pd.Series]:
        if self.run.verify is None:
            return {}
        return {(r.method, r.source_id): r for _, r in self.run.verify.iterrows()}

    @staticmethod
    def leading_header(several: bool) -> list[str]:
        """The first columns of every structure table (the method only with several methods)."""
        return ["#"] + (["method"] if several else []) + ["id", "formula", "space group"]

    def candidate_table(self, shown: pd.DataFrame) -> Markup:
        verified = self.verify_lookup()
        several = len(self.names) > 1
        header = self.leading_header(several) + [
            "Tc (K) ± std",
            "E_form (eV/atom)",
            "E_hull (eV/atom)",
            "novel",
        ]
        failed_rules = "rules_failed" in shown.columns and not shown.passed.all()
        if failed_rules:
            header.append("rules failed")
        if self.run.verify is not None:
            header += ["DFT Tc (K)", "λ", "dynamically stable"]
        header.append("structure")
        rows = []
        for rank, (_, row) in enumerate(shown.iterrows(), start=1):
            method = self.run.method(row["method"])
            cells: list[object] = [rank] + ([row["method"]] if several else [])
            cells += [
                row["id"],
                row.get("formula", ""),
                _space_group(row.get("spacegroup"), row.get("spacegroup_number")),
                f"{fmt(row.get('tc'))} ± {fmt(row.get('tc_std'))}",
                fmt(row.get("e_form"), 3),
                fmt(row.get("e_hull"), 3),
                fmt(as_bool(pd.Series([row.get("novel")]))[0]) if "novel" in row else "–",
            ]
            if failed_rules:
                cells.append(fmt(row.get("rules_failed")))
            if self.run.verify is not None:
                dft = verified.get((row["method"], str(row["id"])))
                if dft is None:
                    cells += ["not run", "–", "–"]
                elif dft.status != "ok":
                    cells += [element("span", "failed", title=str(dft.error)), "–", "–"]
                else:
                    cells += [fmt(dft.tc_K), fmt(dft["lambda"]), fmt(bool(dft.dynamically_stable))]
            path = structure_path(method, row) if method is not None else None
            cells.append(link(self.href(path), "CIF") if path is not None else "–")
            rows.append(cells)
        return table(header, rows, class_="candidates")

    def gallery(self, shown: pd.DataFrame) -> Markup:
        pictures = []
        for rank, (_, row) in enumerate(shown.head(N_PICTURES).iterrows(), start=1):
            method = self.run.method(row["method"])
            if method is None:
                continue
            structure, kind = self.candidate_structure(method, row)
            if structure is None:
                continue
            title = f"#{rank} {structure.composition.reduced_formula}, predicted Tc "
            title += f"{fmt(row.get('tc'))} K"
            item = self.add_figure(
                f"structure_{rank}_{_file_stem(str(row['id']))}",
                figures.structure_figure(structure, title),
                f"#{rank}: {row['id']} ({row['method']})",
                f"Unit cell of the {kind} structure ({len(structure)} atoms), drawn with ASE "
                "(plot_atoms); colours are Jmol's element colours.",
            )
            pictures.append(self.figure_html(item))
        if not pictures:
            return Markup("")
        return join(
            [
                element("h3", f"The top {len(pictures)} structures"),
                element("div", join(pictures), class_="gallery"),
            ]
        )

    def candidate_structure(
        self, method: MethodRun, row: pd.Series
    ) -> tuple[Structure | None, str]:
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

    def unscreened_table(self) -> Markup:
        """Top generated structures by predicted Tc when nothing was screened."""
        frames = []
        for method in self.run.methods:
            frame = self.unrelaxed.get(method.name)
            if frame is not None and len(frame):
                frame = frame.copy()
                frame["method"] = method.name
                frames.append(frame)
        if not frames:
            return element("p", "No screened or generated structures to list.")
        top = pd.concat(frames, ignore_index=True).sort_values("tc", ascending=False)
        top = top.head(N_UNSCREENED)
        several = len(self.names) > 1
        header = self.leading_header(several) + ["predicted Tc (K) ± std", "structure"]
        rows = []
        for rank, (_, row) in enumerate(top.iterrows(), start=1):
            method = self.run.method(row["method"])
            path = structure_path(method, row) if method is not None else None
            structure = read_cif_file(path) if path is not None else None
            cells: list[object] = [rank] + ([row["method"]] if several else [])
            cells += [
                row["id"],
                row["formula"],
                _space_group(metrics.space_group_number(structure) if structure else None),
                f"{fmt(row.tc)} ± {fmt(row.tc_std)}",
                link(self.href(path), "CIF") if path is not None else "–",
            ]
            rows.append(cells)
        note = element(
            "p",
            f"Screening has not run, so there are no candidates yet. The {len(top)} valid "
            "generated structures with the highest predicted Tc (bundled ALIGNN ensemble, "
            "unrelaxed structures, no formation-energy, hull or gap screening) are listed.",
        )
        return join([note, table(header, rows), self.gallery(top.assign(tc=top.tc))])

    def generated_sections(self) -> Markup:
        parts: list[object] = [element("h2", "Generated versus training structures")]
        for method in self.run.methods:
            frame = self.unrelaxed.get(method.name)
            if frame is None or not len(frame):
                continue
            probabilities = element_probabilities(list(frame.formula), list(frame.tc), HEATMAP_TC)
            sources = frame.source.value_counts().to_dict()
            origin = " and ".join(
                {
                    "screened": f"{n} from tc_unrelaxed of screened.csv",
                    "predicted": f"{n} predicted for this report with the bundled ensemble",
                }[k]
                for k, n in sources.items()
            )
            item = self.add_figure(
                f"periodic_table_{_file_stem(method.name)}",
                figures.periodic_table_figure(
                    probabilities,
                    f"{method.name}: P(predicted Tc > {HEATMAP_TC:g} K)",
                    HEATMAP_TC,
                ),
                f"Elements in the compounds generated by {method.name}",
                f"For each element, the fraction of the {len(frame)} valid generated compounds "
                f"containing it whose predicted Tc (bundled ALIGNN ensemble, structure as "
                f"generated, before relaxation) exceeds {HEATMAP_TC:g} K, as in Fig. 1b of "
                f"Wines et al. 2023; the numbers are compounds above {HEATMAP_TC:g} K / compounds "
                f"with the element. Grey: the element is in no generated compound. Tc values: "
                f"{origin}.",
            )
            parts.append(self.figure_html(item))
        parts.append(self.structure_figures())
        return join(parts)

    def structure_figures(self) -> Markup:
        self.say("densities, packing fractions and formula types")
        training = training_data()
        sets = [("training (JARVIS-DFT)", training.structures, figures.TRAINING_COLOR, False)]
        for method in self.run.methods:
            color = self.colors[method.name]
            generated = generated_set(method)
            if generated.structures:
                sets.append((generated.label, generated.structures, color, False))
            relaxed = relaxed_set(method)
            if relaxed.structures:
                sets.append((relaxed.label, relaxed.structures, color, True))
        if len(sets) == 1:
            return element(
                "p", "No generated structures in the run folder to compare with the training set."
            )
        described = "; ".join(f"{label}: {len(structures)}" for label, structures, _, _ in sets)
        bars = [
            (
                label,
                [s.composition for s in structures],
                to_hex(to_rgba(color, 0.55 if dashed else 1.0), keep_alpha=True),
            )
            for label, structures, color, dashed in sets
        ]
        types = self.add_figure(
            "formula_types",
            figures.formula_type_figure(bars),
            "Formula types, generated versus training",
            "Fraction of each set of structures (a) by number of distinct elements and (b) by "
            "formula type, the reduced stoichiometry with elements anonymised as A, B, C, ... in "
            "order of increasing amount (AB2 = MgB2, AB3 = Nb3Sn); as in Fig. 2 of Wines et al. "
            f"2023. Structures: {described}. Training: the bundled JARVIS-DFT training split; "
            "generated: valid structures as sampled; relaxed: after the screening relaxation "
            "(lighter bars).",
        )
        density = [
            figures.Series(label, metrics.densities(structures), color, dashed)
            for label, structures, color, dashed in sets
        ]
        packing = [
            figures.Series(label, packing_fractions(structures), color, dashed)
            for label, structures, color, dashed in sets
        ]
        dense = self.add_figure(
            "density_packing",
            figures.density_packing_figure(density, packing),
            "Densities and packing fractions, generated versus training",
            "Histograms normalised to the size of each set (fraction of its structures per bin) "
            "of (c) the mass density in g/cm³ and (d) the packing fraction: the summed volume "
            f"of spheres with the {RADII_NOTE}, divided by the cell volume. Structures: "
            f"{described}; relaxed sets dashed. Values beyond the 0.5th-99.5th percentile "
            "range are counted in the end bins.",
        )
        return join([self.figure_html(types), self.figure_html(dense)])

    def tc_section(self) -> Markup:
        training = training_data()
        series = []
        for method in self.run.methods:
            color = self.colors[method.name]
            frame = self.unrelaxed.get(method.name)
            if frame is not None and len(frame):
                series.append(
                    figures.Series(f"{method.name}, as generated", frame.tc.to_numpy(float), color)
                )
            if method.screened is not None and "tc" in method.screened.columns:
                ok = method.screened[method.screened.status == "ok"]
                values = as_float(ok.tc).to_numpy(float)
                if np.isfinite(values).any():
                    series.append(figures.Series(f"{method.name}, relaxed", values, color, True))
        item = self.add_figure(
            "tc_distributions",
            figures.tc_distribution_figure(training.tc, series, self.run.tc_min),
            "Tc distributions: training DFT versus generated predicted",
            f"(a) DFT Tc (McMillan-Allen-Dynes from electron-phonon coupling) of the "
            f"{len(training.tc)} structures of the bundled JARVIS-DFT training split. (b) Tc "
            "predicted by the bundled ALIGNN ensemble for the valid generated structures as "
            "sampled (solid) and, where screening ran, for the relaxed structures (dashed); as "
            f"Fig. 3a-b of Wines et al. 2023. Dotted line: the screening threshold "
            f"tc_min = {self.run.tc_min:g} K. One-kelvin bins; the last bin also counts all "
            "higher values.",
        )
        return join([element("h2", "Tc distributions"), self.figure_html(item)])

    def verify_section(self) -> Markup:
        run = self.run
        parts: list[object] = [element("h2", "DFT verification")]
        skipped = run.info.get("skipped_verify")
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
                parts.append(self.figure_html(self.epc_figure(ok)))
            else:
                parts.append(
                    element(
                        "p", "No DFT run finished with status ok, so there is no λ-ω_log figure."
                    )
                )
            parts.append(self.verify_table())
        if isinstance(skipped, list) and skipped:
            rows = [
                (item.get("id", "?"), item.get("formula", ""), item.get("reason", ""))
                if isinstance(item, dict)
                else (item, "", "")
                for item in skipped
            ]
            parts += [
                element("h3", f"Candidates not verified ({len(rows)})"),
                element(
                    "p",
                    "Better-ranked candidates that were passed over for DFT, with the reason "
                    "(from run.json).",
                ),
                table(["id", "formula", "reason"], rows),
            ]
        return join(parts)

    def epc_figure(self, ok: pd.DataFrame) -> Figure:
        mu_star = find_setting(self.run.settings, "mu_star")
        try:
            mu_star = float(mu_star) if mu_star is not None else DEFAULT_MU_STAR
        except (TypeError, ValueError):
            mu_star = DEFAULT_MU_STAR
        curves = []
        for _, row in ok.sort_values("tc_K", ascending=False).iterrows():
            if len(curves) >= figures.MAX_A2F_CURVES:
                break
            curve = _alpha2f(self.run, row)
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
        return self.add_figure(
            "lambda_omega_log",
            figures.epc_figure(ok, curves, mu_star),
            "Electron-phonon coupling of the verified candidates",
            caption,
        )

    def verify_table(self) -> Markup:
        verify = self.run.verify.sort_values("tc_K", ascending=False, na_position="last")
        several = len(self.names) > 1
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

    # ---- the whole report
    def write(self) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        for old in self.figures_dir.glob("*.png"):
            old.unlink()  # figures of an earlier report of this folder
        for method in self.run.methods:
            self.note_missing(method)
            self.say(f"predicted Tc of the generated structures ({method.name})")
            self.unrelaxed[method.name] = unrelaxed_tc(method, self.predictor_cache)
            predicted = int((self.unrelaxed[method.name].source == "predicted").sum())
            if predicted:
                self.run.notes.append(
                    f"{method.name}: Tc of {predicted} valid generated structures that are not in "
                    "a screened.csv was predicted for this report with the bundled ALIGNN "
                    "ensemble (structures as generated, unrelaxed)."
                )
        if self.run.verify is None:
            self.run.notes.append(
                "No verify/verify.csv: DFT verification has not run, so the λ-ω_log figure and "
                "the DFT columns are left out."
            )
        counts = funnel(self.run)
        self.say("funnel")
        funnel_html = self.funnel_section(counts)
        self.say("candidates")
        candidates_html = self.candidates_section()
        self.say("periodic table")
        generated_html = self.generated_sections()
        self.say("Tc distributions")
        tc_html = self.tc_section()
        self.say("DFT verification")
        verify_html = self.verify_section()
        body = [
            self.header(counts),
            funnel_html,
            candidates_html,
            generated_html,
            tc_html,
            verify_html,
            element(
                "p",
                f"Written by tcdesign {_version()}; figures also in "
                f"{self.figures_dir.name}/ as PNG.",
                class_="small",
            ),
        ]
        title = f"tcdesign report: {self.run.folder.resolve().name}"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(document(title, body), encoding="utf-8")
        return self.out

    def note_missing(self, method: MethodRun) -> None:
        notes = self.run.notes
        if method.generated is None:
            notes.append(f"{method.name}: no generated.csv (generation output not in this folder).")
        elif not len(valid_generated(method)):
            notes.append(f"{method.name}: generated.csv has no valid (status ok) structure.")
        if method.screened is None:
            notes.append(
                f"{method.name}: not screened yet (no screened.csv): relaxed and passed are "
                "'not run', and the Tc figures use predictions on the unrelaxed structures."
            )
        elif "tc_unrelaxed" not in method.screened.columns:
            notes.append(
                f"{method.name}: screened.csv has no tc_unrelaxed column; the Tc of the "
                "unrelaxed structures was predicted for this report."
            )


def _space_group(value: object, number: object = None) -> str:
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


def _flatten(settings: dict, prefix: str = "") -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += _flatten(value, f"{name}.")
        elif isinstance(value, list):
            pairs.append((name, ", ".join(map(str, value))))
        else:
            pairs.append((name, value))
    return pairs


def _alpha2f(run: RunData, row: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(omega in cm^-1, alpha2F) of a verified row at its headline broadening, or None."""
    import json

    folder = verify_result_folder(run, row)
    if folder is None or not (folder / "alpha2F.csv").is_file():
        return None
    try:
        table_ = pd.read_csv(folder / "alpha2F.csv")
        result = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    columns = [c for c in table_.columns if c.startswith("a2F_sigma_")]
    if "omega_cm1" not in table_.columns or not columns:
        return None
    sigma = result.get("headline_sigma_Ry") if isinstance(result, dict) else None
    column = f"a2F_sigma_{sigma:g}Ry" if isinstance(sigma, int | float) else None
    if column not in table_.columns:
        column = columns[len(columns) // 2]
    return table_.omega_cm1.to_numpy(float), table_[column].to_numpy(float)


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
    return ReportBuilder(run, target, progress).write()


__all__: Sequence[str] = ["write_report", "REPORT_HTML", "FIGURES_DIR"]
