"""The byte container: a safetensors file whose ``__metadata__`` holds one JSON
description, written canonically (same content, same bytes) and read with every
offset, dtype, shape and checksum validated before an array is handed out.

Layout (see ``docs/file-format.md``)::

    u64 little-endian  N  (header length, a multiple of 8)
    N bytes            header: ASCII JSON, compact separators, right-padded with spaces
                       {"__metadata__":{"compactnn":"<description>"},
                        "<name>":{"dtype":"U8","shape":[...],"data_offsets":[b,e]}, ...}
    data               the tensors back to back, in header order, no gaps

Tensors are ordered by decreasing element size, then by name, so every tensor is
naturally aligned. The description (canonical JSON: sorted keys, compact separators,
ASCII) holds the CRC-32 of every tensor's bytes (``tensors``), of the header's tensor
entries (``table_crc32``) and of itself (``crc32``, computed with that field removed). A reader
rejects any header that is not exactly the canonical header of its own content, so
a changed byte anywhere in the file is reported, never silently used.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CompactFileError", "DTYPES", "MAX_HEADER", "encode_file", "decode_file",
           "write_atomic", "canonical_json", "read_bytes"]

KEY = "compactnn"
MAX_HEADER = 100_000_000  # safetensors' own limit
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_NAMES = {dt: name for name, dt in DTYPES.items()}


class CompactFileError(ValueError):
    """A compactnn file is missing, truncated, corrupted or inconsistent."""


def canonical_json(obj: Any) -> str:
    """The one serialisation used for descriptions: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def crc32(data: bytes | np.ndarray) -> str:
    """CRC-32 (zlib) as 8 lowercase hex digits."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _dtype_name(arr: np.ndarray) -> str:
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    dt = np.dtype(dt.str.replace("=", "<"))
    for name, d in DTYPES.items():
        if d == dt:
            return name
    raise TypeError(f"arrays of dtype {arr.dtype} cannot be stored")


def _table_json(entries: list[tuple[str, str, list[int], int, int]]) -> str:
    """The header's tensor entries, in order, as canonical JSON (without metadata)."""
    table = {name: {"dtype": dt, "shape": shape, "data_offsets": [b, e]}
             for name, dt, shape, b, e in entries}
    return json.dumps(table, separators=(",", ":"), ensure_ascii=True)


def _header_bytes(meta: str, entries: list[tuple[str, str, list[int], int, int]]) -> bytes:
    table = _table_json(entries)
    head = json.dumps({"__metadata__": {KEY: meta}}, separators=(",", ":"), ensure_ascii=True)
    raw = (head[:-1] + ("," + table[1:] if entries else "}")).encode("ascii")
    return raw + b" " * (-len(raw) % 8)


def encode_file(tensors: Mapping[str, np.ndarray], description: dict[str, Any]) -> bytes:
    """Bytes of a file holding ``tensors`` and ``description`` (which gains the
    ``tensors`` checksums, the ``table_crc32`` of the header's tensor entries and its
    own ``crc32``)."""
    items = []
    for name, arr in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        arr = np.asarray(arr)
        dt = _dtype_name(arr)
        items.append((name, dt, np.asarray(arr, dtype=DTYPES[dt], order="C")))
    items.sort(key=lambda t: (-DTYPES[t[1]].itemsize, t[0]))
    entries, off = [], 0
    for name, dt, a in items:
        entries.append((name, dt, list(a.shape), off, off + a.nbytes))
        off += a.nbytes
    desc = {k: v for k, v in description.items() if k not in ("crc32", "tensors", "table_crc32")}
    desc["tensors"] = {name: crc32(a) for name, _, a in items}
    desc["table_crc32"] = crc32(_table_json(entries).encode("ascii"))
    desc["crc32"] = crc32(canonical_json(desc).encode("ascii"))
    header = _header_bytes(canonical_json(desc), entries)
    return b"".join([len(header).to_bytes(8, "little"), header] + [a.tobytes() for *_, a in items])


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename,
    so ``path`` never holds a partial file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; a missing or unreadable file is a ``CompactFileError``."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CompactFileError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise CompactFileError(f"{os.fspath(path)}: is a directory, not a file") from None
    except OSError as exc:
        raise CompactFileError(f"{os.fspath(path)}: cannot read ({exc.strerror})") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CompactFileError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise CompactFileError(f"JSON contains {name}, which is not allowed")


