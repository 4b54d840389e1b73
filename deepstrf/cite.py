"""BibTeX for the datasets and the papers behind them.

The bibliographic facts live in the catalogue
(:data:`deepstrf.datasets.registry.REFERENCES`): for each dataset, the
dataset's own record (a DOI-registered release, rendered as ``@misc``) and
the papers to cite with it (``@article``). :func:`dataset_bibtex` renders
them; ``Dataset.cite()`` and ``deepstrf info NAME --bibtex`` call it.

Examples
--------
>>> from deepstrf.datasets.audio import CRCNSAA1Dataset
>>> print(CRCNSAA1Dataset.cite().splitlines()[0])
@misc{theunissen2009crcnsaa1,
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Reference", "dataset_bibtex", "to_bibtex"]

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_:\-]*")
_DOI = re.compile(r"10\.\d{4,}/\S+")
# Characters with a meaning in BibTeX/LaTeX that must be escaped in field values.
_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}


@dataclass(frozen=True)
class Reference:
    """One bibliographic record.

    Parameters
    ----------
    key : str
        Citation key (letters, digits, ``_:-``; starts with a letter).
    entry_type : {'article', 'misc', 'inproceedings'}
        ``'misc'`` for a data release, ``'article'`` for a journal paper,
        ``'inproceedings'`` for a conference paper (``journal`` then holds the
        proceedings' title, written as ``booktitle``; its ``doi`` may be ``""``).
    authors : tuple of str
        ``"Surname, Initials"`` each, in the published order.
    title, year, doi
        As published; the DOI without ``https://doi.org/``.
    journal, volume, pages : str, optional
        For articles.
    publisher, url : str, optional
        For data releases (e.g. ``"CRCNS.org"`` and the landing page).
    """

    key: str
    entry_type: str
    authors: tuple[str, ...]
    title: str
    year: int | None
    doi: str
    journal: str | None = None
    volume: str | None = None
    pages: str | None = None
    publisher: str | None = None
    url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.fullmatch(self.key):
            raise ValueError(f"Reference key must start with a letter and hold only letters, "
                             f"digits and _:-; got {self.key!r}.")
        if self.entry_type not in ("article", "misc", "inproceedings"):
            raise ValueError(f"Reference {self.key}: entry_type must be 'article', 'misc' or "
                             f"'inproceedings'; got {self.entry_type!r}.")
        if not self.authors or not all(isinstance(a, str) and a.strip() for a in self.authors):
            raise ValueError(f"Reference {self.key}: authors must be non-empty strings "
                             f"('Surname, Initials'); got {self.authors!r}.")
        if not (self.entry_type == "inproceedings" and self.doi == "") and not _DOI.fullmatch(
                self.doi):
            raise ValueError(f"Reference {self.key}: doi must look like 10.NNNN/suffix; got "
                             f"{self.doi!r}.")
        if self.entry_type in ("article", "inproceedings") and not self.journal:
            raise ValueError(f"Reference {self.key}: an {self.entry_type} needs its journal "
                             "(for a paper in proceedings: the proceedings' title).")

    def fields(self) -> dict[str, str]:
        """The BibTeX fields, in a conventional order (values unescaped)."""
        out = {"author": " and ".join(self.authors), "title": self.title}
        if self.year is not None:
            out["year"] = str(self.year)
        for name in ("journal", "volume", "pages", "publisher"):
            value = getattr(self, name)
            if value:
                out["booktitle" if (name, self.entry_type) == ("journal", "inproceedings")
                    else name] = value
        if self.doi:  # proceedings papers may have none
            out["doi"] = self.doi
        if self.url or self.doi:
            out["url"] = self.url or f"https://doi.org/{self.doi}"
        out.update(self.extra)
        return out

    def to_bibtex(self) -> str:
        """The entry as BibTeX text."""
        lines = [f"@{self.entry_type}{{{self.key},"]
        for name, value in self.fields().items():
            if name == "title":  # keep the published capitalisation
                lines.append(f"  {name} = {{{{{_escape(value)}}}}},")
            elif name in ("url", "doi"):
                lines.append(f"  {name} = {{{value}}},")
            else:
                lines.append(f"  {name} = {{{_escape(value)}}},")
        lines.append("}")
        return "\n".join(lines)


def _escape(text: str) -> str:
    return "".join(_SPECIAL.get(c, c) for c in text)


def to_bibtex(references: Any) -> str:
    """BibTeX text of several :class:`Reference` records, separated by blank lines."""
    return "\n\n".join(r.to_bibtex() for r in references) + "\n"


def _fallback(info: Any) -> Reference:
    """A ``@misc`` record from a dataset's catalogue facts alone (no REFERENCES entry)."""
    match = re.match(r"(?P<authors>.+?)\s*\((?P<year>\d{4})\)\.?\s*(?P<rest>.*)", info.citation)
    authors: tuple[str, ...] = ()
    year = None
    if match:
        year = int(match["year"])
        # the catalogue writes "Surname I.I., Surname I. & Surname I."
        names = re.split(r",\s*|\s*&\s*", match["authors"])
        authors = tuple(_comma_name(n) for n in names if n.strip())
    return Reference(key=re.sub(r"\W", "", info.name) or "dataset", entry_type="misc",
                     authors=authors or ("{" + info.title + "}",), title=info.title,
                     year=year, doi=info.doi, url=info.url,
                     extra={"note": info.citation})


def _comma_name(name: str) -> str:
    """``'Theunissen F.E.'`` -> ``'Theunissen, F.E.'``."""
    name = name.strip()
    if "," in name:
        return name
    surname, _, initials = name.rpartition(" ")
    return f"{surname}, {initials}" if surname else f"{name}, "


def dataset_bibtex(dataset: Any) -> str:
    """BibTeX entries for a dataset (class, instance or catalogue name) and its papers.

    Parameters
    ----------
    dataset : type, SourceDataset or str
        A dataset class, an instance, or a name known to
        :func:`deepstrf.datasets.registry.get_dataset`.

    Returns
    -------
    str
        The dataset's own entry first, then its papers.
    """
    from deepstrf.datasets.registry import REFERENCES, get_dataset

    if isinstance(dataset, str):
        dataset = get_dataset(dataset)
    cls = dataset if isinstance(dataset, type) else type(dataset)
    info = getattr(cls, "info", None)
    if info is None:
        raise TypeError(f"dataset must be a dataset class, instance or name; got {dataset!r}.")
    refs = REFERENCES.get(info.name) or (_fallback(info),)
    return to_bibtex(refs)
