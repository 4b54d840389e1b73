"""Dataset pages from the catalogue: a facts table and a figure of one item, at build time.

For every entry of :data:`deepstrf.datasets.registry.DATASETS`:

* the page is the hand-written ``datasets/<page>.md`` whose first heading names the class
  (```CRCNSAA1Dataset```); a registered dataset without one gets a page generated under
  ``datasets/generated/`` from its class docstring, so it appears on the site at once;
* an "At a glance" section is inserted before the page's second heading (before its first
  ``##``): a table of the class's own facts (its ``info``, remote files, folder, cache version
  and constructor defaults), so the table cannot drift from the code, and a figure of
  ``ds[0]`` on a miniature release written in the dataset's exact format by its fixture
  writer (``deepstrf.testing.fixtures.write_<name>``, found by name) and loaded by the class
  itself. Parameters the writer and the constructor share (``dt_ms``, ``animals``) are
  passed to the constructor with the writer's defaults, so the load finds what was written.

A dataset without a fixture writer yet still gets its page and table, with a note saying
the figure is missing and why (:func:`dataset_cards` reports it; the site's test checks that
the datasets that have a writer got their figure).
"""

from __future__ import annotations

import inspect
import logging
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FIGURE_DIR = "_generated/datasets"    #: relative to the source folder
GENERATED_PAGES = "datasets/generated"


@dataclass
class Card:
    """What the site shows about one registered dataset."""

    short: str
    cls: type
    docname: str               #: page, relative to the source folder, without suffix
    generated_page: bool
    figure: str | None         #: figure path relative to the source folder, or None
    figure_note: str           #: what the figure shows, or why there is none


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def find_writer(cls: type, short: str) -> Any:
    """The fixture writer of a dataset class (``write_<name>`` in deepstrf.testing.fixtures)."""
    import deepstrf.testing.fixtures as fixtures

    wanted = {_norm(cls.__name__.removesuffix("Dataset")), _norm(short)}
    for name in getattr(fixtures, "__all__", dir(fixtures)):
        if name.startswith("write_") and _norm(name.removeprefix("write_")) in wanted:
            return getattr(fixtures, name)
    return None


def load_miniature(cls: type, short: str, folder: Path) -> Any:
    """The class loaded on a miniature release that its fixture writer puts under ``folder``.

    The dataset's case of the shared test battery (:mod:`deepstrf.testing.battery`) says how
    to write and load it; a writer ``write_<name>`` exported by deepstrf.testing.fixtures,
    with its own defaults, is the fallback.
    """
    from deepstrf.testing.battery import cases

    accepted = inspect.signature(cls.__init__).parameters
    case = cases().get(short)
    if case is not None:
        kwargs = {"dt_ms": case.dt_ms, **case.kwargs}
        case.write(folder / "raw")
    else:
        writer = find_writer(cls, short)
        if writer is None:
            raise LookupError(f"no fixture writer for {cls.__name__}: no battery case named "
                              f"{short!r} and no write_<{short} or the class name> in "
                              "deepstrf.testing.fixtures")
        written = inspect.signature(writer).parameters
        kwargs = {name: p.default for name, p in written.items() if name in accepted
                  and name != "path" and p.default is not inspect.Parameter.empty}
        writer(folder / "raw")
    for name, value in (("cache", "off"), ("progress", False)):
        if name in accepted:
            kwargs[name] = value
    return cls(folder, **kwargs)


def writer_label(cls: type, short: str) -> str:
    """How the figure note names the writer of the miniature release."""
    writer = find_writer(cls, short)
    if writer is not None:
        return f"`{writer.__name__}`"
    from deepstrf.testing.battery import cases

    case = cases().get(short)
    module = getattr(getattr(case, "write", None), "__module__", None)
    return f"the fixture writer of `{module}`" if module else "its fixture writer"


