"""Links from the markdown pages to the repository's examples point at the gallery instead.

The pages link to ``../examples/fit_strf_aa1.py`` so that they work when read on the code
host; on the site the same link goes to the example's gallery page (``/auto_examples/...``),
which shows the script with its output and figures. The sources stay as they are.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def rewrite(text: str, docname: str) -> str:
    """``text`` with its links to ``examples/`` replaced by links to the gallery pages."""
    folder = posixpath.dirname(docname)

    def sub(match: re.Match) -> str:
        target = match.group("target")
        path, _, anchor = target.partition("#")
        if "://" in path or not path:
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join("docs", folder, path))
        if not resolved.startswith("examples/"):
            return match.group(0)
        name = resolved.removeprefix("examples/")
        if name == "README.md":
            page = "index"
        elif name.endswith(".py") and "/" not in name:
            page = name[:-3]
        else:
            return match.group(0)
        link = posixpath.relpath(f"auto_examples/{page}.rst", folder or ".")
        return f"]({link}{'#' + anchor if anchor else ''})"

    return _LINK.sub(sub, text)


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    if app.env.doc2path(docname).suffix == ".md":
        source[0] = rewrite(source[0], docname)


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
