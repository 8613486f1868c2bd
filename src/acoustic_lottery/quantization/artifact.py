"""A deployable single-file artifact of a (pruned, int8) system, readable without pickle.

Layout (all integers little-endian):

    offset 0   8 bytes   magic b"ALOTTERY"
           8   uint16    format version (1)
          10   uint16    flags (bit 0: manifest is zlib-compressed)
          12   uint32    manifest length in bytes (as stored)
          16   uint64    payload length in bytes
          24   32 bytes  SHA-256 of the stored manifest bytes
          56   manifest  JSON (UTF-8): system spec, class names, per model its arch spec,
                         folded (conv, BN) pairs, activation mode and tensor table, and the
                         SHA-256 of the payload
          ...  payload   the tensors, back to back

Tensor table entries: {name, shape, dtype, encoding, offset, length, nnz, mask, ...}.
Quantized weights ("int8_per_channel") store their non-zero int8 values, a mask of where
they are, and the float32 scales of the output channels that have any non-zero weight
(an all-zero channel's scale is 1.0 by construction). Other tensors ("dense" or
"sparse") store all values, or the non-zero ones plus a mask, whichever is smaller.
A mask is "all" / "empty" (no bytes), a bitmap (numpy.packbits, 1 bit per value), or
"rice": the gaps between consecutive non-zeros Golomb-Rice coded with the parameter k that
makes it smallest, as two bit-packed streams (unary quotients, k-bit remainders). At 99 %
sparsity a bitmap costs 12.5 bits per non-zero; Rice about 9, near the entropy of a
random position (8.6 bits at 99.3 %). Each tensor gets the smallest encoding.

Why the size differs from the DCASE figure: the rule counts parameter values only. The
file also holds the positions of the non-zeros (masks), the per-channel scales and the
manifest. `save_artifact` returns the breakdown. Dense models land within a few per cent of
the DCASE figure (SIC: 132,134 B file for 127,508 B, 1.036 x); at 99.3 % sparsity the
positions (about 1 byte per non-zero, at the entropy floor of random positions) and the
scales (4 bytes per non-empty channel) cost as much as the int8 values themselves (SIC:
6,589 B file for 2,845 B), an overhead the DCASE rule does not see (docs/quantization.md).

Safety: reading never executes anything from the file (no pickle, no torch.load): a fixed
header, JSON and raw little-endian arrays. Every inconsistency (truncation, wrong magic,
manifest checksum or JSON, table entries outside the payload, payload SHA-256 mismatch,
lengths that do not fit the encoding) raises InputError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acoustic_lottery import __version__
from acoustic_lottery.errors import InputError
from acoustic_lottery.faults import failpoint
from acoustic_lottery.io import atomic_path
from acoustic_lottery.labels import class_names as task_class_names
from acoustic_lottery.labels import super_index_map
from acoustic_lottery.quantization.int8 import (
    ACTIVATION_MODES,
    QuantizedState,
    QuantizedTensor,
    dequantize,
    quantized_size_report,
)
from acoustic_lottery.systems.ensemble import MemberSpec, SystemSpec

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "DeployableSystem",
    "LoadedSystem",
    "decode_mask",
    "encode_mask",
    "inspect_artifact",
    "load_artifact",
    "pack_container",
    "save_artifact",
    "unpack_container",
]

MAGIC = b"ALOTTERY"
FORMAT_VERSION = 1
FORMAT_NAME = "acoustic-lottery-artifact"
_HEADER = struct.Struct("<8sHHIQ32s")
HEADER_BYTES = _HEADER.size  # 56
_FLAG_ZLIB = 1
#: A manifest larger than this (after decompression) is refused: no decompression bombs.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

#: What `load_artifact` expected, in the error for a file that is no artifact.
EXPECTED = (
    f"expected an int8 artifact written by `acoustic-lottery quantize`, starting with {MAGIC!r}"
)

_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8")
}
_DTYPES["bool"] = np.dtype("bool")


# ------------------------------------------------------------------------ masks


def _nonzero_mask(arr: np.ndarray) -> np.ndarray:
    """Flat bool mask of values whose bit pattern is not all zero (-0.0 is kept exactly)."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.dtype.kind == "f":
        return flat.view(np.dtype(f"u{flat.dtype.itemsize}")) != 0
    return flat != 0


