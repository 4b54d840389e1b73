"""Write MATLAB ``.mat`` files, version 5 or 7.3, from plain Python values.

Fixture writers use this to produce raw files in a dataset's exact format.
Version 5 files are written by :func:`scipy.io.savemat`; version 7.3 files are
HDF5 files laid out the way MATLAB lays them out, so that MATLAB, h5py-based
readers and :func:`deepstrf.io.readers.read_mat` all read them:

* a 512-byte HDF5 userblock holding MATLAB's 128-byte text header
  (``MATLAB 7.3 MAT-file ...``, version 0x0200, endian indicator ``IM``);
* every variable carries a ``MATLAB_class`` attribute (``double``, ``char``,
  ``cell``, ``struct``, ...);
* arrays are stored transposed (HDF5 is row-major, MATLAB column-major), so
  a MATLAB ``m x n`` array is an HDF5 dataset of shape ``(n, m)``;
* char arrays are uint16 UTF-16 code units (``MATLAB_int_decode = 2``);
  logicals are uint8 (``MATLAB_class = 'logical'``); complex numbers are a
  compound of ``real`` and ``imag``;
* empty arrays are a uint64 dataset holding their dimensions, flagged by
  ``MATLAB_empty = 1``;
* a cell array is a dataset of object references to its elements, which live
  in the ``#refs#`` group;
* a scalar struct is a group whose members are the fields, with the field
  order in ``MATLAB_fields``; a struct array is a group whose fields are
  datasets of references (the struct's shape) to the elements' values;
* sparse matrices are a group with ``data``, ``ir``, ``jc`` and the row count
  in ``MATLAB_sparse``.

Both versions take the same Python values and give files that
:func:`~deepstrf.io.readers.read_mat` turns back into the same objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice

__all__ = ["write_mat", "struct_array"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")

# NumPy dtype -> MATLAB class of numeric arrays.
_CLASS_OF = {
    np.dtype(np.float64): "double",
    np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
}

# A fixed date keeps the header, and so the fixture bytes outside HDF5's own
# bookkeeping, independent of when the file was written.
_HEADER_TEXT = (
    b"MATLAB 7.3 MAT-file, Platform: deepstrf, Created on: Thu Jan  1 00:00:00 2026 "
    b"HDF5 schema 1.00 ."
)


def struct_array(records: Sequence[Mapping[str, Any]],
                 shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Build a MATLAB struct array from dicts with the same fields.

    A plain list of dicts is written as a cell array of structs (as
    :func:`scipy.io.savemat` does); wrap it with this function to get a struct
    array instead, e.g. NS1's ``neuron(1x119)`` or ``data.set(1x32)``.

    Parameters
    ----------
    records : sequence of mapping
        One dict per element, all with the same keys in the same order.
    shape : tuple of int, optional
        MATLAB shape of the array; default ``(1, len(records))``.

    Returns
    -------
    numpy.ndarray
        A structured array with one object field per struct field, which both
        :func:`write_mat` versions write as a struct array.

    Raises
    ------
    ValueError
        If ``records`` is empty, the records' keys differ, or ``shape`` does
        not hold ``len(records)`` elements.
    """
    records = list(records)
    if not records:
        raise ValueError("struct_array needs at least one record; got none.")
    fields = list(records[0])
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"struct_array: record {i} must be a dict; got {type(record).__name__}.")
        if list(record) != fields:
            raise ValueError(
                f"struct_array: record {i} has fields {list(record)}; expected {fields} "
                "(same fields, same order, as record 0)."
            )
    for name in fields:
        _check_name(name, "field")
    shape = (1, len(records)) if shape is None else tuple(int(n) for n in shape)
    if int(np.prod(shape)) != len(records):
        raise ValueError(
            f"struct_array: shape {shape} holds {int(np.prod(shape))} elements; got "
            f"{len(records)} records."
        )
    out = np.empty(len(records), dtype=[(name, object) for name in fields])
    for i, record in enumerate(records):
        for name in fields:
            out[i][name] = record[name]
    # Records fill the array in MATLAB's column-major element order.
    return out.reshape(shape, order="F")


