"""From a float checkpoint to a deployable int8 artifact, and predictions from that artifact.

Why this module: the int8 numbers in the report must come from the int8 model itself,
not from the float model. `quantize_checkpoint` turns a (possibly pruned) checkpoint into
one artifact file (`quantization.artifact`), `predict_artifact` runs that file over a
feature file and writes the same prediction files as the float `predict` (so `evaluate`
scores the int8 model), and `predict_clips` classifies wav files with nothing but the
artifact: the artifact carries the feature configuration its model was trained on.

Feature configuration: stored per model in the artifact's manifest (the model state's
`meta["features"]`): `feature_set`, the full extractor `params` (as in feature files),
`sample_rate` and `seconds` (clip length the features were computed at, None = as
recorded). It is taken from the `--calibration` feature file when one is given (its
attributes are exactly what the model was trained on), else from the published defaults
of the checkpoint's feature set. Spectrum-correction gains of augmented copies are
training data, not part of the model, and are not stored.

A wav file at another sample rate than the artifact's is an error, not a resampling:
a deployed classifier should not silently change the signal it was validated on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import progress
from acoustic_lottery.labels import SCENE_TO_SUPER
from acoustic_lottery.quantization.artifact import (
    MAGIC,
    LoadedSystem,
    load_artifact,
    save_artifact,
)
from acoustic_lottery.quantization.int8 import quantize_model, quantized_size_report

__all__ = [
    "BOUND_FIXED_BYTES",
    "BOUND_RATIO",
    "ClipPrediction",
    "artifact_feature_specs",
    "feature_spec",
    "feature_spec_from_file",
    "format_clip_predictions",
    "is_artifact",
    "predict_artifact",
    "predict_clips",
    "quantize_checkpoint",
    "size_summary",
]

log = logging.getLogger(__name__)

#: The issue's bound: bytes on disk <= BOUND_RATIO x DCASE bytes + a fixed header part
#: (file header + manifest) under BOUND_FIXED_BYTES.
BOUND_RATIO = 1.10
BOUND_FIXED_BYTES = 2048

_SPEC_KEYS = ("feature_set", "params", "sample_rate", "seconds", "source")


# ------------------------------------------------------------------ feature specs


def _config(feature_set: str, params: Mapping[str, Any] | None, where: str) -> Any:
    from acoustic_lottery.features.extract import make_config

    try:
        return make_config(feature_set, params or {}, source=where)
    except InputError as e:
        raise InputError(f"{where}: {e}") from e


def feature_spec(
    feature_set: str,
    params: Mapping[str, Any] | None = None,
    *,
    seconds: float | None = None,
    source: str = "defaults",
) -> dict[str, Any]:
    """The JSON description of a model's input features stored in an artifact.

    params: extractor overrides (None = the published settings); they are completed to
    the full config so the artifact does not depend on future default changes.
    """
    cfg = _config(feature_set, params, f"feature spec ({source})")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise InputError(
                f"feature spec ({source}): seconds must be a positive number or null, "
                f"found {seconds!r}"
            )
        seconds = float(seconds)
    return {
        "feature_set": feature_set,
        "params": cfg.to_dict(),
        "sample_rate": int(cfg.sample_rate),
        "seconds": seconds,
        "source": source,
    }


def feature_spec_from_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The feature spec recorded in a feature file's attributes (no data is read)."""
    from acoustic_lottery.features.store import read_feature_attrs

    path = Path(path)
    attrs = read_feature_attrs(path)
    fset = attrs.get("feature_set")
    params = attrs.get("params")
    if not isinstance(params, Mapping):
        raise InputError(
            f"{path}: attribute 'params' must be a JSON object of the feature config, "
            f"found {params!r}"
        )
    seconds = attrs.get("seconds")
    if isinstance(seconds, np.generic):
        seconds = seconds.item()
    if isinstance(seconds, float) and not np.isfinite(seconds):
        seconds = None  # h5py cannot store None; writers may use NaN
    return feature_spec(str(fset), params, seconds=seconds, source=f"features {path.name}")


def _check_spec(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or any(k not in spec for k in _SPEC_KEYS[:3]):
        raise InputError(
            f"{where}: feature spec must be an object with keys {list(_SPEC_KEYS)}, "
            f"found {spec!r:.200}"
        )
    cfg = _config(str(spec["feature_set"]), spec["params"], where)
    if spec["sample_rate"] != cfg.sample_rate:
        raise InputError(
            f"{where}: feature spec sample_rate {spec['sample_rate']!r} differs from its "
            f"params' {cfg.sample_rate}"
        )
    seconds = spec.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0
    ):
        raise InputError(f"{where}: feature spec seconds must be > 0 or null, found {seconds!r}")
    return dict(spec)


