"""A result document (Table 1, the comparisons, the ONNX check) as one HTML page.

Snakemake's report shows an HTML file inline but offers markdown and CSV only as
downloads, so a reader of `report.html` saw no table. The markdown the table writers
already produce is rendered with markdown-it-py (CommonMark plus its table rule; pinned,
and already in the stack through Snakemake's `rich`), so the page and the `.md` file
never disagree: there is one writer per table, and this is only its presentation.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from markdown_it import MarkdownIt

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
p { max-width: 60em; line-height: 1.4; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafafa; }
td[style*="right"] { font-variant-numeric: tabular-nums; }
"""


def markdown_to_html(text: str, title: str) -> str:
    """A standalone HTML page (no external resources) of the markdown `text`."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def write_html_page(
    markdown_path: str | os.PathLike[str], out_html: str | os.PathLike[str], title: str
) -> Path:
    """Render the markdown file as `out_html` (a comparisons file of a configuration
    whose pairs are all skipped has prose only, and renders as that)."""
    src = Path(markdown_path)
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{src}: cannot read it as UTF-8 markdown ({e})") from e
    page = markdown_to_html(text, title)
    out = Path(out_html)
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
