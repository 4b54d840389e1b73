"""Shared readers for the raw files of the public datasets.

One function per raw format, each strict about what it accepts and clear about
what it refuses: a malformed file raises :class:`~deepstrf.errors.RawDataError`
(a ``ValueError``) naming the file and the fault; a missing file raises
``FileNotFoundError``.

=========================  ===================================================
:func:`read_spike_times`   CRCNS ``spikeN`` text files (one trial per line, ms)
:func:`read_stim_file`     CRCNS ``stimN`` text files (the wav file name)
:func:`read_wav`           wav (and other libsndfile formats) as float32
:func:`read_mat`           MATLAB v4/v5/v7 (scipy) and v7.3 (HDF5) files, one
                           Python representation for all versions
:func:`decode_attr`        HDF5 attribute values stored as bytes or str
=========================  ===================================================

Nothing here touches the disk until a function is called.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from deepstrf._validation import check_positive
from deepstrf.errors import RawDataError

__all__ = [
    "read_spike_times",
    "read_spike_times_flat",
    "read_stim_file",
    "read_wav",
    "read_mat",
    "read_array",
    "decode_attr",
]

logger = logging.getLogger(__name__)

PathType = str | PathLike

# ---------------------------------------------------------------------------
# CRCNS spike-time and stimulus-name text files
# ---------------------------------------------------------------------------

# Characters a spike file may hold. With these alone, every token Python's
# float() accepts is a plain decimal number (no "nan", "inf", "1_000", ...).
_SPIKE_BAD_CHAR = re.compile(r"[^0-9eE.+\- \t\r\n]")


def read_spike_times(path: PathType) -> list[np.ndarray]:
    """Read a CRCNS ``spikeN`` file: spike times in ms, one line per trial.

    The Theunissen-lab writer (CRCNS aa-1, aa-2) puts each trial on its own
    line, spike times in ms relative to stimulus onset (negative before the
    onset) separated by single spaces, and ends every non-empty line with
    ``" \\n"``. A trial without spikes is a bare ``"\\n"`` and still counts as
    a trial. The final line feed ends the last trial; it does not start a new
    one. Lines without the trailing space, CRLF line ends, tabs and runs of
    spaces are accepted too.

    Parameters
    ----------
    path : str or os.PathLike
        The spike file.

    Returns
    -------
    list of numpy.ndarray
        One float64 array per trial (line), in file order, possibly empty.
        Spike times keep the file's order; they are not sorted. An empty file
        has no trials and gives ``[]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    RawDataError
        If a token is not a decimal number; the message names the file, the
        1-based line number and the token.

    Examples
    --------
    A file holding ``"\\n1.5 -2.25 \\n\\n"`` gives three trials:
    ``[array([]), array([1.5, -2.25]), array([])]``.
    """
    values, counts = read_spike_times_flat(path)
    if len(counts) == 0:
        return []
    return np.split(values, np.cumsum(counts)[:-1])


def read_spike_times_flat(path: PathType) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_spike_times` as one array: ``(all spike times, spikes per trial)``.

    ``np.split(times, np.cumsum(counts)[:-1])`` gives the trials. One array
    per file is much cheaper to send between processes than one per trial.
    """
    path = Path(path)
    # latin-1 maps every byte to one character, so decoding never fails and a
    # stray non-ASCII byte is reported below as a bad token with its line.
    text = path.read_bytes().decode("latin-1")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final LF ends the last trial
    if not lines:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.intp)
    per_line = [line.split() for line in lines]
    counts = np.fromiter((len(tokens) for tokens in per_line), dtype=np.intp,
                         count=len(per_line))
    tokens = [token for line_tokens in per_line for token in line_tokens]
    values: np.ndarray | None = None
    if _SPIKE_BAD_CHAR.search(text) is None:
        try:
            # One C-level conversion of all tokens instead of a float() per token.
            values = np.array(tokens, dtype=np.float64)
        except ValueError:
            values = None
    if values is None:
        _raise_bad_spike_token(path, text, per_line)
    if not np.isfinite(values).all():
        _raise_non_finite(path, values, counts, per_line)
    return values, counts


def _raise_non_finite(path: Path, values: np.ndarray, counts: np.ndarray,
                      per_line: list[list[str]]) -> NoReturn:
    """Name the line and token of the first spike time that parsed to inf (e.g. ``1e400``)."""
    first = int(np.flatnonzero(~np.isfinite(values))[0])
    line_index = int(np.searchsorted(np.cumsum(counts), first, side="right"))
    token = per_line[line_index][first - int(counts[:line_index].sum())]
    raise RawDataError(
        f"{path}: line {line_index + 1}: spike time {token!r} is not a finite number (it "
        "overflows float64); expected spike times in ms. Fix or remove that value."
    )


