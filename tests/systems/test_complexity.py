"""DCASE 2024 complexity check: 128 kB (128,000 B) parameters, 30 M MACs per 1 s clip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models import build_model
from acoustic_lottery.models.repmobile import reparameterize
from acoustic_lottery.systems.complexity import (
    MAX_MACS,
    MAX_PARAM_BYTES,
    ONE_SECOND_INPUT,
    check_complexity,
    complexity_report,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dense(out_features: int) -> nn.Module:
    """Few MACs, many parameters: Linear over a 3x8x8 input."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, out_features))


def test_limits_are_the_2024_rule() -> None:
    assert MAX_PARAM_BYTES == 128_000
    assert MAX_MACS == 30_000_000
    assert ONE_SECOND_INPUT == (3, 128, 44)


def test_default_repmobile_passes_and_is_measured_in_inference_form() -> None:
    train_form = build_model("repmobile", seed=0)
    report = check_complexity(train_form)
    assert report["ok"] and report["bytes_ok"] and report["macs_ok"]
    assert report["form"].startswith("re-parameterized")
    assert report["params"] == 21_560
    assert report["param_bytes"] == 86_240 and report["param_kb"] == pytest.approx(86.24)
    assert report["macs"] == 15_744_256
    assert report["input_shape"] == [3, 128, 44]
    folded = check_complexity(reparameterize(train_form.eval()))
    assert folded["form"] == "as given"
    assert folded["macs"] == report["macs"] and folded["param_bytes"] == report["param_bytes"]
    # the untouched training form is left multi-branch
    assert any(name.endswith("branches.1.conv.weight") for name in train_form.state_dict())


def test_too_many_macs_is_rejected_naming_both_figures() -> None:
    model = build_model("repmobile", seed=0)
    with pytest.raises(InputError) as err:
        check_complexity(model, (3, 128, 132), name="model X")  # 3 s of frames
    message = str(err.value)
    assert message.startswith("model X: exceeds") and "(MACs)" in message
    assert "47,232,768" in message and "30,000,000" in message  # MACs and their limit
    assert "86,240 bytes" in message and "128,000 bytes" in message  # memory and its limit


def test_too_many_bytes_is_rejected_naming_both_figures() -> None:
    model = _dense(600)  # 115,800 float32 values = 463,200 bytes, 115,200 MACs
    with pytest.raises(InputError) as err:
        check_complexity(model, (3, 8, 8))
    message = str(err.value)
    assert "(parameter memory)" in message
    assert "463,200 bytes" in message and "128,000 bytes" in message
    assert "115,200" in message and "30,000,000" in message
    both = build_model("repmobile", width=2.0, seed=0)
    with pytest.raises(InputError, match=r"\(parameter memory and MACs\)"):
        check_complexity(both, (3, 128, 88))


def test_boundary_dtype_and_zero_counting() -> None:
    model = _dense(100)  # 19,300 values
    with torch.no_grad():
        model[1].weight[:50].zero_()  # 9,600 zeros
    report = complexity_report(model, (3, 8, 8))
    assert report["param_bytes"] == 4 * 19_300
    assert check_complexity(model, (3, 8, 8), max_bytes=4 * 19_300)["ok"]  # limit inclusive
    with pytest.raises(InputError):
        check_complexity(model, (3, 8, 8), max_bytes=4 * 19_300 - 1)
    assert complexity_report(model, (3, 8, 8), dtype_bytes={"*": 2})["param_bytes"] == 38_600
    sparse = complexity_report(model, (3, 8, 8), count_zeros=False)
    assert sparse["param_bytes"] == 4 * (19_300 - 9_600) and not sparse["count_zeros"]
    assert complexity_report(_dense(600), (3, 8, 8), dtype_bytes={"*": 1})["bytes_ok"]


@pytest.mark.parametrize("limits", [{"max_bytes": 0}, {"max_macs": -1}, {"max_bytes": True}])
def test_bad_limits_are_input_errors(limits: dict) -> None:
    with pytest.raises(InputError, match="positive"):
        complexity_report(_dense(10), (3, 8, 8), **limits)
