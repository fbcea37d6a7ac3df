"""``tcdesign report DIR``: exit codes and messages, and the page as a browser shows it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tcdesign.cli import main

LOADED_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", loaded + "/" + images.length);
});
</script>"""


def test_cli_writes_report(run_folder, tmp_path, capsys) -> None:
    out = tmp_path / "elsewhere.html"
    code = main(["report", str(run_folder), "--out", str(out), "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert out.is_file() and f"wrote {out}" in stdout
    assert (run_folder / "figures" / "funnel.png").is_file()
    assert stderr == ""


def test_cli_progress_on_stderr(run_folder, capsys) -> None:
    code = main(["report", str(run_folder)])
    _, stderr = capsys.readouterr()
    assert code == 0 and "report: funnel" in stderr


def test_cli_nothing_to_report_exits_2(tmp_path, capsys) -> None:
    code = main(["report", str(tmp_path)])
    _, stderr = capsys.readouterr()
    assert code == 2
    assert "nothing to report" in stderr and str(tmp_path) in stderr
    assert "Traceback" not in stderr
    code = main(["report", str(tmp_path / "no_such_run")])
    _, stderr = capsys.readouterr()
    assert code == 2 and "no such folder" in stderr


def test_cli_unreadable_table_exits_2(tmp_path, capsys) -> None:
    (tmp_path / "screened.csv").write_bytes(b'id,status\n"a,ok\n\x00\x01')
    code = main(["report", str(tmp_path)])
    _, stderr = capsys.readouterr()
    assert code == 2 and "screened.csv" in stderr


def test_cli_unusable_out_exits_2(run_folder, tmp_path, capsys, monkeypatch) -> None:
    """--out under a file was 'internal error: FileExistsError' (exit 1) after every figure."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    drawn = []
    monkeypatch.setattr("tcdesign.report.build._write", lambda ctx: drawn.append(ctx))
    code = main(["report", str(run_folder), "--out", str(blocker / "r.html"), "--quiet"])
    _, stderr = capsys.readouterr()
    assert code == 2 and "cannot write the report" in stderr and "afile" in stderr
    assert not drawn  # refused before any work


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_loads_every_image(run_folder, tmp_path) -> None:
    """Headless Chromium opens the report (a copy with a probe script, nothing else changed) and
    every image decodes (naturalWidth > 0)."""
    report = run_folder / "report.html"
    if not report.exists():
        assert main(["report", str(run_folder), "--quiet"]) == 0
    html = report.read_text(encoding="utf-8")
    expected = html.count("<img ")
    assert expected > 5
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", LOADED_PROBE + "</body>"), encoding="utf-8")
    command = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        Path(probe).as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'data-images="{expected}/{expected}"' in result.stdout
