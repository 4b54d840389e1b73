"""The API reference, generated from the packages' ``__all__`` at build time.

Every public module (a package or module of :data:`TOP_PACKAGES`, or one of their
submodules, whose name has no leading underscore and which defines ``__all__``) gets one page
under ``api/generated/``: its docstring, a summary table and the full entry of each name it
exports. A name exported by several modules (``deepstrf.NeuralDataset`` is
``deepstrf.datasets.NeuralDataset``) is documented once, on the first page that exports it,
and linked from the others, so a name added to an ``__all__`` appears without editing the
site.

The same inventory drives a transform: an inline code literal on a narrative page that names
a documented object (```neural_collate```, ```ds.select_stims_by_query(...)```,
```deepstrf.metrics.corrcoef```) becomes a link to its entry, so the pages cross-link into the
reference without markup of their own. :func:`public_api` is also what the site's test checks.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
import types
from types import ModuleType
from typing import Any, Optional

from docutils import nodes
from sphinx import addnodes
from sphinx.pycode import ModuleAnalyzer, PycodeError

#: The packages of the reference, in page order; ``deepstrf`` itself comes last so that its
#: re-exports link to the subpackage that defines them.
TOP_PACKAGES = ("deepstrf.datasets", "deepstrf.utils", "deepstrf.metrics",
                "deepstrf.preprocessing", "deepstrf.io", "deepstrf.models", "deepstrf.plotting",
                "deepstrf.testing", "deepstrf.errors", "deepstrf")

_SCALARS = (int, float, str, bytes, bool, tuple, list, dict, frozenset, set, type(None))


@dataclass
class Entry:
    """One name of one module's ``__all__``."""

    module: str
    name: str
    obj: Any
    kind: str                 #: "class", "function", "data" or "module"
    home: str                 #: the full name under which it is documented
    doc: str = ""             #: its docstring (for data: the ``#:`` comment)

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Page:
    """The reference page of one public module."""

    module: str
    entries: list[Entry] = field(default_factory=list)


def _kind(obj: Any) -> str:
    if isinstance(obj, (types.GenericAlias, type(Optional[int]))) or type(obj).__module__ == "typing":
        return "data"                     # a type alias such as tuple[float, float, str]
    if inspect.isclass(obj):
        return "class"
    if inspect.ismodule(obj):
        return "module"
    if callable(obj) and not isinstance(obj, _SCALARS):
        return "function"
    return "data"


def own_doc(obj: Any) -> str:
    """The docstring an object carries itself: not inherited, not a dataclass's generated one."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        if doc.startswith(f"{obj.__name__}("):   # what @dataclass writes when there is none
            return ""
        return inspect.cleandoc(doc)
    return inspect.cleandoc(getattr(obj, "__doc__", None) or "")


def _data_doc(module: ModuleType, name: str) -> str:
    """The ``#:`` comment of a module attribute, looked up where the value was defined."""
    candidates = [module.__name__]
    if hasattr(module, "__path__"):
        candidates += [f"{module.__name__}.{m.name}" for m in pkgutil.iter_modules(
            module.__path__) if m.name != "__main__"]
    try:   # a constant imported from another module (``from deepstrf._config import X``)
        tree = ast.parse(inspect.getsource(module))
        candidates += [node.module for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module
                       and any(alias.name == name for alias in node.names)]
    except (OSError, TypeError, SyntaxError):
        pass
    for modname in candidates:
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except PycodeError:
            continue
        lines = docs.get(("", name))
        if lines:
            return "\n".join(lines).strip()
    return ""


def _public_modules(top: str) -> list[str]:
    module = importlib.import_module(top)
    names = [top]
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{top}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


def _resolve(module: ModuleType, name: str) -> Any:
    """What ``module`` exports as ``name`` (its lazy ``__getattr__`` first: a submodule of the
    same name, once imported, hides the lazy export from plain attribute access)."""
    lazy = vars(module).get("__getattr__")
    if lazy is not None:
        try:
            return lazy(name)
        except AttributeError:
            pass
    return getattr(module, name)