def _raise_bad_spike_token(path: Path, text: str, per_line: list[list[str]]) -> NoReturn:
    """Find the first malformed token (slow path, only on bad files) and raise."""
    for lineno, line_tokens in enumerate(per_line, start=1):
        for token in line_tokens:
            bad = _SPIKE_BAD_CHAR.search(token) is not None
            if not bad:
                try:
                    float(token)
                except ValueError:
                    bad = True
            if bad:
                raise RawDataError(
                    f"{path}: line {lineno}: malformed spike time {token!r}; expected "
                    "decimal numbers (ms) separated by spaces, one trial per line."
                )
    # Every token is fine, so the culprit is a character str.split() took for
    # whitespace (form feed, NBSP, ...).
    match = _SPIKE_BAD_CHAR.search(text)
    position = match.start() if match else 0
    lineno = text.count("\n", 0, position) + 1
    raise RawDataError(
        f"{path}: line {lineno}: unexpected character {text[position]!r}; expected decimal "
        "numbers (ms) separated by spaces, one trial per line."
    )


_STIM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.wav", re.IGNORECASE)


def read_stim_file(path: PathType) -> str:
    """Read a CRCNS ``stimN`` file and return the wav file name it holds.

    The file is one line: the name of the wav played in that protocol, e.g.
    ``0CE3F97518B992FDCA431CEB28645617.wav``, then a line feed. Surrounding
    whitespace is stripped.

    Parameters
    ----------
    path : str or os.PathLike
        The stimulus file.

    Returns
    -------
    str
        The wav file name, without any directory part.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    RawDataError
        If the file is empty, holds more than one name, or the name is not a
        plain ``*.wav`` file name (letters, digits, ``.``, ``_``, ``-``; no
        directory part, so a crafted file cannot point outside the dataset).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError as err:
        raise RawDataError(
            f"{path}: stimulus file is not ASCII text; expected one wav file name "
            "such as '0CE3F97518B992FDCA431CEB28645617.wav'."
        ) from err
    if not name:
        raise RawDataError(
            f"{path}: stimulus file is empty; expected one wav file name such as "
            "'0CE3F97518B992FDCA431CEB28645617.wav'."
        )
    if _STIM_NAME.fullmatch(name) is None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise RawDataError(
            f"{path}: expected one wav file name such as "
            f"'0CE3F97518B992FDCA431CEB28645617.wav'; got {shown!r}."
        )
    return name


# ---------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------

_UNKNOWN_SIZE = 0xFFFFFFFF  # what streaming writers put in a size field they never fill


def _check_riff_sizes(path: Path) -> None:
    """Raise if a RIFF/WAVE file declares more bytes than it holds.

    libsndfile reads a truncated data chunk without complaint, returning fewer
    frames than the header promised, so the sizes are checked here. Files that
    are not RIFF (FLAC, AIFF, RF64, ...) are left to libsndfile.
    """
    file_size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(12)
        if len(header) < 12 or header[8:12] != b"WAVE" or header[:4] not in (b"RIFF", b"RIFX"):
            return
        endian = "<" if header[:4] == b"RIFF" else ">"
        (riff_size,) = struct.unpack(endian + "I", header[4:8])
        # One byte of slack: some writers omit the pad byte after an odd-sized
        # last chunk but count it in the RIFF size.
        if riff_size != _UNKNOWN_SIZE and riff_size + 8 > file_size + 1:
            raise RawDataError(
                f"{path}: truncated wav file: the RIFF header declares {riff_size + 8} "
                f"bytes but the file holds {file_size}. Download it again."
            )
        offset = 12
        while offset + 8 <= file_size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", fh.read(8))
            body = offset + 8
            if chunk_id == b"data":
                if chunk_size != _UNKNOWN_SIZE and body + chunk_size > file_size:
                    raise RawDataError(
                        f"{path}: truncated wav file: the data chunk declares "
                        f"{chunk_size} bytes but only {file_size - body} follow. "
                        "Download it again."
                    )
                return
            offset = body + chunk_size + (chunk_size & 1)
        raise RawDataError(f"{path}: wav file has no data chunk.")


def read_wav(path: PathType, *, expected_sr: float | None = None,
             mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 samples scaled to [-1, 1].

    Parameters
    ----------
    path : str or os.PathLike
        The audio file (wav, or any format libsndfile reads).
    expected_sr : float, optional
        The sample rate the dataset documents. A file at another rate raises
        rather than being silently resampled, since a wrong rate changes every
        time axis downstream.
    mono : bool, default True
        If True, a multi-channel file is mixed down to one channel by taking
        the mean over channels, and the result is 1-D ``(n_samples,)``. If
        False, the result is 2-D ``(n_channels, n_samples)`` even for a mono
        file (the librosa/torchaudio channel-first layout).

    Returns
    -------
    samples : numpy.ndarray
        float32. Integer PCM is scaled to [-1, 1); floating-point files are
        returned as stored (not clipped).
    sample_rate : int
        The rate in the file header, in Hz.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    RawDataError
        If the file is truncated (a RIFF or data chunk size larger than the
        bytes present), cannot be decoded, or its rate differs from
        ``expected_sr``.
    """
    import soundfile

    path = Path(path)
    if expected_sr is not None:
        expected_sr = check_positive("expected_sr", expected_sr)
    if not isinstance(mono, bool):
        raise TypeError(f"mono must be True or False; got {mono!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"read_wav: no such file: {path}")
    _check_riff_sizes(path)
    try:
        samples, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.SoundFileError, TypeError, ValueError) as err:
        raise RawDataError(f"{path}: cannot decode the audio file: {err}") from err
    if expected_sr is not None and float(sample_rate) != expected_sr:
        raise RawDataError(
            f"{path}: sample rate is {sample_rate} Hz; expected {expected_sr:g} Hz. The "
            "file does not match the dataset's documented format (wrong file, or a "
            "different release); pass expected_sr=None to accept any rate."
        )
    if mono:
        out = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    else:
        out = samples.T
    return np.ascontiguousarray(out, dtype=np.float32), int(sample_rate)


