"""int8 dynamic-range quantization: per-channel symmetric weights, BN folding, activations."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from acoustic_lottery.models.registry import build_model
from acoustic_lottery.models.size import size_report
from acoustic_lottery.quantization.int8 import (
    dequantize,
    exact_int8_reference,
    fake_quantize_activation,
    find_conv_bn_pairs,
    float_state,
    fold_batchnorm,
    quantize_model,
    quantize_weight,
    quantized_model,
    quantized_size_report,
)


class Net(nn.Module):
    """Stand-in: conv-BN-ReLU-pool in a Sequential, a conv/BN pair as attributes, a linear."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2(self.conv2(self.features(x))))
        return self.fc(x.mean(dim=(2, 3)))


class Untraceable(Net):
    """Python control flow on the input: torch.fx cannot trace the top level."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() < 0:
            x = -x
        return super().forward(x)


def randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics, as after training (a fresh BN folds to the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.3, 3.0, generator=g)
                if m.affine:
                    m.weight.uniform_(0.5, 2.0, generator=g)
                    m.bias.normal_(0, 0.5, generator=g)
    return model.eval()


def make_net(seed: int = 0, cls: type[Net] = Net) -> Net:
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG left untouched
        torch.manual_seed(seed)
        net = cls()
    return randomise_bn(net, seed)


def test_weight_error_at_most_half_a_step_and_zeros_stay_zero():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (6, 4, 3, 3)).astype(np.float32)
    w[1] *= 1e-3  # a tiny channel keeps its own resolution
    w[rng.random(w.shape) < 0.4] = 0.0
    w[4] = 0.0  # a channel pruned away entirely
    qt = quantize_weight(torch.from_numpy(w))
    assert qt.q.dtype == np.int8 and qt.scale.dtype == np.float32
    assert qt.scale.shape == (6,)  # one scale per OUTPUT channel
    amax = np.abs(w).reshape(6, -1).max(axis=1)
    nonempty = amax > 0
    np.testing.assert_allclose(qt.scale[nonempty], amax[nonempty] / 127, rtol=1e-6)
    assert qt.scale[4] == 1.0 and not qt.q[4].any()
    deq = qt.dequantize().numpy()
    err = np.abs(deq - w).reshape(6, -1).max(axis=1)
    assert (err <= qt.scale / 2 * (1 + 1e-5)).all()
    assert (deq[w == 0] == 0).all() and (qt.q[w == 0] == 0).all()
    assert np.abs(qt.q).max() == 127 and qt.q.min() >= -127
    assert (np.abs(qt.q[nonempty]).reshape(nonempty.sum(), -1).max(axis=1) == 127).all()
    assert np.count_nonzero(qt.q[1]) > 0.5 * np.count_nonzero(w[1])  # per-tensor would zero it


def test_fold_batchnorm_matches_conv_bn_in_eval_mode():
    net = make_net(1)
    with torch.no_grad():
        net.features[0].weight[:, :, 1, 1] = 0.0  # pruned weights
    folded, pairs, methods = fold_batchnorm(net)
    assert sorted(pairs) == [("conv2", "bn2"), ("features.0", "features.1")]
    assert methods == {"": "fx"}
    assert isinstance(folded.features[1], nn.Identity) and isinstance(folded.bn2, nn.Identity)
    assert folded.features[0].bias is not None
    assert (folded.features[0].weight[:, :, 1, 1] == 0).all()
    x = torch.rand(4, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)
    assert isinstance(net.bn2, nn.BatchNorm2d)  # the original is untouched


def test_untraceable_models_fall_back_to_children_and_sequential_adjacency():
    net = make_net(2, Untraceable)
    pairs, methods = find_conv_bn_pairs(net)
    # the Sequential child is traced; the attribute pair (conv2, bn2) needs the top-level
    # graph, which fx cannot build here, so it is left unfolded (documented limitation)
    assert pairs == [("features.0", "features.1")]
    assert methods["features"] == "fx"

    class Weird(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    seq = randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Weird()), 3)
    pairs, methods = find_conv_bn_pairs(seq)
    assert pairs == [("0", "1")] and methods[""] == "sequential"
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    folded, _, _ = fold_batchnorm(net)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fold_batchnorm(seq)[0](x), seq(x), rtol=1e-5, atol=1e-5)


def test_quantized_state_holds_int8_weights_and_float32_biases():
    net = make_net(3)
    qs = quantize_model(net)
    assert set(qs.weights) == {"features.0.weight", "conv2.weight", "fc.weight"}
    assert {k: v.dtype for k, v in qs.floats.items()} == {
        "features.0.bias": np.float32,
        "conv2.bias": np.float32,
        "fc.bias": np.float32,
    }
    assert sorted(qs.folded) == [("conv2", "bn2"), ("features.0", "features.1")]
    model = dequantize(qs, model=net)
    for name, qt in qs.weights.items():
        assert torch.equal(model.state_dict()[name], qt.dequantize())
    report = quantized_size_report(qs)
    assert set(size_report(net)) <= set(report)
    nnz = sum(int(np.count_nonzero(qt.q)) for qt in qs.weights.values())
    biases = sum(int(np.count_nonzero(v)) for v in qs.floats.values())
    assert report["bytes"] == nnz + 4 * biases
    assert report["scales"]["count"] == 8 + 16 + 4  # listed, not counted


def test_activations_are_int8_and_layers_match_exact_integer_arithmetic():
    x = torch.randn(3, 5, 7, 7, generator=torch.Generator().manual_seed(0))
    xq = fake_quantize_activation(x, "per_sample")
    for i in range(3):
        step = x[i].abs().max() / 127
        levels = xq[i] / step
        torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
        assert (xq[i] - x[i]).abs().max() <= step / 2 + 1e-6
    net = make_net(4)
    qs = quantize_model(net)
    model = dequantize(qs, model=net)
    conv = model.conv2
    seen = {}
    conv.register_forward_hook(lambda m, a, out: seen.update(inp=a[0], out=out))
    h = make_net(4).features(torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        out = conv(h)
    ref = exact_int8_reference(conv, qs.weights["conv2.weight"], h)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert model.quantization["activations"] == "per_sample"


def test_per_sample_activation_ranges_make_predictions_batch_independent():
    model = quantized_model(make_net(5))
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    x[3] *= 50  # a loud clip must not coarsen the others' activation steps
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    per_tensor = dequantize(
        quantize_model(make_net(5), activations="per_tensor"), model=make_net(5)
    )
    with torch.no_grad():
        assert not torch.allclose(per_tensor(x)[:3], together[:3], atol=1e-4)


def test_accuracy_path_on_a_trained_stand_in():
    g = torch.Generator().manual_seed(0)
    n = 256
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 3, 8, 8, generator=g) * 0.5
    x[torch.arange(n), y % 3, :, :] += 0.5 + 0.5 * (y >= 3).float()[:, None, None]
    net = make_net(0).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend on a busy machine
    try:
        for _ in range(60):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    qnet = quantized_model(net)
    with torch.no_grad():
        pf, pq = net(x).argmax(1), qnet(x).argmax(1)
    acc_f, acc_q = (pf == y).float().mean().item(), (pq == y).float().mean().item()
    assert acc_f > 0.9
    assert acc_q > acc_f - 0.03 and (pf == pq).float().mean() > 0.95


def test_float16_option_and_float_members():
    net = make_net(6, Untraceable)  # bn2 stays a float BN here
    qs = quantize_model(net, float_dtype="float16")
    assert qs.floats["bn2.weight"].dtype == np.float16
    assert qs.floats["features.0.bias"].dtype == np.float32  # biases of int8 layers stay float32
    model = dequantize(qs, model=net)
    assert torch.equal(model.bn2.weight, torch.from_numpy(qs.floats["bn2.weight"]).float())
    rep = quantized_size_report(qs)
    layer = next(la for la in rep["layers"] if la["name"] == "bn2")
    assert layer["dtype"] == "float16" and layer["bytes"] == 2 * layer["nonzero"]
    fs = float_state(net)
    assert not fs.quantized
    fmodel = dequantize(fs, model=net)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fmodel(x), net(x))
    assert quantized_size_report(fs)["bytes"] == size_report(net)["bytes"]


def test_registry_sic_folds_every_bn_and_rebuilds_from_its_spec():
    sic = randomise_bn(build_model("sic", task="mtl", seed=0), 0)
    qs = quantize_model(sic)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in sic.modules())
    assert len(qs.folded) == n_bn == 15  # 13 trunk + 2 heads
    assert qs.arch == sic.spec
    a, b = dequantize(qs, model=sic), dequantize(qs)  # template vs registry rebuild
    x = torch.rand(2, 3, 64, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out_a, out_b, ref = a(x), b(x), sic(x)
    assert torch.equal(out_a, out_b)
    rel = ((out_a - ref).norm() / ref.norm()).item()
    assert rel < 0.05
    rep = quantized_size_report(qs)
    assert rep["params"] == sum(v.size for v in qs.floats.values()) + sum(
        q.q.size for q in qs.weights.values()
    )
    assert rep["kb"] < size_report(sic)["kb"] / 3.9  # int8 model is about a quarter