def public_api() -> list[Page]:
    """Every public module with an ``__all__``, and each name with where it is documented."""
    pages: list[Page] = []
    homes: dict[int, str] = {}
    seen_modules: set[str] = set()
    for top in TOP_PACKAGES:
        for modname in _public_modules(top):
            if modname in seen_modules:
                continue
            seen_modules.add(modname)
            module = importlib.import_module(modname)
            exported = getattr(module, "__all__", None)
            if not exported:
                continue
            page = Page(modname)
            for name in exported:
                obj = _resolve(module, name)
                kind = _kind(obj)
                full = f"{modname}.{name}"
                key = id(obj)
                if getattr(module, name) is not obj:
                    # a submodule of the same name shadows the export once imported
                    # (deepstrf.testing.simulate): document it in its defining module
                    homes.setdefault(key, f"{obj.__module__}.{name}")
                if kind == "module":
                    home, doc = obj.__name__, own_doc(obj)
                elif kind == "data":
                    home, doc = full, _data_doc(module, name)
                else:
                    home = homes.setdefault(key, full)
                    doc = own_doc(obj)
                page.entries.append(Entry(modname, name, obj, kind, home, doc))
            if any(e.home == e.full for e in page.entries):
                pages.append(page)   # a module that only re-exports gets no page of its own
    return pages


def _title(modname: str) -> str:
    return f"``{modname}``\n" + "=" * (len(modname) + 4)


def _indent(text: str, by: str = "   ") -> str:
    return "\n".join(by + line if line.strip() else "" for line in text.splitlines())


def render_page(page: Page) -> str:
    """reStructuredText of one module's page."""
    out = [f".. This page is generated by docs/_ext/deepstrf_api.py; do not edit.", "",
           _title(page.module), "",
           f".. automodule:: {page.module}", "   :no-members:", "",
           f".. currentmodule:: {page.module}", ""]
    own = [e for e in page.entries if e.home == e.full]
    elsewhere = [e for e in page.entries if e.home != e.full]
    summarised = [e for e in own if e.kind in ("class", "function")]
    if summarised:
        out += [".. autosummary::", ""] + [f"   {e.name}" for e in summarised] + [""]
    if elsewhere:
        out += ["Also exported here, documented where they are defined:", ""]
        role = {"class": "class", "function": "func", "module": "mod"}
        out += [f"* :{role.get(e.kind, 'obj')}:`{e.name} <{e.home}>`" for e in elsewhere] + [""]
    for e in own:
        if e.kind == "class":
            out += [f".. autoclass:: {e.name}", "   :members:", "   :show-inheritance:", ""]
        elif e.kind == "function":
            out += [f".. autofunction:: {e.name}", ""]
        else:
            value = repr(e.obj)
            if len(value) > 70 or "\n" in value:
                value = f"{type(e.obj).__name__} of {len(e.obj)}" if hasattr(
                    e.obj, "__len__") else type(e.obj).__name__
            out += [f".. py:data:: {e.name}", f"   :value: {value}", "",
                    _indent(e.doc or "(no description)"), ""]
    return "\n".join(out)


def write_pages(outdir: Path, pages: list[Page]) -> None:
    """Write the pages, touching only the files whose text changed (keeps rebuilds short)."""
    outdir.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for page in pages:
        wanted[f"{page.module}.rst"] = render_page(page)
    for old in outdir.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        target = outdir / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


# ----------------------------------------------------------------------- cross-links

def link_targets(pages: list[Page]) -> dict[str, tuple[str, str]]:
    """Inline-literal text -> (role, target), for every unambiguous documented name.

    Full names, short names and ``Class.method`` / ``method`` of the documented classes'
    public methods; a short name meaning two different objects is left out.
    """
    full: dict[str, tuple[str, str]] = {}
    short: dict[str, set[tuple[str, str]]] = {}
    role = {"class": "class", "function": "func", "data": "data", "module": "mod"}
    for page in pages:
        full[page.module] = ("mod", page.module)
        for e in page.entries:
            target = (role[e.kind], e.home)
            full[e.full] = target
            short.setdefault(e.name, set()).add(target)
            if e.kind == "class" and e.home == e.full:
                for attr, value in vars(e.obj).items():
                    if attr.startswith("_") or not (inspect.isfunction(value) or isinstance(
                            value, (property, classmethod, staticmethod))):
                        continue
                    kind = "attr" if isinstance(value, property) else "meth"
                    member = (kind, f"{e.home}.{attr}")
                    full[f"{e.full}.{attr}"] = member
                    short.setdefault(f"{e.name}.{attr}", set()).add(member)
                    # a bare attribute name (`dt_ms`) is too often a parameter to link;
                    # `ds.dt_ms` and `Class.attr` still link
                    short.setdefault(attr if kind == "meth" else f"@{attr}", set()).add(member)
    table = {name: next(iter(targets)) for name, targets in short.items() if len(targets) == 1}
    table.update(full)
    return table