def artifact_feature_specs(loaded: LoadedSystem) -> dict[str, dict[str, Any] | None]:
    """Model name -> the feature spec its artifact stores (None when it stores none)."""
    out: dict[str, dict[str, Any] | None] = {}
    for name, state in loaded.states.items():
        spec = state.meta.get("features")
        out[name] = (
            None
            if spec is None
            else _check_spec(spec, f"artifact {loaded.path}: model {name!r} features")
        )
    return out


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with the artifact magic (detection by content, not name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# ------------------------------------------------------------------- quantize


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def size_summary(info: Mapping[str, Any]) -> dict[str, Any]:
    """Bytes on disk against the DCASE size, and whether the issue's bound holds.

    fixed = file header + manifest (JSON tables, independent of the weights' values);
    the bound: fixed < BOUND_FIXED_BYTES and payload <= BOUND_RATIO x DCASE bytes.
    """
    dcase = int(info["dcase_bytes"])
    fixed = int(info["header_bytes"]) + int(info["manifest_bytes"])
    payload = int(info["payload_bytes"])
    return {
        "dcase_bytes": dcase,
        "dcase_kb": dcase / 1024,
        "file_bytes": int(info["file_bytes"]),
        "file_kb": int(info["file_bytes"]) / 1024,
        "fixed_bytes": fixed,
        "payload_bytes": payload,
        "breakdown": dict(info["breakdown"]),
        "ratio": int(info["file_bytes"]) / dcase if dcase else float("inf"),
        "payload_ratio": payload / dcase if dcase else float("inf"),
        "bound": f"file <= {BOUND_RATIO} x DCASE bytes + fixed part < {BOUND_FIXED_BYTES} B",
        "within_bound": bool(fixed < BOUND_FIXED_BYTES and payload <= BOUND_RATIO * dcase),
    }


def _apply_checkpoint_mask(model: torch.nn.Module, meta: Mapping[str, Any], where: str) -> dict:
    """Hold pruned weights at exactly 0 (they already are when the trainer wrote them)."""
    from acoustic_lottery.training.trainer import apply_masks, check_masks

    raw = meta.get("mask")
    if raw is None:
        return {"present": False}
    masks = check_masks(model, raw, source=f"{where}: key 'mask'")
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    violations = sum(
        int(torch.count_nonzero(tensors[n].detach()[~m]).item()) for n, m in masks.items()
    )
    if violations:
        log.warning("%s: %d pruned weights were not 0; set to 0 from the mask", where, violations)
    apply_masks(model, masks)
    total = sum(int(m.numel()) for m in masks.values())
    kept = sum(int(m.sum().item()) for m in masks.values())
    return {
        "present": True,
        "tensors": len(masks),
        "values": total,
        "kept": kept,
        "sparsity": 1.0 - kept / total if total else 0.0,
        "violations": violations,
    }


@torch.no_grad()
def _agreement(
    model: torch.nn.Module,
    qmodel: torch.nn.Module,
    calibration: Path,
    *,
    max_clips: int,
    seed: int,
    batch_size: int,
) -> dict[str, Any]:
    """Float vs int8 on a seeded subset of a feature file: top-1 agreement, accuracies."""
    from acoustic_lottery.models.heads import split_heads
    from acoustic_lottery.quantization.onnx_export import read_feature_rows

    rows = read_feature_rows(calibration, max_clips=max_clips, seed=seed)
    zf, zq = [], []
    starts = range(0, len(rows.x), batch_size)
    for s in progress(starts, desc=f"int8 check {calibration.name}", total=len(starts)):
        xb = torch.from_numpy(np.ascontiguousarray(rows.x[s : s + batch_size]))
        zf.append(model(xb).float())
        zq.append(qmodel(xb).float())
    k = sum(n for _, n in model.heads)
    zf_all = torch.cat(zf) if zf else torch.zeros(0, k)
    zq_all = torch.cat(zq) if zq else torch.zeros(0, k)
    heads: dict[str, Any] = {}
    for head, f_logits in split_heads(zf_all, model.heads).items():
        q_logits = split_heads(zq_all, model.heads)[head]
        pf, pq = torch.softmax(f_logits.double(), 1), torch.softmax(q_logits.double(), 1)
        yf, yq = pf.argmax(1).numpy(), pq.argmax(1).numpy()
        entry: dict[str, Any] = {
            "agreement": float((yf == yq).mean()) if len(yf) else None,
            "max_abs_prob_diff": float((pf - pq).abs().max()) if len(yf) else None,
        }
        labels = rows.label10 if head == "scene" else rows.label3 if head == "super" else None
        if labels is not None and len(labels) and (labels >= 0).all():
            entry["float_accuracy"] = float((yf == labels).mean())
            entry["int8_accuracy"] = float((yq == labels).mean())
        heads[head] = entry
    return {"features": str(calibration), "n": len(rows.x), "seed": seed, "heads": heads}


def quantize_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    calibration: str | os.PathLike[str] | None = None,
    max_clips: int = 256,
    seed: int = 0,
    batch_size: int = 32,
    float_dtype: str = "float32",
) -> dict[str, Any]:
    """Float (possibly pruned) checkpoint -> one int8 artifact file; returns a size report.

    calibration: a feature file of the model's features. Dynamic-range int8 needs no
    calibration statistics; the file gives the exact feature configuration to store and
    a float-vs-int8 check on `max_clips` clips drawn with `seed`.
    """
    from acoustic_lottery.models.checkpoint import load_model
    from acoustic_lottery.models.size import size_report

    checkpoint, out = Path(checkpoint), Path(out)
    model, meta = load_model(checkpoint)
    where = f"quantize {checkpoint}"
    mask_info = _apply_checkpoint_mask(model, meta, f"checkpoint {checkpoint}")
    ckpt_fset = meta.get("feature_set")
    if calibration is not None:
        calibration = Path(calibration)
        features = feature_spec_from_file(calibration)
        if ckpt_fset is not None and features["feature_set"] != ckpt_fset:
            raise InputError(
                f"{where}: calibration features {calibration} are feature_set "
                f"{features['feature_set']!r}, the model was trained on {ckpt_fset!r}"
            )
    else:
        if ckpt_fset is None:
            raise InputError(f"{where}: the checkpoint names no feature_set; pass --calibration")
        features = feature_spec(str(ckpt_fset), source="defaults")
        log.warning(
            "%s: no calibration feature file; storing the default %s feature settings "
            "(pass --calibration to store the ones the model was trained on)",
            where,
            ckpt_fset,
        )
    cfg = _config(features["feature_set"], features["params"], where)
    if int(meta["in_channels"]) != cfg.n_channels:
        raise InputError(
            f"{where}: the model takes {meta['in_channels']} input channels, the "
            f"{features['feature_set']} features give {cfg.n_channels}"
        )
    qs = quantize_model(model, float_dtype=float_dtype)
    qs.meta.update(
        features=features,
        source={
            "checkpoint": str(checkpoint),
            "sha256": _sha256(checkpoint),
            "epoch": meta.get("epoch"),
            "global_step": meta.get("global_step"),
        },
        mask=mask_info,
    )
    name = str(meta.get("arch", "model"))
    info = save_artifact(out, qs, name=name)
    int8_size = quantized_size_report(qs)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "artifact": str(out),
        "arch": qs.arch,
        "features": features,
        "mask": mask_info,
        "float_dcase_kb": float(size_report(model)["kb"]),
        "int8": {
            k: v
            for k, v in int8_size.items()
            if k in ("params", "nonzero", "bytes", "kb", "sparsity", "rule")
        },
        "size": size_summary(info),
        # the artifact stores BN folded into the conv biases: its DCASE size is that one
        "size_kb_bn_folded": int8_size["kb"],
        "folded_bn": len(qs.folded),
        "int8_layers": len(qs.weights),
        "calibration": None,
    }
    if calibration is not None:
        from acoustic_lottery.quantization.int8 import dequantize

        report["calibration"] = _agreement(
            model,
            dequantize(qs, model=model),
            calibration,
            max_clips=max_clips,
            seed=seed,
            batch_size=batch_size,
        )
    return report


