"""Every link in the README and docs/ resolves: the file exists, and an #anchor names a heading.

Anchors are GitHub's heading slugs, the ones a reader clicks through on the repository page, so
a renamed heading or a moved section fails here instead of leaving a dead link. Pure file
checks: no broker, no store.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]\(([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_NOT_SLUG = re.compile(r"[^\w\- ]", flags=re.UNICODE)


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, where links and headings mean something."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, markup and punctuation dropped,
    lower case, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return _NOT_SLUG.sub("", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code."""
    found = []
    text = path.read_text(encoding="utf-8")
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


def broken(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        where = f"{path.relative_to(root)}:{number}: ({target})"
        linked = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{where}: {file_part} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{where}: no heading in {linked.relative_to(root)} has the "
                            f"anchor #{anchor}")
    return problems


def test_the_documents_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/architecture.md", "docs/extending.md",
            "docs/configuration.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves(path: Path) -> None:
    assert not broken(path), "\n".join(broken(path))


def test_the_checker_finds_a_dead_file_and_a_dead_anchor(tmp_path: Path) -> None:
    """The checker itself can fail: a missing file, a missing anchor, and neither inside code."""
    (tmp_path / "other.md").write_text("# Other\n\n## Rate limits, request ids, CORS\n",
                                       encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page (中文)\n\n[ok](other.md#rate-limits-request-ids-cors) "
                    "[self](#page-中文) [web](https://example.com/x#y)\n"
                    "[gone](missing.md) [bad](other.md#rate-limits)\n"
                    "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n", encoding="utf-8")
    problems = broken(page, root=tmp_path)
    assert len(problems) == 2, problems
    assert "missing.md does not exist" in problems[0]
    assert "#rate-limits" in problems[1]


def test_slugs_follow_github() -> None:
    assert slug("`voc alerts tail` and `voc cases tail`") == "voc-alerts-tail-and-voc-cases-tail"
    assert slug("The dashboard's sign-in") == "the-dashboards-sign-in"
    assert slug("Multi-channel evaluation set (issue 16)") == \
        "multi-channel-evaluation-set-issue-16"
    assert slug("Add a sink") == "add-a-sink"


def test_every_screenshot_is_shown() -> None:
    """docs/screenshots/ holds exactly the pictures the docs show (`make screenshots` retakes
    them): a file nobody references is stale weight, a reference without a file is caught
    above."""
    shots = ROOT / "docs" / "screenshots"
    shown = {(path.parent / target).resolve() for path in DOCS for _, target in links(path)}
    unshown = sorted(p.name for p in shots.glob("*.png") if p.resolve() not in shown)
    assert not unshown, f"docs/screenshots/ files no doc shows: {unshown}"
    assert len(list(shots.glob("*.png"))) >= 10, "the pictures were found"
