"""Fetch the SSSP pseudopotential library from the Debian archive (explicit, needs internet).

Debian's default ``quantum-espresso-data`` folder lacks most transition metals (V, Nb, Mo, Mn,
Ru, Zr, Pt, ...), so `tcdesign verify` and `tcdesign screen --fermi-dos` cannot run most
superconductor candidates with it. The SSSP library (one tested file per element, every element
to Bi and more; Prandini et al., npj Comput. Mater. 2018) is packaged by Debian as
``quantum-espresso-data-sssp`` (Debian 13 / Ubuntu 25.10 and later), but older systems cannot
``apt-get install`` it. :func:`fetch_sssp` reads the suite's package index from a Debian mirror,
downloads that package, checks its SHA-256 against the index, and unpacks the UPF files (and the
package's copyright file) into one flat folder, with ``SOURCE.json`` saying where they came from.
Nothing here runs unless asked: ``tcdesign fetch-pseudos``.

:func:`tcdesign.verify.pseudo.default_pseudo_dir` then finds the folder by itself when it is
the default one (:func:`user_pseudo_dir`), so ``verify``, ``screen --fermi-dos`` and ``run
--verify`` use it without ``--pseudo-dir``.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tqdm.auto import tqdm

DEBIAN_MIRROR = "https://deb.debian.org/debian"
SUITE = "stable"
PACKAGE = "quantum-espresso-data-sssp"
PSEUDO_PREFIX = "usr/share/espresso/pseudo/"  # where the package installs its files
SOURCE_FILE = "SOURCE.json"
TIMEOUT_S = 60


class FetchError(RuntimeError):
    """The library could not be fetched or unpacked (network, index, checksum, archive)."""


def user_pseudo_dir() -> Path:
    """Where ``tcdesign fetch-pseudos`` puts SSSP by default, and where
    :func:`~tcdesign.verify.pseudo.default_pseudo_dir` looks for it:
    ``$XDG_DATA_HOME/tcdesign/pseudo/sssp`` (``~/.local/share`` without it)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tcdesign" / "pseudo" / "sssp"


def package_stanzas(index: str) -> Iterator[dict[str, str]]:
    """The stanzas of a Debian ``Packages`` index as dicts (continuation lines dropped)."""
    fields: dict[str, str] = {}
    for line in index.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif not line[0].isspace() and ":" in line:
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
    if fields:
        yield fields


def find_package(index: str, package: str = PACKAGE) -> dict[str, str]:
    """The index stanza of ``package`` (the last one, if listed more than once); FetchError when
    the index lacks it or its Filename and SHA256 fields."""
    found = [s for s in package_stanzas(index) if s.get("Package") == package]
    if not found:
        raise FetchError(f"the package index does not list {package}")
    stanza = found[-1]
    if not stanza.get("Filename") or not stanza.get("SHA256"):
        raise FetchError(f"the index entry of {package} has no Filename or SHA256")
    return stanza


def _ar_members(handle: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each member of a Unix ``ar`` archive (the container of a .deb)."""
    if handle.read(8) != b"!<arch>\n":
        raise FetchError("not a Debian package (no ar header)")
    while True:
        header = handle.read(60)
        if not header:
            return
        if len(header) < 60 or header[58:60] != b"`\n":
            raise FetchError("truncated or corrupt Debian package")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        data = handle.read(size)
        if len(data) < size:
            raise FetchError("truncated Debian package")
        if size % 2:
            handle.read(1)  # members start on even offsets
        yield name, data


def unpack_deb(deb: Path, out_dir: Path, prefix: str = PSEUDO_PREFIX) -> list[str]:
    """Unpack the regular files under ``prefix`` of a .deb's data archive flat into
    ``out_dir`` (plain names only: nothing can land outside it), and the package's
    ``copyright`` file as ``COPYRIGHT``; the names of the files written, sorted."""
    with deb.open("rb") as handle:
        data = next((d for n, d in _ar_members(handle) if n.startswith("data.tar")), None)
    if data is None:
        raise FetchError(f"{deb.name} has no data archive")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                path = PurePosixPath(member.name.removeprefix("./"))
                if not member.isfile():
                    continue
                if path.parent == PurePosixPath(prefix):
                    name = path.name
                elif path.name == "copyright" and "usr/share/doc" in str(path):
                    name = "COPYRIGHT"
                else:
                    continue
                source = archive.extractfile(member)
                if source is None or name in ("", ".", ".."):
                    continue
                with (out_dir / name).open("wb") as target:
                    shutil.copyfileobj(source, target)
                written.append(name)
    except tarfile.TarError as exc:  # also a compression Python cannot read (zstd in 3.11)
        raise FetchError(f"cannot read the data archive of {deb.name}: {exc}") from exc
    if not any(n != "COPYRIGHT" for n in written):
        raise FetchError(f"{deb.name} has no files under /{prefix}")
    return sorted(written)


def _open(url: str) -> Any:
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 - http(s)/file by design
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise FetchError(f"cannot download {url}: {exc}") from exc


def _download(url: str, target: Path, progress: bool) -> str:
    """Stream ``url`` to ``target``; its SHA-256 (hex)."""
    digest = hashlib.sha256()
    with _open(url) as response, target.open("wb") as handle:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress
        ) as bar:
            while chunk := response.read(1 << 16):
                handle.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def fetch_sssp(
    out_dir: str | Path | None = None,
    *,
    mirror: str = DEBIAN_MIRROR,
    suite: str = SUITE,
    package: str = PACKAGE,
    progress: bool = True,
) -> dict[str, Any]:
    """Download ``package`` of Debian ``suite`` from ``mirror`` (any URL urllib opens, also
    ``file://``), check it against the index's SHA-256 and unpack its pseudopotentials into
    ``out_dir`` (default :func:`user_pseudo_dir`); returns what ``SOURCE.json`` records.
    Raises :class:`FetchError` with the reason, and ValueError for an ``out_dir`` that is a
    file or a non-empty folder without an earlier fetch in it. A failed fetch leaves no
    half-written library behind: files are unpacked into a temporary folder that replaces
    ``out_dir`` at the end."""
    out_dir = Path(out_dir) if out_dir is not None else user_pseudo_dir()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SOURCE_FILE).is_file():
        raise ValueError(  # never replace a folder this function did not write
            f"{out_dir} is not empty and holds no earlier fetch ({SOURCE_FILE}); choose a new "
            "or empty folder"
        )
    mirror = mirror.rstrip("/")
    index_url = f"{mirror}/dists/{suite}/main/binary-all/Packages.xz"
    with _open(index_url) as response:
        try:
            index = lzma.decompress(response.read()).decode("utf-8", "replace")
        except lzma.LZMAError as exc:
            raise FetchError(f"{index_url} is not an xz-compressed package index") from exc
    stanza = find_package(index, package)
    url = f"{mirror}/{stanza['Filename']}"
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        deb = staging / PurePosixPath(stanza["Filename"]).name
        sha256 = _download(url, deb, progress)
        if sha256 != stanza["SHA256"].lower():
            raise FetchError(f"{url}: SHA-256 {sha256} differs from the index's {stanza['SHA256']}")
        files = unpack_deb(deb, staging)
        deb.unlink()
        source = {
            "package": package,
            "version": stanza.get("Version", ""),
            "suite": suite,
            "url": url,
            "sha256": sha256,
            "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": len([f for f in files if f != "COPYRIGHT"]),
            "license": "see COPYRIGHT (from the Debian package)",
        }
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return source
