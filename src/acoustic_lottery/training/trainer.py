"""The trainer: one model, one spec, resumable, bit-for-bit reproducible.

Why it is built this way:
* Θ0 (`init.pt`) is saved before any step: the lottery rewinds to it.
* Every random choice of a batch (shuffle, crop, SpecAugment, mixup, dropout) comes
  from seeds derived from (spec.seed, epoch, batch), and the learning rate is a pure
  function of the global step (`schedule.lr_at`). So a run killed anywhere and resumed
  from its last epoch checkpoint, or restarted at a late-rewinding step, reproduces the
  uninterrupted run exactly.
* Pruned weights stay exactly zero: their gradients are zeroed before each step and the
  mask is applied to the weights (and momentum buffers) after it, so neither momentum
  nor weight decay can revive them. Masks may also name BN running statistics (pruned
  BN channels): those are re-estimated by every train-mode forward, so they are zeroed
  after each step and again before every checkpoint. Every checkpoint carries the mask.
* Knowledge distillation: each teacher sees exactly the student's (cropped,
  SpecAugmented, mixed) batch. A fusion teacher (a 3-class model) turns the scene
  teacher into row 1's two-stage teacher: its super-class probabilities multiply the
  scene teacher's (`distill.two_stage_logits`), as the report's 10-class students had.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import resolve_device
from acoustic_lottery.faults import failpoint
from acoustic_lottery.features.store import FeatureFile, open_features
from acoustic_lottery.io import atomic_path, progress
from acoustic_lottery.labels import SUPER_CLASSES
from acoustic_lottery.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from acoustic_lottery.models.heads import split_heads
from acoustic_lottery.models.registry import ARCHS, build_model
from acoustic_lottery.training.distill import kd_loss, soft_cross_entropy, two_stage_logits
from acoustic_lottery.training.online_augment import crop_offsets, mixup, spec_augment
from acoustic_lottery.training.schedule import check_epochs, lr_at
from acoustic_lottery.training.spec import RUNTIME_KEYS, TrainSpec

__all__ = [
    "HISTORY_COLUMNS",
    "TrainData",
    "apply_masks",
    "check_masks",
    "derive_seed",
    "load_train_data",
    "memory_format",
    "resolve_device",
    "train",
]

log = logging.getLogger(__name__)

#: history.csv columns. No wall-clock time: results are byte-reproducible, timings go to
#: the log and to Snakemake's benchmark files.
HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "step", "lr_end", "loss", "train_acc")

# Stream tags of derive_seed: one independent random stream per purpose.
_SHUFFLE, _AUGMENT, _DROPOUT = 0, 1, 2


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (SeedSequence hashing: no correlated streams)."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(words[0]) << 31 ^ int(words[1])) & (2**63 - 1)


# ---------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """The training clips of all files, read on demand or held in memory.

    sources: one open `FeatureFile` per training file; clip j is row row[j] of
    sources[file[j]], with n_frames[j] frames. resident: per file, the whole float32
    array when the files fit under the spec's `resident_mb`, else None (read per
    batch). targets: head -> (N,) class indices.
    """

    sources: list[FeatureFile]
    resident: list[np.ndarray | None]
    file: np.ndarray
    row: np.ndarray
    n_frames: np.ndarray
    targets: dict[str, np.ndarray]
    in_channels: int
    n_freq: int
    files: list[Path]

    @property
    def n(self) -> int:
        return int(self.file.shape[0])

    @property
    def streaming(self) -> bool:
        return any(r is None for r in self.resident)

    def clips(self, idx: np.ndarray) -> list[np.ndarray]:
        """The (C, F, T_j) arrays of clips `idx`, in order; one read per file and run."""
        out: list[np.ndarray | None] = [None] * len(idx)
        files = self.file[idx]
        for f in np.unique(files):
            where = np.flatnonzero(files == f)
            rows = self.row[idx[where]]
            block = self.resident[f]
            arr = block if block is not None else self.sources[f].read_rows(rows)
            for k, w in enumerate(where):
                out[w] = arr[rows[k]] if block is not None else arr[k]
        return out  # type: ignore[return-value]


def load_train_data(spec: TrainSpec, train_files: Sequence[str | os.PathLike[str]]) -> TrainData:
    """Open the feature files and pick the labels of the spec's task.

    All files must have spec.feature_set and the same (C, F); their frame counts may
    differ only when clips are cropped (then every clip needs >= crop_frames frames).
    Features are read into memory only if they total at most spec.resident_mb MiB.
    """
    if not train_files:
        raise InputError("train: no training feature files given")
    sources: list[FeatureFile] = []
    file_idx, row_idx, frames = [], [], []
    targets: dict[str, list[np.ndarray]] = {h: [] for h in spec.heads}
    ref: tuple[Path, tuple[int, ...]] | None = None
    files = [Path(p) for p in train_files]
    for i, path in enumerate(files):
        fs = open_features(path)
        shape = fs.shape
        fset = fs.attrs.get("feature_set")
        if fset != spec.feature_set:
            raise InputError(
                f"train: {path}: attribute 'feature_set' is {fset!r}, expected "
                f"{spec.feature_set!r} (the spec's feature_set)"
            )
        if shape[0] == 0:
            raise InputError(f"train: {path}: no clips")
        if ref is None:
            ref = (path, shape)
        elif shape[1:3] != ref[1][1:3]:
            raise InputError(
                f"train: {path}: features have (C, F) = {tuple(shape[1:3])}, but {ref[0]} "
                f"has {ref[1][1:3]}; all training files must share channels and bands"
            )
        elif spec.crop_frames is None and shape[3] != ref[1][3]:
            raise InputError(
                f"train: {path}: clips have {shape[3]} frames, but {ref[0]} has {ref[1][3]}; "
                "set crop_frames to train on files of different lengths"
            )
        if spec.crop_frames is not None and shape[3] < spec.crop_frames:
            raise InputError(
                f"train: {path}: clips have {shape[3]} frames, fewer than "
                f"crop_frames={spec.crop_frames}"
            )
        for head in spec.heads:
            lab = np.asarray(fs.label10 if head == "scene" else fs.label3, dtype=np.int64)
            k = 10 if head == "scene" else 3
            bad = (lab < 0) | (lab >= k)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"train: {path}: row {j} ({fs.filename[j]}) has "
                    f"{'label10' if head == 'scene' else 'label3'}={int(lab[j])}, expected "
                    f"0..{k - 1} (training needs labelled clips)"
                )
            targets[head].append(lab)
        n = shape[0]
        sources.append(fs)
        file_idx.append(np.full(n, i, dtype=np.int64))
        row_idx.append(np.arange(n, dtype=np.int64))
        frames.append(np.full(n, shape[3], dtype=np.int64))
    assert ref is not None
    total = sum(fs.nbytes for fs in sources)
    if total <= spec.resident_mb * 2**20:
        resident: list[np.ndarray | None] = [fs.read_slice(0, len(fs)) for fs in sources]
        for fs in sources:
            fs.close()
    else:
        resident = [None] * len(sources)
        log.info(
            "train: %d MiB of features exceed resident_mb=%d: reading batches from %d file(s)",
            total // 2**20,
            spec.resident_mb,
            len(sources),
        )
    return TrainData(
        sources=sources,
        resident=resident,
        file=np.concatenate(file_idx),
        row=np.concatenate(row_idx),
        n_frames=np.concatenate(frames),
        targets={h: np.concatenate(v) for h, v in targets.items()},
        in_channels=int(ref[1][1]),
        n_freq=int(ref[1][2]),
        files=files,
    )


def _make_batch(
    data: TrainData,
    idx: np.ndarray,
    spec: TrainSpec,
    head_sizes: Mapping[str, int],
    gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Assemble one augmented batch: crop -> SpecAugment -> mixup, all from `gen`."""
    clips = data.clips(idx)
    if spec.crop_frames is not None:
        offsets = crop_offsets(data.n_frames[idx], spec.crop_frames, gen).tolist()
        length = spec.crop_frames
        parts = [c[:, :, o : o + length] for c, o in zip(clips, offsets)]
    else:
        parts = clips
    x = torch.from_numpy(np.stack(parts))
    if spec.specaug_freq > 0 or spec.specaug_time > 0:
        x = spec_augment(x, spec.specaug_freq, spec.specaug_time, gen)
    y = {
        h: F.one_hot(torch.from_numpy(data.targets[h][idx]), head_sizes[h]).float()
        for h in spec.heads
    }
    if spec.mixup_alpha > 0:
        x, y, _ = mixup(x, y, spec.mixup_alpha, gen)
    return x, y


