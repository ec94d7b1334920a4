"""The documentation holds together: no dangling doc references, no broken relative links, a short README
whose first two code blocks are the commands CI and users run."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".venv", "results", ".git", "__pycache__", ".snakemake", ".pytest_cache"}
SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md"}
RUN = "bash envs/setup.sh && .venv/bin/snakemake --cores all results/figures/all.pdf"
TEST = "bash envs/setup.sh && .venv/bin/python -m pytest -q tests"

# "docs/<name>.md" anywhere; a bare "<name>.md" (not part of a longer path or URL).
DOCS_REF = re.compile(r"(?<![\w.-])docs/([\w.-]+\.md)\b")
BARE_MD = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def source_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            if name == "Snakefile" or Path(name).suffix in SUFFIXES:
                out.append(Path(dirpath) / name)
    return sorted(out)


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # no headings inside code
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def dangling_references(files) -> list[str]:
    bad = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        for m in DOCS_REF.finditer(text):
            if not (ROOT / "docs" / m.group(1)).is_file():
                bad.append(f"{f.relative_to(ROOT)}: docs/{m.group(1)}")
        for m in BARE_MD.finditer(text):
            name = m.group(1)
            if not ((ROOT / name).is_file() or (ROOT / "docs" / name).is_file() or (f.parent / name).is_file()):
                bad.append(f"{f.relative_to(ROOT)}: {name}")
    return bad


def broken_links(pages) -> list[str]:
    bad = []
    for page in pages:
        for m in MD_LINK.finditer(page.read_text()):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                bad.append(f"{where} -> no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{where} -> no heading with anchor #{anchor}")
    return bad


def fenced_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)]


def test_every_doc_reference_exists():
    files = source_files()
    assert any(f.name == "Snakefile" for f in files) and any(f.suffix == ".smk" for f in files)
    assert dangling_references(files) == []


def test_relative_links_in_readme_and_docs_resolve():
    pages = doc_pages()
    assert len(pages) > 5, "docs/*.md missing"
    assert broken_links(pages) == []


def test_readme_is_a_short_front_page_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert fenced_blocks(text)[:2] == [RUN, TEST]


def test_the_checks_catch_what_they_should():
    # The checkers themselves: a dangling docs/ path, a bare page name, a missing file, a missing anchor.
    # (Names are assembled so that this file does not itself hold a dangling reference.)
    nowhere, bare, missing = "docs/nowhere" + ".md", "method_nowhere" + ".md", "missing" + ".md"
    probe = ROOT / "tests" / "_probe_test_docs.py"
    page = ROOT / "docs" / ("_probe_test_docs" + ".md")
    try:
        probe.write_text(f'"""see {nowhere} and {bare}; docs/method.md and README.md exist"""\n')
        page.write_text(
            f"[a](method.md) [b]({missing}) [c](method.md#no-such-heading) "
            "[d](configuration.md#the-paper-vs-this-configuration) [e](https://x.org/y.md) "
            "[f](../README.md#documentation)\n"
        )
        refs = [r.split(": ", 1)[1] for r in dangling_references([probe])]
        links = broken_links([page])
    finally:
        probe.unlink(missing_ok=True)
        page.unlink(missing_ok=True)
    assert refs == [nowhere, bare]
    assert len(links) == 2 and missing in links[0] and "#no-such-heading" in links[1], links
    assert fenced_blocks("x\n```bash\na\n```\n```\nb\n```\n") == ["a", "b"]
