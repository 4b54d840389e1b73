"""The code blocks of the documentation run as written and print what the pages show."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import tempfile
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(page: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of a page, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", (DOCS / page).read_text(), re.S)


def run_page(page: str, compare: bool) -> None:
    """Execute the python blocks in one namespace; compare stdout with a following text block."""
    found = blocks(page)
    namespace: dict = {"__name__": "__docs__"}
    for i, (lang, code) in enumerate(found):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page}, block {i}", "exec"), namespace)
        following = found[i + 1] if i + 1 < len(found) else None
        if compare and following is not None and following[0] == "text":
            assert out.getvalue() == following[1], f"{page}, block {i}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    level = logging.getLogger("deepstrf").level
    yield
    logging.getLogger("deepstrf").setLevel(level)


def test_data_paradigm_page_prints_what_it_shows():
    run_page("data-paradigm.md", compare=True)


def test_models_and_plots_page_runs():
    pytest.importorskip("matplotlib")
    run_page("models-and-plots.md", compare=False)


def test_add_a_dataset_template_loads_its_fixture(tmp_path):
    python = [code for lang, code in blocks("add-a-dataset.md") if lang == "python"]
    template = next(c for c in python if "class ExampleLabDataset" in c)
    writer = next(c for c in python if "def write_example_lab" in c)
    module = types.ModuleType("example_lab_template")
    sys.modules[module.__name__] = module
    try:
        exec(compile(template, "add-a-dataset.md template", "exec"), module.__dict__)
        fixtures: dict = {}
        exec(compile(writer, "add-a-dataset.md fixture writer", "exec"), fixtures)
        fixtures["write_example_lab"](tmp_path / "tree")
        ds = module.ExampleLabDataset(tmp_path / "tree", cache="off")
        assert repr(ds) == ("ExampleLabDataset(S=3 stims; N=4 neurons; dt=5 ms; no selection: "
                            "4 neurons and 3 stims in use)")
        assert ds.nrn_masks.int().tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 0]]
        peg = module.ExampleLabDataset(tmp_path / "tree", areas="PEG", cache="off")
        assert (peg.get_N(), peg.get_S()) == (2, 2)
    finally:
        del sys.modules[module.__name__]
