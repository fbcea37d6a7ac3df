"""The state that the report sections share: the run, its figures and the Tc predictions.

Every section function of the report takes one :class:`ReportContext`; figures are numbered in
the order the sections add them, so the section order in :mod:`tcdesign.report.build` decides
the figure numbers.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from tcdesign.report import figures
from tcdesign.report.html import Figure, Markup, link
from tcdesign.report.rundata import RunData

FIGURES_DIR = "figures"  # folder of the run that gets the figures as PNG files


MAX_STEM = 80  # characters of an id kept in a figure's file name (file systems allow 255 bytes)


def file_stem(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (a file stem);
    a name longer than :data:`MAX_STEM` is cut and gets a short hash of the whole name."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "run"
    if len(stem) > MAX_STEM:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        stem = f"{stem[: MAX_STEM - 9]}-{digest}"
    return stem


class ReportContext:
    """One report of one run folder: the data, where the files go, and the figures so far."""

    def __init__(self, run: RunData, out: Path, progress: bool) -> None:
        self.run = run
        self.out = out  # the HTML file to write
        self.progress = progress  # progress lines on stderr
        self.figures_dir = run.folder / FIGURES_DIR
        self.figures: list[Figure] = []  # in order of their figure numbers
        self.names = [m.name for m in run.methods]
        self.colors = {m: figures.method_color(m, self.names) for m in self.names}
        self.predictor_cache: dict[str, object] = {}
        # per method: the valid generated structures with their predicted Tc before relaxation
        self.unrelaxed: dict[str, pd.DataFrame] = {}

    @property
    def title(self) -> str:
        """The page title and top heading."""
        return f"tcdesign report: {self.run.folder.resolve().name}"

    @property
    def several_methods(self) -> bool:
        """Whether the run has more than one generator method (tables get a method column)."""
        return len(self.names) > 1

    def say(self, message: str) -> None:
        """A progress line on stderr, unless the report is quiet."""
        if self.progress:
            print(f"report: {message}", file=sys.stderr, flush=True)

    def add_figure(self, name: str, figure: MplFigure, title: str, caption: str) -> Figure:
        """Render ``figure`` to figures/``name``.png and register it as the next figure."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=figures.DPI)
        png = buffer.getvalue()
        (self.figures_dir / f"{name}.png").write_bytes(png)
        item = Figure(name, png, caption, title)
        self.figures.append(item)
        return item

    def figure_html(self, item: Figure) -> Markup:
        """A registered figure as HTML, with its figure number."""
        return item.html(self.figures.index(item) + 1)

    def href(self, path: Path) -> str:
        """A link to ``path`` relative to the report file (URL-quoted)."""
        relative = os.path.relpath(path.resolve(), self.out.parent.resolve())
        return quote(relative.replace(os.sep, "/"))

    def cif_link(self, path: Path | None) -> Markup | str:
        """A "CIF" link to a structure file, or a dash when there is none."""
        return link(self.href(path), "CIF") if path is not None else "–"

    def unrelaxed_frame(self, method: str) -> pd.DataFrame | None:
        """The unrelaxed Tc table of ``method`` when it has at least one row, else None."""
        frame = self.unrelaxed.get(method)
        return frame if frame is not None and len(frame) else None