def parse_json(text: str, what: str) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity, bounded nesting."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant)
    except CompactFileError as exc:
        raise CompactFileError(f"{what}: {exc}") from None
    except RecursionError:
        raise CompactFileError(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:
        raise CompactFileError(f"{what} is not valid JSON ({exc})") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checksums(desc: dict[str, Any]) -> dict[str, str]:
    table = desc.get("tensors")
    if not isinstance(table, dict) or not all(
            isinstance(v, str) and len(v) == 8 for v in table.values()):
        raise CompactFileError("description has no valid tensor checksum table")
    return table


def decode_file(raw: bytes, source: str = "file") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Validate a file's bytes and return its tensors and description.

    Checks, in order: header length within the file; header ASCII, strict JSON and
    exactly canonical; description canonical with a matching CRC-32; tensor table
    consistent with the header (dtype, shape, contiguous in-range offsets whose span
    is the shape's size, computed without overflow); data fully covered; every
    tensor's CRC-32. Then safetensors parses the same bytes and must agree.
    """
    size = len(raw)
    if size < 8:
        raise CompactFileError(f"{source}: truncated ({size} bytes; a header needs 8)")
    n = int.from_bytes(raw[:8], "little")
    if n > size - 8:
        raise CompactFileError(
            f"{source}: header length {n} is larger than the file ({size} bytes)")
    if n > MAX_HEADER or n < 2:
        raise CompactFileError(f"{source}: header length {n} out of range")
    try:
        text = raw[8:8 + n].decode("ascii")
    except UnicodeDecodeError:
        raise CompactFileError(f"{source}: header is not ASCII") from None
    head = parse_json(text, f"{source}: header")
    if not isinstance(head, dict):
        raise CompactFileError(f"{source}: header is not a JSON object")
    meta = head.get("__metadata__")
    if not isinstance(meta, dict) or set(meta) != {KEY} or not isinstance(meta[KEY], str):
        raise CompactFileError(f"{source}: not a compactnn file (no compactnn description)")
    desc = parse_json(meta[KEY], f"{source}: description")
    if not isinstance(desc, dict):
        raise CompactFileError(f"{source}: description is not a JSON object")
    try:
        canon = canonical_json(desc)
    except ValueError as exc:
        raise CompactFileError(f"{source}: description: {exc}") from None
    if canon != meta[KEY]:
        raise CompactFileError(f"{source}: description is not in canonical form (modified?)")
    body = {k: v for k, v in desc.items() if k != "crc32"}
    if desc.get("crc32") != crc32(canonical_json(body).encode("ascii")):
        raise CompactFileError(f"{source}: description checksum mismatch (corrupted header)")
    sums = _checksums(desc)
    names = [k for k in head if k != "__metadata__"]
    if set(names) != set(sums):
        raise CompactFileError(f"{source}: header tensors do not match the description")
    entries, off, data_len = [], 0, size - 8 - n
    for name in names:
        info = head[name]
        if (not isinstance(info, dict) or list(info) != ["dtype", "shape", "data_offsets"]
                or info["dtype"] not in DTYPES or not isinstance(info["shape"], list)
                or not all(_is_int(s) and s >= 0 for s in info["shape"])):
            raise CompactFileError(f"{source}: tensor {name!r}: bad dtype or shape")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)):
            raise CompactFileError(f"{source}: tensor {name!r}: bad data_offsets {offs!r}")
        nbytes = DTYPES[dt].itemsize
        for s in shape:
            nbytes *= s  # Python int: no overflow
        if offs[0] != off or offs[1] - offs[0] != nbytes or offs[1] > data_len:
            raise CompactFileError(
                f"{source}: tensor {name!r}: offsets {offs} overlap, leave a gap, exceed the "
                f"data ({data_len} bytes) or disagree with shape {shape} of {dt}")
        entries.append((name, dt, shape, offs[0], offs[1]))
        off = offs[1]
    if off != data_len:
        raise CompactFileError(f"{source}: {data_len - off} trailing bytes after the last tensor")
    if names != sorted(names, key=lambda k: (-DTYPES[head[k]["dtype"]].itemsize, k)):
        raise CompactFileError(f"{source}: tensors are not in canonical order (modified?)")
    if _header_bytes(meta[KEY], entries) != raw[8:8 + n]:
        raise CompactFileError(f"{source}: header is not in canonical form (modified?)")
    if crc32(_table_json(entries).encode("ascii")) != desc.get("table_crc32"):
        raise CompactFileError(f"{source}: tensor table checksum mismatch (corrupted header)")
    base = 8 + n
    for name, _, _, b, e in entries:
        if crc32(raw[base + b:base + e]) != sums[name]:
            raise CompactFileError(f"{source}: tensor {name!r}: checksum mismatch (corrupted data)")
    try:
        from safetensors.numpy import load

        arrays = load(raw)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CompactFileError(f"{source}: safetensors rejected the file ({exc})") from None
    for name, dt, shape, _, _ in entries:
        a = arrays.get(name)
        if a is None or list(a.shape) != shape or a.dtype != DTYPES[dt]:
            raise CompactFileError(f"{source}: tensor {name!r}: safetensors disagrees")
    return arrays, body
