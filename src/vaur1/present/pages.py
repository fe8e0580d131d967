"""The report's pages: tables (and plots) as Markdown with PNG files, one self-contained HTML page, and
JSON, written next to each other. `vaur1.present.report` decides what the tables hold; this renders them.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.errors import VaurError
from vaur1.files import write_json, write_text


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to emphasise


def _bold_md(text: str, bold: bool) -> str:
    return f"**{text}**" if bold and text != "-" else text


def _markdown_cell(text: str) -> str:
    """Text from data or a model (a run's name, a source label) in a Markdown table cell: Markdown keeps
    raw HTML, so its markup characters become entities; a pipe would end the cell."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _markdown_alt(text: str) -> str:
    """A plot's caption as the alt text of a Markdown image: escaped, and no `]` to end it early."""
    return _markdown_cell(text).replace("]", "\\]")


def render_markdown(report_tables: list[Table], images: list[tuple[str, str, str]]) -> str:
    """Markdown with the tables; `images` are (caption, relative PNG path, stem)."""
    lines = ["# vaur1 evaluation report", ""]
    for table in report_tables:
        lines += [f"## {_markdown_cell(table.title)}", ""]
        lines.append("| " + " | ".join(_markdown_cell(h) for h in table.header) + " |")
        lines.append("|" + "|".join("---" for _ in table.header) + "|")
        lines += [
            "| "
            + " | ".join(_bold_md(_markdown_cell(c), (r, i) in table.bold) for i, c in enumerate(row))
            + " |"
            for r, row in enumerate(table.rows)
        ]
        lines += ["", _markdown_cell(table.note), ""] if table.note else [""]
    if images:
        lines += ["## Plots", ""]
        lines += [f"![{_markdown_alt(caption)}]({path})\n" for caption, path, _ in images]
    return "\n".join(lines).rstrip() + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, td:nth-child(2) { text-align: left; }
p.note { font-size: 0.8em; color: #666; } figure { margin: 1em 0; } img { max-width: 100%; }
"""


def render_html(report_tables: list[Table], images: list[tuple[str, bytes]]) -> str:
    """One page with everything inside: tables, and the plots as base64 PNG data URIs."""
    escape = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>vaur1 evaluation report</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>vaur1 evaluation report</h1>",
    ]
    for table in report_tables:
        parts.append(f"<h2>{escape(table.title)}</h2><table>")
        parts.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in table.header) + "</tr>")
        for r, row in enumerate(table.rows):
            cells = [f"<b>{escape(c)}</b>" if (r, i) in table.bold else escape(c) for i, c in enumerate(row)]
            parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        if table.note:
            parts.append(f'<p class="note">{escape(table.note)}</p>')
    if images:
        parts.append("<h2>Plots</h2>")
    for caption, png in images:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _base(out: str | Path) -> Path:
    path = Path(out)
    return path.with_suffix("") if path.suffix in (".md", ".html", ".json") else path


# A report overwrites only what a report wrote: its pages start with these, and its plot folder lists
# the plots it holds, so that a folder or a file of the user's with the same name is never lost.
PLOTS_MANIFEST = ".vaur1-report-plots"
_SIGNATURES = {
    ".md": "# vaur1 evaluation report",
    ".html": '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>vaur1',
    ".tex": "% ",
}


def _check_ours(path: Path, mark: str) -> None:
    if not path.exists() and not path.is_symlink():
        return
    try:
        ours = (
            path.is_file() and not path.is_symlink() and path.read_text(encoding="utf-8")[: len(mark)] == mark
        )
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise VaurError(f"{path}: exists and was not written by vaur1 report; choose another --out")


def _clear_earlier_plots(image_dir: Path) -> None:
    """Remove the plots an earlier report listed in its manifest, and nothing else."""
    if not image_dir.exists() and not image_dir.is_symlink():
        return
    manifest = image_dir / PLOTS_MANIFEST
    if image_dir.is_symlink() or not image_dir.is_dir() or not manifest.is_file():
        if image_dir.is_dir() and not image_dir.is_symlink() and not any(image_dir.iterdir()):
            return
        raise VaurError(f"{image_dir}: exists and was not written by vaur1 report; choose another --out")
    for name in manifest.read_text(encoding="utf-8").splitlines():
        plot = image_dir / name
        if name and Path(name).name == name and plot.is_file() and not plot.is_symlink():
            plot.unlink()
    manifest.unlink()


def write_pages(
    out: str | Path,
    report_tables: list[Table],
    plotted: list[tuple[str, str, bytes]],
    data: dict[str, Any],
    latex: list[str] | None = None,
) -> dict[str, Path]:
    """OUT.md with its plots in OUT_files/, OUT.html with the plots inside, OUT.json (`data`), and
    OUT.tex with the `latex` tables when there are any."""
    base = _base(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix, mark in _SIGNATURES.items():
        _check_ours(base.with_name(f"{base.name}{suffix}"), mark)
    image_dir = base.with_name(f"{base.name}_files")
    _clear_earlier_plots(image_dir)  # plots of an earlier report that this one may not have
    if plotted:
        image_dir.mkdir(exist_ok=True)
    markdown_images, names = [], []
    for stem, caption, png in plotted:
        safe = re.sub(r"[^\w.-]", "_", stem)
        (image_dir / f"{safe}.png").write_bytes(png)
        names.append(f"{safe}.png")
        markdown_images.append((caption, f"{image_dir.name}/{safe}.png", stem))
    if names:
        write_text(image_dir / PLOTS_MANIFEST, "\n".join(names) + "\n")
    written = {
        "markdown": write_text(
            base.with_name(f"{base.name}.md"), render_markdown(report_tables, markdown_images)
        ),
        "html": write_text(
            base.with_name(f"{base.name}.html"),
            render_html(report_tables, [(caption, png) for _, caption, png in plotted]),
        ),
        "json": write_json(base.with_name(f"{base.name}.json"), data),
    }
    if latex:
        written["latex"] = write_text(base.with_name(f"{base.name}.tex"), "\n".join(latex))
    return written
