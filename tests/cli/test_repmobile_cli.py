"""`reparameterize`, `subsets`, `complexity` end to end through the command line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from acoustic_lottery import cli
from acoustic_lottery.data.subsets import read_subset
from acoustic_lottery.data.tau import read_split
from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import SCENES
from acoustic_lottery.models import build_model
from acoustic_lottery.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from acoustic_lottery.models.repmobile import DEPLOY_ARCH, max_output_diff, reparameterize


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    monkeypatch.setattr(cli, "GROUPS", ("repmobile",))
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trained_like(task: str = "scene") -> nn.Module:
    """A just-initialised Rep-Mobile whose BN statistics were estimated on random input."""
    model = build_model("repmobile", task=task, seed=0)
    gen = torch.Generator().manual_seed(0)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0.0, 0.1, generator=gen)
            m.momentum = None
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, 128, 36, generator=gen))
    for m in bns:
        m.momentum = 0.01
    return model.eval()


@pytest.fixture
def train_ckpt(tmp_path):
    model = _trained_like(task="mtl")
    path = tmp_path / "train.pt"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    save_checkpoint(
        path,
        model,
        {"feature_set": "lmfb", "epoch": 3, "spec": {"arch": "repmobile", "seed": 0}},
        optimizer=optimizer.state_dict(),
    )
    return path, model


def test_reparameterize_writes_a_reloadable_inference_checkpoint(tmp_path, train_ckpt, capsys):
    path, model = train_ckpt
    out = tmp_path / "deploy" / "deploy.pt"
    assert cli.main(["reparameterize", "--model", str(path), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["max_abs_diff"] < 1e-4 and printed["blocks"] == 17
    loaded, meta = load_model(out)
    assert meta["arch"] == DEPLOY_ARCH and meta["task"] == "mtl" and meta["epoch"] == 3
    assert meta["reparameterized_from"] == str(path)
    assert "optimizer" not in meta  # training state of the other form is dropped
    assert meta["spec"] == {"arch": "repmobile", "seed": 0}
    assert max_output_diff(model, loaded, (3, 128, 44), seed=5) < 1e-4
    convs = [m for m in loaded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 17 + 2  # one per block + the two heads
    assert sorted(p.name for p in out.parent.iterdir()) == ["deploy.pt"]


def test_reparameterize_refuses_a_wrong_fold_and_wrong_arch(tmp_path, train_ckpt, monkeypatch):
    path, _ = train_ckpt
    out = tmp_path / "bad.pt"

    def broken(model):
        folded = reparameterize(model)
        with torch.no_grad():
            folded.trunk[0].conv.bias.add_(0.05)
        return folded

    monkeypatch.setattr("acoustic_lottery.cli.repmobile.reparameterize", broken)
    args = cli.build_parser().parse_args(
        ["reparameterize", "--model", str(path), "--out", str(out)]
    )
    with pytest.raises(InputError, match=r"max \|diff\| .* expected < 0.0001; nothing written"):
        args.func(args)
    assert not out.exists()

    monkeypatch.undo()
    monkeypatch.setattr(cli, "GROUPS", ("repmobile",))
    sic = tmp_path / "sic.pt"
    save_checkpoint(sic, build_model("sic", seed=0), {"feature_set": "lmfb"})
    assert cli.main(["reparameterize", "--model", str(sic), "--out", str(out)]) == 2
    deployed = tmp_path / "deployed.pt"
    assert cli.main(["reparameterize", "--model", str(path), "--out", str(deployed)]) == 0
    args = cli.build_parser().parse_args(
        ["reparameterize", "--model", str(deployed), "--out", str(out)]
    )
    with pytest.raises(InputError, match="already folded"):
        args.func(args)
    assert not out.exists()


def _tau22(root, n_segments: int = 4) -> None:
    """A tiny TAU22-like layout: 10 scenes x 2 devices x n segments x 10 one-second clips."""
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    lines = ["filename\tscene_label"]
    for si, scene in enumerate(SCENES):
        for device in ("a", "b"):
            for seg in range(n_segments):
                for sub in range(10):
                    name = f"audio/{scene}-lisbon-{si}-{seg}-{sub}-{device}.wav"
                    (root / name).touch()
                    lines.append(f"{name}\t{scene}")
    text = "\n".join(lines) + "\n"
    (root / "evaluation_setup" / "fold1_train.csv").write_text(text, encoding="utf-8")
    (root / "other_train.csv").write_text(text, encoding="utf-8")


def test_subsets_writes_nested_split_files(tmp_path) -> None:
    root = tmp_path / "tau22"
    _tau22(root)
    out = tmp_path / "splits"
    argv = ["subsets", "--root", str(root), "--seed", "7", "--out-dir", str(out)]
    csv_path = root / "evaluation_setup" / "fold1_train.csv"
    summary_path = tmp_path / "summary.json"
    extra = ["--fractions", "25", "50", "100", "--summary", str(summary_path)]
    assert cli.main([*argv, "--split-csv", str(csv_path), *extra]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["split100.csv", "split25.csv", "split50.csv"]
    split = read_split(root, "train")
    s25, s50, s100 = (read_subset(out / f"split{f}.csv", split) for f in (25, 50, 100))
    assert set(s25["filename"]) < set(s50["filename"]) < set(s100["filename"])
    assert len(s100) == len(split) == 800
    # 4 segments per (scene, device): 25 % is exactly one whole segment of 10 clips each
    per_stratum = s25.groupby(["scene", "device"]).size()
    assert len(per_stratum) == 20 and (per_stratum == 10).all()
    assert (s25.groupby(["scene", "device", "segment"]).size() == 10).all()
    summary = json.loads(summary_path.read_text())
    assert summary["subsets"]["split25.csv"]["clips"] == 200 and summary["seed"] == 7

    # the same split CSV kept elsewhere gives the same subsets; a different seed others
    other = tmp_path / "other"
    assert cli.main([*argv[:-1], str(other), "--split-csv", str(root / "other_train.csv")]) == 0
    assert (other / "split25.csv").read_text() == (out / "split25.csv").read_text()
    argv_seed = [a if a != "7" else "8" for a in argv]
    assert cli.main([*argv_seed[:-1], str(tmp_path / "s8"), "--split-csv", str(csv_path)]) == 0
    assert (tmp_path / "s8" / "split25.csv").read_text() != (out / "split25.csv").read_text()


def test_subsets_errors_exit_2(tmp_path, capsys) -> None:
    root = tmp_path / "tau22"
    _tau22(root, n_segments=1)
    base = ["subsets", "--root", str(root), "--seed", "0", "--out-dir", str(tmp_path / "o")]
    assert cli.main([*base, "--split-csv", str(root / "nope.csv")]) == 2
    assert "nope.csv: file not found" in capsys.readouterr().err
    csv_path = root / "evaluation_setup" / "fold1_train.csv"
    assert cli.main([*base, "--split-csv", str(csv_path), "--fractions", "0"]) == 2
    (root / "audio" / f"{SCENES[0]}-lisbon-0-0-3-a.wav").unlink()
    assert cli.main([*base, "--split-csv", str(csv_path)]) == 2
    assert "missing" in capsys.readouterr().err
    assert cli.main([*base, "--split-csv", str(csv_path), "--missing", "skip"]) == 0
    full = (tmp_path / "o" / "split100.csv").read_text().splitlines()
    assert len(full) == 1 + 10 * 2 * 10 - 1 and not any("-0-0-3-a.wav" in x for x in full)


def test_complexity_reports_and_rejects(tmp_path, train_ckpt, capsys) -> None:
    path, _ = train_ckpt
    report_path = tmp_path / "c" / "complexity.json"
    argv = ["complexity", "--model", str(path), "--frames", "44", "--out", str(report_path)]
    assert cli.main(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["form"].startswith("re-parameterized")
    assert report["arch"] == "repmobile" and report["input_shape"] == [3, 128, 44]
    assert report["param_bytes"] == 4 * report["params"] < 128_000
    assert len(report["blocks"]) == 17 and all(b["convs"] == 1 for b in report["blocks"])
    assert json.loads(capsys.readouterr().out)["macs"] == report["macs"] < 30_000_000

    half = tmp_path / "half.json"
    assert cli.main([*argv[:-1], str(half), "--dtype", "float16"]) == 0
    assert json.loads(half.read_text())["param_bytes"] == 2 * report["params"]

    failing = tmp_path / "fail.json"
    code = cli.main([*argv[:-1], str(failing), "--max-kb", "50", "--max-macs", "1e6"])
    assert code == 2 and not failing.exists()
    err = capsys.readouterr().err
    assert "parameter memory and MACs" in err
    assert f"{report['param_bytes']:,} bytes" in err and "50,000 bytes" in err
    assert f"{report['macs']:,}" in err and "1,000,000" in err
    ckpt = load_checkpoint(path)
    assert ckpt["arch"] == "repmobile"  # the input checkpoint is not modified
