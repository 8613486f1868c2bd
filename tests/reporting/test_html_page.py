"""The result tables as HTML pages for the Snakemake report."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from acoustic_lottery.cli import main
from acoustic_lottery.errors import InputError
from acoustic_lottery.reporting.html_page import markdown_to_html, write_html_page

ROOT = Path(__file__).resolve().parents[2]


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _cells(page: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(page)
    return parser.rows


def test_the_committed_table1_renders_as_a_table_with_every_row_and_column():
    md = (ROOT / "docs/results/table1.md").read_text()
    rows = _cells(markdown_to_html(md, "Table 1"))
    md_rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == len(md_rows) - 1  # less the |:---| separator line
    header = rows[0]
    assert header[:2] == ["idx", "system"] and "acc_ci" in header
    assert all(len(r) == len(header) for r in rows)
    assert rows[1][1] == "Official Baseline"


def test_markup_in_a_cell_is_text_not_html():
    page = markdown_to_html("| a |\n|---|\n| <script>x</script> |\n", "t")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_verb_writes_the_page_and_names_an_unreadable_file(tmp_path):
    md = tmp_path / "t.md"
    md.write_text("# T\n\nprose\n\n| a | b |\n|--:|---|\n| 1 | x |\n")
    out = tmp_path / "html/t.html"
    assert main(["html-page", "--markdown", str(md), "--out", str(out), "--title", "T"]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>T</title>" in page
    assert _cells(page) == [["a", "b"], ["1", "x"]]
    prose = tmp_path / "p.md"
    prose.write_text("# Comparisons\n\nevery pair skipped\n")
    assert (
        "<p>every pair skipped</p>" in write_html_page(prose, tmp_path / "p.html", "P").read_text()
    )
    binary = tmp_path / "b.md"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match=r"b\.md: cannot read it as UTF-8 markdown"):
        write_html_page(binary, tmp_path / "b.html", "B")
    assert not (tmp_path / "b.html").exists()
    assert main(["html-page", "--markdown", str(tmp_path / "missing.md"), "--out",
                 str(tmp_path / "m.html"), "--title", "M"]) == 2  # fmt: skip
