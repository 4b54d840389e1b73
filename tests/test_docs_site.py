"""The documentation site builds without a warning, and its generated parts are complete.

The build (``sphinx-build -W --keep-going``, what ``./dev docs`` runs) executes every example of
the gallery and draws the dataset figures, so a broken page, docstring or example fails here.
It runs in ``./dev test`` (and so in CI), whose setup installs the ``docs`` extra; it skips
only where Sphinx is not installed.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import deepstrf_api  # noqa: E402
import deepstrf_datasets  # noqa: E402
import deepstrf_links  # noqa: E402

needs_sphinx = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("sphinx_gallery")
    is None, reason="the documentation tools are not installed (pip install -e '.[docs]'; "
                    "./dev test installs them)")

# ----------------------------------------------------------------- without building


@needs_sphinx
def test_every_public_name_has_a_docstring():
    missing = [e.full for page in deepstrf_api.public_api() for e in page.entries
               if e.home == e.full and not e.doc.strip()]
    assert missing == []


@needs_sphinx
def test_the_reference_covers_every_public_module_and_name():
    pages = {p.module: p for p in deepstrf_api.public_api()}
    for package in ("deepstrf.datasets", "deepstrf.datasets.audio", "deepstrf.metrics",
                    "deepstrf.preprocessing", "deepstrf.models", "deepstrf.plotting",
                    "deepstrf.testing", "deepstrf.utils.data", "deepstrf.io.cache",
                    "deepstrf.errors"):
        module = importlib.import_module(package)
        assert [e.name for e in pages[package].entries] == list(module.__all__)
    # re-exports are documented once, where they are defined first, and linked elsewhere
    top = {e.name: e for e in pages["deepstrf"].entries}
    assert top["NeuralDataset"].home == "deepstrf.datasets.NeuralDataset"
    assert top["neural_collate"].home == "deepstrf.utils.data.neural_collate"
    # a function hidden by a submodule of the same name is documented in its module
    testing = {e.name: e for e in pages["deepstrf.testing"].entries}
    assert testing["simulate"].kind == "function"
    assert testing["simulate"].home == "deepstrf.testing.simulate.simulate"


@needs_sphinx
def test_own_doc_ignores_inherited_and_dataclass_docstrings():
    from dataclasses import dataclass

    @dataclass
    class Bare:
        x: int

    class Child(Bare):
        pass

    assert deepstrf_api.own_doc(Bare) == "" and deepstrf_api.own_doc(Child) == ""
    assert deepstrf_api.own_doc(deepstrf_api.Entry).startswith("One name")


@needs_sphinx
def test_unknown_numpydoc_sections_move_into_notes():
    lines = ["Summary.", "", "Preprocessing", "-------------", "* binned at dt_ms", "",
             "Parameters", "----------", "x : int", "    A value.", "",
             "Notes", "-----", "A note."]
    deepstrf_api.fold_unknown_sections(lines)
    assert lines[:6] == ["Summary.", "", "Parameters", "----------", "x : int", "    A value."]
    notes = lines.index("Notes")
    assert lines[notes:] == ["Notes", "-----", "A note.", "", ".. rubric:: Preprocessing", "",
                             "* binned at dt_ms", "", ""]


@needs_sphinx
def test_inline_literals_resolve_to_the_documented_objects():
    table = deepstrf_api.link_targets(deepstrf_api.public_api())
    target = deepstrf_api.literal_target
    assert target("neural_collate", table) == ("func", "deepstrf.utils.data.neural_collate")
    assert target('ds.select_pop_by_nrn_query("snr > 0.5")', table) == (
        "meth", "deepstrf.datasets.NeuralDataset.select_pop_by_nrn_query")
    assert target("deepstrf.metrics.corrcoef", table) == ("func", "deepstrf.metrics.corrcoef")
    assert target("ds.nrn_masks", table) == ("attr", "deepstrf.datasets.NeuralDataset.nrn_masks")
    assert target("dt_ms", table) is None           # a bare attribute name: a parameter
    assert target("x + 1", table) is None
    assert target("deepstrf.metrics", table) == ("mod", "deepstrf.metrics")


def test_links_to_examples_point_at_the_gallery():
    text = ("see [the script](../examples/fit_strf_aa1.py), [all](../examples/README.md#run), "
            "[page](metrics.md) and [web](https://x.org/examples/a.py)")
    assert deepstrf_links.rewrite(text, "cli") == (
        "see [the script](auto_examples/fit_strf_aa1.rst), [all](auto_examples/index.rst#run), "
        "[page](metrics.md) and [web](https://x.org/examples/a.py)")
    assert deepstrf_links.rewrite("[x](../../examples/neuron_quality.py)", "datasets/aa1") == (
        "[x](../auto_examples/neuron_quality.rst)")


def test_the_glance_section_goes_before_the_first_section_outside_code():
    text = "# Title\n\nIntro.\n\n```text\n## not a heading\n```\n\n## Facts\n\nx\n"
    out = deepstrf_datasets.insert_section(text, "## At a glance\n\n")
    assert out.index("## At a glance") == text.index("## Facts")
    assert deepstrf_datasets.insert_section("# T\n", "## G\n") == "# T\n\n## G\n"


@needs_sphinx
def test_facts_come_from_the_class():
    from deepstrf.datasets.registry import get_dataset

    cls = get_dataset("aa1")
    rows = dict(deepstrf_datasets.facts_rows(cls, "aa1"))
    assert rows["title"] == cls.info.title
    assert rows["N (neurons)"] == str(cls.info.n_neurons)
    assert f"`{cls.remote_files[0].name}`" in rows["remote files"]
    assert "`dt_ms=1.0`" in rows["constructor defaults"]
    assert deepstrf_datasets.find_writer(cls, "aa1").__name__ == "write_crcns_aa1"


# ----------------------------------------------------------------------- the build


def build_site(tmp: Path) -> Path:
    """Build the site into ``tmp/html`` as ./dev docs does (fresh environment, examples re-run)."""
    out = tmp / "html"
    env = dict(os.environ, DEEPSTRF_DATA_DIR=str(tmp / "home"), DEEPSTRF_PROGRESS="0",
               MPLBACKEND="Agg", DEEPSTRF_DOCS_RERUN="1",   # run every example, even unchanged
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q",
                             "-b", "html", "-d", str(tmp / "doctrees"), str(DOCS), str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    print(f"documentation site built in {seconds:.0f} s")
    assert result.returncode == 0, result.stderr[-5000:]
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert not (tmp / "home").exists() or not any((tmp / "home").iterdir())
    return out


def check_every_example_runs_with_its_figures(site: Path) -> None:
    scripts = sorted(p.stem for p in (REPO / "examples").glob("*.py"))
    for name in scripts:
        page = (site / "auto_examples" / f"{name}.html").read_text()
        assert "sphx-glr-script-out" in page, name        # it ran and printed
    drawn = {"fit_strf_aa1": 2, "data_paradigm_in_pictures": 2, "neuron_quality": 2,
             "dataset_crcns_aa": 3, "dataset_spike_releases": 2, "dataset_alice_eeg": 2,
             "dataset_david_lab": 4, "dataset_crcns_ac1": 3, "video_dataset": 1}
    for name, n in drawn.items():
        page = (site / "auto_examples" / f"{name}.html").read_text()
        images = set(re.findall(rf"sphx_glr_{name}_(\d{{3}})\.png", page))
        assert len(images) == n, (name, images)
    assert "median CCnorm on the test stimuli: 0." in (
        site / "auto_examples" / "fit_strf_aa1.html").read_text()


def check_every_registered_dataset_has_a_page_with_its_facts_and_an_item(site: Path) -> None:
    from deepstrf.datasets.registry import DATASETS, get_dataset

    cards = {c.short: c for c in deepstrf_datasets.dataset_cards(DOCS, make_figures=False)}
    assert set(cards) == set(DATASETS)
    for short in DATASETS:
        cls = get_dataset(short)
        page = (site / f"{cards[short].docname}.html").read_text()
        assert "At a glance" in page
        assert cls.info.title.replace("&", "&amp;") in page
        assert cls.info.doi in page and cls.info.species.split(" (")[0] in page
        if deepstrf_datasets.find_writer(cls, short) is not None:
            assert f"{short}-item.png" in page, short
            assert (site / "_images" / f"{short}-item.png").stat().st_size > 10_000
    for short in ("aa1", "aa2", "aa4"):     # these have fixture writers today
        assert not cards[short].generated_page
        assert (site / "_images" / f"{short}-item.png").is_file()


def check_the_reference_lists_every_name_and_the_pages_link_to_it(site: Path) -> None:
    for page in deepstrf_api.public_api():
        html = (site / "api" / "generated" / f"{page.module}.html").read_text()
        for e in page.entries:
            if e.home == e.full:
                assert f'id="{e.home}"' in html, e.full                 # documented here
            else:
                assert f'#{e.home}"' in html, e.full                    # linked to its home
    paradigm = (site / "data-paradigm.html").read_text()
    assert 'href="api/generated/deepstrf.utils.data.html#deepstrf.utils.data.neural_collate"' \
        in paradigm
    index = (site / "index.html").read_text()
    assert 'href="auto_examples/index.html"' in index


@needs_sphinx
@pytest.mark.slow
def test_the_site_builds_without_warnings_and_is_complete(tmp_path):
    # One test, one build: under pytest-xdist a module fixture would build once per worker.
    site = build_site(tmp_path)
    check_every_example_runs_with_its_figures(site)
    check_every_registered_dataset_has_a_page_with_its_facts_and_an_item(site)
    check_the_reference_lists_every_name_and_the_pages_link_to_it(site)
