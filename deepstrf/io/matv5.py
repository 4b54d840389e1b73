"""Read chosen fields of MATLAB v5/v7 structs, skipping the others without holding them.

:func:`scipy.io.loadmat` reads a variable whole: for a Downer channel file
that means the ``spike.events`` waveform matrix (spikes x samples doubles,
most of the file) only to throw it away. The MAT v5 format (MathWorks,
"MAT-File Format", 2022, ch. 1) allows better: every array is a tagged data
element whose byte count is in its tag, and a struct's fields follow each
other as such elements. :func:`read_struct_fields` walks the elements from a
stream, decodes the fields asked for and skips the others: in place for an
uncompressed variable, and for a compressed one (``miCOMPRESSED``, MATLAB's
default since v7) by decompressing in bounded chunks that are discarded. A
skipped field never exists in memory as an array.

Only what such files need is decoded: scalar (1 x 1) structs whose wanted
fields are numeric arrays (any class and storage type, real), char arrays
or nested scalar structs. Anything else raises :class:`MatFormatError`, and
the caller can fall back on scipy.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

__all__ = ["MatFormatError", "read_struct_fields"]

_MI = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8",
       12: "<i8", 13: "<u8", 16: "u1"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_STRUCT, _MX_CHAR = 2, 4
_MX_NUMERIC = {6: np.float64, 7: np.float32, 8: np.int8, 9: np.uint8, 10: np.int16,
               11: np.uint16, 12: np.int32, 13: np.uint32, 14: np.int64, 15: np.uint64}
_CHUNK = 1 << 20


class MatFormatError(ValueError):
    """The file is not a MAT v5 file of the simple layout this reader decodes."""


class _Stream:
    """Sequential reads and skips over a binary stream (or a zlib stream inside one)."""

    def __init__(self, raw: IO[bytes], n_bytes: int | None = None, compressed: bool = False):
        self.raw, self.left = raw, n_bytes
        self.zlib = zlib.decompressobj() if compressed else None
        self.buffer = b""

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            if self.zlib is None:
                chunk = self.raw.read(n - len(self.buffer))
                if not chunk:
                    raise MatFormatError("the file ends inside a data element")
                self.buffer += chunk
                continue
            if self.zlib.unconsumed_tail:
                data = self.zlib.unconsumed_tail
            else:
                want = _CHUNK if self.left is None else min(_CHUNK, self.left)
                if want <= 0:
                    raise MatFormatError("a compressed variable ends early")
                data = self.raw.read(want)
                if not data:
                    raise MatFormatError("the file ends inside a compressed variable")
                if self.left is not None:
                    self.left -= len(data)
            self.buffer += self.zlib.decompress(data, max(n - len(self.buffer), _CHUNK))

    def read(self, n: int) -> bytes:
        self._fill(n)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def skip(self, n: int) -> None:
        if self.zlib is None and len(self.buffer) == 0 and hasattr(self.raw, "seek"):
            try:
                self.raw.seek(n, io.SEEK_CUR)
                return
            except (OSError, io.UnsupportedOperation):
                pass
        while n > 0:  # in bounded pieces: the skipped bytes are never held together
            step = min(n, _CHUNK)
            self._fill(step)
            self.buffer = self.buffer[step:]
            n -= step


def _tag(stream: _Stream) -> tuple[int, int, bytes | None]:
    """``(type, n_bytes, small data or None)``; small elements carry their data in the tag."""
    head = stream.read(8)
    first, second = struct.unpack("<II", head)
    if first >> 16:  # small data element: 2-byte count, 2-byte type, 4 bytes of data
        return first & 0xFFFF, first >> 16, head[4:4 + (first >> 16)]
    return first, second, None


def _element(stream: _Stream) -> tuple[int, bytes]:
    kind, n, small = _tag(stream)
    if small is not None:
        return kind, small
    data = stream.read(n)
    stream.skip((-n) % 8)
    return kind, data


def _numbers(kind: int, data: bytes) -> np.ndarray:
    if kind not in _MI:
        raise MatFormatError(f"unsupported data type {kind}")
    return np.frombuffer(data, dtype=_MI[kind])


def _header(stream: _Stream) -> tuple[int, bool, tuple[int, ...], str]:
    """A miMATRIX's array flags, dimensions and name: ``(class, complex, dims, name)``."""
    kind, flags = _element(stream)
    flag_word = int(_numbers(kind, flags)[0])
    kind, dims_raw = _element(stream)
    dims = tuple(int(d) for d in _numbers(kind, dims_raw))
    _, name = _element(stream)
    return flag_word & 0xFF, bool(flag_word & 0x0800), dims, bytes(name).decode("ascii",
                                                                                "replace")