# ------------------------------------------------------------ predict (features)


def _feature_mismatch(stored: Mapping[str, Any], attrs: Mapping[str, Any], where: str) -> None:
    fset = attrs.get("feature_set")
    if fset != stored["feature_set"]:
        raise InputError(
            f"{where}: the features are feature_set {fset!r}, the artifact's model was "
            f"quantized for {stored['feature_set']!r}"
        )
    params = attrs.get("params")
    if not isinstance(params, Mapping):
        return
    mine = _config(stored["feature_set"], stored["params"], where)
    theirs = _config(str(fset), params, where)
    if mine != theirs:
        diff = {
            f.name: (getattr(mine, f.name), getattr(theirs, f.name))
            for f in dataclasses.fields(mine)
            if getattr(mine, f.name) != getattr(theirs, f.name)
        }
        raise InputError(
            f"{where}: feature params differ from the artifact's (artifact, file): {diff}; "
            "re-create the artifact with `quantize --calibration` on these features"
        )


def _class_names(loaded: LoadedSystem, head: str, k: int) -> list[str]:
    names = loaded.class_names.get(head)
    if names is not None and len(names) == k:
        return list(names)
    from acoustic_lottery.labels import class_names as task_class_names

    default = task_class_names(head) if head in ("scene", "super") else []
    return default if len(default) == k else [f"class{i}" for i in range(k)]