class _Batches(torch.utils.data.Dataset):
    """Batch b of one epoch as a dataset item, so data-loader workers can build batches
    ahead of the step; every draw comes from (seed, epoch, b), whoever builds it."""

    def __init__(
        self,
        data: TrainData,
        spec: TrainSpec,
        head_sizes: Mapping[str, int],
        perm: np.ndarray,
        epoch: int,
    ) -> None:
        self.data, self.spec, self.head_sizes = data, spec, dict(head_sizes)
        self.perm, self.epoch = perm, epoch

    def __len__(self) -> int:
        return len(self.perm) // self.spec.batch_size

    def __getitem__(self, b: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        spec = self.spec
        idx = self.perm[b * spec.batch_size : (b + 1) * spec.batch_size]
        gen = torch.Generator().manual_seed(derive_seed(spec.seed, _AUGMENT, self.epoch, b))
        return _make_batch(self.data, idx, spec, self.head_sizes, gen)


def _batch_stream(
    batches: _Batches, first: int, workers: int, pin: bool
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Batches first..end of the epoch, built here (workers=0) or by worker processes."""
    order = range(first, len(batches))
    if workers == 0:
        return (batches[b] for b in order)
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=list(order),
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2,
        worker_init_fn=_worker_init,
    )
    return iter(loader)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the step uses the cores; a worker reads and augments


# --------------------------------------------------------------------------- masks


def _maskable(model: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors a mask may name: every parameter and every floating-point buffer.

    Floating buffers are the BatchNorm running statistics: a pruned BN channel (γ = β = 0,
    `pruning.scope` "all") outputs exactly 0 whatever its statistics, so they are zeroed
    too and the DCASE size rule stops counting them. Integer buffers (num_batches_tracked)
    are bookkeeping and never maskable.
    """
    out = dict(model.named_parameters())
    for name, buf in model.named_buffers():
        if buf.is_floating_point() and name not in out:
            out[name] = buf
    return out


def check_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor], source: str = "masks"
) -> dict[str, torch.Tensor]:
    """Validate masks against the model's parameters (and BN running buffers); CPU bool copies.

    InputError lists every name that is neither a parameter nor a floating-point buffer
    of the model, or the first wrong shape / dtype.
    """
    if not isinstance(masks, Mapping):
        raise InputError(
            f"{source}: expected a dict parameter name -> bool tensor, found {masks!r}"
        )
    params = _maskable(model)
    unknown = sorted(str(k) for k in masks if k not in params)
    if unknown:
        raise InputError(
            f"{source}: {len(unknown)} mask names are not parameters (or floating-point "
            f"buffers) of the model: {', '.join(unknown)} "
            f"(parameters: {', '.join(list(params)[:8])}, ...)"
        )
    out = {}
    for name, m in masks.items():
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            raise InputError(
                f"{source}: mask {name!r}: expected a bool tensor, found "
                f"{m.dtype if isinstance(m, torch.Tensor) else type(m).__name__}"
            )
        if m.shape != params[name].shape:
            raise InputError(
                f"{source}: mask {name!r}: shape {tuple(m.shape)} differs from the "
                f"parameter's {tuple(params[name].shape)}"
            )
        out[name] = m.detach().cpu().clone()
    return out


