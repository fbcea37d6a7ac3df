"""tcdesign fetch-pseudos, offline: a hand-built Debian package and index served over file://."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest

from tcdesign.cli import main
from tcdesign.verify import fetch
from tcdesign.verify.fetch import FetchError, fetch_sssp, find_package, unpack_deb
from tcdesign.verify.pseudo import (
    DEBIAN_PSEUDO_DIR,
    PseudopotentialError,
    choose_pseudopotentials,
    default_pseudo_dir,
)

UPF = (
    '<UPF version="2.0.1">\n<PP_HEADER element="{element}" pseudo_type="NC" '
    'functional="PBE" relativistic="scalar" wfc_cutoff="40" rho_cutoff="160"/>\n</UPF>\n'
)


def _tar_xz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += [header.encode(), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def make_deb(path: Path, elements=("Al", "Nb", "V")) -> bytes:
    """A .deb laid out as Debian's quantum-espresso-data-sssp, plus files that must not be
    unpacked: a subfolder, a path escaping the prefix, a symlink."""
    prefix = "./usr/share/espresso/pseudo/"
    files = {f"{prefix}{e}.pbe-sssp.UPF": UPF.format(element=e).encode() for e in elements}
    files["./usr/share/doc/quantum-espresso-data-sssp/copyright"] = b"Files: *\nLicense: test\n"
    files[f"{prefix}extra/Ta.UPF"] = b"nested"
    files[f"{prefix}../evil.UPF"] = b"escape"
    data = _tar_xz(files, links={f"{prefix}link.UPF": "/etc/passwd"})
    deb = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({}), "data.tar.xz": data})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(deb)
    return deb


def make_mirror(root: Path, sha256: str | None = None) -> str:
    """A Debian mirror tree with one stable index listing the package; its file:// URL."""
    filename = "pool/main/q/quantum-espresso-data-sssp/quantum-espresso-data-sssp_1.3.0-3_all.deb"
    deb = make_deb(root / filename)
    index = (
        "Package: other-package\nVersion: 1\nFilename: pool/x.deb\nSHA256: 00\n\n"
        "Package: quantum-espresso-data-sssp\nVersion: 1.3.0-3\nArchitecture: all\n"
        f"Filename: {filename}\nSHA256: {sha256 or hashlib.sha256(deb).hexdigest()}\n"
        "Description: SSSP\n a continuation line: Filename: not this\n"
    )
    indexes = root / "dists" / "stable" / "main" / "binary-all"
    indexes.mkdir(parents=True)
    (indexes / "Packages.xz").write_bytes(lzma.compress(index.encode()))
    return root.as_uri()


def test_the_index_stanza_is_found_and_a_missing_package_is_an_error():
    index = "Package: a\nFilename: a.deb\nSHA256: 1\n\nPackage: b\nFilename: b.deb\nSHA256: 2\n"
    assert find_package(index, "b") == {"Package": "b", "Filename": "b.deb", "SHA256": "2"}
    with pytest.raises(FetchError, match="does not list c"):
        find_package(index, "c")
    with pytest.raises(FetchError, match="no Filename or SHA256"):
        find_package("Package: a\nVersion: 1\n", "a")


def test_unpacks_only_the_pseudopotentials_flat_and_the_copyright(tmp_path):
    make_deb(tmp_path / "p.deb")
    written = unpack_deb(tmp_path / "p.deb", tmp_path / "out")
    assert written == ["Al.pbe-sssp.UPF", "COPYRIGHT", "Nb.pbe-sssp.UPF", "V.pbe-sssp.UPF"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == written
    assert not (tmp_path / "evil.UPF").exists() and not (tmp_path / "out" / "extra").exists()
    (tmp_path / "junk.deb").write_bytes(b"not an archive")
    with pytest.raises(FetchError, match="no ar header"):
        unpack_deb(tmp_path / "junk.deb", tmp_path / "out2")


def test_fetch_checks_the_checksum_writes_its_source_and_is_the_default(tmp_path, monkeypatch):
    mirror = make_mirror(tmp_path / "mirror")
    assert default_pseudo_dir() in (DEBIAN_PSEUDO_DIR, None)  # nothing fetched yet
    source = fetch_sssp(mirror=mirror, progress=False)  # the default folder
    folder = fetch.user_pseudo_dir()
    assert source["version"] == "1.3.0-3" and source["files"] == 3
    assert json.loads((folder / fetch.SOURCE_FILE).read_text())["sha256"] == source["sha256"]
    assert default_pseudo_dir() == folder
    chosen = choose_pseudopotentials(["Nb", "V"], folder)
    assert {e: p.filename for e, p in chosen.items()} == {
        "Nb": "Nb.pbe-sssp.UPF",
        "V": "V.pbe-sssp.UPF",
    }
    with pytest.raises(PseudopotentialError, match="for Ta .'tcdesign fetch-pseudos' gets SSSP"):
        choose_pseudopotentials(["Nb", "Ta"], folder)  # the missing element and the remedy
    monkeypatch.setenv("TCDESIGN_PSEUDO_DIR", str(tmp_path / "mine"))
    assert default_pseudo_dir() == tmp_path / "mine"  # the variable wins, even if missing
    monkeypatch.delenv("TCDESIGN_PSEUDO_DIR")

    # a rerun replaces the earlier fetch; a bad checksum leaves it untouched
    (folder / "stale.UPF").write_text("old")
    fetch_sssp(folder, mirror=mirror, progress=False)
    assert not (folder / "stale.UPF").exists()
    bad = make_mirror(tmp_path / "bad", sha256="ab" * 32)
    with pytest.raises(FetchError, match="SHA-256"):
        fetch_sssp(folder, mirror=bad, progress=False)
    assert (folder / "V.pbe-sssp.UPF").is_file()
    assert not folder.with_name(folder.name + ".partial").exists()

    # a folder it did not write is never replaced; a missing index is a FetchError
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        fetch_sssp(mine, mirror=mirror, progress=False)
    assert (mine / "keep.txt").read_text() == "mine"
    with pytest.raises(FetchError, match="cannot download"):
        fetch_sssp(tmp_path / "x", mirror=(tmp_path / "nowhere").as_uri(), progress=False)


def test_cli_exit_codes_and_messages(tmp_path, capsys):
    mirror = make_mirror(tmp_path / "mirror")
    out = tmp_path / "sssp"
    assert main(["fetch-pseudos", "--out", str(out), "--mirror", mirror, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 pseudopotentials (quantum-espresso-data-sssp 1.3.0-3)" in printed
    assert f"--pseudo-dir {out}" in printed
    assert main(["fetch-pseudos", "--mirror", mirror, "--quiet"]) == 0
    assert "use them when --pseudo-dir is not given" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["fetch-pseudos", "--out", str(tmp_path / "file"), "--mirror", mirror]) == 2
    assert "not a folder" in capsys.readouterr().err
    missing = (tmp_path / "nowhere").as_uri()
    assert main(["fetch-pseudos", "--out", str(tmp_path / "y"), "--mirror", missing]) == 1
    assert "cannot download" in capsys.readouterr().err