def _resolve_outs(
    heads: Sequence[str],
    out: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    where: str,
) -> dict[str, Path]:
    if isinstance(out, Mapping):
        outs = {str(h): Path(p) for h, p in out.items()}
        unknown = sorted(set(outs) - set(heads))
        if unknown or not outs:
            raise InputError(
                f"{where}: output heads {unknown or '(none)'} are not outputs of this artifact "
                f"(heads: {list(heads)})"
            )
        return outs
    if len(heads) == 1:
        return {heads[0]: Path(out)}
    raise InputError(
        f"{where}: the model has heads {list(heads)}; name the head of each output "
        "(--head and/or --out-super)"
    )


def predict_artifact(
    artifact: str | os.PathLike[str],
    features: str | os.PathLike[str],
    out: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run an int8 artifact over a feature file; write prediction files like `predict`.

    A one-model artifact writes one file per requested head (logits included); a
    multi-member system writes its combined output (task `spec.task`, no logits).
    Returns head -> Predictions as written.
    """
    from acoustic_lottery.evaluation.predict import (
        Predictions,
        resolve_device,
        write_predictions,
    )
    from acoustic_lottery.features.store import open_features
    from acoustic_lottery.models.heads import split_heads

    artifact, features = Path(artifact), Path(features)
    where = f"predict {artifact}"
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"{where}: batch_size must be an integer >= 1, found {batch_size!r}")
    loaded = load_artifact(artifact)
    specs = artifact_feature_specs(loaded)
    single = len(loaded.spec.members) == 1  # else: the system's combined output only
    model0 = loaded.models[loaded.spec.models[0]]
    heads = [h for h, _ in getattr(model0, "heads", [])] if single else []
    heads = heads or [loaded.spec.task]
    outs = _resolve_outs(heads, out, where)

    fs = open_features(features)  # read batch by batch: memory of a batch, not the file
    for name, spec in specs.items():
        if spec is not None:
            _feature_mismatch(spec, fs.attrs, f"{where}: features {features}, model {name!r}")
        arch = loaded.states[name].arch or {}
        channels = arch.get("in_channels")
        if channels is not None and fs.shape[1] != channels:
            raise InputError(
                f"{where}: features {features} have shape {fs.shape}, expected "
                f"(N, {channels}, F, T) for model {name!r}"
            )
    dev = resolve_device(device)
    for m in loaded.models.values():
        m.to(dev)
    n = len(fs)
    starts = range(0, n, batch_size)
    parts: list[np.ndarray] = []
    with fs, torch.inference_mode():
        for s in progress(starts, desc=f"predict int8 {features.name}", total=len(starts)):
            xb = torch.from_numpy(fs.read_slice(s, s + batch_size)).to(dev)
            if single:
                parts.append(model0(xb).float().cpu().numpy())
            else:
                parts.append(loaded.predict(xb))
    model_heads = getattr(model0, "heads", None) if single else None
    k_total = (
        sum(k for _, k in model_heads) if model_heads else len(loaded.class_names.get(heads[0], []))
    )
    stacked = np.concatenate(parts) if parts else np.zeros((0, k_total), np.float32)
    if model_heads:
        per_head = {
            h: (z.numpy(), torch.softmax(z.double(), dim=1).float().numpy())
            for h, z in split_heads(torch.from_numpy(stacked), model_heads).items()
        }
    elif single:
        per_head = {
            heads[0]: (stacked, torch.softmax(torch.from_numpy(stacked).double(), 1).numpy())
        }
    else:
        per_head = {heads[0]: (None, stacked)}
    state0 = loaded.states[loaded.spec.models[0]]
    results: dict[str, Any] = {}
    for head, path in outs.items():
        logits, probs = per_head[head]
        label = fs.label10 if head == "scene" else fs.label3
        pred = Predictions(
            probs=probs,
            logits=logits,
            label=np.asarray(label, dtype=np.int64),
            device=fs.device,
            filename=fs.filename,
            class_names=_class_names(loaded, head, probs.shape[1]),
            task=head,
            source={
                "kind": "int8_artifact" if single and state0.quantized else "artifact",
                "artifact": str(artifact),
                "system": loaded.spec.to_dict(),
                "arch": (state0.arch or {}).get("arch") if single else None,
                "model_task": (state0.arch or {}).get("task") if single else None,
                "head": head,
                "activations": state0.activations if single else None,
                "checkpoint": state0.meta.get("source") if single else None,
                "features": str(features),
                "feature_set": fs.attrs.get("feature_set"),
                "split": fs.attrs.get("split"),
                "copy": fs.attrs.get("copy"),
            },
        )
        write_predictions(path, pred)
        results[head] = pred
    return results


# -------------------------------------------------------------- predict (audio)


@dataclass
class ClipPrediction:
    """One clip's class: scene (None for a super-class-only model), group, probabilities."""

    path: Path
    scene: str | None
    group: str
    task: str
    class_names: list[str]
    probs: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "scene": self.scene,
            "group": self.group,
            "task": self.task,
            "probs": {c: float(p) for c, p in zip(self.class_names, self.probs)},
        }