@torch.no_grad()
def apply_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Zero the pruned entries (and their momentum buffers, so nothing can revive them).

    Masked BN running buffers are zeroed too: every train-mode forward re-estimates them,
    so this runs after each optimizer step and before each checkpoint is written.
    ``masked_fill_`` rather than a multiplication gives +0.0 (never -0.0, never NaN).
    """
    tensors = _maskable(model)
    for name, m in masks.items():
        p = tensors[name]
        pruned = ~m.to(device=p.device)
        p.masked_fill_(pruned, 0.0)
        if optimizer is not None and isinstance(p, nn.Parameter):
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.masked_fill_(pruned.to(buf.device), 0.0)


def _mask_grads(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, m in masks.items():
        p = params.get(name)  # buffers (BN running statistics) have no gradient
        g = p.grad if p is not None else None
        if g is not None:
            g.masked_fill_(~m.to(device=g.device), 0.0)


# ---------------------------------------------------------------------- fingerprint


def digest(obj: Any) -> str:
    """sha256 of nested dicts/lists/tensors (order-independent for dict keys)."""
    h = hashlib.sha256()

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, Mapping):
            h.update(b"{")
            for k in sorted(o, key=str):
                h.update(repr(k).encode())
                walk(o[k])
            h.update(b"}")
        elif isinstance(o, list | tuple):
            h.update(b"[")
            for v in o:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(o).encode())

    walk(obj)
    return h.hexdigest()


def file_id(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# ---------------------------------------------------------------------------- train


def memory_format(device: torch.device, amp: str = "off") -> torch.memory_format:
    """channels_last on the CPU: oneDNN convolutions run about 1.5-2x faster in it
    (SIC, batch 32, 3x128x36, 2 threads); on CUDA only under mixed precision, where
    cuDNN's tensor-core kernels want it; the default layout otherwise."""
    if device.type == "cpu" or amp != "off":
        return torch.channels_last
    return torch.contiguous_format


