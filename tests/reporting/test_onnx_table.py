"""The ONNX int8 table: one line per model and head, tolerance read from each report."""

from __future__ import annotations

import json

import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.reporting.onnx_table import onnx_table


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _compare(diff: float, tol: float = 0.5) -> dict:
    return {
        "tolerance_points": tol,
        "heads": {
            "scene": {
                "n": 540,
                "torch_int8_accuracy": 40.0,
                "onnx_int8_accuracy": 40.0 + diff,
                "difference_points": diff,
                "argmax_agreement": 0.95,
            }
        },
    }


def test_rows_sizes_and_tolerance(tmp_path):
    quant = _write(tmp_path / "q.json", {"file_bytes": 2048, "float_bytes": 8192})
    reports = {
        "sic": (_write(tmp_path / "a.json", _compare(0.37)), quant),
        "lic": (_write(tmp_path / "b.json", _compare(-0.74)), quant),
    }
    out = onnx_table(reports, tmp_path / "onnx.md")
    assert [r["within_tolerance"] for r in out["rows"]] == [True, False]
    assert out["within_tolerance"] is False
    text = (tmp_path / "onnx.md").read_text()
    assert "| sic | scene | 540 | 40.00 | 40.37 | +0.37 | 95.0 | 8.0 | 2.0 | yes (±0.5) |" in text
    assert "| lic | scene | 540 | 40.00 | 39.26 | -0.74 | 95.0 | 8.0 | 2.0 | no (±0.5) |" in text


def test_a_report_of_the_wrong_kind_is_named(tmp_path):
    quant = _write(tmp_path / "q.json", {"file_bytes": 1, "float_bytes": 2})
    bad = _write(tmp_path / "bad.json", {"heads": {"scene": {"n": 3}}})
    with pytest.raises(InputError, match=r"bad\.json.*heads\.scene lacks torch_int8_accuracy"):
        onnx_table({"sic": (bad, quant)}, tmp_path / "o.md")
    with pytest.raises(InputError, match=r"q2\.json.*file_bytes"):
        onnx_table(
            {"sic": (_write(tmp_path / "c.json", _compare(0)), _write(tmp_path / "q2.json", {}))},
            tmp_path / "o.md",
        )
    assert not (tmp_path / "o.md").exists()