def _check_clip(path: Path, expected_rate: int, where: str) -> None:
    import soundfile as sf

    if not path.is_file():
        raise InputError(f"{where}: clip {path}: no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as e:
        raise InputError(f"{where}: clip {path}: not a readable audio file ({e})") from e
    if int(info.samplerate) != expected_rate:
        raise InputError(
            f"{where}: clip {path}: sample rate {int(info.samplerate)} Hz, the model expects "
            f"{expected_rate} Hz (stored in the artifact); resample the file first"
        )
    if info.frames == 0:
        raise InputError(f"{where}: clip {path}: the audio file contains no samples")


def predict_clips(
    artifact: str | os.PathLike[str],
    clips: Sequence[str | os.PathLike[str]],
) -> list[ClipPrediction]:
    """Classify wav files with the artifact alone (features computed as stored in it).

    Every clip is checked (readable audio at the stored sample rate) before any is
    classified, so a bad file fails the call with one clear InputError.
    """
    from acoustic_lottery.data.audio import load_audio
    from acoustic_lottery.features.extract import build_extractor

    artifact = Path(artifact)
    where = f"predict {artifact}"
    if not clips:
        raise InputError(f"{where}: no clips given")
    loaded = load_artifact(artifact)
    specs = artifact_feature_specs(loaded)
    missing = [n for n, s in specs.items() if s is None]
    if missing:
        raise InputError(
            f"{where}: the artifact stores no feature configuration for model(s) {missing}; "
            "re-create it with `acoustic-lottery quantize`"
        )
    keys = {n: json.dumps(s, sort_keys=True) for n, s in specs.items()}
    rates = {int(s["sample_rate"]) for s in specs.values()}  # type: ignore[index]
    if len(rates) != 1:
        raise InputError(f"{where}: the system's models expect different sample rates {rates}")
    rate = rates.pop()
    paths = [Path(c) for c in clips]
    for p in paths:
        _check_clip(p, rate, where)
    extractors: dict[str, Any] = {}
    for name, spec in specs.items():
        if keys[name] not in extractors:
            cfg = _config(spec["feature_set"], spec["params"], where)  # type: ignore[index]
            extractors[keys[name]] = (build_extractor(spec["feature_set"], cfg), spec)  # type: ignore[index]
    task = loaded.spec.task
    results = []
    with torch.inference_mode():
        for p in progress(paths, desc="predict clips", total=len(paths)):
            inputs: dict[str, torch.Tensor] = {}
            cache: dict[str, torch.Tensor] = {}
            for name in loaded.spec.models:
                key = keys[name]
                if key not in cache:
                    extractor, spec = extractors[key]
                    y = load_audio(p, sample_rate=rate, seconds=spec["seconds"])
                    cache[key] = extractor(torch.from_numpy(y)[None])
                inputs[name] = cache[key]
            probs = loaded.predict(inputs)[0]
            names = _class_names(loaded, task, probs.shape[0])
            top = names[int(np.argmax(probs))]
            if task == "scene":
                scene: str | None = top
                group = SCENE_TO_SUPER.get(top, "unknown")
            else:
                scene, group = None, top
            results.append(
                ClipPrediction(
                    path=p, scene=scene, group=group, task=task, class_names=names, probs=probs
                )
            )
    return results


def format_clip_predictions(results: Sequence[ClipPrediction]) -> str:
    """Tab-separated table: clip, scene, group, one probability column per class."""
    if not results:
        return ""
    names = results[0].class_names
    lines = ["\t".join(["clip", "scene", "group", *names])]
    for r in results:
        cells = [str(r.path), r.scene or "-", r.group, *(f"{p:.4f}" for p in r.probs)]
        lines.append("\t".join(cells))
    return "\n".join(lines)
