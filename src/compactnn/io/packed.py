"""The packed layout (``packed/2``; ``packed/1`` is still read): the smallest file for
a model, still a valid safetensors file, with a compressed description and
entropy-coded plain tensors.

A packed file is a safetensors file with exactly one ``U8`` tensor, ``compactnn``,
and the metadata string ``packed/2`` (or ``packed/1``)::

    u64 little-endian  N  (header length, a multiple of 8)
    N bytes            {"__metadata__":{"compactnn":"packed/2"},
                        "compactnn":{"dtype":"U8","shape":[L],"data_offsets":[0,L]}}
                       right-padded with spaces
    L bytes            the blob

The blob::

    u32   D            bytes of the compressed description
    u32   U            bytes of the description (at most MAX_DESCRIPTION)
    D     bytes        raw DEFLATE (zlib, wbits -15, level 9; ``packed/2``: with the
                       preset dictionary ``DICTIONARY``) of the description:
                       canonical JSON, the same object as a container-version-1
                       description without its checksums, plus
                       "blobs": [[name, dtype, shape, coder, bytes], ...]
    ...   bytes        the tensors' stored bytes back to back, in "blobs" order
    u32   CRC-32       of every blob byte before it

``packed/2`` (written since issue 15) differs from ``packed/1`` (still read) only by
that preset dictionary: the keys and values every description repeats (layer entry
fields, kinds, formats, coders, dtypes, the zoo model entry), so a small model's
description takes about half the bytes.

``coder`` is ``"raw"`` (the little-endian bytes of ``dtype``, ``bytes = itemsize *
prod(shape)``) or ``"float"`` (a float32 tensor's bit patterns coded by
:func:`compactnn.coding.adaptive.encode_floats`; ``bytes`` is the stream length),
chosen per tensor by the writer as the smaller (``float`` only where it spends at
least one bit per value, so a stream's decoding work is bounded by its length).

The reader checks, before any tensor is decoded: the outer header is exactly the
canonical one for the file's length; the CRC-32; ``D`` within the blob and ``U``
against its cap before decompressing, then inflates at most ``U`` bytes, which must be
the whole stream; the description is ASCII, strict and canonical JSON; every entry of
``blobs`` (name, dtype, shape, coder, byte count, no duplicates); the stored bytes add
up exactly to the blob. Float streams must then be read exactly to their end.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from compactnn._validate import is_int
from compactnn.coding import adaptive
from compactnn.io import container
from compactnn.io.container import DTYPES, CompactFileError, canonical_json, parse_json

__all__ = ["LAYOUT", "LAYOUTS", "DICTIONARY", "MAX_DESCRIPTION", "encode", "decode",
           "is_packed", "read"]

# DEFLATE's preset dictionary of packed/2: fixed forever (files depend on every byte);
# the most frequent strings last, where matches are cheapest
DICTIONARY = b"".join([
    b'.weight.data","F32",[.weight.indices",.weight.indptr",.weight.omega_idx","U8",[',
    b'.weight.omega_ptr","U16",[.weight.row_ptr","U16",[.weight.col_idx","U16",[',
    b'.weight.length_counts","U8",[.weight.row_bits","U32",[.weight.words","U32",[',
    b'.weight.omega","F32",[],"float",],["',
    b'"format":"csr","format":"cer","format":"cser","format":"index_map","format":"sham",',
    b'"reason":"fixed format","reason":"loaded","attrs":[{}],',
    b'"metadata":{},"model":{"class":"torch.nn.modules.container.Sequential","zoo":',
    b'{"kwargs":{"image_size":28,"in_channels":1,"num_classes":10},"name":"lenet5"}},',
    b'{"kwargs":{"in_features":784,"num_classes":10},"name":"lenet300"}},"state":["',
    b'"conv":{"dilation":[1,1],"groups":1,"in":1,"kernel":[5,5],"out":20,',
    b'"padding":[0,0],"stride":[1,1]},"entropy_bits":',
    b'.0,"format":"ham","groups":1,"kind":"conv2d","reason":"smallest: ',
    b' B","shape":[,"storage":"raw","version":1},"',
    b'{"blobs":[[".bias","F32",[],"float",],["',
    b'.weight.archive","U8",[],"raw",],["',
    b'"compactnn":1,"layers":{"',
    b'":{"bias":true,"bytes":',
    b',"entropy_bits":',
    b'.0,"format":"ham","groups":1,"kind":"linear","reason":"smallest: ',
    b' B","shape":[',
    b'],"storage":"archive","version":1},"',
])
LAYOUTS = {"packed/1": b"", "packed/2": DICTIONARY}  # layout -> preset dictionary
LAYOUT = "packed/2"  # the one written
MAX_DESCRIPTION = 16 * 2**20  # bytes of the decompressed description
_CODERS = ("raw", "float")
_MAX_VALUES_PER_BYTE = 8  # a float stream codes >= 1 bit per value: bounds decoding work


def _outer_header(length: int, layout: str = LAYOUT) -> bytes:
    head = (f'{{"__metadata__":{{"compactnn":"{layout}"}},'
            f'"compactnn":{{"dtype":"U8","shape":[{length}],"data_offsets":[0,{length}]}}}}')
    raw = head.encode("ascii")
    return raw + b" " * (-len(raw) % 8)


def _deflate(data: bytes, layout: str = LAYOUT) -> bytes:
    zdict = LAYOUTS[layout]
    c = (zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=zdict) if zdict
         else zlib.compressobj(9, zlib.DEFLATED, -15, 9))
    return c.compress(data) + c.flush()


def _stored(arr: np.ndarray) -> tuple[str, bytes]:
    """The cheaper coding of one tensor: ``(coder, bytes)``."""
    raw = arr.tobytes()
    if arr.dtype == np.float32 and arr.size:
        stream = adaptive.encode_floats(arr).tobytes()
        if len(stream) < len(raw) and arr.size <= _MAX_VALUES_PER_BYTE * len(stream) + 8:
            return "float", stream
    return "raw", raw


def encode(tensors: Mapping[str, np.ndarray], description: dict[str, Any]) -> bytes:
    """Bytes of a packed file holding ``tensors`` and ``description`` (a JSON object
    without the keys ``blobs``, ``crc32``, ``tensors`` and ``table_crc32``)."""
    blobs, parts = [], []
    for name in sorted(tensors):
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid tensor name {name!r}")
        arr = np.asarray(tensors[name])
        dt = container._dtype_name(arr)
        arr = np.asarray(arr, dtype=DTYPES[dt], order="C")  # keeps 0-d shapes
        coder, data = _stored(arr)
        blobs.append([name, dt, list(arr.shape), coder, len(data)])
        parts.append(data)
    desc = {k: v for k, v in description.items()
            if k not in ("blobs", "crc32", "tensors", "table_crc32")}
    desc["blobs"] = blobs
    text = canonical_json(desc).encode("ascii")
    packed = _deflate(text)
    body = b"".join([len(packed).to_bytes(4, "little"), len(text).to_bytes(4, "little"),
                     packed, *parts])
    blob = body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
    header = _outer_header(len(blob))
    return len(header).to_bytes(8, "little") + header + blob


def _layout(raw: bytes) -> str | None:
    """The layout whose outer header ``raw`` starts with (for its length), or None."""
    if len(raw) < 8:
        return None
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8 or n > container.MAX_HEADER:
        return None
    head = raw[8:8 + n]
    for layout in LAYOUTS:
        if head == _outer_header(len(raw) - 8 - n, layout):
            return layout
    return None


def is_packed(raw: bytes) -> bool:
    """Whether ``raw`` starts with the outer header of a packed file of its length."""
    return _layout(raw) is not None


def _is_int(v: Any) -> bool:
    return is_int(v, 0, numpy=False)


def _blob_table(desc: dict[str, Any], size: int, source: str) -> list[list[Any]]:
    blobs = desc.get("blobs")
    if not isinstance(blobs, list):
        raise CompactFileError(f"{source}: packed description has no blob table")
    seen, total = set(), 0
    for b in blobs:
        if (not isinstance(b, list) or len(b) != 5 or not isinstance(b[0], str) or not b[0]
                or b[1] not in DTYPES or not isinstance(b[2], list)
                or not all(_is_int(s) for s in b[2]) or b[3] not in _CODERS
                or not _is_int(b[4])):
            raise CompactFileError(f"{source}: bad blob entry {str(b)[:80]}")
        name, dt, shape, coder, nbytes = b
        if name in seen:
            raise CompactFileError(f"{source}: tensor {name!r} stored twice")
        seen.add(name)
        count = 1
        for s in shape:
            count *= s  # Python int: no overflow
        if coder == "raw" and nbytes != count * DTYPES[dt].itemsize:
            raise CompactFileError(f"{source}: tensor {name!r}: {nbytes} bytes do not hold "
                                   f"{dt}{shape}")
        if coder == "float" and (dt != "F32" or count == 0):
            raise CompactFileError(f"{source}: tensor {name!r}: the float coder stores "
                                   "non-empty F32 tensors only")
        if coder == "float" and count > _MAX_VALUES_PER_BYTE * nbytes + 8:
            raise CompactFileError(f"{source}: tensor {name!r}: {count} values cannot fit "
                                   f"in a {nbytes}-byte stream")
        total += nbytes
    if total != size:
        raise CompactFileError(f"{source}: the tensors take {total} bytes, the blob holds "
                               f"{size}")
    return blobs


def decode(raw: bytes, source: str = "file") -> tuple[dict[str, np.ndarray], dict[str, Any],
                                                      dict[str, int], int]:
    """Validate a packed file and return ``(tensors, description, stored bytes per
    tensor, bytes of everything else)``."""
    layout = _layout(raw)
    if layout is None:
        raise CompactFileError(f"{source}: not a packed compactnn file")
    n = int.from_bytes(raw[:8], "little")
    blob = memoryview(raw)[8 + n:]
    if len(blob) < 12:
        raise CompactFileError(f"{source}: packed data of {len(blob)} bytes is truncated")
    if zlib.crc32(blob[:-4]) & 0xFFFFFFFF != int.from_bytes(blob[-4:], "little"):
        raise CompactFileError(f"{source}: checksum mismatch (corrupted data)")
    d = int.from_bytes(blob[:4], "little")
    u = int.from_bytes(blob[4:8], "little")
    if d > len(blob) - 12:
        raise CompactFileError(f"{source}: compressed description of {d} bytes exceeds the data")
    if u > MAX_DESCRIPTION:
        raise CompactFileError(f"{source}: description of {u} bytes exceeds the limit "
                               f"{MAX_DESCRIPTION}")
    zdict = LAYOUTS[layout]
    inflater = zlib.decompressobj(-15, zdict=zdict) if zdict else zlib.decompressobj(-15)
    try:
        text = inflater.decompress(blob[8:8 + d], u)
    except zlib.error as exc:
        raise CompactFileError(f"{source}: description does not decompress ({exc})") from None
    if len(text) != u or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise CompactFileError(f"{source}: compressed description does not hold exactly "
                               f"{u} bytes")
    try:
        text_s = text.decode("ascii")
    except UnicodeDecodeError:
        raise CompactFileError(f"{source}: description is not ASCII") from None
    desc = parse_json(text_s, f"{source}: description")
    if not isinstance(desc, dict):
        raise CompactFileError(f"{source}: description is not a JSON object")
    try:
        canon = canonical_json(desc)
    except ValueError as exc:
        raise CompactFileError(f"{source}: description: {exc}") from None
    if canon != text_s:
        raise CompactFileError(f"{source}: description is not in canonical form (modified?)")
    blobs = _blob_table(desc, len(blob) - 12 - d, source)
    arrays: dict[str, np.ndarray] = {}
    stored: dict[str, int] = {}
    off = 8 + d
    for name, dt, shape, coder, nbytes in blobs:
        chunk = blob[off:off + nbytes]
        off += nbytes
        if coder == "raw":
            arr = np.frombuffer(chunk, DTYPES[dt]).copy().reshape(shape)
        else:
            count = int(np.prod(shape, dtype=np.int64))
            vals, read = adaptive.decode_floats(np.frombuffer(chunk, np.uint8), count)
            if read != nbytes:
                raise CompactFileError(f"{source}: tensor {name!r}: the float decoder read "
                                       f"{read} of {nbytes} bytes")
            arr = vals.reshape(shape)
        arrays[name] = arr
        stored[name] = nbytes
    body = {k: v for k, v in desc.items() if k != "blobs"}
    return arrays, body, stored, len(raw) - sum(stored.values())


def read(raw: bytes, source: str = "file") -> tuple[dict[str, np.ndarray], dict[str, Any],
                                                    dict[str, int], int]:
    """Either layout: a packed file (:func:`decode`) or a container-version-1 file
    (:func:`compactnn.io.container.decode_file`); same return as :func:`decode`."""
    if is_packed(raw):
        return decode(raw, source)
    arrays, desc = container.decode_file(raw, source)
    header = 8 + int.from_bytes(raw[:8], "little")
    return arrays, desc, {k: int(a.nbytes) for k, a in arrays.items()}, header
