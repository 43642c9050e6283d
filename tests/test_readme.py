"""Sections the README refers to exist: a reference to a lost section fails here, not for a new user."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
#: `see "Section"` (quoted), and Markdown links to an anchor: `](#anchor)`, `](README.md#anchor)`.
QUOTED = re.compile(r"\bsee \"([^\"]+)\"", re.I)
ANCHOR = re.compile(r"\]\((?:\.{0,2}/?README\.md)?#([^)\s]+)\)")


def headings(text: str) -> list[str]:
    return HEADING.findall(FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def missing_sections(readme: str, referring: str | None = None) -> list[str]:
    """References in ``referring`` (default: the README itself) to README sections that do not exist."""
    referring = readme if referring is None else referring
    titles = {h.strip().lower() for h in headings(readme)}
    anchors = {slug(h) for h in headings(readme)}
    missing = [f'see "{t}"' for t in QUOTED.findall(referring) if t.strip().lower() not in titles]
    return missing + [f"#{a}" for a in ANCHOR.findall(referring) if a.lower() not in anchors]


def test_sections_the_readme_refers_to_exist():
    readme = (REPO / "README.md").read_text()
    assert QUOTED.findall(readme), "the README refers to its sections as: see \"Section\""
    assert missing_sections(readme) == []


def test_docs_links_into_the_readme_resolve():
    readme = (REPO / "README.md").read_text()
    for doc in (REPO / "docs").glob("*.md"):
        text = doc.read_text()
        links = re.findall(r"\]\((?:\.\./)?README\.md#[^)]+\)", text)
        assert missing_sections(readme, "\n".join(links)) == [], doc.name


def test_the_check_catches_a_lost_section():
    text = '# T\n\n## Getting the data\n\nsee "Getting the data"; [x](#getting-the-data)\n'
    assert missing_sections(text) == []
    lost = text.replace("## Getting the data", "## Data")
    assert missing_sections(lost) == ['see "Getting the data"', "#getting-the-data"]
    assert slug("3. On the cluster") == "3-on-the-cluster" and slug("Results (`analysis/`)") == "results-analysis"
    assert missing_sections("```\n# not a heading\n```\nsee \"not a heading\"") == ['see "not a heading"']