def _body(stream: _Stream, mx: int, complex_: bool, dims: tuple[int, ...], wanted: Any,
          where: str) -> Any:
    """The value of an array whose header was read (``wanted``: struct fields, None: all)."""
    if mx in _MX_NUMERIC:
        if complex_:
            raise MatFormatError(f"{where}: complex arrays are not decoded")
        kind, data = _element(stream)
        values = _numbers(kind, data).astype(_MX_NUMERIC[mx])
        if values.size != int(np.prod(dims)):
            raise MatFormatError(f"{where}: {values.size} values for dimensions {dims}")
        return values.reshape(dims, order="F")
    if mx == _MX_CHAR:
        kind, data = _element(stream)
        codes = _numbers(kind, data)
        if codes.size != int(np.prod(dims)):
            raise MatFormatError(f"{where}: {codes.size} characters for dimensions {dims}")
        return "".join(map(chr, codes.reshape(dims, order="F").reshape(-1, order="F")))
    if mx == _MX_STRUCT:
        if int(np.prod(dims)) != 1:
            raise MatFormatError(f"{where}: a struct array of shape {dims}; only scalar "
                                 "structs are decoded")
        kind, data = _element(stream)
        name_len = int(_numbers(kind, data)[0])
        kind, data = _element(stream)
        raw = bytes(data)
        names = [raw[i:i + name_len].split(b"\0", 1)[0].decode("ascii")
                 for i in range(0, len(raw), name_len)] if name_len else []
        out: dict[str, Any] = {}
        for name in names:
            k, n, small = _tag(stream)
            if k != _MI_MATRIX or small is not None:
                raise MatFormatError(f"{where}.{name} is not an array element")
            if wanted is not None and name not in wanted:
                stream.skip(n + (-n) % 8)  # never decoded, never held whole
                continue
            if n == 0:
                out[name] = np.zeros((0, 0))
                continue
            mx2, c2, dims2, _ = _header(stream)
            out[name] = _body(stream, mx2, c2, dims2, None, f"{where}.{name}")
        return out
    raise MatFormatError(f"{where}: MATLAB class {mx} is not decoded")


def read_struct_fields(source: bytes | IO[bytes], wanted: Mapping[str, Any]) -> list[Any]:
    """The chosen fields of chosen struct variables, the rest skipped unread.

    Parameters
    ----------
    source : bytes or binary file object
        A MAT v5/v7 file (a zip member opened with ``ZipFile.open`` works).
    wanted : mapping
        Variable name -> tuple of field names to decode (None: every field).

    Returns
    -------
    list of dict
        One ``{field: value}`` per wanted variable, in the order of
        ``wanted``; numeric values are numpy arrays in MATLAB's shape.

    Raises
    ------
    MatFormatError
        For a v7.3 (HDF5) file, a big-endian one, or a layout outside the
        module docstring's; or when a wanted variable is absent or not a
        scalar struct.
    """
    raw = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    header = raw.read(128)
    if len(header) < 128:
        raise MatFormatError("shorter than a MAT-file header")
    if header[126:128] != b"IM":
        raise MatFormatError("not a little-endian MAT v5 file (v7.3 files are HDF5)")
    found: dict[str, Any] = {}
    while len(found) < len(wanted):
        head = raw.read(8)
        if len(head) < 8:
            break
        kind, n = struct.unpack("<II", head)
        start = raw.tell()
        end = start + n + (0 if kind == _MI_COMPRESSED else (-n) % 8)
        if kind in (_MI_COMPRESSED, _MI_MATRIX):
            stream = _Stream(raw, n, compressed=True) if kind == _MI_COMPRESSED else _Stream(raw)
            if kind == _MI_COMPRESSED:
                inner, _, _ = _tag(stream)
                if inner != _MI_MATRIX:
                    raise MatFormatError("a compressed element that is not an array")
            mx, complex_, dims, name = _header(stream)
            if name in wanted:
                if mx != _MX_STRUCT:
                    raise MatFormatError(f"variable {name!r} is not a struct")
                found[name] = _body(stream, mx, complex_, dims, wanted[name], name)
        raw.seek(end)
    missing = [v for v in wanted if v not in found]
    if missing:
        raise MatFormatError(f"no variable {missing[0]!r}")
    return [found[v] for v in wanted]