def item_figure(ds: Any, index: int = 0, fig: Any = None) -> Any:
    """Figure of ``ds[index]``: the stimulus, and every neuron's repeats with their mask."""
    import numpy as np
    from matplotlib.figure import Figure

    item = ds[index]
    stim = item["stims"].numpy()
    resp = item["responses"].numpy()           # (N, R, T)
    mask = item["valid_mask"].numpy()
    n_neurons, n_rep, n_t = resp.shape
    dt_s = ds.dt / 1000.0
    fig = fig or Figure(figsize=(8, 5.5), layout="constrained")
    ax_s, ax_r = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    if stim.ndim == 3:
        ax_s.imshow(stim[0], aspect="auto", origin="lower", cmap="magma",
                    extent=(0, stim.shape[-1] * dt_s, 0, stim.shape[1]))
        ax_s.set_ylabel("band")
    else:
        t_audio = np.arange(stim.shape[-1]) * (n_t * dt_s / stim.shape[-1])
        ax_s.plot(t_audio, stim[0], lw=0.4, color="k")
        ax_s.set_ylabel("waveform")
    ax_s.set_title(f'{type(ds).__name__}: ds[{index}]  stims {tuple(stim.shape)}, responses '
                   f'{tuple(resp.shape)} (neuron, repeat, time)', fontsize=9)
    # Rows: neuron-major, repeat-minor; padded repeats (valid_mask False) shaded.
    valid_rows = mask.any(axis=2).reshape(-1)
    ax_r.imshow(~valid_rows[:, None].repeat(2, axis=1), aspect="auto", cmap="Greys", vmax=4,
                extent=(0, n_t * dt_s, n_neurons * n_rep - 0.5, -0.5), interpolation="nearest")
    counts = np.nan_to_num(resp, nan=0.0).reshape(n_neurons * n_rep, n_t)
    rows, cols = np.nonzero(counts > 0)
    ax_r.scatter((cols + 0.5) * dt_s, rows, s=3, marker="|", color="k", linewidths=0.6)
    for n in range(1, n_neurons):
        ax_r.axhline(n * n_rep - 0.5, color="tab:blue", lw=0.5)
    ax_r.set_yticks([n * n_rep + (n_rep - 1) / 2 for n in range(n_neurons)],
                    [str(n) for n in range(n_neurons)])
    ax_r.set_ylabel("neuron (repeats stacked)")
    ax_r.set_xlabel("time (s)")
    ax_r.set_xlim(0, n_t * dt_s)
    return fig


def _find_page(srcdir: Path, cls: type) -> str | None:
    for page in sorted((srcdir / "datasets").glob("*.md")):
        first = next((line for line in page.read_text().splitlines() if line.startswith("# ")),
                     "")
        if f"`{cls.__name__}`" in first:
            return f"datasets/{page.stem}"
    return None


def dataset_cards(srcdir: Path, make_figures: bool = True) -> list[Card]:
    """A card per registered dataset: its page, and its figure drawn into the source folder."""
    from deepstrf.datasets.registry import DATASETS, get_dataset

    cards = []
    figdir = srcdir / FIGURE_DIR
    figdir.mkdir(parents=True, exist_ok=True)
    for short in DATASETS:
        cls = get_dataset(short)
        docname = _find_page(srcdir, cls)
        card = Card(short, cls, docname or f"{GENERATED_PAGES}/{short}", docname is None,
                    None, "")
        if make_figures:
            _draw(card, figdir)
        cards.append(card)
    return cards


def _draw(card: Card, figdir: Path) -> None:
    target = figdir / f"{card.short}-item.png"
    level = logging.getLogger("deepstrf").level
    logging.getLogger("deepstrf").setLevel(logging.ERROR)   # "smaller than documented"
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_miniature(card.cls, card.short, Path(tmp))
            fig = item_figure(ds, 0)
            fig.savefig(target, dpi=90)
            card.figure = f"{FIGURE_DIR}/{target.name}"
            card.figure_note = (
                f"`ds[0]` of a miniature release that {writer_label(card.cls, card.short)} "
                f"writes in {card.cls.__name__}'s exact format, loaded by the class itself "
                f"(`{ds!r}`). Top: the stimulus; bottom: each neuron's repeats, one row each, "
                "spikes as ticks; grey rows are padding (`valid_mask` False: fewer repeats, or "
                "a neuron that never heard this stimulus).")
    except Exception as err:   # the page must still build; say why there is no figure
        logger.info("no item figure for %s: %s", card.short, err)
        card.figure_note = f"No figure yet: {err}"
    finally:
        logging.getLogger("deepstrf").setLevel(level)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _size(n: int | None) -> str:
    if n is None:
        return "size not published"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def facts_rows(cls: type, short: str) -> list[tuple[str, str]]:
    """(label, markdown) rows of the facts table, from the class's own attributes."""
    info = cls.info
    files = []
    for f in getattr(cls, "remote_files", ()):
        where = (f"CRCNS `{f.crcns[0]}` (login)" if getattr(f, "crcns", None)
                 else f"<{f.url}>")
        check = ("sha256" if f.sha256 else "md5" if f.md5 else "size" if f.size
                 else "size from the CRCNS file list" if getattr(f, "crcns", None) else "nothing")
        files.append(f"`{f.name}` ({_size(f.size)}; {where}; checked by {check})")
    params = inspect.signature(cls.__init__).parameters
    defaults = ", ".join(f"`{k}={p.default!r}`" for k, p in params.items()
                         if k not in ("self", "path", "username", "password")
                         and p.default is not inspect.Parameter.empty)
    rows = [("class", f"{{class}}`~{cls.__module__}.{cls.__name__}` "
                      f"(`from {cls.__module__} import {cls.__name__}`)"),
            ("short name", f"`{short}` (`deepstrf info {short}`)"),
            ("title", info.title), ("species", info.species), ("area", info.area),
            ("signal", info.signal),
            ("N (neurons)", "not documented" if info.n_neurons is None else info.n_neurons),
            ("S (stimuli)", "not documented" if info.n_stims is None else info.n_stims),
            ("R (repeats)", info.repeats), ("download", info.download_size),
            ("access", info.access),
            ("remote files", "; ".join(files) if files else "none"),
            ("data folder", f"`<data home>/{cls.folder}/raw/` and `.../processed/`"),
            ("cache version", getattr(cls, "cache_version", "")),
            ("constructor defaults", defaults),
            ("citation", info.citation),
            ("DOI", f"[{info.doi}](https://doi.org/{info.doi})" if info.doi else ""),
            ("source", f"<{info.url}>" if info.url else "")]
    rows += [("paper", p) for p in info.papers]
    return [(label, _cell(value)) for label, value in rows]


