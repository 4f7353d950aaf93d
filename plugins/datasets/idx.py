"""The IDX file format of MNIST and Fashion-MNIST, read with numpy (plain or gzip-compressed).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number, two zero
bytes, a type code (``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B`` int16, ``0x0C``
int32, ``0x0D`` float32, ``0x0E`` float64) and the number of dimensions; then one big-endian
uint32 per dimension; then the values, big-endian, row-major. Written by hand because it is 30
lines and torchvision's reader (``torchvision.datasets.mnist.read_sn3_pascalvincent_tensor``)
is private API that returns a torch tensor without naming the file on a bad header.
Tests: ``tests/test_local_datasets.py`` (plain and gzip files, truncated, wrong magic).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

import numpy as np

TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
"""IDX type code -> numpy dtype (big-endian)."""


MAX_HEADER = 4 + 4 * 255
"""The longest header: the magic number and up to 255 dimensions."""


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _parse_header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, dims, header length)`` from the first bytes of an IDX file."""
    if len(head) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(head)} bytes)")
    if head[0] != 0 or head[1] != 0 or head[2] not in TYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{head[:4].hex()}; expected 0x0000 then a "
            "type code 08/09/0b/0c/0d/0e and the number of dimensions)"
        )
    ndim = head[3]
    length = 4 + 4 * ndim
    if len(head) < length:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions need {length} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(head[4:length], dtype=">u4"))
    return np.dtype(TYPES[head[2]]), dims, length


def read_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """``(dtype, dims)`` of an IDX file, reading only its header (cheap enough for plan time).

    A plain file's size is checked against the header too; a gzip file's only when read."""
    try:
        with _open(path) as f:
            head = f.read(MAX_HEADER)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    dtype, dims, length = _parse_header(head, path)
    if path.suffix != ".gz":
        expected = length + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if path.stat().st_size != expected:
            raise ValueError(
                f"{path}: {path.stat().st_size} bytes, but its header {dims} says {expected}"
            )
    return dtype, dims


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds, in native byte order; ``ValueError`` naming the file when it
    is truncated, too long, not IDX or not valid gzip."""
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    dtype, dims, length = _parse_header(raw[:MAX_HEADER], path)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(raw) - length
    if body != expected:
        state = "truncated" if body < expected else "longer than its header says"
        raise ValueError(
            f"{path}: {state} ({body} bytes of data, the header {dims} needs {expected})"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=length).reshape(dims)
    return values.astype(dtype.newbyteorder("="), copy=False)