_CALL = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(\(.*\))?$", re.S)
_RECEIVER = re.compile(r"^(ds|ds1|ds2|dataset|self|fit|model|batch)\.")


def literal_target(text: str, table: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """Where an inline literal such as ``ds.select_pop_by_query("snr > 0.5")`` points, if anywhere."""
    match = _CALL.match(text.strip())
    if not match:
        return None
    raw = match.group("name")
    name = _RECEIVER.sub("", raw)
    if name in table:
        return table[name]
    if name != raw and f"@{name}" in table:      # ds.nrn_masks
        return table[f"@{name}"]
    return None


def _link_literals(app: Any, doctree: nodes.document) -> None:
    docname = app.env.docname
    if docname.startswith("api/"):
        return
    table = app.env.deepstrf_link_targets
    for literal in list(doctree.findall(nodes.literal)):
        if any(isinstance(p, (nodes.reference, addnodes.pending_xref, nodes.title,
                              addnodes.desc_signature)) for p in _ancestors(literal)):
            continue
        found = literal_target(literal.astext(), table)
        if found is None:
            continue
        role, target = found
        xref = addnodes.pending_xref("", refdomain="py", reftype=role, reftarget=target,
                                     refexplicit=True, refwarn=False, refdoc=docname)
        literal.replace_self(xref)
        xref += literal


_HEADER = re.compile(r"^(?P<title>[A-Z][\w ]*)$")


def fold_unknown_sections(lines: list[str]) -> None:
    """Move numpydoc sections it does not know (``Preprocessing``, ``Shapes``) into Notes.

    numpydoc drops a section it does not know, with only a Python warning; our class
    docstrings use a few (the dataset classes' ``Preprocessing``). Each becomes a rubric
    inside the Notes section, so its text is shown and numpydoc parses the rest as before.
    """
    from numpydoc.docscrape import NumpyDocString

    known = set(NumpyDocString.sections) | {"Example", "Note", "Warning"}
    heads = [i for i in range(len(lines) - 1)
             if _HEADER.match(lines[i].strip()) and lines[i + 1].strip()
             and set(lines[i + 1].strip()) == {"-"}
             and len(lines[i + 1].strip()) == len(lines[i].strip())]
    unknown = [i for i in heads if lines[i].strip() not in known]
    if not unknown:
        return
    bounds = heads[1:] + [len(lines)]
    moved: list[str] = []
    for start in reversed(unknown):
        end = next(b for b in bounds if b > start)
        block = lines[start + 2:end]
        moved[:0] = ["", f".. rubric:: {lines[start].strip()}", "", *block]
        del lines[start:end]
    notes = next((i for i in range(len(lines) - 1) if lines[i].strip() == "Notes"
                  and set(lines[i + 1].strip()) == {"-"}), None)
    if notes is None:
        lines += ["", "Notes", "-----", *moved]
    else:
        later = [i for i in range(notes + 2, len(lines) - 1) if _HEADER.match(lines[i].strip())
                 and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}]
        at = later[0] if later else len(lines)
        lines[at:at] = [*moved, ""]


def _process_docstring(app: Any, what: str, name: str, obj: Any, options: Any,
                       lines: list[str]) -> None:
    fold_unknown_sections(lines)


def _ancestors(node: nodes.Node):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _generate(app: Any) -> None:
    pages = public_api()
    write_pages(Path(app.srcdir) / "api" / "generated", pages)
    app.env.deepstrf_link_targets = link_targets(pages)


def _env_ready(app: Any, env: Any, docnames: Any, *args: Any) -> None:
    if not hasattr(env, "deepstrf_link_targets"):
        env.deepstrf_link_targets = link_targets(public_api())


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _generate)
    app.connect("env-before-read-docs", _env_ready)
    app.connect("doctree-read", _link_literals)
    app.connect("autodoc-process-docstring", _process_docstring, priority=100)  # before numpydoc
    return {"parallel_read_safe": True, "parallel_write_safe": True}
