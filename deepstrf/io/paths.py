"""Where datasets live on disk.

The data home is, in order: the ``path=`` argument of a dataset, the
``$DEEPSTRF_DATA_DIR`` environment variable, or the platform's user cache
folder (``platformdirs.user_cache_dir("deepstrf")``, e.g. ``~/.cache/deepstrf``
on Linux). Each dataset has one folder there holding ``raw/`` (the files as
distributed) and ``processed/`` (the parameter-keyed cache). Nothing here
touches the disk until a function is called.

One rule says whether the raw files are there: :func:`missing_raw` lists the
paths a dataset needs (for its parameters) that are absent; the raw files are
present when it lists none. A ``path=`` that holds raw files itself (any of
the dataset's markers, without a ``raw/`` folder) is read *in place*
(:attr:`DatasetPaths.in_place`): deepstrf never writes there, so when
:func:`missing_raw` finds something lacking the dataset raises, naming it,
instead of downloading or unpacking into the user's folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR_ENV", "DatasetPaths", "data_home", "dataset_paths", "missing_raw"]

#: Environment variable naming the data home (after the ``path=`` argument, before the user cache folder).
DATA_DIR_ENV = "DEEPSTRF_DATA_DIR"


def _as_path(name: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like; got {type(value).__name__}.")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name} must not be an empty string.")
    return Path(value).expanduser().absolute()


def data_home(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder under which every dataset has its own folder.

    Parameters
    ----------
    data_dir : path-like, optional
        Explicit choice; otherwise ``$DEEPSTRF_DATA_DIR``, otherwise the
        platform's user cache folder.
    """
    if data_dir is not None:
        return _as_path("data_dir", data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return _as_path(f"${DATA_DIR_ENV}", env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("deepstrf"))


@dataclass(frozen=True)
class DatasetPaths:
    """The folders of one dataset.

    Attributes
    ----------
    root : Path
        The dataset's folder.
    raw : Path
        Where the distributed files are (or will be downloaded to).
    processed : Path
        Where the processed cache entries are written.
    in_place : bool
        True when ``raw`` is a folder the user gave that holds the raw files
        itself: it is only read, never written to.
    """

    root: Path
    raw: Path
    processed: Path
    in_place: bool = False

    def missing(self, required: Sequence[str]) -> list[str]:
        """The ``required`` paths absent from :attr:`raw` (see :func:`missing_raw`)."""
        return missing_raw(self.raw, required)


def missing_raw(raw_dir: str | os.PathLike[str], required: Sequence[str]) -> list[str]:
    """The paths among ``required`` (relative to ``raw_dir``) that do not exist.

    The one test of "the raw files are here" (an empty list): every path a
    dataset needs for its parameters must exist.
    """
    root = Path(raw_dir)
    return [m for m in required if not (root / m).exists()]


def dataset_paths(folder: str, path: str | os.PathLike[str] | None = None,
                  raw_markers: tuple[str, ...] = ()) -> DatasetPaths:
    """Resolve a dataset's folders.

    Parameters
    ----------
    folder : str
        The dataset's folder name under the data home (e.g. ``"AA1"``).
    path : path-like, optional
        The dataset's own folder: raw files in (or downloaded to)
        ``path/raw``, the cache in ``path/processed``. If instead it holds the
        raw files directly (any of ``raw_markers`` exists there, e.g.
        ``all_stims``) and no ``raw/`` folder, they are read in place and
        never written to (``in_place`` is True): the cache then goes to the
        data home's ``<folder>/processed``. Whether they are complete is
        :meth:`DatasetPaths.missing`'s answer for the paths the parameters need.
    raw_markers : tuple of str
        Names whose presence marks a folder holding the raw files directly.
    """
    if path is None:
        root = data_home() / folder
    else:
        root = _as_path("path", path)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"path must be a folder; {root} is a file. Point it at the "
                                     "folder that holds the dataset.")
    raw = root / "raw"
    processed = root / "processed"
    # a user's folder holding some of the dataset's files is its raw folder:
    # recognising it needs one marker; completeness is missing_raw's question
    if not raw.is_dir() and len(missing_raw(root, raw_markers)) < len(raw_markers):
        return DatasetPaths(root=root, raw=root, processed=data_home() / folder / "processed",
                            in_place=True)
    return DatasetPaths(root=root, raw=raw, processed=processed)