def write_mat(path: str | PathLike, variables: Mapping[str, Any], *,
              version: str = "7.3") -> Path:
    """Write variables to a MATLAB ``.mat`` file.

    Python values map to MATLAB values as follows (the same for both
    versions):

    ===============================  ============================================
    ``str``                          char row vector (``''`` is a 0x0 char)
    ``bool`` / ``numpy.bool_``        logical
    ``int``                          int64 (as :func:`scipy.io.savemat` writes it)
    ``float`` / ``complex``          double (complex)
    NumPy numeric scalar or array    array of that class; 0-d and 1-d become
                                     1-by-N rows; N-d arrays keep their shape
    NumPy ``str_`` array             char matrix, one row per string
    ``dict``                         scalar struct (keys are field names)
    :func:`struct_array` output      struct array
    ``list`` / ``tuple``             1-by-N cell array, elements converted
    NumPy object array               cell array of that shape
    :mod:`scipy.sparse` matrix       sparse double/logical matrix
    ===============================  ============================================

    Unlike :func:`scipy.io.savemat`, a list is always a cell array (savemat
    turns a list of numbers into a numeric array): pass a NumPy array for a
    numeric one.

    Parameters
    ----------
    path : str or os.PathLike
        File to create (overwritten if it exists).
    variables : mapping
        Variable name -> value. Names must be MATLAB identifiers.
    version : {"7.3", "5"}
        File version: "7.3" (HDF5, written here) or "5" (via savemat).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If a value has no MATLAB equivalent (``None``, ``bytes``, float16, ...).
    ValueError
        If a variable or field name is not a MATLAB identifier.
    """
    check_choice("version", version, ("7.3", "5"))
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be a dict of name -> value; got {type(variables).__name__}.")
    converted = {}
    for name, value in variables.items():
        _check_name(name, "variable")
        converted[name] = _normalise(value, name)
    path = Path(path)
    if version == "5":
        from scipy.io import savemat

        savemat(str(path), converted, long_field_names=True, oned_as="row")
    else:
        _write_mat73(path, converted)
    return path


def _check_name(name: Any, kind: str) -> None:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"{kind} name {name!r} is not a MATLAB identifier: it must start with a letter "
            "and hold only letters, digits and underscores (at most 63 characters)."
        )


def _normalise(value: Any, where: str) -> Any:
    """Map a Python value to the canonical form both writers understand."""
    import scipy.sparse

    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            _check_name(key, "field")
            out[key] = _normalise(item, f"{where}.{key}")
        return out
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    if isinstance(value, complex):
        return np.complex128(value)
    if scipy.sparse.issparse(value):
        if value.dtype.kind not in "bfc":
            raise TypeError(f"{where}: MATLAB sparse matrices are double or logical; got {value.dtype}.")
        return scipy.sparse.csc_matrix(value)
    if isinstance(value, (list, tuple)):
        out_cell = np.empty((1, len(value)), dtype=object)
        for i, item in enumerate(value):
            out_cell[0, i] = _normalise(item, f"{where}{{{i + 1}}}")
        return out_cell
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.names is not None:
            out_struct = np.empty(array.shape, dtype=array.dtype)
            for index in np.ndindex(array.shape):
                for name in array.dtype.names:
                    _check_name(name, "field")
                    out_struct[index][name] = _normalise(array[index][name], f"{where}.{name}")
            return out_struct
        if array.dtype == object:
            out_obj = np.empty(array.shape, dtype=object)
            for index in np.ndindex(array.shape):
                out_obj[index] = _normalise(array[index], f"{where}{{{index}}}")
            return out_obj
        if array.dtype.kind == "U":
            return array
        if array.dtype.kind == "b" or array.dtype in _CLASS_OF:
            return array
        if array.dtype.kind == "c" and array.dtype.itemsize in (8, 16):
            return array
        raise TypeError(
            f"{where}: NumPy dtype {array.dtype} has no MATLAB class; use float64, float32, "
            "(u)int8-64, bool or complex."
        )
    raise TypeError(
        f"{where}: cannot write a {type(value).__name__} to a MATLAB file; use str, numbers, "
        "NumPy arrays, dicts, lists or struct_array(...) (np.zeros((0, 0)) for MATLAB [])."
    )