_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast for amp "bf16"/"fp16"; nothing at all for "off" (float32, unchanged)."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[amp])


def _grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 has float32's range."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _cpu_state(obj: Any) -> Any:
    """Deep copy of an optimizer state with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, Mapping):
        return {k: _cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu_state(v) for v in obj)
    return obj


def _write_history(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    columns = list(HISTORY_COLUMNS)
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in columns})


def _load_teacher_model(
    path: str | os.PathLike[str],
    head: str,
    n_classes: int,
    spec: TrainSpec,
    in_channels: int,
    device: torch.device,
    what: str = "teacher",
) -> nn.Module:
    """A frozen eval-mode teacher that has `head` with `n_classes` and the student's input."""
    model, meta = load_model(path)
    t_heads = dict(model.heads)
    if head not in t_heads or t_heads[head] != n_classes:
        raise InputError(
            f"train: {what} {path}: has heads {model.heads}, expected a head "
            f"{head!r} with {n_classes} classes"
        )
    if meta.get("feature_set") != spec.feature_set or meta.get("in_channels") != in_channels:
        raise InputError(
            f"train: {what} {path}: trained on feature_set {meta.get('feature_set')!r} with "
            f"{meta.get('in_channels')} channels; the student gets {spec.feature_set!r} with "
            f"{in_channels}"
        )
    model.to(device, memory_format=memory_format(device, spec.amp)).eval()
    model.requires_grad_(False)
    return model


def _load_teachers(
    teachers: Mapping[str, str | os.PathLike[str]],
    spec: TrainSpec,
    head_sizes: Mapping[str, int],
    in_channels: int,
    device: torch.device,
) -> dict[str, nn.Module]:
    out = {}
    for head, path in teachers.items():
        if head not in head_sizes:
            raise InputError(
                f"train: teacher for head {head!r} ({path}), but the {spec.task!r} model has "
                f"heads {list(head_sizes)}"
            )
        out[head] = _load_teacher_model(path, head, head_sizes[head], spec, in_channels, device)
    return out


def _load_fusion_teacher(
    path: str | os.PathLike[str] | None,
    spec: TrainSpec,
    in_channels: int,
    device: torch.device,
) -> nn.Module | None:
    """The 3-class model fused two-stage into the scene teacher, or None."""
    if path is None:
        return None
    n_super = len(SUPER_CLASSES)
    return _load_teacher_model(
        path, "super", n_super, spec, in_channels, device, what="fusion teacher"
    )


