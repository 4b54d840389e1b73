"""``SourceDataset``: what every public dataset class shares.

A dataset module declares facts as class attributes (:class:`DatasetInfo`,
its remote files and archives, its folder name, a cache version) and writes
one hook, :meth:`SourceDataset._parse`, from the raw folder to a recording
(stimulus and response sources plus metadata), which the modality base class
renders into tensors (:meth:`SourceDataset._render`). Its constructor checks
its arguments and calls :meth:`SourceDataset._init_source`, which does the
rest, in this order:

1. resolve the folders (:func:`deepstrf.io.paths.dataset_paths`);
2. when the raw files are absent: fetch them if allowed (verified, resumable,
   with the CRCNS login when needed) and extract the archives; otherwise fail
   with the list of what is missing;
3. fingerprint the raw files and hash the parameters into a cache key;
4. read the processed cache entry, or build (``_build``, in parallel through
   ``n_jobs``) and write it atomically with its manifest;
5. fill the dataset and validate it; compare its size with the documented one.

Arguments are checked by the subclass before any of this, so a bad value
fails at once without touching the disk.
"""

from __future__ import annotations

import inspect
import logging
import os
from abc import ABC
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deepstrf._validation import check_choice, check_credential, check_n_jobs
from deepstrf.io.cache import (
    CACHE_MODES,
    STORAGE_FORMAT_VERSION,
    BuiltData,
    cache_key,
    cached_build,
    list_entries,
    load_entry,
    raw_fingerprint,
)
from deepstrf.io.download import CredentialsPrompt, RemoteFile

__all__ = ["ArchiveSpec", "DatasetInfo", "SourceDataset"]

logger = logging.getLogger(__name__)


class _RawFetched(BaseException):
    """Stops a constructor run by :meth:`SourceDataset.download_raw` once the files are in.

    A BaseException so that no ``except Exception`` in a constructor swallows it.
    """

    def __init__(self, raw: Path) -> None:
        super().__init__(str(raw))
        self.raw = raw


@dataclass(frozen=True)
class DatasetInfo:
    """Catalogue facts about a public dataset (shown by ``deepstrf list`` / ``info``)."""

    name: str                 #: short name used by the CLI, e.g. "aa1"
    title: str
    species: str
    area: str
    signal: str               #: e.g. "single units (spike times)"
    n_neurons: int | None     #: documented size of the full release
    n_stims: int | None
    repeats: str
    download_size: str        #: human-readable, e.g. "17 MB"
    access: str               #: "open" or "CRCNS login"
    citation: str
    doi: str
    url: str
    papers: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArchiveSpec:
    """An archive among the remote files and how it unpacks into the raw folder.

    ``strip_components="auto"`` strips one leading folder when every member
    sits in the same folder and that folder is not itself expected in the raw
    folder (for releases whose archive layout is not documented). ``provides``
    lists what the archive unpacks to (relative to the raw folder): when all
    of it is present, the archive is neither fetched nor unpacked.
    """

    name: str                          #: the RemoteFile name of the archive
    strip_components: int | str = 0
    members: tuple[str, ...] | None = None
    provides: tuple[str, ...] = ()


