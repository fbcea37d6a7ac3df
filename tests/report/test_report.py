"""``write_report`` on run folders: a parseable self-contained page, every figure embedded and on
disk, the funnel, the candidates table, missing stages, several methods and escaping."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import matplotlib.image
import pandas as pd
import pytest

from tcdesign.data.io import InputError
from tcdesign.report import write_report
from tcdesign.report.analysis import funnel
from tcdesign.report.rundata import load_run
from tcdesign.verify.eliashberg import allen_dynes_tc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PageParser(HTMLParser):
    """Collects images, links, figures with their captions, table headers and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.figure_ids: list[str] = []
        self.captions: list[str] = []
        self.headers: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []
        self.scripts = 0
        self.rows: list[list[str]] = []  # cells of every table row, header rows included
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag not in ("img", "meta", "br", "hr", "input", "link"):
            self._stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
        if tag == "img":
            self.images.append(attributes)
        elif tag == "a":
            self.links.append(attributes.get("href", ""))
        elif tag == "figure":
            self.figure_ids.append(attributes.get("id", ""))
            self.captions.append("")
        elif tag == "script":
            self.scripts += 1
        elif tag == "link":
            self.external.append(attributes.get("href", ""))
        for name in ("src", "href"):
            value = attributes.get(name, "")
            if tag != "a" and value.startswith(("http:", "https:", "//")):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if "figcaption" in self._stack:
            self.captions[-1] += data
        if self._stack and self._stack[-1] == "th":
            self.headers.append(data)
        if any(t in self._stack for t in ("td", "th")) and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def decode_png(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    png = base64.b64decode(src[len(prefix) :], validate=True)
    assert png.startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    return png


@pytest.fixture(scope="module")
def report(run_folder) -> Path:
    return write_report(run_folder, progress=False)


def test_report_is_self_contained_html(report, run_folder) -> None:
    assert report == run_folder / "report.html"
    page = parse(report)
    assert page.images, "no figures"
    assert page.scripts == 0 and page.external == []
    figures = {p.name: p.read_bytes() for p in (run_folder / "figures").glob("*.png")}
    embedded = [decode_png(image["src"]) for image in page.images]
    # every embedded image is one of the PNG files, and every PNG file is embedded
    assert sorted(embedded) == sorted(figures.values())
    for name in (
        "funnel.png",
        "periodic_table_substitution.png",
        "formula_types.png",
        "density_packing.png",
        "tc_distributions.png",
        "lambda_omega_log.png",
    ):
        assert name in figures
    assert any(name.startswith("structure_1_") for name in figures)
    assert all(image.get("alt") for image in page.images)
    assert report.stat().st_size < 10e6


def test_every_figure_has_a_caption(report) -> None:
    page = parse(report)
    assert len(page.captions) == len(page.images)
    for caption in page.captions:
        assert caption.startswith("Figure ") and len(caption) > 60


def test_header_shows_the_run(report) -> None:
    text = " ".join(parse(report).text)
    assert "tcdesign version" in text and "0.1" in text
    assert "screen.tc_min" in text  # run.json settings, flattened
    assert "2026-01-01T12:00:00" in text
    assert "no pseudopotential for Nb" in text  # skipped_verify


def test_funnel_counts(run_folder) -> None:
    run = load_run(run_folder)
    counts = funnel(run).loc["substitution"]
    generated = pd.read_csv(run_folder / "substitution" / "generated.csv")
    screened = pd.read_csv(run_folder / "substitution" / "screened.csv")
    verify = pd.read_csv(run_folder / "verify" / "verify.csv")
    assert counts.generated == len(generated)
    assert counts.valid == (generated.status == "ok").sum()
    assert counts.relaxed == (screened.status == "ok").sum()
    assert counts.passed == screened.passed.sum()
    ok = verify[verify.status == "ok"]
    assert counts.verified == len(ok) == 2
    assert counts.dft_above == (ok.tc_K > 5).sum() == 1
    assert counts.stable == 1 and counts.dft_above_stable == 1
    stages = ["generated", "valid", "relaxed", "passed", "verified"]
    values = [counts[s] for s in stages]
    assert values == sorted(values, reverse=True)


def test_candidates_table(report, run_folder) -> None:
    page = parse(report)
    for header in ("formula", "space group", "Tc (K) ± std", "E_hull (eV/atom)", "novel"):
        assert header in page.headers
    assert "DFT Tc (K)" in page.headers and "dynamically stable" in page.headers
    cif_links = [unquote(href) for href in page.links if href.endswith(".cif")]
    screened = pd.read_csv(run_folder / "substitution" / "screened.csv")
    passed = screened[screened.passed].sort_values("tc", ascending=False)
    expected = [f"substitution/relaxed/{i}.cif" for i in passed.id]
    assert cif_links == expected  # sorted by Tc, relative to the report
    for link in cif_links:
        assert (report.parent / link).is_file()
    text = " ".join(page.text)
    header = next(row for row in page.rows if "novel" in row)
    table = page.rows[page.rows.index(header) + 1 : page.rows.index(header) + 1 + len(passed)]
    assert [row[header.index("id")] for row in table] == list(passed.id)
    assert {row[header.index("novel")] for row in table} <= {"yes", "no"}
    phonons = [row[header.index("CHGNet phonons")] for row in table]
    assert len(set(phonons)) == 2  # the fixture has stable and unstable candidates
    assert phonons == [
        "stable" if stable else "unstable (-87 cm⁻¹)" for stable in passed.phonon_stable
    ]
    assert f"{allen_dynes_tc(0.92, 265.0, 0.1):.2f}" in text  # DFT Tc of the top candidate


def test_candidates_table_shows_the_dft_fermi_level_dos_when_screened_with_it(
    run_folder, copy_of
) -> None:
    folder = copy_of(run_folder)
    path = folder / "substitution" / "screened.csv"
    screened = pd.read_csv(path)
    screened["nef"] = [
        0.5 + 0.25 * i if passed else float("nan") for i, passed in enumerate(screened.passed)
    ]
    screened.to_csv(path, index=False)
    page = parse(write_report(folder, progress=False))
    header = next(row for row in page.rows if "novel" in row)
    column = header.index("N(E_F) (states/eV/atom, DFT)")
    passed = screened[screened.passed].sort_values("tc", ascending=False)
    table = page.rows[page.rows.index(header) + 1 : page.rows.index(header) + 1 + len(passed)]
    assert [row[column] for row in table] == [f"{v:.2f}" for v in passed.nef]
    plain = parse(write_report(run_folder, out=folder / "plain.html", progress=False))
    assert "N(E_F) (states/eV/atom, DFT)" not in plain.headers


def test_out_elsewhere_links_relative_to_the_html(run_folder, tmp_path) -> None:
    out = tmp_path / "share" / "my report.html"
    path = write_report(run_folder, out=out, progress=False)
    assert path == out and out.is_file()
    links = [unquote(h) for h in parse(out).links if h.endswith(".cif")]
    assert links and all((out.parent / link).resolve().is_file() for link in links)
    assert not os.path.isabs(links[0])


def test_two_methods_side_by_side(two_method_run) -> None:
    path = write_report(two_method_run, progress=False)
    page = parse(path)
    counts = funnel(load_run(two_method_run))
    assert list(counts.index) == ["cdvae", "substitution"]
    assert counts.loc["substitution", "valid"] == counts.loc["cdvae", "valid"] - 2
    assert "cdvae" in page.headers and "substitution" in page.headers
    assert "method" in page.headers
    figures = {p.name for p in (two_method_run / "figures").glob("*.png")}
    assert {"periodic_table_cdvae.png", "periodic_table_substitution.png"} <= figures
    assert len(page.images) == len(figures)


def test_a_listed_method_without_output_is_noted(two_method_run, copy_of) -> None:
    """A run killed before its second method started: that method left the page silently."""
    folder = copy_of(two_method_run)
    shutil.rmtree(folder / "substitution")
    run = load_run(folder)
    assert [m.name for m in run.methods] == ["cdvae"]
    assert any(n.startswith("substitution: a method of this run") for n in run.notes)
    assert not any(n.startswith("cdvae:") for n in load_run(two_method_run).notes)


def test_generated_only_predicts_tc(generated_folder, copy_of) -> None:
    """A plain ``tcdesign generate`` folder: Tc predicted with the bundled ensemble, the missing
    stages named, no DFT figure."""
    folder = copy_of(generated_folder)
    path = write_report(folder, progress=False)
    page = parse(path)
    text = " ".join(page.text)
    assert "not screened yet" in text and "DFT verification has not run" in text
    assert "predicted for this report" in text
    names = {p.stem for p in (folder / "figures").glob("*.png")}
    assert "lambda_omega_log" not in names
    assert {"funnel", "periodic_table_substitution", "tc_distributions"} <= names
    assert "not run" in text
    for image in page.images:
        decode_png(image["src"])


def test_screened_only_folder(run_folder, tmp_path) -> None:
    """The output of ``tcdesign screen --out DIR`` (no method column): one method named 'run'."""
    folder = tmp_path / "screen_out"
    folder.mkdir()
    screened = pd.read_csv(run_folder / "substitution" / "screened.csv")
    screened.to_csv(folder / "screened.csv", index=False)
    path = write_report(folder, progress=False)
    run = load_run(folder)
    assert [m.name for m in run.methods] == ["run"]
    counts = funnel(run).loc["run"]
    assert pd.isna(counts.generated) and counts.passed == screened.passed.sum()
    page = parse(path)
    assert "no generated.csv" in " ".join(page.text)
    for image in page.images:
        decode_png(image["src"])


def test_verify_only_and_attribution_by_id(run_folder, tmp_path) -> None:
    """verify.csv without method/source_id columns is attributed by its '<method>-' prefix."""
    folder = tmp_path / "v"
    (folder / "verify").mkdir(parents=True)
    (folder / "substitution").mkdir()
    pd.read_csv(run_folder / "substitution" / "generated.csv").to_csv(
        folder / "substitution" / "generated.csv", index=False
    )
    verify = pd.read_csv(run_folder / "verify" / "verify.csv")
    verify.drop(columns=["method", "source_id"]).to_csv(folder / "verify" / "verify.csv")
    run = load_run(folder)
    assert set(run.verify.method) == {"substitution"}
    assert list(run.verify.source_id) == list(verify.source_id.astype(str))


def test_verify_csv_without_formula(tmp_path) -> None:
    """verify.csv needs only id and status; without a formula column the report crashed with
    'internal error: AttributeError' (headline, λ-ω_log figure)."""
    (tmp_path / "verify").mkdir()
    (tmp_path / "verify" / "verify.csv").write_text(
        "id,status,lambda,omega_log_K,tc_K\nx-1,ok,0.9,250,15.3\n"
    )
    text = " ".join(parse(write_report(tmp_path, progress=False)).text)
    assert "15.30" in text and (tmp_path / "figures" / "lambda_omega_log.png").is_file()


def test_values_from_data_are_escaped(run_folder, copy_of) -> None:
    folder = copy_of(run_folder)
    path = folder / "substitution" / "screened.csv"
    screened = pd.read_csv(path, dtype={"spacegroup": str})
    top = screened[screened.passed].tc.idxmax()
    screened.loc[top, "formula"] = "<script>alert(1)</script>"
    screened.loc[top, "spacegroup"] = 'P"><img src=x>'
    screened.to_csv(path, index=False)
    info = json.loads((folder / "run.json").read_text())
    info["settings"]["note"] = "<b>bold</b> & co"
    (folder / "run.json").write_text(json.dumps(info))
    verify = pd.read_csv(folder / "verify" / "verify.csv")
    verify.loc[2, "error"] = "<i>QE</i> crashed"
    verify.to_csv(folder / "verify" / "verify.csv", index=False)
    html = write_report(folder, progress=False).read_text()
    assert "<script>" not in html and "<img src=x>" not in html
    assert "<b>bold</b>" not in html and "<i>QE</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    page = parse(folder / "report.html")
    assert all(image["src"].startswith("data:image/png;base64,") for image in page.images)


def test_a_very_long_id_gets_a_short_figure_file(run_folder, copy_of) -> None:
    """An id of 300 characters (a long file stem or material_id given to 'tcdesign screen')
    crashed the report: 'File name too long' for figures/structure_1_<id>.png."""
    folder = copy_of(run_folder)
    path = folder / "substitution" / "screened.csv"
    screened = pd.read_csv(path, dtype={"id": str})
    top = screened[screened.passed].tc.idxmax()
    screened.loc[top, "id"] = "JVASP-" + "x" * 294
    screened.to_csv(path, index=False)
    write_report(folder, progress=False)
    names = [p.name for p in (folder / "figures").glob("structure_1_*.png")]
    assert len(names) == 1 and names[0].startswith("structure_1_JVASP-xxx")
    assert len(names[0]) < 100


def test_nothing_to_report(tmp_path) -> None:
    with pytest.raises(InputError, match="nothing to report"):
        write_report(tmp_path, progress=False)
    with pytest.raises(InputError, match="no such folder"):
        write_report(tmp_path / "missing", progress=False)
    (tmp_path / "verify").mkdir()
    (tmp_path / "verify" / "verify.csv").write_text("id,status\n")  # was a TypeError (exit 1)
    with pytest.raises(InputError, match="nothing to report"):
        write_report(tmp_path, progress=False)
    (tmp_path / "generated.csv").write_text("id,formula\n")
    with pytest.raises(InputError, match="status"):
        write_report(tmp_path, progress=False)


def test_rerun_replaces_old_figures(run_folder, copy_of) -> None:
    folder = copy_of(run_folder)
    (folder / "figures").mkdir(exist_ok=True)
    (folder / "figures" / "structure_9_old.png").write_bytes(b"old")
    write_report(folder, progress=False)
    assert not (folder / "figures" / "structure_9_old.png").exists()


def test_stages_that_just_started(generated_folder, tmp_path) -> None:
    """Header-only tables (a stage that has started but written no row) and an --out folder."""
    run = tmp_path / "run"
    (run / "substitution").mkdir(parents=True)
    (run / "verify").mkdir()
    shutil.copy(generated_folder / "generated.csv", run / "substitution" / "generated.csv")
    shutil.copytree(generated_folder / "structures", run / "substitution" / "structures")
    (run / "substitution" / "screened.csv").write_text(
        "id,formula,tc,tc_std,e_form,gap,e_hull,spacegroup,novel,passed,status,error,"
        "tc_unrelaxed,tc_unrelaxed_std\n"
    )
    (run / "verify" / "verify.csv").write_text("id,formula,lambda,omega_log_K,tc_K,status,error\n")
    out = tmp_path / "share"
    out.mkdir()
    path = write_report(run, out=out, progress=False)
    assert path == out / "report.html"
    counts = funnel(load_run(run)).loc["substitution"]
    assert counts.relaxed == 0 and counts.passed == 0 and counts.verified == 0
    page = parse(path)
    text = " ".join(page.text)
    assert "No DFT run finished" in text and "No candidate passed" in text
    for image in page.images:
        decode_png(image["src"])


def test_only_failed_relaxations_say_why(run_folder, copy_of) -> None:
    """Every relaxation failed: the page promised 'the relaxed structures ... are listed
    instead' and listed nothing; it now says none was relaxed and counts the errors."""
    folder = copy_of(run_folder)
    path = folder / "substitution" / "screened.csv"
    screened = pd.read_csv(path, dtype={"id": str})
    screened["status"], screened["passed"], screened["tc"] = "failed", False, float("nan")
    screened["error"] = ["atoms collapsed"] * 2 + ["volume exploded"] * (len(screened) - 2)
    screened.to_csv(path, index=False)
    text = " ".join(parse(write_report(folder, progress=False)).text)
    assert "are listed instead" not in text
    assert f"none of the {len(screened)} screened structures was relaxed" in text
    assert "volume exploded" in text and "atoms collapsed" in text


def test_screened_without_relaxation_is_not_called_relaxed(run_folder, copy_of) -> None:
    """A 'tcdesign screen --no-relax' folder (screen_settings.json relax false): the page called
    the unrelaxed structures 'relaxed' (Tc figure legend, headline, candidates table)."""
    folder = copy_of(run_folder)
    method = folder / "substitution"
    shutil.rmtree(method / "relaxed")
    screened = pd.read_csv(method / "screened.csv", dtype={"id": str})
    screened["relaxed_cif"] = ""
    screened.to_csv(method / "screened.csv", index=False)
    (method / "screen_settings.json").write_text(json.dumps({"relax": False, "fmax": 0.05}))
    assert not load_run(folder).methods[0].relaxed
    page = parse(write_report(folder, progress=False))
    text = " ".join(page.text)
    assert "screened without relaxation" in text
    assert "(passed, unrelaxed)" in text and "(passed, relaxed)" not in text
    assert "predicted Tc of the structure as screened" in text
    (folder / "substitution" / "screen_settings.json").write_text(json.dumps({"relax": True}))
    assert load_run(folder).methods[0].relaxed
