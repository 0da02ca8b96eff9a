"""The README stays a five-minute read (short, the two commands on its first screen) and every
relative link in it and in docs/*.md leads to a file that exists, and to a heading there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

README_MAX_CHARS = 12_000
FIRST_SCREEN_LINES = 40

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`]*`")
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text without code blocks and code spans: a `[x](y)` in code is not a link."""
    return _CODE_SPAN.sub("code", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _FENCE.sub("", text).splitlines():
        if m := re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """The relative links of a page whose file or heading does not exist, with the reason."""
    text = page.read_text(encoding="utf-8")
    prose = _prose(text)
    bad: list[str] = []
    for target in _MD_LINK.findall(prose) + _HTML_LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert n <= README_MAX_CHARS, f"README.md has {n} characters; move detail to docs/"


def test_two_commands_on_the_first_screen() -> None:
    first = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN_LINES]
    commands = {line.split("#")[0].strip() for line in first}
    assert {"make run", "make test"} <= commands, "`make run` and `make test` belong on the first screen"
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"run", "test"} <= targets, "the README's commands are Makefile targets"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = ROOT / "README.md"
    linked = {
        (readme.parent / t.partition("#")[0]).resolve()
        for t in _MD_LINK.findall(_prose(readme.read_text(encoding="utf-8")))
    }
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == [], f"docs pages a newcomer cannot reach from README.md: {unlinked}"


def test_the_checker_sees_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## Your own texts: `analyze --file`\n\n## A\n\n## A\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#your-own-texts-analyze---file) [ok](other.md#a-1) [ok](#here)\n"
        "## Here\n[gone](missing.md) [no heading](other.md#nowhere) ![img](pic.png)\n"
        "`[code](not-a-link.md)`\n```\n[fenced](not-a-link-either.md)\n```\n"
        "[web](https://example.com/x.md)\n"
    )
    bad = broken_links(page)
    assert [b.split(":")[0] for b in bad] == ["missing.md", "other.md#nowhere", "pic.png"]