class SourceDataset(ABC):
    """Mixin for datasets built from a public release; combine with a modality class.

    Class attributes a dataset module sets
    ---------------------------------------
    info : DatasetInfo
    folder : str
        Folder name under the data home (e.g. ``"AA1"``).
    remote_files : tuple of RemoteFile
        What to download.
    archives : tuple of ArchiveSpec
        Which of the remote files to unpack, and how.
    raw_markers : tuple of str
        Paths (relative to the raw folder) whose presence marks a folder that
        holds the raw files directly; by default all must exist for the raw
        data to count as present.
    raw_subpaths : tuple of str
        What to fingerprint for the cache key (default: ``raw_markers``).
    cache_version : int
        Bump when the module's processing changes its results.

    When what is needed depends on the parameters (one archive per animal,
    an optional ``wav.zip`` for waveform mode), declare it on the remote
    files with ``when=`` (see :class:`~deepstrf.io.download.RemoteFile`):
    :meth:`_needs` then keeps only the files the parameters need, their
    archives, and the markers the other archives would have provided, for
    construction and :meth:`download_raw` alike.
    """

    info: ClassVar[DatasetInfo]
    folder: ClassVar[str]
    remote_files: ClassVar[tuple[RemoteFile, ...]] = ()
    archives: ClassVar[tuple[ArchiveSpec, ...]] = ()
    raw_markers: ClassVar[tuple[str, ...]] = ()
    raw_subpaths: ClassVar[tuple[str, ...]] = ()
    cache_version: ClassVar[int] = 1

    # ------------------------------------------------------------------ hooks
    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Any:
        """Read the raw folder into a recording (stimulus and response sources, metadata).

        The dataset's hook; for audio, a
        :class:`~deepstrf.datasets.audio._spikes_audio.Recording`. (A dataset
        may override :meth:`_build` instead.)
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _parse (or _build).")

    def _render(self, recording: Any, front: Any, n_jobs: int | None,
                progress: bool | None) -> BuiltData:
        """Render a parsed recording into tensors (the modality base class's hook)."""
        raise NotImplementedError(f"{type(self).__name__} has no renderer; combine "
                                  "SourceDataset with a modality base such as "
                                  "AudioSourceDataset.")

    def _build(self, raw_dir: Path, params: dict[str, Any], n_jobs: int | None,
               progress: bool | None) -> BuiltData:
        """Parse, then render in parallel; override only for a build of another shape."""
        recording = self._parse(raw_dir, params, n_jobs, progress)
        if not recording.neurons or not (recording.trials or getattr(recording, "blocks", {})):
            from deepstrf.errors import RawDataError

            shown = {k: v for k, v in params.items() if k != "front_end"}
            raise RawDataError(f"{type(self).__name__}: no responses match the selection "
                               f"{shown} in {raw_dir}. Widen the selection or check the "
                               "folder.")
        return self._render(recording, self._front_end, n_jobs, progress)

    def _init_source(self, path: Any, params: Mapping[str, Any], front: Any, *,
                     download: bool, username: str | None = None,
                     password: str | None = None, n_jobs: int | None = 1, cache: str = "use",
                     progress: bool | None = None, expect_full: bool = False) -> None:
        """Initialise the modality class, then load from the cache or build.

        The one constructor body of every dataset, audio or video: ``front``
        (its :meth:`to_dict` goes into the cache key once, as
        ``params["front_end"]``) says how stimuli and responses reach the
        grid, ``params`` are the dataset's own checked parameters. The
        modality attributes (``F``, ``audio_fs``, frame size) come from the
        build result.
        """
        paths = self.default_paths(path)
        # the modality base (AudioNeuralDataset, VideoNeuralDataset) is next in the MRO
        super(SourceDataset, self).__init__(str(paths.root), front.dt_ms)
        self._front_end = front
        self._load(path, {**params, "front_end": front.to_dict()}, download=download,
                   username=username, password=password, n_jobs=n_jobs, cache=cache,
                   progress=progress, expect_full=expect_full)

    # ------------------------------------------------------------------ helpers
    @classmethod
    def default_paths(cls, path: Any = None):
        """Where this dataset's raw and processed folders are (nothing is created)."""
        from deepstrf.io.paths import dataset_paths

        return dataset_paths(cls.folder, path, cls.raw_markers)

    def _needs(self, params: Mapping[str, Any]) -> tuple[tuple[RemoteFile, ...],
                                                        tuple[ArchiveSpec, ...],
                                                        tuple[str, ...], tuple[str, ...]]:
        """``(remote files, archives, required paths, fingerprinted paths)`` for ``params``.

        From the declarations: the files whose ``when=`` matches ``params``,
        the archives among them, and the markers (and fingerprinted paths)
        except those that only an archive left out would provide.
        """
        cls = type(self)
        files = tuple(f for f in cls.remote_files if f.needed(params))
        names = {f.name for f in files}
        archives = tuple(a for a in cls.archives if a.name in names)
        left_out = {p for a in cls.archives if a.name not in names for p in a.provides}
        required = tuple(m for m in cls.raw_markers if m not in left_out)
        fingerprinted = tuple(m for m in (cls.raw_subpaths or cls.raw_markers)
                              if m not in left_out)
        return files, archives, required, fingerprinted

    def _needs_of(self, wanted: list[tuple[str, str]]) -> tuple[tuple[RemoteFile, ...],
                                                               tuple[ArchiveSpec, ...],
                                                               tuple[str, ...], tuple[str, ...]]:
        """:meth:`_needs` from ``(path on disk, remote file name)`` pairs chosen by a module.

        For modules whose needs depend on what is already on disk (an archive or the folder it
        extracts to): the remote files named, ``wav.zip`` and the declared archives in
        waveform mode, and the paths both required and fingerprinted.
        """
        wanted = list(wanted)
        archives: tuple[ArchiveSpec, ...] = ()
        if getattr(self._front_end, "return_waveform", False):
            wanted.append(("wav", "wav.zip"))
            archives = type(self).archives
        names = {w[1] for w in wanted}
        files = tuple(f for f in type(self).remote_files if f.name in names)
        required = tuple(w[0] for w in wanted)
        return files, archives, required, required

    @classmethod
    def download_raw(cls, path: Any = None, *, username: str | None = None,
                     password: str | None = None, progress: bool | None = None,
                     everything: bool = False, prompt: CredentialsPrompt | None = None,
                     **params: Any) -> Path:
        """Download (verified, resumable) and unpack the raw files the parameters need.

        Parameters
        ----------
        path : path-like, optional
            As for the constructor.
        username, password : str, optional
            CRCNS credentials (see the constructor).
        progress : bool, optional
            Progress bars.
        everything : bool, default False
            Fetch every remote file of the dataset, whatever the parameters need.
        prompt : callable, optional
            Asked for ``(username, password)`` when a CRCNS file must be
            downloaded and no credentials are configured (the command line
            passes one that asks on the terminal).
        **params
            Constructor parameters that choose the files (e.g. ``animals=``
            for AA4, ``return_waveform=True`` for an optional ``wav.zip``);
            checked as the constructor checks them. The defaults are the
            constructor's, so ``download_raw()`` fetches what ``Dataset()``
            would need.

        Returns
        -------
        Path
            The raw folder. Files already present and verified are kept; a
            folder read in place is never written to.
        """
        if not isinstance(everything, bool):
            raise TypeError(f"everything must be True or False; got {everything!r}.")
        obj = cls.__new__(cls)
        obj._fetch_request = {"everything": everything, "prompt": prompt}
        try:
            # the constructor checks and normalises the parameters exactly as for a load;
            # _load stops once the files are fetched
            obj.__init__(path, download=True, progress=progress,
                         **cls._credential_kwargs(username, password), **params)
        except _RawFetched as done:
            return done.raw
        raise RuntimeError(f"{cls.__name__}.__init__ did not reach SourceDataset._load, so "
                           "download_raw cannot tell which files its parameters need.")

    @classmethod
    def _credential_kwargs(cls, username: str | None, password: str | None) -> dict[str, Any]:
        """Credentials for a constructor that takes them; open datasets' constructors do not."""

        given = {"username": username, "password": password}
        accepted = inspect.signature(cls.__init__).parameters
        if any(v is not None and k not in accepted for k, v in given.items()):
            raise TypeError(f"{cls.__name__} is open data and takes no credentials; drop "
                            "username/password.")
        return {k: v for k, v in given.items() if k in accepted}

    @classmethod
    def _fetch_raw(cls, raw_dir: Path, files: tuple[RemoteFile, ...],
                   archives: tuple[ArchiveSpec, ...], required: tuple[str, ...], *,
                   download: bool, username: str | None, password: str | None,
                   progress: bool | None, in_place: bool = False,
                   prompt: CredentialsPrompt | None = None) -> None:
        """Make the raw files present: download what is missing and unpack the archives.

        A folder read in place (``in_place``) is never written to: if it lacks
        a required path, the error names every one.
        """
        from deepstrf.errors import MissingRawDataError
        from deepstrf.io.archive import extract_archive
        from deepstrf.io.download import fetch
        from deepstrf.io.paths import data_home, missing_raw

        owner = cls.__name__
        if in_place:
            missing = missing_raw(raw_dir, required)
            if missing:
                by_name = {f.name: f for f in files}
                lines = []
                for m in missing:
                    sources = [by_name[a.name] for a in archives
                               if m in a.provides and a.name in by_name]
                    where = "; ".join(f"unpacked from {f.name}, {f.describe_source()}"
                                      for f in sources)
                    lines.append(f"  - {raw_dir / m}" + (f"  ({where})" if where else ""))
                raise MissingRawDataError(
                    f"{owner}: {raw_dir} holds the dataset's files itself, so it is read in "
                    f"place and never written to, but it lacks {len(missing)} path(s) these "
                    f"parameters need:\n" + "\n".join(lines) + "\nAdd them there, choose "
                    f"parameters that need only what is there, or download into a folder of "
                    f"deepstrf's own with download=True (leave path= unset to use "
                    f"{data_home() / cls.folder}, or point it at an empty folder).")
            return
        unpacked = {a.name for a in archives
                    if a.provides and not missing_raw(raw_dir, a.provides)}
        files = tuple(f for f in files if f.name not in unpacked)
        archives = tuple(a for a in archives if a.name not in unpacked)
        paths = fetch(files, raw_dir, download=download, username=username,
                      password=password, progress=progress, owner=owner, prompt=prompt)
        for spec in archives:
            strip = spec.strip_components
            if strip == "auto":
                from deepstrf.io.archive import top_level_names

                tops = top_level_names(paths[spec.name])
                strip = 1 if len(tops) == 1 and not tops & set(required) else 0
            extract_archive(paths[spec.name], raw_dir, strip_components=strip,
                            members=spec.members)
        missing = missing_raw(raw_dir, required)
        if missing:
            raise MissingRawDataError(
                f"{owner}: after fetching and unpacking, {raw_dir} still lacks {missing}. The "
                "archives may have a different layout than expected; check their contents.")

    @staticmethod
    def _source_records(raw_dir: Path, files: tuple[RemoteFile, ...]) -> list[dict[str, Any]]:
        """Every remote source the build depends on (URL, size, checksum) for the manifest."""
        from deepstrf.io.download import source_record

        return [source_record(f, raw_dir) for f in files]

    @classmethod
    def cite(cls) -> str:
        """BibTeX entries for the dataset and its papers (paste them into your .bib file)."""
        from deepstrf.cite import dataset_bibtex

        return dataset_bibtex(cls)

    @staticmethod
    def _writable_processed(processed: Path, folder: str) -> Path:
        """``processed`` if it can be written, else the data home's (logged)."""
        try:
            processed.mkdir(parents=True, exist_ok=True)
            probe = processed / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
            return processed
        except OSError as err:
            from deepstrf.io.paths import data_home

            fallback = data_home() / folder / "processed"
            logger.warning("cannot write the processed cache at %s (%s); using %s instead",
                           processed, err.strerror or err, fallback)
            fallback.mkdir(parents=True, exist_ok=True)
            return fallback

    def _load(self, path: Any, params: Mapping[str, Any], *, download: bool,
              username: str | None, password: str | None, n_jobs: int | None, cache: str,
              progress: bool | None, expect_full: bool) -> None:
        """Steps 1-5 of the module docstring; ``params`` must already be checked.

        ``expect_full`` says the parameters select the whole release, so the
        result's size can be compared with the documented one.
        """
        check_choice("cache", cache, CACHE_MODES)
        if not isinstance(download, bool):
            raise TypeError(f"download must be True or False; got {download!r}.")
        # checked here, before the cache is looked at, so a bad value fails on a
        # warm hit too instead of only when a build needs it
        n_jobs = check_n_jobs(n_jobs)
        check_credential("username", username)
        check_credential("password", password)
        paths = self.default_paths(path)
        owner = type(self).__name__
        params = dict(params)
        raw = paths.raw
        # no absolute paths: moving the data home keeps the keys (the fingerprint
        # holds the raw files' relative paths, sizes and times)
        key_params = {"dataset": owner, "cache_version": self.cache_version,
                      "storage_format": STORAGE_FORMAT_VERSION, "params": params}
        params_key = cache_key(key_params)
        files, archives, required, fingerprinted = self._needs(params)
        request = self.__dict__.get("_fetch_request")
        if request is not None:  # download_raw: fetch what the parameters need, no build
            if request["everything"]:
                files, archives, required = self.remote_files, self.archives, self.raw_markers
            self._fetch_raw(raw, files, archives, required, download=True, username=username,
                            password=password, progress=progress, in_place=paths.in_place,
                            prompt=request["prompt"])
            raise _RawFetched(raw)
        data = manifest = None
        if paths.missing(required):
            found = self._entry_without_raw(paths.processed, params_key) \
                if cache in ("use", "readonly") and not download else None
            if found is not None:
                data, manifest = found
                self._cache_hit = True
                logger.info("%s: raw files absent under %s; using the processed cache entry %s",
                            owner, raw, manifest.get("key"))
            else:
                self._fetch_raw(raw, files, archives, required, download=download,
                                username=username, password=password, progress=progress,
                                in_place=paths.in_place)
        if data is None:
            fingerprint = raw_fingerprint(raw, fingerprinted)
            key = cache_key({**key_params, "raw": fingerprint})
            processed = self._writable_processed(paths.processed, self.folder) \
                if cache != "off" else paths.processed
            record = {"dataset": owner, "info": self.info.to_dict(), "parameters": params,
                      "params_key": params_key, "cache_version": self.cache_version,
                      "raw_dir": str(raw), "raw_fingerprint": fingerprint,
                      "sources": self._source_records(raw, files)}
            data, manifest, self._cache_hit = cached_build(
                processed, key, cache,
                lambda: self._checked_build(self._build(raw, params, n_jobs, progress)),
                record, owner=owner)
        self._fill(data, manifest)
        if expect_full and not self._cache_hit:  # once, when the entry is built
            self._compare_with_documented()

    def _checked_build(self, data: BuiltData) -> BuiltData:
        """Scan the built stims for NaN and infinities before they are cached.

        Done here, before the entry is written, so that a warm open need not
        read every stim value again (:meth:`_fill` skips that scan) and a bad
        build never leaves an entry behind.
        """
        from deepstrf.datasets.neural_dataset import check_finite_stim
        from deepstrf.errors import ContractError

        for s, stim in enumerate(data.stims):
            try:
                check_finite_stim(type(self).__name__, s, stim)
            except ValueError as err:
                raise ContractError(str(err)) from err
        return data

    @staticmethod
    def _entry_without_raw(processed: Path, params_key: str):
        """The newest complete entry built with these parameters, or None."""
        matches = [(m.get("created", ""), p) for p, m in list_entries(processed)
                   if m is not None and m.get("params_key") == params_key]
        if not matches:
            return None
        return load_entry(max(matches)[1])

    def _fill(self, data: BuiltData, manifest: dict | None) -> None:
        self.stims = list(data.stims)
        self.stim_meta = [dict(m) for m in data.stim_meta]
        self.nrn_meta = [dict(m) for m in data.nrn_meta]
        self.N_neurons = len(self.nrn_meta)
        for name, value in data.attributes.items():
            setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self._set_store(data.store)
        self._manifest = manifest
        # every entry's stims were scanned by _checked_build before it was written
        self._validate(stim_values=False)

    def _compare_with_documented(self) -> None:
        info = self.info
        found = {"neurons": self.N_neurons, "stims": self.get_S()}
        expected = {"neurons": info.n_neurons, "stims": info.n_stims}
        off = [f"{k}: {found[k]} (documented {expected[k]})" for k in found
               if expected[k] is not None and found[k] != expected[k]]
        if off:
            logger.warning("%s: the full release is documented with other counts; found %s. "
                           "The raw folder may be incomplete or a different version.",
                           type(self).__name__, "; ".join(off))
