"""Screenshot of one result page of a Snakemake report, as a reader opens it.

    python tools/report_screenshot.py report.html docs/report_table1.png

Opens the report in headless Chromium, goes to the category "Tables", opens the item
(default "table1") and saves a PNG. Documentation tooling only, not a project
dependency: it needs Playwright (`pip install playwright`) and a Chromium
(`apt-get install chromium`, passed as --chromium; Playwright's own download is not
needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--category", default="Tables")
    ap.add_argument("--item", default="table1")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.report.resolve().as_uri())
        page.get_by_text(args.category, exact=True).click()
        row = page.get_by_role("row").filter(has_text=args.item)
        row.locator("a[iconname=eye]").click()
        frame = page.frame_locator("iframe").first
        frame.locator("table").first.wait_for()  # the page shows a real HTML table
        cells = frame.locator("table th").count()
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"{args.out}: {args.category} > {args.item}, a table with {cells} columns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