# ---------------------------------------------------------------------------
# Version 7.3 (HDF5)
# ---------------------------------------------------------------------------

def _write_mat73(path: Path, variables: dict[str, Any]) -> None:
    import h5py

    with h5py.File(path, "w", userblock_size=512, libver="earliest") as fh:
        writer = _Mat73Writer(fh)
        for name, value in variables.items():
            writer.write(fh, name, value)
    header = _HEADER_TEXT.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with path.open("r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))


class _Mat73Writer:
    """Writes canonical values into an open HDF5 file with MATLAB's layout."""

    def __init__(self, fh: Any) -> None:
        import h5py

        self._h5py = h5py
        self._refs = fh.create_group("#refs#")
        self._n_refs = 0
        # MATLAB keeps a canonical empty array at #refs#/a.
        canonical = self._refs.create_dataset("a", data=np.zeros(2, dtype=np.uint64))
        canonical.attrs["MATLAB_class"] = np.bytes_("canonical empty")
        canonical.attrs["MATLAB_empty"] = np.uint8(1)

    def _ref_name(self) -> str:
        # b, c, ..., z, ba, bb, ...: letters after the canonical "a".
        self._n_refs += 1
        n, letters = self._n_refs, ""
        while True:
            n, digit = divmod(n, 26)
            letters = chr(ord("a") + digit) + letters
            if n == 0:
                return letters

    def _reference(self, value: Any) -> Any:
        name = self._ref_name()
        return self.write(self._refs, name, value).ref

    def write(self, parent: Any, name: str, value: Any) -> Any:
        import scipy.sparse

        if isinstance(value, dict):
            return self._write_struct(parent, name, value)
        if isinstance(value, str):
            return self._write_char(parent, name, np.array([value]))
        if scipy.sparse.issparse(value):
            return self._write_sparse(parent, name, value)
        array = np.asarray(value)
        if array.dtype.names is not None:
            return self._write_struct_array(parent, name, array)
        if array.dtype == object:
            return self._write_cell(parent, name, array)
        if array.dtype.kind == "U":
            return self._write_char(parent, name, array)
        return self._write_numeric(parent, name, array)

    @staticmethod
    def _matlab_shape(array: np.ndarray) -> np.ndarray:
        # savemat's conventions: scalars are 1x1, 1-d arrays are rows.
        if array.ndim == 0:
            return array.reshape(1, 1)
        if array.ndim == 1:
            return array.reshape(1, -1)
        return array

    def _write_empty(self, parent: Any, name: str, matlab_class: str,
                     shape: tuple[int, ...]) -> Any:
        ds = parent.create_dataset(name, data=np.asarray(shape, dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        return ds

    def _write_numeric(self, parent: Any, name: str, array: np.ndarray) -> Any:
        array = self._matlab_shape(array)
        if array.dtype.kind == "b":
            matlab_class, array = "logical", array.astype(np.uint8)
        elif array.dtype.kind == "c":
            matlab_class = "double" if array.dtype.itemsize == 16 else "single"
        else:
            matlab_class = _CLASS_OF[array.dtype]
        if array.size == 0:
            return self._write_empty(parent, name, matlab_class, array.shape)
        data = np.ascontiguousarray(array.T)
        if array.dtype.kind == "c":
            part = data.real.dtype
            compound = np.empty(data.shape, dtype=[("real", part), ("imag", part)])
            compound["real"], compound["imag"] = data.real, data.imag
            data = compound
        ds = parent.create_dataset(name, data=data)
        ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
        return ds

    def _write_char(self, parent: Any, name: str, strings: np.ndarray) -> Any:
        strings = np.atleast_1d(strings)
        length = max((len(s) for s in strings.flat), default=0)
        if length == 0:
            return self._write_empty(parent, name, "char", (0, 0))
        # Each string becomes a row of UTF-16 code units along a new last
        # axis; shorter rows are padded with spaces, as MATLAB's char() and
        # savemat pad them.
        padded = [s.ljust(length) for s in strings.flat]
        strings = np.array(padded, dtype=f"<U{length}").reshape(strings.shape)
        codes = strings.view(np.uint32).reshape(strings.shape + (length,))
        if np.any(codes > 0xFFFF):
            raise ValueError(
                f"{name}: characters outside the Basic Multilingual Plane are not supported."
            )
        ds = parent.create_dataset(name, data=np.ascontiguousarray(codes.astype(np.uint16).T))
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
        return ds

    def _write_cell(self, parent: Any, name: str, cells: np.ndarray) -> Any:
        cells = self._matlab_shape(cells)
        if cells.size == 0:
            return self._write_empty(parent, name, "cell", cells.shape)
        refs = np.empty(cells.shape, dtype=self._h5py.ref_dtype)
        for index in np.ndindex(cells.shape):
            refs[index] = self._reference(cells[index])
        ds = parent.create_dataset(name, data=np.ascontiguousarray(refs.T),
                                   dtype=self._h5py.ref_dtype)
        ds.attrs["MATLAB_class"] = np.bytes_("cell")
        return ds

    def _set_fields(self, node: Any, fields: Sequence[str]) -> None:
        node.attrs["MATLAB_class"] = np.bytes_("struct")
        if fields:
            names = np.empty(len(fields), dtype=object)
            for i, field in enumerate(fields):
                names[i] = np.frombuffer(field.encode("ascii"), dtype="S1")
            node.attrs.create("MATLAB_fields", names,
                              dtype=self._h5py.vlen_dtype(np.dtype("S1")))

    def _write_struct(self, parent: Any, name: str, fields: dict[str, Any]) -> Any:
        group = parent.create_group(name)
        self._set_fields(group, list(fields))
        for field, value in fields.items():
            self.write(group, field, value)
        return group

    def _write_struct_array(self, parent: Any, name: str, array: np.ndarray) -> Any:
        array = self._matlab_shape(array)
        fields = list(array.dtype.names or ())
        if array.size == 0:
            ds = self._write_empty(parent, name, "struct", array.shape)
            self._set_fields(ds, fields)
            return ds
        group = parent.create_group(name)
        self._set_fields(group, fields)
        for field in fields:
            refs = np.empty(array.shape, dtype=self._h5py.ref_dtype)
            for index in np.ndindex(array.shape):
                refs[index] = self._reference(array[index][field])
            group.create_dataset(field, data=np.ascontiguousarray(refs.T),
                                 dtype=self._h5py.ref_dtype)
        return group

    def _write_sparse(self, parent: Any, name: str, matrix: Any) -> Any:
        matrix = matrix.tocsc()
        matrix.sort_indices()
        group = parent.create_group(name)
        logical = matrix.dtype.kind == "b"
        group.attrs["MATLAB_class"] = np.bytes_("logical" if logical else "double")
        group.attrs["MATLAB_sparse"] = np.uint64(matrix.shape[0])
        group.create_dataset("jc", data=matrix.indptr.astype(np.uint64))
        if matrix.nnz:
            group.create_dataset("ir", data=matrix.indices.astype(np.uint64))
            data = matrix.data
            if data.dtype.kind == "c":
                compound = np.empty(data.shape, dtype=[("real", "f8"), ("imag", "f8")])
                compound["real"], compound["imag"] = data.real, data.imag
                data = compound
            else:
                data = data.astype(np.uint8 if logical else np.float64)
            group.create_dataset("data", data=data)
        return group