def glance_section(card: Card) -> str:
    """The markdown inserted into the dataset's page."""
    lines = ["## At a glance", "",
             "_Generated at build time from the class's own facts "
             f"(`{card.cls.__name__}.info`, its remote files and its constructor), "
             "so it cannot drift from the code._", ""]
    if card.figure:
        lines += [f"```{{figure}} /{card.figure}", f":alt: one item of {card.cls.__name__}",
                  "", card.figure_note, "```", ""]
    else:
        lines += [f"```{{note}}", card.figure_note, "```", ""]
    lines += ["| fact | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in facts_rows(card.cls, card.short)]
    return "\n".join(lines) + "\n\n"


def insert_section(text: str, section: str) -> str:
    """``text`` with ``section`` before its first level-2 heading (or at its end)."""
    match = re.search(r"^## ", text, re.M)
    # skip headings inside fenced code blocks
    pos = 0
    while match:
        before = text[:match.start()]
        if before.count("```") % 2 == 0:
            return text[:match.start()] + section + text[match.start():]
        pos = match.end()
        match = re.compile(r"^## ", re.M).search(text, pos)
    return text.rstrip("\n") + "\n\n" + section


def generated_page(card: Card) -> str:
    """A page for a registered dataset that has no hand-written one yet."""
    doc = inspect.getdoc(card.cls) or ""
    summary = doc.split("\n\n", 1)[0].replace("\n", " ")
    return (f"# {card.cls.info.title} (`{card.cls.__name__}`)\n\n{summary}\n\n"
            f"This page is generated from the catalogue; the class's reference is "
            f"{{class}}`~{card.cls.__module__}.{card.cls.__name__}`.\n\n"
            "## Reference\n\nSee the class's docstring in the API reference.\n")


def _builder_inited(app: Any) -> None:
    srcdir = Path(app.srcdir)
    cards = dataset_cards(srcdir)
    gen = srcdir / GENERATED_PAGES
    wanted = {f"{c.short}.md": generated_page(c) for c in cards if c.generated_page}
    if gen.exists():
        for old in gen.glob("*.md"):
            if old.name not in wanted:
                old.unlink()
    for name, text in wanted.items():
        gen.mkdir(parents=True, exist_ok=True)
        if not (gen / name).exists() or (gen / name).read_text() != text:
            (gen / name).write_text(text)
    app.env.deepstrf_cards = {c.docname: c for c in cards}


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    card = getattr(app.env, "deepstrf_cards", {}).get(docname)
    if card is not None:
        source[0] = insert_section(source[0], glance_section(card))


def _env_get_outdated(app: Any, env: Any, added: set, changed: set, removed: set) -> list[str]:
    # the sections come from code, not from the page: always re-read the dataset pages
    return [d for d in getattr(env, "deepstrf_cards", {}) if d in env.found_docs]


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _builder_inited)
    app.connect("source-read", _source_read)
    app.connect("env-get-outdated", _env_get_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
