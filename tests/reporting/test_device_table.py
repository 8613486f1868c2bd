"""The per-device accuracy table of the README."""

from __future__ import annotations

import json

import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.reporting.device_table import device_table


def metrics(per_device: dict[str, float]) -> dict:
    seen = [v for d, v in per_device.items() if d not in ("s4", "s5", "s6")]
    unseen = [v for d, v in per_device.items() if d in ("s4", "s5", "s6")]
    return {
        "accuracy": sum(per_device.values()) / len(per_device),
        "seen": {"accuracy": sum(seen) / len(seen)},
        "unseen": {"accuracy": sum(unseen) / len(unseen)},
        "per_device": {d: {"accuracy": v, "n": 10} for d, v in per_device.items()},
    }


def test_rows_hold_percent_per_device_and_the_seen_unseen_averages(tmp_path):
    acc = {"a": 0.9, "b": 0.5, "c": 0.5, "s1": 0.5, "s2": 0.5, "s3": 0.5, "s4": 0.2,
           "s5": 0.3, "s6": 0.1}  # fmt: skip
    path = tmp_path / "m.json"
    path.write_text(json.dumps(metrics(acc)))
    out = tmp_path / "devices.md"
    result = device_table({"sic": path}, out)
    row = result["rows"]["sic"]
    assert row["a"] == pytest.approx(90.0) and row["s6"] == pytest.approx(10.0)
    assert row["unseen"] == pytest.approx(20.0) and row["seen"] == pytest.approx(100 * 3.4 / 6)
    text = out.read_text()
    assert "| sic | 90.0 | 50.0 |" in text and "s4 (unseen)" in text


def test_metrics_without_per_device_name_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(InputError, match=r"bad.json.*per_device"):
        device_table({"m": path}, tmp_path / "o.md")