def _rice_cost(gaps: np.ndarray, k: int) -> int:
    nnz = gaps.size
    return math.ceil((int((gaps >> k).sum()) + nnz) / 8) + math.ceil(nnz * k / 8)


def encode_mask(mask: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """The smallest encoding of a flat bool mask: (descriptor, bytes)."""
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    n, nnz = mask.size, int(mask.sum())
    if nnz == n:
        return {"kind": "all"}, b""
    if nnz == 0:
        return {"kind": "empty"}, b""
    bitmap = np.packbits(mask).tobytes()
    pos = np.flatnonzero(mask).astype(np.int64)
    gaps = np.diff(pos, prepend=-1) - 1
    kmax = max(0, int(gaps.max()).bit_length())
    k = min(range(kmax + 1), key=lambda kk: _rice_cost(gaps, kk))
    if _rice_cost(gaps, k) >= len(bitmap):
        return {"kind": "bitmap", "bytes": len(bitmap)}, bitmap
    quot = gaps >> k
    bits = np.ones(int(quot.sum()) + nnz, dtype=np.uint8)
    bits[np.cumsum(quot + 1) - 1] = 0
    unary = np.packbits(bits).tobytes()
    if k:
        rem = gaps & ((1 << k) - 1)
        rbits = ((rem[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.uint8)
        remainder = np.packbits(rbits.reshape(-1)).tobytes()
    else:
        remainder = b""
    data = unary + remainder
    return {"kind": "rice", "k": k, "unary": len(unary), "bytes": len(data)}, data


def _mask_bytes(desc: Mapping[str, Any]) -> int:
    kind = desc.get("kind")
    if kind in ("all", "empty"):
        return 0
    if kind in ("bitmap", "rice"):
        nbytes = desc.get("bytes")
        if isinstance(nbytes, int) and not isinstance(nbytes, bool) and nbytes >= 0:
            return nbytes
        raise ValueError(f"mask 'bytes' must be an integer >= 0, found {nbytes!r}")
    raise ValueError(f"unknown mask kind {kind!r} (expected all, empty, bitmap, rice)")


def decode_mask(desc: Mapping[str, Any], data: bytes, n: int, nnz: int) -> np.ndarray:
    """Flat bool mask of n values with nnz set; ValueError if the bytes do not fit."""
    kind = desc.get("kind")
    if kind == "all":
        if nnz != n:
            raise ValueError(f"mask 'all' but nnz {nnz} != {n} values")
        return np.ones(n, dtype=bool)
    if kind == "empty":
        if nnz != 0:
            raise ValueError(f"mask 'empty' but nnz {nnz}")
        return np.zeros(n, dtype=bool)
    if kind == "bitmap":
        if len(data) != (n + 7) // 8:
            raise ValueError(f"bitmap of {len(data)} bytes for {n} values")
        mask = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)
        if int(mask.sum()) != nnz:
            raise ValueError(f"bitmap marks {int(mask.sum())} values, expected nnz {nnz}")
        return mask
    if kind == "rice":
        k, ulen = desc.get("k"), desc.get("unary")
        if not (
            isinstance(k, int) and 0 <= k <= 62 and isinstance(ulen, int) and 0 <= ulen <= len(data)
        ):
            raise ValueError(f"rice mask with bad parameters k={k!r}, unary={ulen!r}")
        if len(data) - ulen != math.ceil(nnz * k / 8):
            raise ValueError(
                f"rice remainder stream of {len(data) - ulen} bytes for nnz {nnz}, k {k}"
            )
        ubits = np.unpackbits(np.frombuffer(data[:ulen], dtype=np.uint8))
        zeros = np.flatnonzero(ubits == 0)
        if zeros.size < nnz or (nnz and ulen != (int(zeros[nnz - 1]) + 8) // 8):
            raise ValueError("rice unary stream does not hold nnz codes")
        zeros = zeros[:nnz].astype(np.int64)
        gaps = (np.diff(zeros, prepend=-1) - 1) << k
        if k:
            rbits = np.unpackbits(np.frombuffer(data[ulen:], dtype=np.uint8), count=nnz * k)
            gaps |= (rbits.reshape(nnz, k).astype(np.int64) << np.arange(k - 1, -1, -1)).sum(axis=1)
        pos = np.cumsum(gaps + 1) - 1
        if nnz and pos[-1] >= n:
            raise ValueError(f"rice positions run past the {n} values")
        mask = np.zeros(n, dtype=bool)
        mask[pos] = True
        return mask
    raise ValueError(f"unknown mask kind {kind!r}")


# ------------------------------------------------------------------- encoding


class _Payload:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.breakdown = {"values": 0, "masks": 0, "scales": 0}

    def add(self, *chunks: tuple[str, bytes]) -> tuple[int, int]:
        offset = self.size
        for kind, data in chunks:
            self.parts.append(data)
            self.size += len(data)
            self.breakdown[kind] += len(data)
        return offset, self.size - offset


def _le(arr: np.ndarray) -> np.ndarray:
    dt = arr.dtype
    if dt.name not in _DTYPES:
        raise InputError(f"artifact: cannot store dtype {dt.name} (supported: {sorted(_DTYPES)})")
    return np.array(
        arr, dtype=_DTYPES[dt.name], order="C"
    )  # keeps 0-d shapes (ascontiguousarray would not)


def _encode_float(name: str, arr: np.ndarray, payload: _Payload) -> dict[str, Any]:
    arr = _le(np.asarray(arr))
    mask = _nonzero_mask(arr)
    nnz = int(mask.sum())
    desc, mbytes = encode_mask(mask)
    dense = arr.size * arr.dtype.itemsize
    sparse = len(mbytes) + nnz * arr.dtype.itemsize
    entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "dtype": arr.dtype.name}
    if sparse < dense:
        values = arr.reshape(-1)[mask].tobytes()
        offset, length = payload.add(("masks", mbytes), ("values", values))
        entry.update(encoding="sparse", nnz=nnz, mask=desc)
    else:
        offset, length = payload.add(("values", arr.tobytes()))
        entry.update(encoding="dense")
    entry.update(offset=offset, length=length)
    return entry


def _encode_int8(name: str, qt: QuantizedTensor, payload: _Payload) -> dict[str, Any]:
    q = np.ascontiguousarray(qt.q, dtype=np.int8)
    scale = np.ascontiguousarray(qt.scale, dtype="<f4")
    if scale.shape != (q.shape[0],):
        raise InputError(
            f"artifact: tensor {name!r}: {scale.size} scales for {q.shape[0]} output channels"
        )
    channels = q.shape[0]
    flat = q.reshape(-1)

    def layout(mask: np.ndarray) -> tuple[dict[str, Any], bytes, np.ndarray, str, int]:
        desc, mbytes = encode_mask(mask)
        nonempty = mask.reshape(channels, -1).any(axis=1) if q.size else np.zeros(channels, bool)
        kind = "nonempty" if np.all(scale[~nonempty] == 1.0) else "all"
        stored = scale[nonempty] if kind == "nonempty" else scale
        return desc, mbytes, stored, kind, len(mbytes) + int(mask.sum()) + 4 * stored.size

    # the non-zeros plus their positions, or every value (zeros included) without a mask:
    # whichever is smaller (a dense layer has a few zeros from rounding, not worth a mask)
    sparse = layout(flat != 0)
    dense = layout(np.ones(flat.size, dtype=bool))
    desc, mbytes, stored, scales_kind, _ = min(sparse, dense, key=lambda c: c[4])
    mask = np.ones(flat.size, dtype=bool) if desc["kind"] == "all" else flat != 0
    nnz = int(mask.sum())
    offset, length = payload.add(
        ("masks", mbytes), ("values", flat[mask].tobytes()), ("scales", stored.tobytes())
    )
    return {
        "name": name,
        "shape": list(q.shape),
        "dtype": "int8",
        "encoding": "int8_per_channel",
        "nnz": nnz,
        "mask": desc,
        "scales": scales_kind,
        "offset": offset,
        "length": length,
    }


# ------------------------------------------------------------------- container


def pack_container(manifest: Mapping[str, Any], payload: bytes, compress: bool = True) -> bytes:
    """Header + manifest + payload; the manifest gets the payload's SHA-256 added."""
    manifest = dict(manifest)
    manifest["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    manifest["payload_bytes"] = len(payload)
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    stored = zlib.compress(text, 9) if compress else text
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        _FLAG_ZLIB if compress else 0,
        len(stored),
        len(payload),
        hashlib.sha256(stored).digest(),
    )
    return header + stored + payload


def _not_an_artifact(where: str, head: bytes) -> InputError:
    """The error for a file that does not start with the artifact magic."""
    from acoustic_lottery.models.checkpoint import describe_content

    if head.startswith(b"PK\x03\x04"):
        hint = (
            "it looks like a torch checkpoint "
            "(`acoustic-lottery quantize` turns one into an artifact)"
        )
    else:
        hint = describe_content(head)
    if hint == "the file is empty":
        hint = "the file is empty (truncated: 0 bytes)"
    elif hint is None:
        hint = f"magic bytes {head[: len(MAGIC)]!r}"
    else:
        hint = f"{hint}, magic bytes {head[: len(MAGIC)]!r}"
    return InputError(f"{where}: not an int8 artifact ({EXPECTED}): {hint}")


def unpack_container(
    data: bytes, path: str | os.PathLike[str]
) -> tuple[dict[str, Any], bytes, int]:
    """(manifest, payload, stored manifest bytes) of an artifact's bytes, fully checked."""
    where = f"artifact {path}"
    head = bytes(data[: len(MAGIC)])
    if not head or head != MAGIC[: len(head)]:
        raise _not_an_artifact(where, bytes(data[:512]))
    if len(data) < HEADER_BYTES:
        raise InputError(
            f"{where}: truncated: {len(data)} bytes, the fixed header alone needs {HEADER_BYTES}"
        )
    magic, version, flags, mlen, plen, msha = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise InputError(f"{where}: format version {version}, this reader knows {FORMAT_VERSION}")
    if flags & ~_FLAG_ZLIB:
        raise InputError(f"{where}: unknown header flags {flags:#x}")
    expected = HEADER_BYTES + mlen + plen
    if len(data) < expected:
        raise InputError(
            f"{where}: truncated: the header announces {expected} bytes "
            f"(manifest {mlen}, payload {plen}), the file has {len(data)}"
        )
    if len(data) > expected:
        raise InputError(
            f"{where}: {len(data) - expected} unexpected bytes after the payload "
            f"(the header announces {expected} bytes)"
        )
    stored = data[HEADER_BYTES : HEADER_BYTES + mlen]
    payload = data[HEADER_BYTES + mlen :]
    if hashlib.sha256(stored).digest() != msha:
        raise InputError(
            f"{where}: manifest SHA-256 mismatch: the manifest was modified or corrupted"
        )
    text = stored
    if flags & _FLAG_ZLIB:
        try:
            inflater = zlib.decompressobj()
            text = inflater.decompress(stored, MAX_MANIFEST_BYTES)
            if inflater.unconsumed_tail:
                raise InputError(f"{where}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
        except zlib.error as e:
            raise InputError(f"{where}: manifest is not valid zlib data ({e})") from e
    try:
        manifest = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{where}: manifest is not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise InputError(
            f"{where}: manifest must be a JSON object, found {type(manifest).__name__}"
        )
    if manifest.get("format") != FORMAT_NAME:
        raise InputError(
            f"{where}: manifest 'format' is {manifest.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    if manifest.get("payload_bytes") != len(payload):
        raise InputError(
            f"{where}: manifest says the payload has {manifest.get('payload_bytes')!r} bytes, "
            f"the file holds {len(payload)}"
        )
    if manifest.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        raise InputError(
            f"{where}: payload SHA-256 mismatch: the tensors were modified or corrupted "
            "(tampered file?)"
        )
    return manifest, payload, mlen


# ------------------------------------------------------------------- systems


@dataclass
class DeployableSystem:
    """What an artifact holds: a system spec and, per distinct member model, its state.

    states maps model name -> QuantizedState (int8) or `float_state(...)` (unquantized);
    class_names maps task -> class names; index_map (two-stage) None = from class names.
    """

    spec: SystemSpec
    states: dict[str, QuantizedState]
    class_names: dict[str, list[str]] = field(
        default_factory=lambda: {t: task_class_names(t) for t in ("scene", "super")}
    )
    index_map: list[int] | None = None

    def validate(self, where: str = "artifact") -> None:
        missing = [m for m in self.spec.models if m not in self.states]
        if missing:
            raise InputError(f"{where}: no state for member model(s) {missing}")
        extra = [m for m in self.states if m not in self.spec.models]
        if extra:
            raise InputError(
                f"{where}: states {extra} are not members of system {self.spec.name!r}"
            )
        for i, m in enumerate(self.spec.members):
            state = self.states[m.model]
            if m.quantized != state.quantized:
                raise InputError(
                    f"{where}: member {i} ({m.model}) is marked quantized={m.quantized} but its "
                    f"state {'has' if state.quantized else 'has no'} int8 weights"
                )
            if m.task not in self.class_names:
                raise InputError(f"{where}: no class names for task {m.task!r}")
            size = _head_size(state.arch, m.task)
            if size is not None and size != len(self.class_names[m.task]):
                raise InputError(
                    f"{where}: member {i} ({m.model}) has a {size}-class {m.task!r} head but "
                    f"{len(self.class_names[m.task])} class names {self.class_names[m.task]}"
                )


def _head_size(arch: Mapping[str, Any] | None, task: str) -> int | None:
    """Classes of a model's `task` head from its arch spec (None if the spec cannot say)."""
    if not arch or not isinstance(arch.get("n_classes"), int):
        return None
    if task == "super" and arch.get("task") in ("super", "mtl"):
        return 3 if arch.get("task") == "mtl" else int(arch["n_classes"])
    if task == "scene" and arch.get("task") in ("scene", "mtl"):
        return int(arch["n_classes"])
    return None


def _single_system(state: QuantizedState, name: str) -> DeployableSystem:
    task = (state.arch or {}).get("task", "scene")
    task = task if task in ("scene", "super") else "scene"
    spec = SystemSpec(name=name, members=(MemberSpec(name, task, state.quantized, 1.0),))
    system = DeployableSystem(spec=spec, states={name: state})
    size = _head_size(state.arch, task)
    if size is not None and size != len(system.class_names[task]):
        system.class_names[task] = [f"class{i}" for i in range(size)]  # not the TAU classes
    return system


def save_artifact(
    path: str | os.PathLike[str],
    system: DeployableSystem | QuantizedState,
    *,
    name: str = "model",
    compress_manifest: bool = True,
) -> dict[str, Any]:
    """Write the artifact atomically; returns its size breakdown next to the DCASE size.

    A bare QuantizedState is saved as a one-member system called `name`.
    """
    if isinstance(system, QuantizedState):
        system = _single_system(system, name)
    system.validate(f"artifact {path}")
    payload = _Payload()
    models: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for model_name in system.spec.models:
        state = system.states[model_name]
        tensors = []
        for tname, arr in state.floats.items():
            tensors.append(_encode_float(tname, arr, payload))
        for tname, qt in state.weights.items():
            tensors.append(_encode_int8(tname, qt, payload))
        sizes[model_name] = int(quantized_size_report(state)["bytes"])
        models[model_name] = {
            "arch": state.arch,
            "folded": [list(p) for p in state.folded],
            "activations": state.activations,
            "float_dtype": state.float_dtype,
            "meta": state.meta,
            "dcase_bytes": sizes[model_name],
            "tensors": tensors,
        }
    index_map = system.index_map
    if index_map is None and system.spec.fusion == "two_stage":
        index_map = super_index_map(system.class_names["scene"], system.class_names["super"])
    manifest = {
        "format": FORMAT_NAME,
        "code_version": __version__,
        "system": system.spec.to_dict(),
        "class_names": system.class_names,
        "index_map": index_map,
        "models": models,
        "dcase_bytes": sum(sizes.values()),
    }
    payload_bytes = b"".join(payload.parts)
    blob = pack_container(manifest, payload_bytes, compress=compress_manifest)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
        failpoint("quantize.write")
    dcase = sum(sizes.values())
    manifest_bytes = len(blob) - HEADER_BYTES - len(payload_bytes)
    return {
        "path": str(path),
        "file_bytes": len(blob),
        "dcase_bytes": dcase,
        "dcase_kb": dcase / 1024,
        "ratio": len(blob) / dcase if dcase else float("inf"),
        "header_bytes": HEADER_BYTES,
        "manifest_bytes": manifest_bytes,
        "payload_bytes": len(payload_bytes),
        "breakdown": dict(payload.breakdown),
        "members": sizes,
    }


# ------------------------------------------------------------------- loading


def _check_int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, found {value!r}")
    return value


def _decode_tensor(
    entry: Mapping[str, Any], payload: bytes
) -> tuple[str, np.ndarray | QuantizedTensor]:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"tensor entry without a name: {dict(entry)!r:.200}")
    shape = entry.get("shape")
    if not isinstance(shape, list):
        raise ValueError(f"tensor {name!r}: 'shape' must be a list, found {shape!r}")
    shape = [_check_int(s, f"tensor {name!r} shape entry") for s in shape]
    n = math.prod(shape)
    offset = _check_int(entry.get("offset"), f"tensor {name!r} offset")
    length = _check_int(entry.get("length"), f"tensor {name!r} length")
    if offset + length > len(payload):
        raise IndexError(
            f"tensor {name!r} points outside the payload (offset {offset}, length {length}, "
            f"payload {len(payload)} bytes)"
        )
    blob = payload[offset : offset + length]
    dtype_name, encoding = entry.get("dtype"), entry.get("encoding")
    if dtype_name not in _DTYPES:
        raise ValueError(f"tensor {name!r}: unknown dtype {dtype_name!r}")
    dtype = _DTYPES[dtype_name]
    if encoding == "dense":
        if length != n * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: {length} bytes for {n} dense {dtype_name} values")
        return name, np.frombuffer(blob, dtype=dtype).reshape(tuple(shape)).astype(
            dtype.newbyteorder("=")
        )
    if encoding not in ("sparse", "int8_per_channel"):
        raise ValueError(f"tensor {name!r}: unknown encoding {encoding!r}")
    nnz = _check_int(entry.get("nnz"), f"tensor {name!r} nnz")
    desc = entry.get("mask")
    if not isinstance(desc, Mapping):
        raise ValueError(f"tensor {name!r}: 'mask' must be an object, found {desc!r}")
    mlen = _mask_bytes(desc)
    vlen = nnz * dtype.itemsize
    if mlen + vlen > length:
        raise ValueError(f"tensor {name!r}: mask {mlen} + values {vlen} bytes exceed its {length}")
    mask = decode_mask(desc, blob[:mlen], n, nnz)
    values = np.frombuffer(blob[mlen : mlen + vlen], dtype=dtype)
    arr = np.zeros(n, dtype=dtype.newbyteorder("="))
    arr[mask] = values
    arr = arr.reshape(tuple(shape))
    if encoding == "sparse":
        if length != mlen + vlen:
            raise ValueError(f"tensor {name!r}: length {length} != mask {mlen} + values {vlen}")
        return name, arr
    if dtype_name != "int8" or not shape:
        raise ValueError(f"tensor {name!r}: int8_per_channel needs dtype int8 and a shape")
    channels = shape[0]
    nonempty = mask.reshape(channels, -1).any(axis=1) if n else np.zeros(channels, bool)
    kind = entry.get("scales")
    count = int(nonempty.sum()) if kind == "nonempty" else channels
    if kind not in ("nonempty", "all") or length != mlen + vlen + 4 * count:
        raise ValueError(
            f"tensor {name!r}: length {length} does not fit mask {mlen} + values {vlen} + "
            f"{count} scales ({kind!r})"
        )
    stored = np.frombuffer(blob[mlen + vlen :], dtype="<f4").astype(np.float32)
    if kind == "nonempty":
        scale = np.ones(channels, dtype=np.float32)
        scale[nonempty] = stored
    else:
        scale = stored.copy()
    return name, QuantizedTensor(q=arr, scale=scale)


def _decode_model(name: str, m: Any, payload: bytes, where: str) -> QuantizedState:
    if not isinstance(m, Mapping):
        raise InputError(f"{where}: manifest models[{name!r}] must be an object")
    tensors = m.get("tensors")
    if not isinstance(tensors, list):
        raise InputError(f"{where}: manifest models[{name!r}].tensors must be a list")
    weights: dict[str, QuantizedTensor] = {}
    floats: dict[str, np.ndarray] = {}
    for i, entry in enumerate(tensors):
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: models[{name!r}].tensors[{i}] must be an object")
        try:
            tname, value = _decode_tensor(entry, payload)
        except (ValueError, IndexError, TypeError, KeyError) as e:
            raise InputError(f"{where}: model {name!r}, tensor table entry {i}: {e}") from e
        if isinstance(value, QuantizedTensor):
            weights[tname] = value
        else:
            floats[tname] = value
    folded = m.get("folded", [])
    if not isinstance(folded, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in folded
    ):
        raise InputError(f"{where}: models[{name!r}].folded must be a list of [conv, bn] names")
    activations = m.get("activations")
    if activations not in ACTIVATION_MODES:
        raise InputError(
            f"{where}: models[{name!r}].activations is {activations!r}, expected one of "
            f"{ACTIVATION_MODES}"
        )
    arch = m.get("arch")
    if arch is not None and not isinstance(arch, Mapping):
        raise InputError(f"{where}: models[{name!r}].arch must be an object or null")
    return QuantizedState(
        arch=dict(arch) if arch is not None else None,
        weights=weights,
        floats=floats,
        folded=[(a, b) for a, b in folded],
        activations=activations,
        float_dtype=str(m.get("float_dtype", "float32")),
        meta=dict(m.get("meta") or {}),
    )


@dataclass
class LoadedSystem:
    """A system rebuilt from an artifact: its spec, one eval-mode model per member model."""

    path: Path
    spec: SystemSpec
    models: dict[str, nn.Module]
    states: dict[str, QuantizedState]
    class_names: dict[str, list[str]]
    index_map: list[int] | None
    manifest: dict[str, Any]

    @torch.no_grad()
    def member_probs(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> list[np.ndarray]:
        """Softmax probabilities of each member's head, in member order.

        x: one input batch for every model, or model name -> input (members whose models
        take different features, e.g. the baseline's 40-band log-mels).
        """
        logits: dict[str, torch.Tensor] = {}
        out = []
        for member in self.spec.members:
            model = self.models[member.model]
            if member.model not in logits:
                xi = x[member.model] if isinstance(x, Mapping) else x
                logits[member.model] = model(xi)
            z = logits[member.model]
            heads = getattr(model, "heads", None)
            if heads:
                from acoustic_lottery.models.heads import split_heads

                z = split_heads(z, heads)[member.task]
            out.append(torch.softmax(z.double(), dim=1).float().numpy())
        return out

    def predict(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> np.ndarray:
        """The system's (N, K) probabilities: members combined as the spec says."""
        return self.spec.combine_probs(self.member_probs(x), self.index_map)


def _read_checked(path: Path) -> tuple[dict[str, Any], bytes, int, int]:
    if path.is_dir():
        raise InputError(f"artifact {path}: not an int8 artifact ({EXPECTED}): it is a directory")
    if not path.is_file():
        raise InputError(f"artifact {path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"artifact {path}: cannot be read ({e.strerror or e})") from e
    manifest, payload, mlen = unpack_container(data, path)
    return manifest, payload, mlen, len(data)


def load_artifact(
    path: str | os.PathLike[str],
    builder: Callable[[Mapping[str, Any]], nn.Module] | None = None,
) -> LoadedSystem:
    """Rebuild a system from its artifact alone (arch specs via `models.registry`).

    builder(arch) -> float model of that architecture; default `build_model`. Needed
    only for models outside the registry. The models give identical outputs to the
    quantized models that were saved.
    """
    path = Path(path)
    where = f"artifact {path}"
    manifest, payload, _, _ = _read_checked(path)
    spec = SystemSpec.from_dict(manifest.get("system"), where=f"{where}: manifest system")
    models_m = manifest.get("models")
    if not isinstance(models_m, Mapping):
        raise InputError(f"{where}: manifest 'models' must be an object")
    missing = [m for m in spec.models if m not in models_m]
    if missing:
        raise InputError(f"{where}: manifest has no model entry for member(s) {missing}")
    class_names = manifest.get("class_names")
    if not isinstance(class_names, Mapping) or not all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in class_names.values()
    ):
        raise InputError(f"{where}: manifest 'class_names' must map tasks to lists of names")
    index_map = manifest.get("index_map")
    if index_map is not None and not (
        isinstance(index_map, list) and all(isinstance(i, int) for i in index_map)
    ):
        raise InputError(f"{where}: manifest 'index_map' must be a list of integers or null")
    states: dict[str, QuantizedState] = {}
    models: dict[str, nn.Module] = {}
    for name in spec.models:
        try:
            state = _decode_model(name, models_m[name], payload, where)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise InputError(f"{where}: manifest models[{name!r}] is malformed: {e}") from e
        if state.arch is None and builder is None:
            raise InputError(
                f"{where}: model {name!r} has no arch spec; pass a builder to rebuild it"
            )
        try:
            models[name] = dequantize(state, builder=builder)
        except (InputError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            # a manifest arch spec the registry cannot build (unknown arch, wrong types),
            # or folded pairs naming layers the model does not have
            raise InputError(f"{where}: model {name!r} cannot be rebuilt: {e}") from e
        states[name] = state
    return LoadedSystem(
        path=path,
        spec=spec,
        models=models,
        states=states,
        class_names={k: list(v) for k, v in class_names.items()},
        index_map=list(index_map) if index_map is not None else None,
        manifest=manifest,
    )


def inspect_artifact(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked manifest and where the bytes go, without building any model."""
    path = Path(path)
    manifest, payload, mlen, total = _read_checked(path)
    breakdown = {"values": 0, "masks": 0, "scales": 0}
    try:
        for name, m in (manifest.get("models") or {}).items():
            for i, entry in enumerate(m.get("tensors", [])):
                try:
                    _, value = _decode_tensor(entry, payload)
                except (ValueError, IndexError, TypeError, KeyError) as e:
                    raise InputError(
                        f"artifact {path}: model {name!r}, tensor table entry {i}: {e}"
                    ) from e
                mlen_t = _mask_bytes(entry["mask"]) if "mask" in entry else 0
                breakdown["masks"] += mlen_t
                if isinstance(value, QuantizedTensor):
                    nscale = entry["length"] - mlen_t - entry["nnz"]
                    breakdown["scales"] += nscale
                    breakdown["values"] += entry["nnz"]
                else:
                    breakdown["values"] += entry["length"] - mlen_t
        dcase = int(manifest.get("dcase_bytes", 0))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise InputError(f"artifact {path}: malformed manifest ({type(e).__name__}: {e})") from e
    return {
        "path": str(path),
        "file_bytes": total,
        "header_bytes": HEADER_BYTES,
        "manifest_bytes": mlen,
        "payload_bytes": len(payload),
        "dcase_bytes": dcase,
        "ratio": total / dcase if dcase else float("inf"),
        "breakdown": breakdown,
        "manifest": manifest,
    }
