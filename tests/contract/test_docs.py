"""The README is the front door: short, the admin's path first, and every page of docs/ reachable
from it through links that resolve (files and #anchors), with a page per sensor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prtg_ai.build.splice import blocks
from prtg_ai.core.registry import sensor_ids

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
README_LIMIT = 12_000  # bytes: issue 18 ("README under 12 KB")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    return [README, *sorted((REPO / "docs").glob("**/*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def _local_links(page: Path) -> list[tuple[Path, str]]:
    """(target file, anchor) of every link in ``page`` that points inside the repository."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    out = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto:
        path, _, anchor = target.partition("#")
        out.append(((page.parent / path).resolve() if path else page, anchor))
    return out


def test_the_readme_is_short_and_starts_with_the_admin_path():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) < README_LIMIT
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[:2] == ["Set up", "Install into PRTG"]
    assert headings[-1] == "Test"
    # .ci/run runs exactly this: the README's test command
    assert text.rstrip().endswith("## Test\n\n```sh\nmake test\n```")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_to_a_file_and_a_heading(page):
    for target, anchor in _local_links(page):
        assert target.exists(), f"{page.relative_to(REPO)} links to missing {target}"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{page.relative_to(REPO)}: no heading #{anchor} in {target.name}"


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.is_file():
            continue
        seen.add(page)
        todo += [target for target, _ in _local_links(page)]
    unreachable = [str(p.relative_to(REPO)) for p in _pages() if p.resolve() not in seen]
    assert unreachable == []


@pytest.mark.parametrize("sensor", sensor_ids())
def test_every_sensor_has_a_page_with_its_channels_and_lookup_values(sensor):
    page = REPO / "docs" / "sensors" / f"{sensor}.md"
    assert list(blocks(page.read_text(encoding="utf-8"))) == [f"channels/{sensor}", f"lookups/{sensor}"]
    assert f"](docs/sensors/{sensor}.md)" in README.read_text(encoding="utf-8")


def test_the_layout_names_every_package_of_the_pack():
    """A new package under sensors/prtg_ai must get its layer written down where a newcomer looks."""
    pack = REPO / "sensors" / "prtg_ai"
    names = [f"`{p.name}/`" for p in pack.iterdir() if (p / "__init__.py").is_file()]
    names += [f"`{p.name}`" for p in pack.glob("*.py") if p.name != "__init__.py"]
    for page in (README, REPO / "docs" / "development.md"):
        rows = [line for line in page.read_text(encoding="utf-8").splitlines() if re.match(r"\| \d \|", line)]
        assert [int(r[2]) for r in rows] == list(range(9)), f"{page.name}: layers 0-8, one row each"
        missing = [n for n in names if not any(n in r for r in rows)]
        assert missing == [], f"{page.name}'s layer table lacks {missing}"
