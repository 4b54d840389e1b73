"""Sphinx configuration of the deepstrf documentation site (``./dev docs``).

The markdown pages under ``docs/`` are the sources (myst-parser); the API reference is
generated from the packages' ``__all__`` (``_ext/deepstrf_api.py``); the dataset pages get
their facts table and item figure from the catalogue (``_ext/deepstrf_datasets.py``); the
gallery runs every script of ``examples/`` offline on simulated data (sphinx-gallery).
Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
# This checkout's deepstrf, not whichever is installed; our extensions.
sys.path[:0] = [str(REPO), str(DOCS / "_ext")]

# Offline and isolated: figures without a display, no progress bars, and a data home of the
# build's own, so building the site never reads or writes the user's data.
os.environ["MPLBACKEND"] = "Agg"
os.environ["DEEPSTRF_PROGRESS"] = "0"
os.environ.setdefault("DEEPSTRF_DATA_DIR", tempfile.mkdtemp(prefix="deepstrf-docs-home-"))

import deepstrf  # noqa: E402

project = "deepstrf"
author = "deepstrf developers"
copyright = "deepstrf developers"
release = version = deepstrf.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "deepstrf_api",
    "deepstrf_datasets",
    "deepstrf_links",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.codeobj.json", "sg_execution_times.rst"]
suppress_warnings: list[str] = []

# -- markdown
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4          # the pages link to their sections GitHub-style (#the-contract)

# -- API reference
autosummary_generate = False      # the pages are written by deepstrf_api
autodoc_typehints = "none"        # the numpydoc sections say the types
autodoc_member_order = "bysource"
autodoc_default_options = {"exclude-members": "__init__"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- gallery: every script of examples/ runs at build time
sphinx_gallery_conf = {
    "examples_dirs": str(REPO / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",          # run them all, not only plot_*.py
    "ignore_pattern": r"[\\/](__init__|conftest|_[^\\/]*)\.py$",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "show_memory": False,
    "show_signature": False,
    "capture_repr": (),
    "reset_modules_order": "both",
    "write_computation_times": False,
    # unchanged examples are not run again, unless asked (the site's test asks)
    "run_stale_examples": os.environ.get("DEEPSTRF_DOCS_RERUN", "") == "1",
}

# -- HTML
html_theme = "furo"
html_title = f"deepstrf {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# numpydoc warns about the sections it does not know (the dataset classes' "Preprocessing")
# when it scans a class; deepstrf_api moves them into Notes before rendering, so none is lost.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="Unknown section", category=UserWarning,
                        module="numpydoc")
