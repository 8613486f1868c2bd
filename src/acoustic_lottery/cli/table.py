"""Verbs `row`, `table`, `comparisons`, `device-table`, `onnx-table`, `readme` and
`html-page`: Table 1 rows from prediction files, the whole table, the paired comparisons
of the report's claims, the Markdown tables beside it, the README's results section
generated from them, and any of them as an HTML page (none imports torch)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from acoustic_lottery.errors import InputError


def _json_arg(text: str, option: str, kind: type = dict):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option}: not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise InputError(f"{option}: expected a JSON {kind.__name__}, found {value!r}")
    return value


def _row(args: argparse.Namespace) -> int:
    from acoustic_lottery.table1 import write_row

    spec = _json_arg(args.spec, "--spec")
    statistics = _json_arg(args.statistics, "--statistics") if args.statistics else None
    row = write_row(
        spec,
        args.predictions,
        args.sizes,
        args.out,
        args.out_predictions,
        statistics,
        out_summary=args.out_summary,
    )
    o, p = row["ours"], row["paper"]
    acc_ci, ll_ci = o["accuracy_ci"], o["log_loss_ci"]
    print(
        f"row {row['row']} ({row['system']}): accuracy {o['accuracy']:.1f} % "
        f"[{acc_ci[0]:.1f}, {acc_ci[1]:.1f}] (paper {p['accuracy']}), log loss "
        f"{o['log_loss']:.3f} [{ll_ci[0]:.3f}, {ll_ci[1]:.3f}] (paper {p['log_loss']}), "
        f"size {o['size_kb']:.1f} KB (paper {p['size_text']}); "
        f"{o['n_clips']} clips of {o['n_recordings']} recordings"
    )
    return 0


def _comparisons(args: argparse.Namespace) -> int:
    from acoustic_lottery.comparisons import write_comparisons

    pairs = _json_arg(args.pairs, "--pairs", list)
    statistics = _json_arg(args.statistics, "--statistics") if args.statistics else None
    result = write_comparisons(
        pairs,
        args.predictions,
        out_md=args.out_md,
        out_csv=args.out_csv,
        out_json=args.out_json,
        statistics=statistics,
    )
    print(Path(result["out_md"]).read_text(encoding="utf-8"), end="")
    return 0


def _table(args: argparse.Namespace) -> int:
    from acoustic_lottery.table1 import write_table

    frame = write_table(args.rows, args.out_md, args.out_csv)
    print(frame.to_string(index=False))
    return 0


def _device_table(args: argparse.Namespace) -> int:
    from acoustic_lottery.cli.figures import parse_named_paths
    from acoustic_lottery.reporting.device_plots import device_bars
    from acoustic_lottery.reporting.device_table import device_table

    named = parse_named_paths(args.metrics)
    result = device_table(named, args.out_md)
    if args.out_png is not None:
        device_bars(named, args.out_png, title="Accuracy per device")
    print(Path(result["out"]).read_text(encoding="utf-8"))
    return 0


def _onnx_table(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.onnx_table import onnx_table

    reports = {}
    for name, compare, quantize in args.model:
        if name in reports:
            raise InputError(f"onnx-table: model {name!r} given twice")
        reports[name] = (Path(compare), Path(quantize))
    onnx_table(reports, args.out_md)
    print(Path(args.out_md).read_text(encoding="utf-8"), end="")
    return 0


def _readme(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.readme import BEGIN, END, render, snapshot, update_readme
    from acoustic_lottery.reporting.scale_report import SCALE_BEGIN, SCALE_END, render_scale

    if args.results is not None:
        copied = snapshot(args.results, args.snapshot)
        print(f"readme: {len(copied)} summaries and figures {args.results} -> {args.snapshot}")
    sections = [(render(args.snapshot, figures_prefix=args.snapshot.as_posix()), BEGIN, END)]
    scale, thr = args.benchmarks / "scale.json", args.benchmarks / "train_throughput_cpu.json"
    if scale.exists() and thr.exists():
        sections.append((render_scale(scale, thr), SCALE_BEGIN, SCALE_END))
    if args.check:
        text = args.readme.read_text(encoding="utf-8")
        for section, begin, _ in sections:
            if section not in text:
                print(
                    f"readme: {args.readme} does not hold the section {begin.split()[1]} "
                    f"generated from {args.snapshot} / {args.benchmarks}; run `make readme`",
                    file=sys.stderr,
                )
                return 1
        print(f"readme: {args.readme} matches {args.snapshot} and {args.benchmarks}")
        return 0
    changed = False
    for section, begin, end in sections:
        changed |= update_readme(args.readme, section, begin=begin, end=end)
    print(f"readme: {args.readme} {'updated' if changed else 'unchanged'}")
    return 0


def _html_page(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.html_page import write_html_page

    out = write_html_page(args.markdown, args.out, args.title)
    print(f"html-page: {args.markdown} -> {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("row", help="build one Table 1 row from member predictions and sizes")
    p.add_argument("--spec", required=True, help="row spec as JSON (from the workflow)")
    p.add_argument(
        "--predictions",
        nargs="+",
        type=Path,
        required=True,
        help="one prediction file per member, in member order",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=Path,
        required=True,
        help="size report JSON of each distinct member model",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--out-predictions", type=Path, help="write the fused predictions here")
    p.add_argument(
        "--out-summary",
        type=Path,
        help="also write the row's few headline figures (the DVC metrics file) here",
    )
    p.add_argument(
        "--statistics",
        metavar="JSON",
        help='bootstrap settings {"n_boot": 2000, "seed": 0, "level": 0.95} (these defaults)',
    )
    p.set_defaults(func=_row)

    c = sub.add_parser(
        "comparisons",
        help="paired cluster-bootstrap differences of the report's claims (B - A)",
        description="For each pair (claim, A, B): the difference B - A in accuracy points "
        "and in log loss with its paired cluster-bootstrap interval over recordings, as "
        "Markdown, CSV and JSON.",
    )
    c.add_argument(
        "--pairs",
        required=True,
        metavar="JSON",
        help="list of {claim, a: {label, files, select}, b: {...}, devices} (from the workflow)",
    )
    c.add_argument(
        "--predictions",
        nargs="*",
        type=Path,
        default=[],
        help="every prediction file the pairs name (the job's inputs)",
    )
    c.add_argument("--statistics", metavar="JSON", help="bootstrap settings, as for `row`")
    c.add_argument("--out-md", type=Path, required=True)
    c.add_argument("--out-csv", type=Path, required=True)
    c.add_argument("--out-json", type=Path, required=True)
    c.set_defaults(func=_comparisons)

    t = sub.add_parser("table", help="Table 1 as Markdown and CSV from row JSON files")
    t.add_argument("--rows", nargs="+", type=Path, required=True)
    t.add_argument("--out-md", type=Path, required=True)
    t.add_argument("--out-csv", type=Path, required=True)
    t.set_defaults(func=_table)

    d = sub.add_parser("device-table", help="per-device accuracy of models as Markdown (+ bars)")
    d.add_argument("--metrics", nargs="+", required=True, metavar="NAME=PATH")
    d.add_argument("--out-md", type=Path, required=True)
    d.add_argument("--out-png", type=Path, help="also draw the per-device bars here")
    d.set_defaults(func=_device_table)

    o = sub.add_parser(
        "onnx-table",
        help="compare-onnx and quantize-onnx reports of several models as Markdown",
        description="One line per model and head: PyTorch int8 vs ONNX int8 accuracy, "
        "the difference, top-1 agreement and the float / int8 ONNX file sizes.",
    )
    o.add_argument(
        "--model",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "COMPARE.json", "QUANTIZE.json"),
    )
    o.add_argument("--out-md", type=Path, required=True, metavar="T.md")
    o.set_defaults(func=_onnx_table)

    r = sub.add_parser(
        "readme",
        help="the README's results section, generated from a run's summaries",
        description="Copy the summaries of --results (Table 1, comparisons, probe, "
        "devices, ONNX, the 2024 study, figures, wall times) into --snapshot, then "
        "rewrite the README between its results markers from the snapshot alone, and "
        "between its scale markers from the --benchmarks results. "
        "--check only compares (exit 1 if the README differs).",
    )
    r.add_argument(
        "--results", type=Path, help="results/<dataset> of a run (omit: use the snapshot)"
    )
    r.add_argument("--snapshot", type=Path, default=Path("docs/results"))
    r.add_argument("--readme", type=Path, default=Path("README.md"))
    r.add_argument(
        "--benchmarks",
        type=Path,
        default=Path("benchmarks/results"),
        help="scale.json and train_throughput_cpu.json here fill the README's scale section",
    )
    r.add_argument("--check", action="store_true", help="compare, write nothing")
    r.set_defaults(func=_readme)

    h = sub.add_parser(
        "html-page",
        help="a Markdown result table as a standalone HTML page (for the Snakemake report)",
    )
    h.add_argument("--markdown", type=Path, required=True, metavar="T.md")
    h.add_argument("--out", type=Path, required=True, metavar="T.html")
    h.add_argument("--title", required=True)
    h.set_defaults(func=_html_page)
