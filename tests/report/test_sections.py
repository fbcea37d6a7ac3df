"""The pure helpers of the report sections, and the lazy ``tcdesign.report`` package."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tcdesign.report.candidates import space_group
from tcdesign.report.context import ReportContext, file_stem
from tcdesign.report.distributions import tc_section
from tcdesign.report.overview import flatten_settings
from tcdesign.report.rundata import RunData, load_run
from tcdesign.report.verification import alpha2f, mu_star_setting
from tcdesign.verify.eliashberg import DEFAULT_MU_STAR


def test_space_group_as_written_by_screen() -> None:
    assert space_group(225) == "225"
    assert space_group(225.0, 12) == "225"
    assert space_group("Fm-3m", 225) == "Fm-3m (225)"
    assert space_group("Fm-3m", math.nan) == "Fm-3m"
    assert space_group(math.nan) == "–"
    assert space_group(None) == "–"
    assert space_group("  ") == "–"


def test_flatten_settings() -> None:
    settings = {"n": 3, "screen": {"tc_min": 5.0, "rules": {"gap": 0.05}}, "methods": ["a", "b"]}
    assert flatten_settings(settings) == [
        ("n", 3),
        ("screen.tc_min", 5.0),
        ("screen.rules.gap", 0.05),
        ("methods", "a, b"),
    ]


def test_mu_star_setting() -> None:
    assert mu_star_setting({"verify": {"mu_star": 0.13}}) == 0.13
    assert mu_star_setting({"verify": {"mu_star": "0.12"}}) == 0.12
    assert mu_star_setting({"verify": {"mu_star": "high"}}) == DEFAULT_MU_STAR
    assert mu_star_setting({}) == DEFAULT_MU_STAR


def test_file_stem() -> None:
    assert file_stem("gen/00 1") == "gen_00_1"
    assert file_stem("") == "run"
    long = file_stem("x" * 300)
    assert len(long) == 80 and long.startswith("x" * 71)
    assert long != file_stem("x" * 301)  # distinct names stay distinct


def _verify_result(folder: Path, sigma: object) -> RunData:
    result = folder / "verify" / "x"
    result.mkdir(parents=True)
    (result / "result.json").write_text(json.dumps({"headline_sigma_Ry": sigma}))
    omega = np.linspace(1.0, 10.0, 4)
    spectra = {"omega_cm1": omega, "a2F_sigma_0.005Ry": omega, "a2F_sigma_0.025Ry": 2 * omega}
    pd.DataFrame(spectra).to_csv(result / "alpha2F.csv", index=False)
    return RunData(folder=folder, info={}, methods=[], verify_folder=folder / "verify")


def test_alpha2f_takes_the_headline_broadening(tmp_path) -> None:
    run = _verify_result(tmp_path, 0.005)
    omega, a2f = alpha2f(run, pd.Series({"id": "x", "folder": "verify/x"}))
    assert a2f.tolist() == omega.tolist()


def test_alpha2f_without_headline_takes_the_middle_column(tmp_path) -> None:
    run = _verify_result(tmp_path, None)
    omega, a2f = alpha2f(run, pd.Series({"id": "x", "folder": "verify/x"}))
    assert a2f.tolist() == (2 * omega).tolist()
    assert alpha2f(run, pd.Series({"id": "missing"})) is None


def test_import_is_lazy() -> None:
    code = (
        "import sys, tcdesign.report as report; "
        "print(sorted(m for m in ('matplotlib', 'pandas') if m in sys.modules)); "
        "print(report.REPORT_HTML, report.FIGURES_DIR, report.write_report.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "report.html figures tcdesign.report.build"]


def test_tc_caption_states_the_bin_width(run_folder, tmp_path) -> None:
    """Predicted Tc up to 150 K gives 2.5 K bins (at most 60); the caption said 'One-kelvin
    bins' whatever the width."""
    ctx = ReportContext(load_run(run_folder), tmp_path / "report.html", progress=False)
    ctx.figures_dir = tmp_path / "figures"
    ctx.figures_dir.mkdir()
    tc = [150.0] * 20 + [3.0] * 20
    ctx.unrelaxed["substitution"] = pd.DataFrame(
        {"id": [f"g{k}" for k in range(40)], "formula": "Nb", "tc": tc, "tc_std": 1.0}
    )
    assert "Bins 2.5 K wide; the last bin" in tc_section(ctx)
    ctx.unrelaxed["substitution"] = ctx.unrelaxed["substitution"].assign(tc=3.0)
    assert "One-kelvin bins" in tc_section(ctx)