# ---------------------------------------------------------------------------
# MATLAB files
# ---------------------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# MATLAB class name -> NumPy dtype of the values it stores.
_MATLAB_NUMERIC = {
    "double": np.float64,
    "single": np.float32,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "logical": np.uint8,  # scipy.io.loadmat gives logicals as uint8; so do we
}


def read_mat(path: PathType | bytes, variable_names: Iterable[str] | None = None, *,
             name: str | None = None) -> dict[str, Any]:
    """Read a MATLAB ``.mat`` file of any version into plain Python objects.

    Versions 4, 5 and 7 are read with :func:`scipy.io.loadmat`; version 7.3
    (an HDF5 file with MATLAB's conventions) with h5py. The version is taken
    from the file header, not the extension. Both paths give the same Python
    output, the one ``scipy.io.loadmat(..., simplify_cells=True)`` gives:

    * a struct becomes a ``dict`` (field order kept); a 1-by-N or N-by-1
      struct array becomes a ``list`` of dicts;
    * a cell array becomes a squeezed NumPy object array; a one-dimensional
      cell array whose first element is a struct becomes a ``list``;
    * a char row becomes ``str``; a char matrix an array of its row strings;
    * numeric and logical arrays keep MATLAB's orientation with singleton
      dimensions squeezed (a 1-by-N row and an N-by-1 column both become
      ``(N,)``); logicals are uint8, as scipy gives them;
    * a 1-by-1 array becomes a Python scalar (``float``, ``int``,
      ``complex``); an empty array becomes a ``(0,)`` array of its type;
    * a sparse matrix becomes a :class:`scipy.sparse.csc_matrix`.

    One departure from ``simplify_cells``: structs nested anywhere (in a cell
    whose first element is not a struct, or in a 2-D struct array) are also
    converted to dicts, where scipy leaves ``mat_struct`` objects. The
    ``__header__``, ``__version__`` and ``__globals__`` entries are dropped.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        The ``.mat`` file, or its content (a member read from an archive).
    variable_names : iterable of str, optional
        Read only these variables. Default: all.
    name : str, optional
        What to call the file in error messages (default: the path; for
        content, ``"<bytes>"``): e.g. ``"release.zip > a/b.mat"``.

    Returns
    -------
    dict
        Variable name -> value.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    RawDataError
        If the file is not a MATLAB file, is corrupt, holds a MATLAB class
        this reader does not decode (objects, function handles, strings made
        with ``string``), or lacks a requested variable.
    """
    content = bytes(path) if isinstance(path, (bytes, bytearray, memoryview)) else None
    if content is None:
        path = Path(path)
    where = name if name is not None else ("<bytes>" if content is not None else str(path))
    if variable_names is not None:
        if isinstance(variable_names, str):
            variable_names = [variable_names]
        variable_names = list(variable_names)
        for wanted in variable_names:
            if not isinstance(wanted, str):
                raise TypeError(
                    f"variable_names must hold strings; got {wanted!r} ({type(wanted).__name__})."
                )
    if content is None and not path.is_file():
        raise FileNotFoundError(f"read_mat: no such file: {path}")
    source = _MatSource(path if content is None else None, content)
    try:
        if source.is_hdf5():
            raw = _load_mat73(source, variable_names)
        else:
            raw = _load_mat_scipy(source, variable_names, where)
    except RawDataError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise RawDataError(
            f"{where}: not a readable MATLAB file ({type(err).__name__}: {err})."
        ) from err
    if variable_names is not None:
        missing = [v for v in variable_names if v not in raw]
        if missing:
            held = ", ".join(_variable_list(source)) or "no variables"
            raise RawDataError(
                f"{where}: no variable(s) {', '.join(repr(m) for m in missing)} in this "
                f"MATLAB file; it holds: {held}."
            )
    return {key: _simplify(value) for key, value in raw.items()}