def _state_dict_of(init_state: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept a plain state_dict or a whole checkpoint dict (its 'state_dict')."""
    if "state_dict" in init_state and isinstance(init_state["state_dict"], Mapping):
        return init_state["state_dict"]
    return init_state


def _build(spec: TrainSpec, in_channels: int) -> nn.Module:
    torch.manual_seed(spec.seed)
    try:
        model = build_model(spec.arch, task=spec.task, width=spec.width, in_channels=in_channels)
    except InputError as e:
        raise InputError(f"train spec: {e}") from e
    if spec.bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = spec.bn_momentum
    return model


def train(
    spec: TrainSpec,
    train_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    teachers: Mapping[str, str | os.PathLike[str]] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    init_state: Mapping[str, Any] | None = None,
    start_step: int = 0,
    optimizer_state: Mapping[str, Any] | None = None,
    keep_checkpoint: bool = False,
    teacher_fusion: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train `spec` on the feature files; write init.pt, final.pt and history.csv.

    teachers: head -> teacher checkpoint (needs spec.kd). teacher_fusion: a 3-class
    checkpoint fused two-stage into the scene teacher (soft targets P10 · P3[:, map],
    renormalised; needs a scene teacher). masks: parameter name -> bool
    tensor (pruned = False). init_state: weights to start from instead of the seeded
    initialisation (lottery rewinding; masks are applied to it). start_step /
    optimizer_state: continue the schedule and momentum from a late-rewinding snapshot.
    A checkpoint.pt of the same run (spec, files, teachers and fusion teacher, mask,
    init) is resumed; it
    is written after every epoch and removed once final.pt is written (it holds host paths
    and file times), unless keep_checkpoint. init.pt is written on every start, resumed or
    not, so a scheduler that deleted it with the other outputs of a killed job gets it back.
    """
    spec = TrainSpec.from_dict(spec) if not isinstance(spec, TrainSpec) else spec
    if spec.arch not in ARCHS:
        raise InputError(
            f"train spec: key 'arch': expected one of {list(ARCHS)}, found {spec.arch!r}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teachers = dict(teachers or {})
    if spec.kd is None and teachers:
        raise InputError(
            f"train: teachers given for {sorted(teachers)} but the spec has no 'kd' settings"
        )
    if spec.kd is not None and not teachers:
        raise InputError("train: the spec sets 'kd' but no teacher checkpoint was given")
    if teacher_fusion is not None and "scene" not in teachers:
        raise InputError(
            f"train: fusion teacher {teacher_fusion} is fused into the scene teacher's "
            f"probabilities, but no scene teacher was given (teachers: {sorted(teachers)})"
        )
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise InputError(f"train: start_step must be an integer >= 0, found {start_step!r}")
    device = resolve_device(spec.device)
    check_epochs(spec)

    t_start = time.perf_counter()
    data = load_train_data(spec, train_files)
    if data.n < spec.batch_size:
        raise InputError(
            f"train: {data.n} training clips in {[str(p) for p in data.files]}, fewer than "
            f"batch_size={spec.batch_size}"
        )
    steps_per_epoch = data.n // spec.batch_size  # last partial batch dropped (BN, mixup)
    total_steps = spec.epochs * steps_per_epoch
    if start_step > total_steps:
        raise InputError(f"train: start_step={start_step} is beyond the run's {total_steps} steps")
    if spec.rewind_step is not None and not start_step <= spec.rewind_step <= total_steps:
        raise InputError(
            f"train spec: key 'rewind_step': expected {start_step}..{total_steps} (the steps of "
            f"this run), found {spec.rewind_step}"
        )

    # Global RNG (weight init, dropout) is used inside fork_rng: the caller's is untouched.
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), _threads(spec.threads):
        return _run(
            spec,
            data,
            out,
            device=device,
            teachers=teachers,
            teacher_fusion=teacher_fusion,
            masks=masks,
            init_state=init_state,
            start_step=start_step,
            optimizer_state=optimizer_state,
            steps_per_epoch=steps_per_epoch,
            t_start=t_start,
            keep_checkpoint=keep_checkpoint,
        )


def _run(
    spec: TrainSpec,
    data: TrainData,
    out: Path,
    *,
    device: torch.device,
    teachers: Mapping[str, str | os.PathLike[str]],
    teacher_fusion: str | os.PathLike[str] | None,
    masks: Mapping[str, torch.Tensor] | None,
    init_state: Mapping[str, Any] | None,
    start_step: int,
    optimizer_state: Mapping[str, Any] | None,
    steps_per_epoch: int,
    t_start: float,
    keep_checkpoint: bool,
) -> dict[str, Any]:
    model = _build(spec, data.in_channels)
    if init_state is not None:
        try:
            model.load_state_dict(_state_dict_of(init_state), strict=True)
        except RuntimeError as e:
            raise InputError(
                f"train: init_state does not fit a {spec.arch!r} {spec.task!r} model of width "
                f"{spec.width}: {str(e).splitlines()[0]}"
            ) from e
    mask = check_masks(model, masks) if masks else {}
    head_sizes = dict(model.heads)
    if [h for h, _ in model.heads] != list(spec.heads):
        raise InputError(f"train: model heads {model.heads} do not match task {spec.task!r}")
    model.to(device, memory_format=memory_format(device, spec.amp))
    apply_masks(model, mask)
    teacher_models = _load_teachers(teachers, spec, head_sizes, data.in_channels, device)
    fusion_model = _load_fusion_teacher(teacher_fusion, spec, data.in_channels, device)

    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=spec.lr_max,
        momentum=spec.momentum,
        weight_decay=spec.weight_decay,
    )
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(dict(optimizer_state))
        except (ValueError, KeyError) as e:
            raise InputError(f"train: optimizer_state does not fit the model: {e}") from e
    apply_masks(model, mask, optimizer)

    scaler = _grad_scaler(device, spec.amp)
    fingerprint = {
        "spec": {k: v for k, v in spec.to_dict().items() if k not in RUNTIME_KEYS},
        "train_files": [file_id(p) for p in data.files],
        "teachers": {h: file_id(Path(p)) for h, p in sorted(teachers.items())},
        "mask": digest(mask) if mask else None,
        "init_state": digest(_state_dict_of(init_state)) if init_state is not None else None,
        "optimizer_state": digest(optimizer_state) if optimizer_state is not None else None,
        "start_step": start_step,
    }
    if teacher_fusion is not None:  # only then: runs without one keep their fingerprint
        fingerprint["teacher_fusion"] = file_id(Path(teacher_fusion))
    meta_base = {"feature_set": spec.feature_set, "spec": spec.to_dict()}
    extras: dict[str, Any] = {"mask": mask} if mask else {}
    paths = {
        "init": out / "init.pt",
        "checkpoint": out / "checkpoint.pt",
        "final": out / "final.pt",
        "history": out / "history.csv",
        "rewind": out / "rewind.pt" if spec.rewind_step is not None else None,
    }

    global_step = start_step
    history: list[dict[str, Any]] = []
    # Θ0 before any step, written whether or not the run resumes: a checkpoint only
    # carries the latest weights, and init.pt may have been deleted with the other
    # outputs of an interrupted job (Snakemake's rerun-incomplete does that).
    apply_masks(model, mask, optimizer)  # checkpoints never hold a revived value
    save_checkpoint(
        paths["init"],
        model,
        {**meta_base, "epoch": start_step // steps_per_epoch, "global_step": start_step},
        **extras,
    )
    resumed = _try_resume(paths["checkpoint"], fingerprint, model, optimizer, scaler)
    if resumed is not None:
        ck = resumed
        global_step = int(ck["global_step"])
        history = [dict(r) for r in ck.get("history", [])]
        apply_masks(model, mask, optimizer)
        log.info("resuming %s after epoch %d (step %d)", out, ck["epoch"], global_step)
        rewind_path = paths["rewind"]
        if rewind_path is not None and global_step >= spec.rewind_step and not rewind_path.exists():
            log.warning(
                "%s is missing and step %d is already past: the resumed run cannot "
                "recreate it (delete %s to train from the start)",
                paths["rewind"],
                spec.rewind_step,
                paths["checkpoint"],
            )
    elif spec.rewind_step == start_step:
        _save_rewind(
            paths["rewind"], model, optimizer, meta_base, extras, start_step, steps_per_epoch
        )

    first_epoch = global_step // steps_per_epoch
    for epoch in range(first_epoch, spec.epochs):
        t_epoch = time.perf_counter()
        row, global_step = _train_epoch(
            spec,
            data,
            model,
            optimizer,
            mask,
            teacher_models,
            head_sizes,
            device,
            fusion=fusion_model,
            scaler=scaler,
            epoch=epoch,
            global_step=global_step,
            steps_per_epoch=steps_per_epoch,
            rewind=(paths["rewind"], meta_base, extras),
        )
        history.append(row)
        log.info(
            "epoch %d/%d: loss %.4f, train acc %.3f, lr_end %.3g, %.1f s",
            epoch + 1,
            spec.epochs,
            row["loss"],
            row["train_acc"],
            row["lr_end"],
            time.perf_counter() - t_epoch,
        )
        apply_masks(model, mask, optimizer)
        save_checkpoint(
            paths["checkpoint"],
            model,
            {**meta_base, "epoch": epoch + 1, "global_step": global_step},
            optimizer=_cpu_state(optimizer.state_dict()),
            history=history,
            fingerprint=fingerprint,
            **({"scaler": scaler.state_dict()} if scaler is not None else {}),
            **extras,
        )
        failpoint("train.checkpoint")

    apply_masks(model, mask, optimizer)
    save_checkpoint(
        paths["final"],
        model,
        {**meta_base, "epoch": spec.epochs, "global_step": global_step},
        history=history,
        **extras,
    )
    _write_history(paths["history"], history)
    if not keep_checkpoint:
        paths["checkpoint"].unlink(missing_ok=True)
    seconds = time.perf_counter() - t_start
    return {
        "epochs": spec.epochs,
        "steps": global_step,
        "steps_per_epoch": steps_per_epoch,
        "final_loss": history[-1]["loss"] if history else None,
        "final_train_acc": history[-1]["train_acc"] if history else None,
        "seconds": seconds,
        "resumed_from_epoch": None if resumed is None else int(resumed["epoch"]),
        "device": str(device),
        "paths": {k: (str(v) if v is not None else None) for k, v in paths.items()},
    }


def _try_resume(
    path: Path,
    fingerprint: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any] | None:
    """Load checkpoint.pt into model, optimizer (and fp16 loss scaler) if it belongs to
    this very run."""
    if not path.exists():
        return None
    try:
        ck = load_checkpoint(path)
    except InputError as e:
        log.warning("ignoring unreadable %s, starting over: %s", path, e)
        return None
    if ck.get("fingerprint") != fingerprint:
        old = ck.get("fingerprint") or {}
        differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        log.warning(
            "%s belongs to a different run (differs in: %s); starting over",
            path,
            ", ".join(differ) or "fingerprint",
        )
        return None
    model.load_state_dict(ck["state_dict"])
    optimizer.load_state_dict(ck["optimizer"])
    if scaler is not None and isinstance(ck.get("scaler"), Mapping):
        scaler.load_state_dict(dict(ck["scaler"]))
    return ck


def _save_rewind(
    path: Path | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta_base: Mapping[str, Any],
    extras: Mapping[str, Any],
    global_step: int,
    steps_per_epoch: int,
) -> None:
    if path is None:
        return
    apply_masks(model, extras.get("mask", {}), optimizer)
    save_checkpoint(
        path,
        model,
        {**meta_base, "epoch": global_step // steps_per_epoch, "global_step": global_step},
        optimizer=_cpu_state(optimizer.state_dict()),
        **extras,
    )
    log.info("saved the late-rewinding snapshot %s at step %d", path, global_step)


def _head_losses(
    spec: TrainSpec,
    logits: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    teacher_logits: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    losses = {}
    for head in spec.heads:
        if spec.kd is not None and head in teacher_logits:
            losses[head] = kd_loss(
                logits[head],
                teacher_logits[head],
                targets[head],
                temperature=spec.kd.temperature,
                hard_weight=spec.kd.hard_weight,
                soft_weight=spec.kd.soft_weight,
                t2_scaling=spec.kd.t2_scaling,
            )
        else:
            losses[head] = soft_cross_entropy(logits[head], targets[head])
    return losses


def _train_epoch(
    spec: TrainSpec,
    data: TrainData,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    mask: Mapping[str, torch.Tensor],
    teachers: Mapping[str, nn.Module],
    head_sizes: Mapping[str, int],
    device: torch.device,
    *,
    fusion: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int,
    global_step: int,
    steps_per_epoch: int,
    rewind: tuple[Path | None, Mapping[str, Any], Mapping[str, Any]],
) -> tuple[dict[str, Any], int]:
    shuffle = torch.Generator().manual_seed(derive_seed(spec.seed, _SHUFFLE, epoch))
    perm = torch.randperm(data.n, generator=shuffle).numpy()
    first = global_step - epoch * steps_per_epoch
    weights = spec.mtl_weights if spec.task == "mtl" else {h: 1.0 for h in spec.heads}
    sums = {
        "loss": 0.0,
        **{f"loss_{h}": 0.0 for h in spec.heads},
        **{f"acc_{h}": 0.0 for h in spec.heads},
    }
    lr = spec.lr_max
    model.train()
    batches = range(first, steps_per_epoch)
    fmt = memory_format(device, spec.amp)
    stream = _batch_stream(
        _Batches(data, spec, head_sizes, perm, epoch),
        first,
        spec.workers,
        pin=device.type == "cuda",
    )
    for b in progress(batches, desc=f"epoch {epoch + 1}/{spec.epochs}", total=len(batches)):
        x, y = next(stream)
        lr = lr_at(global_step, steps_per_epoch, spec)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = {h: t.to(device, non_blocking=True) for h, t in y.items()}
        torch.manual_seed(derive_seed(spec.seed, _DROPOUT, epoch, b))  # dropout
        with _autocast(device, spec.amp):
            logits = split_heads(model(x), model.heads)
            with torch.no_grad():
                t_logits = {h: split_heads(t(x), t.heads)[h] for h, t in teachers.items()}
                if fusion is not None:  # row 1's two-stage teacher: P10 · P3[:, map]
                    z3 = split_heads(fusion(x), fusion.heads)["super"]
                    t_logits["scene"] = two_stage_logits(t_logits["scene"], z3)
        logits = {h: z.float() for h, z in logits.items()}  # losses in float32
        t_logits = {h: z.float() for h, z in t_logits.items()}
        losses = _head_losses(spec, logits, y, t_logits)
        loss = sum(weights[h] * losses[h] for h in spec.heads)
        if not torch.isfinite(loss):
            raise InputError(
                f"train: the loss became {loss.item()} at epoch {epoch + 1}, step {global_step} "
                f"(lr {lr:.3g}): lower lr_max or check the features for NaN/inf"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            _mask_grads(model, mask)
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            loss.backward()
            _mask_grads(model, mask)
            optimizer.step()
        apply_masks(model, mask, optimizer)
        global_step += 1
        failpoint("train.step")
        if rewind[0] is not None and spec.rewind_step == global_step:
            _save_rewind(
                rewind[0], model, optimizer, rewind[1], rewind[2], global_step, steps_per_epoch
            )
        sums["loss"] += float(loss.detach())
        for h in spec.heads:
            sums[f"loss_{h}"] += float(losses[h].detach())
            hit = logits[h].argmax(1) == y[h].argmax(1)
            sums[f"acc_{h}"] += float(hit.float().mean())
    n = max(1, len(batches))
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": global_step,
        "lr_end": lr,
        "loss": sums["loss"] / n,
        "train_acc": sums[f"acc_{spec.heads[0]}"] / n,
    }
    if len(spec.heads) > 1:
        for h in spec.heads:
            row[f"loss_{h}"] = sums[f"loss_{h}"] / n
            row[f"acc_{h}"] = sums[f"acc_{h}"] / n
    return row, global_step
