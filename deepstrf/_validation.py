"""Argument checks shared by the whole package.

Each raises at once with what was expected, what was got and, where there is
one, the remedy. Use these instead of ``assert`` on user input.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {_fmt(value)} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {_fmt(value)}.")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking its type and bounds (inclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {_fmt(value)} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}.")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Check ``value`` is one of ``allowed`` and name the allowed values if not."""
    allowed = tuple(allowed)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}; got {_fmt(value)}.")
    return value


def check_subset(name: str, values: Any, allowed: Sequence[str], *,
                 aliases: dict[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """Normalise a str-or-sequence option to a tuple and check every entry is allowed.

    ``values`` may be ``'all'`` (every allowed value), one string, or a sequence
    of strings. ``aliases`` maps extra accepted names to the values they stand for.
    Order follows the caller's order; duplicates are dropped.
    """
    aliases = aliases or {}
    if isinstance(values, str):
        if values == "all":
            return tuple(allowed)
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(
            f"{name} must be 'all', a string or a sequence of strings; got {_fmt(values)}."
        ) from None
    if not values:
        raise ValueError(f"{name} must name at least one value; got an empty sequence.")
    out: list[str] = []
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"{name} entries must be strings; got {_fmt(v)} in {_fmt(values)}.")
        expanded = aliases.get(v, (v,))
        for e in expanded:
            if e not in allowed:
                options = ", ".join(repr(a) for a in (*allowed, *aliases))
                raise ValueError(f"{name}: unknown value {v!r}; allowed values are {options}.")
            if e not in out:
                out.append(e)
    return tuple(out)


def check_index(name: str, value: Any, size: int) -> int:
    """Check ``value`` is an int in ``[0, size)`` and raise ``IndexError`` naming the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {_fmt(value)} "
                        f"({type(value).__name__}).")
    value = int(value)
    if not 0 <= value < size:
        valid = f"the valid range is [0, {size - 1}]" if size > 0 else "there are none"
        raise IndexError(f"{name} {value} is out of range; {valid}.")
    return value


def check_names(name: str, values: Any) -> str | tuple[str, ...]:
    """``'all'``, or a sorted tuple of distinct non-empty strings (e.g. animal ids)."""
    if isinstance(values, str):
        if not values:
            raise ValueError(f"{name} must be 'all' or non-empty names; got an empty string.")
        return "all" if values == "all" else (values,)
    try:
        items = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be 'all' or a sequence of names; got {_fmt(values)}.") \
            from None
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"{name} must be 'all' or a non-empty sequence of non-empty strings; got "
                         f"{_fmt(values)}.")
    return tuple(sorted(set(items)))


def check_n_jobs(n_jobs: Any) -> int | None:
    """joblib's ``n_jobs``: a non-zero integer or None (not a bool, float or string)."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be a non-zero integer or None (1 = no parallelism, -1 = all "
            f"cores, -2 = all but one, None = joblib's default); got {n_jobs!r}."
        )
    return int(n_jobs)


def check_credential(name: str, value: Any) -> str | None:
    """A login field: a string or None. A wrong type never echoes the value (it may be secret)."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None; got a {type(value).__name__}.")
    return value


def _array_kind(value: Any) -> tuple[str, Any] | None:
    """``('tensor'|'array', value)`` for a torch tensor or numpy array, without importing either."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return "tensor", value
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return "array", value
    return None


def _integer_dtype(kind: str, value: Any) -> bool:
    if kind == "tensor":
        dt = value.dtype
        return not (dt.is_floating_point or dt.is_complex or str(dt) == "torch.bool")
    return value.dtype.kind in "iu"


def normalize_index(idx: Any) -> Any:
    """An index given as a tensor or numpy value, turned into the int or ints it stands for.

    As in torch, a 0-d integer tensor or numpy array and a numpy integer index
    like an int; a 1-D integer tensor or array like a list of ints. A tensor or
    array of another dtype (float, bool, complex) or with more than one
    dimension raises ``TypeError`` saying what is accepted. Lists and tuples
    have their 0-d tensors and arrays converted the same way. Anything else
    (ints, slices, ...) is returned unchanged for the caller to check.
    """
    if type(idx) is int or isinstance(idx, slice):  # the common case, first and cheap
        return idx
    if isinstance(idx, (list, tuple)):
        if all(type(i) is int for i in idx):
            return idx
        out = [normalize_index(i) for i in idx]
        nested = next((i for i in out if isinstance(i, list)), None)
        if nested is not None:
            raise TypeError(f"dataset index: a sequence of indices must hold ints (or 0-d integer "
                            f"tensors); got an element with {len(nested)} values in {_fmt(idx)}.")
        return out
    found = _array_kind(idx)
    if found is None:
        np = sys.modules.get("numpy")
        if np is not None and isinstance(idx, np.integer):
            return int(idx)
        return idx
    kind, value = found
    shape = tuple(value.shape)
    dtype = str(value.dtype)
    if not _integer_dtype(kind, value) or len(shape) > 1:
        raise TypeError(
            f"dataset index must be an int, a slice, a sequence of ints, or an integer {kind} "
            f"with 0 or 1 dimensions; got a {dtype} {kind} of shape {shape}."
            + (" Convert a boolean mask with .nonzero() first." if "bool" in dtype else ""))
    return int(value.item()) if len(shape) == 0 else [int(i) for i in value.tolist()]