class _MatSource:
    """A MATLAB file on disk or its content in memory, opened anew for each reader."""

    def __init__(self, path: Path | None, content: bytes | None):
        self.path, self.content = path, content

    def open(self) -> Any:
        import io

        return self.path.open("rb") if self.content is None else io.BytesIO(self.content)

    def target(self) -> Any:
        """What scipy and h5py take: the path as a string, or a file object on the content."""
        return str(self.path) if self.content is None else self.open()

    def is_hdf5(self) -> bool:
        # HDF5 looks for its superblock at 0 and at powers of two from 512; MATLAB
        # v7.3 files put it after a 512-byte userblock holding the MATLAB header.
        with self.open() as fh:
            head = fh.read(2048 + 8)
        return any(head[offset:offset + 8] == _HDF5_SIGNATURE for offset in (0, 512, 1024, 2048))


def read_array(path: PathType, key: Any = None) -> Any:
    """Read one array stored in a NumPy, HDF5 or MATLAB file.

    The file kind is taken from the extension:

    * ``.npy``: the array, memory-mapped (``key`` is not used);
    * ``.npz``: the member ``key`` (a string);
    * ``.h5`` / ``.hdf5``: the dataset at ``key``, a path of group names
      (``"stims/0"``) or a tuple of them;
    * anything else, a MATLAB file of any version (:func:`read_mat`): the
      variable ``key``, or with a tuple ``(variable, index or field, ...)``
      the element reached by indexing the variable in turn.

    Raises
    ------
    ValueError
        If a key is needed and not given.
    RawDataError
        If the file cannot be read or holds nothing at ``key``; the message
        names the file and the key.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise RawDataError(f"{path}: not a readable .npy array ({err}).") from err
    if suffix == ".npz":
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as f:
                if not isinstance(key, str) or key not in f:
                    raise RawDataError(f"{path}: give key= among {sorted(f.files)} (got "
                                       f"{key!r}).")
                return f[key]
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise RawDataError(f"{path}: not a readable .npz archive ({err}).") from err
    keys = key if isinstance(key, tuple) else (key,)
    if not keys or keys[0] is None:
        raise ValueError(f"a key is needed to read an array from {path}.")
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return np.asarray(f["/".join(str(k) for k in keys)][()])
        except (OSError, KeyError) as err:
            raise RawDataError(f"{path}: cannot read {'/'.join(map(str, keys))} ({err}).") \
                from err
    value: Any = read_mat(path, [keys[0]])[keys[0]]
    for k in keys[1:]:
        try:
            value = value[k]
        except (KeyError, IndexError, TypeError) as err:
            raise RawDataError(f"{path}: {keys[0]} has no element {k!r} ({err}).") from err
    return value


def _variable_list(source: _MatSource) -> list[str]:
    """Names of all variables in a MATLAB file (for error messages)."""
    if source.is_hdf5():
        import h5py

        with h5py.File(source.target(), "r") as fh:
            return sorted(n for n in fh if not n.startswith("#"))
    from scipy.io import whosmat

    return sorted(entry[0] for entry in whosmat(source.target(), appendmat=False))


def _load_mat_scipy(source: _MatSource, variable_names: list[str] | None,
                    where: str) -> dict[str, Any]:
    """v4/v5/v7 files, squeezed, with structs as ``mat_struct`` for :func:`_simplify`."""
    from scipy.io import loadmat
    from scipy.io.matlab import matfile_version

    major, _ = matfile_version(source.target(), appendmat=False)
    if major not in (0, 1):
        raise RawDataError(f"{where}: unknown MATLAB file version {major}.")
    raw = loadmat(source.target(), variable_names=variable_names, squeeze_me=True,
                  struct_as_record=False, chars_as_strings=True, appendmat=False)
    return {k: v for k, v in raw.items() if not k.startswith("__")}


def _simplify(value: Any) -> Any:
    """Turn squeezed loadmat output (structs as ``mat_struct``) into dicts and lists."""
    from scipy.io.matlab import mat_struct

    if isinstance(value, mat_struct):
        return {name: _simplify(getattr(value, name)) for name in value._fieldnames}
    if isinstance(value, np.ndarray) and value.dtype == object:
        items = [_simplify(item) for item in value.flat]
        if value.ndim == 1 and items and isinstance(value[0], mat_struct):
            return items
        out = np.empty(value.shape, dtype=object)
        for index, item in zip(np.ndindex(value.shape), items, strict=True):
            out[index] = item
        return out
    return value


def _squeeze(array: np.ndarray) -> Any:
    """Squeeze like ``loadmat(squeeze_me=True)``: empty -> (0,), 1 element -> scalar."""
    if array.size == 0:
        return np.empty((0,), dtype=array.dtype)
    array = np.squeeze(array)
    if array.ndim == 0:
        return array.item()
    return array


def _load_mat73(source: _MatSource, variable_names: list[str] | None) -> dict[str, Any]:
    import h5py

    with h5py.File(source.target(), "r") as fh:
        names = [n for n in fh if not n.startswith("#")]
        if variable_names is not None:
            wanted = set(variable_names)
            names = [n for n in names if n in wanted]
        return {name: _decode_h5(fh[name], name) for name in names}


def _attr_str(node: Any, key: str) -> str | None:
    value = node.attrs.get(key)
    return None if value is None else decode_attr(value)


def _decode_h5(node: Any, where: str) -> Any:
    """Decode one MATLAB v7.3 object into squeezed loadmat-like output."""
    import h5py

    matlab_class = _attr_str(node, "MATLAB_class")
    if isinstance(node, h5py.Group):
        if "MATLAB_sparse" in node.attrs:
            return _decode_sparse(node, matlab_class, where)
        if matlab_class not in (None, "struct"):
            raise RawDataError(f"unsupported MATLAB class {matlab_class!r} at {where!r}.")
        return _decode_struct(node, where)
    if matlab_class is None:
        raise RawDataError(
            f"dataset {where!r} has no MATLAB_class attribute: this HDF5 file was not "
            "written as a MATLAB v7.3 file; read it with h5py."
        )
    if "MATLAB_object_decode" in node.attrs:
        raise RawDataError(
            f"unsupported MATLAB object at {where!r} (class {matlab_class!r}); re-save the "
            "variable as numeric arrays, char, cell or struct."
        )
    if int(np.asarray(node.attrs.get("MATLAB_empty", 0)).ravel()[0]):
        return _decode_empty(matlab_class, where)
    if matlab_class == "canonical empty":
        return np.empty((0,), dtype=np.float64)
    data = node[()]
    if matlab_class == "cell":
        cells = np.asarray(data).T
        out = np.empty(cells.shape, dtype=object)
        for index in np.ndindex(cells.shape):
            ref = cells[index]
            out[index] = _decode_h5(node.file[ref], f"{where}{{{index}}}")
        return _squeeze(out)
    if matlab_class == "struct":
        raise RawDataError(f"malformed MATLAB struct at {where!r} (a dataset, not a group).")
    if matlab_class == "char":
        return _squeeze(_chars_to_strings(np.asarray(data).T))
    if matlab_class in _MATLAB_NUMERIC:
        array = np.asarray(data)
        if array.dtype.names is not None:  # complex: compound of real and imag
            real = array["real"].astype(_MATLAB_NUMERIC[matlab_class])
            array = real + 1j * array["imag"].astype(real.dtype)
        else:
            array = array.astype(_MATLAB_NUMERIC[matlab_class], copy=False)
        return _squeeze(array.T)
    raise RawDataError(f"unsupported MATLAB class {matlab_class!r} at {where!r}.")


def _decode_empty(matlab_class: str, where: str) -> np.ndarray:
    if matlab_class in ("cell", "struct"):
        return np.empty((0,), dtype=object)
    if matlab_class == "char":
        return np.empty((0,), dtype="<U1")
    if matlab_class in _MATLAB_NUMERIC:
        return np.empty((0,), dtype=_MATLAB_NUMERIC[matlab_class])
    raise RawDataError(f"unsupported MATLAB class {matlab_class!r} at {where!r}.")


def _chars_to_strings(codes: np.ndarray) -> np.ndarray:
    """UTF-16 code units in MATLAB orientation -> strings along the last axis."""
    codes = np.ascontiguousarray(codes, dtype=np.uint32)
    length = codes.shape[-1]
    strings = codes.view(f"<U{length}") if length else np.zeros(codes.shape[:-1], "<U1")
    return strings.reshape(codes.shape[:-1])


def _field_names(group: Any) -> list[str]:
    raw = group.attrs.get("MATLAB_fields")
    if raw is None:
        return list(group.keys())
    return [b"".join(np.asarray(name).ravel().tolist()).decode("ascii") for name in raw]


def _decode_struct(group: Any, where: str) -> Any:
    import h5py
    from scipy.io.matlab import mat_struct

    fields = _field_names(group)
    for name in fields:
        if name not in group:
            raise RawDataError(f"MATLAB struct at {where!r} lacks its field {name!r}.")
    # A struct array stores each field as an array of references with the
    # struct's shape and no MATLAB_class; a scalar struct stores the values.
    first = group[fields[0]] if fields else None
    is_array = (
        isinstance(first, h5py.Dataset)
        and first.dtype == h5py.ref_dtype
        and "MATLAB_class" not in first.attrs
    )
    if not is_array:
        element = mat_struct()
        element._fieldnames = fields
        for name in fields:
            setattr(element, name, _decode_h5(group[name], f"{where}.{name}"))
        return element
    refs = {name: np.asarray(group[name][()]).T for name in fields}
    shape = refs[fields[0]].shape
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        element = mat_struct()
        element._fieldnames = fields
        for name in fields:
            if refs[name].shape != shape:
                raise RawDataError(
                    f"MATLAB struct array at {where!r}: field {name!r} has shape "
                    f"{refs[name].shape}, expected {shape}."
                )
            target = group.file[refs[name][index]]
            setattr(element, name, _decode_h5(target, f"{where}({index}).{name}"))
        out[index] = element
    return _squeeze(out)


def _decode_sparse(group: Any, matlab_class: str | None, where: str) -> Any:
    import scipy.sparse

    n_rows = int(np.asarray(group.attrs["MATLAB_sparse"]).ravel()[0])
    jc = np.asarray(group["jc"][()], dtype=np.int64).ravel()
    n_cols = jc.size - 1
    if "data" in group:
        data = np.asarray(group["data"][()])
        if data.dtype.names is not None:
            data = data["real"] + 1j * data["imag"]
        data = data.ravel()
        ir = np.asarray(group["ir"][()], dtype=np.int64).ravel()
    else:  # an all-zero sparse matrix stores no data
        data = np.empty((0,), dtype=np.float64)
        ir = np.empty((0,), dtype=np.int64)
    if matlab_class in _MATLAB_NUMERIC and not np.iscomplexobj(data):
        data = data.astype(_MATLAB_NUMERIC[matlab_class])
    return scipy.sparse.csc_matrix((data, ir, jc), shape=(n_rows, n_cols))


# ---------------------------------------------------------------------------
# HDF5 attributes
# ---------------------------------------------------------------------------

def decode_attr(value: Any) -> Any:
    """Decode an HDF5 attribute value that holds text.

    Text attributes come back from h5py as ``str``, ``bytes``,
    ``numpy.bytes_`` or arrays of those, depending on how the file was
    written (the AA4 files mix all of them).

    Parameters
    ----------
    value : Any
        An attribute value as h5py returns it.

    Returns
    -------
    str or list of str or Any
        ``str`` for bytes (UTF-8, falling back to Latin-1) and str values; for
        an array of one element, that element decoded; for an array of
        several text elements, a list of str. Anything else (numbers, numeric
        arrays) is returned unchanged.
    """
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return decode_attr(value.reshape(-1)[0])
        if value.dtype.kind in "SUO":
            return [decode_attr(item) for item in value.reshape(-1)]
    return value
