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
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from compactnn._validate import is_int
from compactnn.errors import UserError

__all__ = ["CompactFileError", "DTYPES", "MAX_HEADER", "encode_file", "file_parts",
           "header_length", "decode_file", "layout", "stored", "crc32", "canonical_json",
           "parse_json", "check_tree", "MAX_JSON_DEPTH"]

KEY = "compactnn"
MAX_HEADER = 100_000_000  # safetensors' own limit
MAX_JSON_DEPTH = 64  # nesting a description may use (json itself allows ~1000)
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_NAMES = {dt: name for name, dt in DTYPES.items()}


class CompactFileError(UserError):
    """A compactnn file (or checkpoint) is missing, truncated, corrupted or inconsistent."""


def header_length(first: bytes, size: int, source: str) -> int:
    """The header length in the first 8 bytes of a ``size``-byte safetensors-layout file,
    checked against the file and ``MAX_HEADER``."""
    if len(first) < 8:
        raise CompactFileError(f"{source}: truncated ({size} bytes; a header needs 8)")
    n = int.from_bytes(first[:8], "little")
    if n > size - 8:
        raise CompactFileError(
            f"{source}: header length {n} is larger than the file ({size} bytes)")
    if n > MAX_HEADER or n < 2:
        raise CompactFileError(f"{source}: header length {n} out of range")
    return n


def canonical_json(obj: Any) -> str:
    """The one serialisation used for descriptions: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def crc32(data: bytes | memoryview | np.ndarray) -> str:
    """CRC-32 (zlib) as 8 lowercase hex digits (of an array's bytes, without a copy
    when it is contiguous)."""
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
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


def layout(items: list[tuple[str, str, list[int], int, str]], description: dict[str, Any]
           ) -> tuple[bytes, list[str]]:
    """The header bytes (length prefix included) and the tensor order of a file holding
    ``items`` (``(name, dtype name, shape, nbytes, crc32)``, any order) and
    ``description`` (which gains the ``tensors`` checksums, the ``table_crc32`` and its own
    ``crc32``); the data is the tensors' bytes back to back in the returned order."""
    for name, *_ in items:
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
    items = sorted(items, key=lambda t: (-DTYPES[t[1]].itemsize, t[0]))
    entries, off = [], 0
    for name, dt, shape, nbytes, _ in items:
        entries.append((name, dt, list(shape), off, off + nbytes))
        off += nbytes
    desc = {k: v for k, v in description.items() if k not in ("crc32", "tensors", "table_crc32")}
    desc["tensors"] = {name: crc for name, *_, crc in items}
    desc["table_crc32"] = crc32(_table_json(entries).encode("ascii"))
    desc["crc32"] = crc32(canonical_json(desc).encode("ascii"))
    header = _header_bytes(canonical_json(desc), entries)
    return len(header).to_bytes(8, "little") + header, [t[0] for t in items]


def stored(arr: np.ndarray) -> tuple[str, np.ndarray]:
    """``(dtype name, little-endian C-contiguous array)`` of an array as a file stores it."""
    arr = np.asarray(arr)
    dt = _dtype_name(arr)
    return dt, np.asarray(arr, dtype=DTYPES[dt], order="C")


def file_parts(tensors: Mapping[str, np.ndarray], description: dict[str, Any]
               ) -> list[bytes | memoryview]:
    """The bytes of a file holding ``tensors`` and ``description`` (see :func:`layout`)
    as parts to write one after the other: the header, then each array's bytes (a view
    of the array, not a copy, when it is stored as it is)."""
    arrays, items = {}, []
    for name, arr in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        dt, a = stored(arr)
        arrays[name] = a
        items.append((name, dt, list(a.shape), a.nbytes, crc32(a)))
    head, order = layout(items, description)
    return [head] + [memoryview(arrays[name].reshape(-1).view(np.uint8)) for name in order]


def encode_file(tensors: Mapping[str, np.ndarray], description: dict[str, Any]) -> bytes:
    """Bytes of a file holding ``tensors`` and ``description`` (see :func:`layout`)."""
    return b"".join(file_parts(tensors, description))


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
    """Strict JSON: no duplicate keys, no NaN/Infinity, bounded nesting
    (``MAX_JSON_DEPTH``) and integers of at most 64 bits."""
    if len(text) > MAX_HEADER:
        raise CompactFileError(f"{what}: JSON text is too long ({len(text)} characters)")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates,
                         parse_constant=_reject_constant, parse_int=_parse_int)
    except CompactFileError as exc:
        raise CompactFileError(f"{what}: {exc}") from None
    except RecursionError:
        raise CompactFileError(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:
        raise CompactFileError(f"{what} is not valid JSON ({exc})") from None
    check_tree(obj, what)
    return obj


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:  # beyond 64 bits whatever the digits
        raise CompactFileError(f"JSON integer {text[:24]}... is out of range")
    v = int(text)
    if not -2**64 < v < 2**64:
        raise CompactFileError(f"JSON integer {v} is out of range")
    return v


def check_tree(obj: Any, what: str) -> None:
    """Raise ``CompactFileError`` unless the nesting depth is at most
    ``MAX_JSON_DEPTH``, every float is finite and every integer fits 64 bits (checked
    iteratively, so a deep document cannot exhaust the Python stack)."""
    stack = [(obj, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise CompactFileError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} deep")
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
        elif isinstance(v, float) and not (-1.8e308 < v < 1.8e308):
            raise CompactFileError(f"{what}: JSON number out of range")
        elif is_int(v, numpy=False) and not -2**64 < v < 2**64:
            raise CompactFileError(f"{what}: JSON integer {v} is out of range")


def _is_int(v: Any) -> bool:
    return is_int(v, numpy=False)


def _checksums(desc: dict[str, Any]) -> dict[str, str]:
    table = desc.get("tensors")
    if not isinstance(table, dict) or not all(
            isinstance(v, str) and len(v) == 8 for v in table.values()):
        raise CompactFileError("description has no valid tensor checksum table")
    return table


def decode_file(raw: bytes | bytearray, source: str = "file"
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Validate a file's bytes and return its tensors and description.

    Checks, in order: header length within the file; header ASCII, strict JSON and
    exactly canonical; description canonical with a matching CRC-32; tensor table
    consistent with the header (dtype, shape, contiguous in-range offsets whose span
    is the shape's size, computed without overflow); data fully covered; every
    tensor's CRC-32. The arrays are views of ``raw`` (writable when it is a
    ``bytearray``), never copies.
    """
    size = len(raw)
    n = header_length(raw[:8], size, source)
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
    view = memoryview(raw)
    arrays: dict[str, np.ndarray] = {}
    for name, dt, shape, b, e in entries:
        if crc32(view[base + b:base + e]) != sums[name]:
            raise CompactFileError(f"{source}: tensor {name!r}: checksum mismatch (corrupted data)")
        if e == b:
            arrays[name] = np.empty(shape, DTYPES[dt])
        else:
            arrays[name] = np.frombuffer(raw, DTYPES[dt], (e - b) // DTYPES[dt].itemsize,
                                         base + b).reshape(shape)
    return arrays, body
