"""A small, safe expression language for selecting by metadata.

``"area == 'Field_L' and snr > 0.5"`` or ``"type in ('song', 'call')"``:
names are metadata keys, values are numbers, strings, ``True``/``False``/
``None`` and tuples/lists/sets of them; operators are the comparisons
(``== != < <= > >=``, chained too), ``in`` / ``not in``, ``is None`` /
``is not None`` and ``and`` / ``or`` / ``not``. Nothing else is accepted:
no attribute access, calls, subscripts, arithmetic or comprehensions, and the
text is never passed to ``eval``. It is parsed once with :mod:`ast` and
compiled into a tree of small closures.

Missing keys follow SQL's three-valued logic. A comparison that reads a key
the entry lacks (or compares incompatible types, ``'abc' > 1``) is *unknown*;
``not unknown`` is unknown, ``True or unknown`` is True, ``False and
unknown`` is False, and an entry is selected only when the whole query is
True. So ``"area == 'L'"`` skips entries without ``area`` (the convention of
the ``select_*_by_attr`` methods, which lets a query run on a concatenation of
datasets with different metadata schemas), ``"not snr < 0.5"`` does not pick
neurons that have no ``snr``, and ``"snr > 0.5 or area == 'L'"`` still picks
a Field L neuron without ``snr``. An entry that is not a mapping (metadata
entries may be any object) is never selected.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Query", "compile_query"]

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_ALLOWED = ("comparisons (== != < <= > >=, chained), 'in' / 'not in', 'is None' / "
            "'is not None', 'and' / 'or' / 'not', metadata keys, numbers, strings, "
            "True/False/None and tuples/lists/sets of literals")

# what is refused, as the subject of "... not allowed"
_DESCRIBE = {
    ast.Call: "function calls are",
    ast.Attribute: "attribute access is",
    ast.Subscript: "subscripts are",
    ast.BinOp: "arithmetic is",
    ast.Lambda: "lambdas are",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are",
    ast.IfExp: "conditional expressions are",
    ast.NamedExpr: "assignments are",
    ast.Dict: "dict literals are",
    ast.Starred: "starred expressions are",
    ast.JoinedStr: "f-strings are",
    ast.Await: "await is",
}


class _Missing(Exception):
    """Raised inside evaluation when a key is absent: the entry is skipped."""


def _error(text: str, node: ast.AST | None, message: str) -> ValueError:
    """A ValueError that quotes the query and underlines the offending part."""
    lines = [f"invalid query: {message}", f"    {text}"]
    if node is not None and getattr(node, "col_offset", None) is not None:
        start = node.col_offset
        end = getattr(node, "end_col_offset", None) or start + 1
        if getattr(node, "end_lineno", 1) != getattr(node, "lineno", 1):
            end = len(text)
        lines.append("    " + " " * start + "^" * max(1, end - start))
    lines.append(f"Allowed: {_ALLOWED}.")
    return ValueError("\n".join(lines))


#: Deepest nesting of a query's expression tree; deeper ones are refused (the
#: compiler and the evaluation of the compiled query recurse once per level).
MAX_QUERY_DEPTH = 100


def _check_depth(text: str, root: ast.AST) -> None:
    """Refuse a query nested deeper than :data:`MAX_QUERY_DEPTH`, underlining where (no recursion)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_QUERY_DEPTH:
            raise _error(text, node, f"the query is nested too deeply (more than "
                                     f"{MAX_QUERY_DEPTH} levels); simplify it")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _literal(text: str, node: ast.AST) -> Any:
    """The value of a literal node (constants, negated numbers, containers of literals)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (bool, int, float, str)) or node.value is None:
            return node.value
        raise _error(text, node, f"literal of type {type(node.value).__name__} is not allowed")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(text, node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _error(text, node, "a sign can only precede a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        values = [_literal(text, elt) for elt in node.elts]
        return frozenset(values) if isinstance(node, ast.Set) else tuple(values)
    raise _error(text, node, "expected a literal value here")


class _Compiler:
    def __init__(self, text: str):
        self.text = text
        self.keys: list[str] = []

    def fail(self, node: ast.AST, message: str) -> ValueError:
        return _error(self.text, node, message)

    def value(self, node: ast.AST) -> Callable[[Mapping], Any]:
        """Compile an operand; reading a missing key raises ``_Missing``."""
        if isinstance(node, ast.Name):
            key = node.id
            if key in ("True", "False", "None"):  # pragma: no cover - parsed as Constant
                const = {"True": True, "False": False, "None": None}[key]
                return lambda meta: const
            if key not in self.keys:
                self.keys.append(key)

            def lookup(meta: Mapping, key: str = key) -> Any:
                try:
                    return meta[key]
                except KeyError:
                    raise _Missing(key) from None
            return lookup
        if isinstance(node, (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.UnaryOp)):
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                return self.boolean(node)
            const = _literal(self.text, node)
            return lambda meta: const
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            return self.boolean(node)
        raise self.fail(node, f"{_DESCRIBE.get(type(node), type(node).__name__ + ' is')} "
                              "not allowed")

    def boolean(self, node: ast.AST) -> Callable[[Mapping], bool | None]:
        """Compile a condition to a function returning True, False or None (unknown)."""
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v) for v in node.values]
            if isinstance(node.op, ast.And):
                def conj(meta: Mapping) -> bool | None:
                    result: bool | None = True
                    for p in parts:
                        value = p(meta)
                        if value is False:
                            return False
                        if value is None:
                            result = None
                    return result
                return conj

            def disj(meta: Mapping) -> bool | None:
                result: bool | None = False
                for p in parts:
                    value = p(meta)
                    if value is True:
                        return True
                    if value is None:
                        result = None
                return result
            return disj
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.boolean(node.operand)

            def negate(meta: Mapping) -> bool | None:
                value = inner(meta)
                return None if value is None else not value
            return negate
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name) and node.id not in ("True", "False", "None"):
            getter = self.value(node)

            def truth(meta: Mapping) -> bool | None:
                try:
                    return bool(getter(meta))
                except (_Missing, TypeError, ValueError):
                    return None
            return truth
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            const = node.value
            return lambda meta: const
        what = _DESCRIBE.get(type(node), "this expression is").rsplit(" ", 1)[0]
        raise self.fail(node, f"{what} cannot be used as a condition")

    def compare(self, node: ast.Compare) -> Callable[[Mapping], bool | None]:
        operands = [self.value(node.left)] + [self.value(c) for c in node.comparators]
        ops: list[Callable[[Any, Any], bool]] = []
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.Is, ast.IsNot)):
                if not (isinstance(right, ast.Constant) and right.value is None):
                    raise self.fail(right, "'is' / 'is not' may only compare with None; "
                                           "use == or != for values")
                ops.append(operator.is_ if isinstance(op, ast.Is) else operator.is_not)
            elif type(op) in _COMPARE:
                if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, ast.Constant) \
                        and not isinstance(right.value, str):
                    raise self.fail(right, "'in' needs a tuple, list, set or string on its right")
                ops.append(_COMPARE[type(op)])
            else:  # pragma: no cover - every ast.cmpop is handled above
                raise self.fail(node, f"operator {type(op).__name__} is not allowed")

        def evaluate(meta: Mapping) -> bool | None:
            try:
                left = operands[0](meta)
                for op, get_right in zip(ops, operands[1:]):
                    right = get_right(meta)
                    if not op(left, right):
                        return False
                    left = right
                return True
            except (_Missing, TypeError, ValueError):
                return None
        return evaluate


class Query:
    """A compiled metadata query; call it on a metadata dict to get True/False.

    Parameters
    ----------
    text : str
        The query, e.g. ``"area == 'Field_L' and snr > 0.5"``.

    Attributes
    ----------
    text : str
        The query as given (stripped), suitable for configs and hashing.
    keys : tuple of str
        The metadata keys the query reads, in order of first use.
    """

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"a query must be a string; got {type(text).__name__}.")
        text = text.strip()
        if not text:
            raise ValueError("invalid query: the query is empty. Example: "
                             "\"area == 'Field_L' and snr > 0.5\".")
        if "\n" in text:
            text = " ".join(text.split())
        try:
            tree = ast.parse(text, mode="eval")
        except (RecursionError, MemoryError):
            # CPython's parser gives up on very deep nesting before we can measure it
            whole = ast.Constant(value=None)
            whole.col_offset, whole.end_col_offset = 0, len(text)
            raise _error(text, whole, f"the query is nested too deeply (more than "
                                      f"{MAX_QUERY_DEPTH} levels); simplify it") from None
        except SyntaxError as err:
            col = (err.offset or 1) - 1
            hint = ""
            if "=" in text and "==" not in text and not any(o in text for o in ("<=", ">=", "!=")):
                hint = " (use '==' to compare, not '=')"
            marker = ast.Constant(value=None)
            marker.col_offset, marker.end_col_offset = col, col + 1
            raise _error(text, marker, f"syntax error{hint}: {err.msg}") from None
        _check_depth(text, tree.body)
        compiler = _Compiler(text)
        self._fn = compiler.boolean(tree.body)
        self.text = text
        self.keys = tuple(compiler.keys)

    def __call__(self, meta: Any) -> bool:
        """True if ``meta`` satisfies the query (False for false or unknown).

        An entry that is not a mapping (metadata may be any object, e.g. the
        tuples of deepSTRF's examples) has no keys, so it never matches.
        """
        if not isinstance(meta, Mapping):
            return False
        return self._fn(meta) is True

    def __repr__(self) -> str:
        return f"Query({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Query) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def compile_query(query: str | Query) -> Query:
    """Return ``query`` compiled (a :class:`Query` passes through)."""
    return query if isinstance(query, Query) else Query(query)
