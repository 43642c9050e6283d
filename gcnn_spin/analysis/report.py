"""``report.md``: every table (inline, with links to its CSV and Markdown) and every figure, each with a caption."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ..io import write_text_atomic
from .tables import Table


@dataclasses.dataclass
class Figure:
    """A PNG under the results folder; ``caption`` says in one line what it measures."""

    path: Path
    caption: str


@dataclasses.dataclass
class Section:
    title: str
    text: str = ""
    items: list[Table | Figure] = dataclasses.field(default_factory=list)


def _render_item(item: Table | Figure, out_dir: Path, tables_dir: str) -> str:
    if isinstance(item, Figure):
        rel = Path(item.path).resolve().relative_to(out_dir.resolve()).as_posix()
        return f"![{item.caption}]({rel})\n\n*{item.caption}* (`{rel}`)\n"
    links = f"[{item.stem}.csv]({tables_dir}/{item.stem}.csv), [{item.stem}.md]({tables_dir}/{item.stem}.md)"
    return f"#### {item.title}\n\n*{item.caption}* ({links})\n\n{item.markdown}\n"


def render(sections: Sequence[Section], out_dir: str | Path, title: str, preamble: str = "",
           tables_dir: str = "tables") -> str:
    """The report text; sections without text or items are skipped."""
    out_dir = Path(out_dir)
    parts = [f"# {title}\n", preamble.strip() + "\n" if preamble else ""]
    for section in sections:
        if not (section.text or section.items):
            continue
        parts.append(f"## {section.title}\n")
        if section.text:
            parts.append(section.text.strip() + "\n")
        parts.extend(_render_item(item, out_dir, tables_dir) for item in section.items)
    return "\n".join(p for p in parts if p)


def write_report(sections: Sequence[Section], out_dir: str | Path, title: str, preamble: str = "",
                 tables_dir: str = "tables") -> Path:
    path = Path(out_dir) / "report.md"
    write_text_atomic(path, render(sections, out_dir, title, preamble, tables_dir))
    return path
