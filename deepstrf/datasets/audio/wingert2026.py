"""Wingert 2026: ferret A1, PEG, AC and HC single units to long natural sound sequences.

=========  ===========================================================
species    ferret (*Mustela putorius furo*), awake, passive
areas      A1 (2128 units), PEG (746), AC (217), HC (37); 131 more units
           without an area label
signal     extracellular single units (64-channel and Neuropixels probes,
           Kilosort), spike times
N          3128 labelled units (3259 with the unlabelled ones), 4 animals,
           64-67 recording sessions
S          one entry per (session, sound): 20 s sequences, about 10 per
           session (estimation ``STIM_seq*``, R=1; test ``STIM_00seq*``,
           up to 6 per session, R=5-30)
access     open, Zenodo record 18331549: ``recordings.zip`` (4.35 GB) and
           ``cell_list.csv`` (5.4 MB), plus ``wav.zip`` for waveform mode
=========  ===========================================================

Preprocessing
-------------
* Grid: each presentation epoch at 10 ms bins, 2000 bins (20 s, no silent
  flanks) or 2200 (1 s silence, 20 s, 1 s) depending on the session;
  ``dt_ms`` a multiple of 10 pools them. Sounds are not merged across
  sessions: each session's copy is its own stimulus (``stim_meta['session']``).
* Stimuli: the session's ``stim`` tiles (32 gammatone bands, 200 Hz-20 kHz,
  linear power) compressed as deepSTRF, ``log((x + d) / d)`` with
  ``d = 10**log_offset``; or the ``wav.zip`` sound, inset by the epoch's
  ``PreStimSilence`` (or ``prestim_ms``), at ``audio_fs``.
* Responses: spike times (s, 100 Hz PointProcess) binned with NEMS's
  ``floor(t * fs) - round(start * fs)`` rule; R = presentations.
* Cells are mapped to archives by the cell ids of each archive's
  ``resp.json``, not by file names (three are named after another session;
  one archive repeats another's cells and is skipped, with a warning).
* ``scaling='deepstrf'`` (default): after loading, stims min-max scaled per
  band and responses per neuron over all loaded stimuli, as recorded
  operations that ``destandardize_stims()`` / ``denormalize_responses()``
  undo and ``minmax_scale()`` re-applies; ``'none'`` keeps log spectrograms
  and counts per bin.
* ``nrn_meta``: every column of ``cell_list.csv`` (``cellid`` as
  ``cell_id``, ``siteid`` as ``site``), plus ``session``, ``animal``,
  ``probe``, ``electrode``, ``unit_in_electrode``. ``stim_meta``: ``name``,
  ``subset``, ``session``, ``archive``, ``wav``, ``n_repeats``.

Parameters
----------
%(path)s
area : str or sequence of {'A1', 'PEG', 'AC', 'HC'}, optional
    Areas to keep; default all labelled units.
site : str or sequence of str, optional
    Sessions (``'CLT027c'``) or cell-list sites (``'SLJ032a-B'``) to keep.
%(dt_ms)s
    Default 10.0; must be a multiple of 10 ms (the release's bin).
subset : {'all', 'est', 'val'}, default 'all'
    Estimation sounds, test sounds (``STIM_00*``), or both.
%(smooth)s
    Default False (as deepSTRF).
log_compress : bool, default True
log_offset : float, default -1.0
    ``log10`` of the offset ``d`` of the compression.
%(download)s
include_unlabeled : bool, default False
    Also keep units without an area (not with ``area``).
%(return_waveform)s
%(audio_fs)s
    Default 44100 (the wavs' rate; 441 samples per 10 ms bin).
prestim_ms : float, optional
    Waveform mode: silence before the sound; default each epoch's
    ``PreStimSilence`` (1 s or none). deepSTRF uses 1000 for every session.
scaling : {'deepstrf', 'none'}, default 'deepstrf'
%(n_jobs)s
%(cache)s
%(progress)s

References
----------
Wingert J.C., Parida S., Norman-Haignere S. & David S.V. (2026). Nat Neurosci.
doi:10.1038/s41593-026-02216-0
Dataset: doi:10.5281/zenodo.18331549
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepstrf._validation import check_choice, check_names, check_positive, check_subset
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._minmax import minmax_responses, minmax_stims
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._nat4_sites import count_quirks
from deepstrf.datasets.audio._spikes_audio import (
    AudioSourceDataset,
    Recording,
    SpectrogramArrayStim,
    SpikeTrains,
    WavStim,
    ten_ms_front_end,
)
from deepstrf.datasets.audio._wingert_sites import (
    N_BANDS,
    NATIVE_MS,
    cell_parts,
    plan_archives,
    read_cell_list,
    read_site,
    scan_site,
    select_cells,
)
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.download import RemoteFile

__doc__ = fill_doc(__doc__)
__all__ = ["Wingert2026Dataset"]

AREAS, SOUND_RATE = ("A1", "PEG", "AC", "HC"), 44100
_RECORD = 18331549  # zenodo.org/records/18331549


class Wingert2026Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="wingert2026", title="Wingert 2026: ferret auditory cortex units to natural "
        "sound sequences", species="ferret", area="A1, PEG, AC, HC",
        signal="single units (spike times)", n_neurons=3128, n_stims=None,
        repeats="1 (estimation), 5-30 (test)", download_size="4.35 GB (+3.7 GB wav.zip)",
        access="open",
        citation="Wingert J.C., Parida S., Norman-Haignere S. & David S.V. (2026). Nature "
                 "Neuroscience, doi:10.1038/s41593-026-02216-0.",
        doi="10.5281/zenodo.18331549", url="https://zenodo.org/records/18331549")
    folder = "Wingert2026"
    # Zenodo publishes each file's MD5 through its records API: fetched and checked on download
    remote_files = (RemoteFile.zenodo("cell_list.csv", record=_RECORD),
                    RemoteFile.zenodo("recordings.zip", record=_RECORD),
                    RemoteFile.zenodo("wav.zip", record=_RECORD))
    archives = (ArchiveSpec("wav.zip", provides=("wav",)),)
    raw_markers = ("cell_list.csv",)
    cache_version = 1

    def __init__(self, path: Any = None, area: Any = None, site: Any = None,
                 dt_ms: float = 10.0, subset: str = "all", smooth: bool | float = False,
                 log_compress: bool = True, log_offset: float = -1.0, download: bool = False,
                 include_unlabeled: bool = False, return_waveform: bool = False,
                 audio_fs: float = 44100, prestim_ms: float | None = None, *,
                 scaling: str = "deepstrf", n_jobs: int | None = 1, cache: str = "use",
                 progress: bool | None = None):
        front = ten_ms_front_end("Wingert2026Dataset", dt_ms=dt_ms, smooth=smooth,
                                 n_bands=N_BANDS, return_waveform=return_waveform,
                                 audio_fs=audio_fs)
        for name, flag in (("log_compress", log_compress),
                           ("include_unlabeled", include_unlabeled)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False; got {flag!r}.")
        if isinstance(log_offset, bool) or not isinstance(log_offset, numbers.Real) \
                or not -12 <= log_offset <= 12:
            raise ValueError(f"log_offset must be a number in [-12, 12] (log10 of the "
                             f"compression offset); got {log_offset!r}.")
        if include_unlabeled and area is not None:
            raise ValueError("include_unlabeled=True adds the units without an area, so it "
                             f"cannot be combined with area={area!r}; drop one of them.")
        params = {"area": "all" if area is None else check_subset("area", area, AREAS),
                  "site": "all" if site is None else check_names("site", site),
                  "subset": check_choice("subset", subset, ("all", "est", "val")),
                  "log_offset": float(log_offset) if log_compress else None,
                  "include_unlabeled": include_unlabeled,
                  "prestim_ms": None if prestim_ms is None else
                  check_positive("prestim_ms", prestim_ms, allow_zero=True)}
        self._scaling = check_choice("scaling", scaling, ("deepstrf", "none"))
        self._raw_hint = self.default_paths(path).raw
        full = area is None and site is None and subset == "all" and not include_unlabeled
        self._init_source(path, params, front, download=download, n_jobs=n_jobs, cache=cache,
                          progress=progress, expect_full=full)
        if self._scaling == "deepstrf":  # on the loaded data, so the cache holds counts
            self.minmax_scale()

    def minmax_scale(self) -> None:
        """deepSTRF's scaling: every band (spectrograms) and neuron to [0, 1] over all stimuli.

        Recorded in ``provenance['operations']``; ``destandardize_stims()`` and
        ``denormalize_responses()`` undo it. Applied again, it first undoes itself.
        """
        if not self._front_end.return_waveform:
            minmax_stims(self)
        minmax_responses(self)

    def _needs(self, params: Mapping[str, Any]):
        raw = self._raw_hint  # the archive, or the folder it extracts to
        rec = "recordings" if (raw / "recordings").is_dir() and \
            not (raw / "recordings.zip").exists() else "recordings.zip"
        return self._needs_of([("cell_list.csv", "cell_list.csv"), (rec, "recordings.zip")])

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.io.nems import list_recordings
        from deepstrf.preprocessing.parallel import parallel_map

        owner, quirks = type(self).__name__, {}
        rows = read_cell_list(raw_dir / "cell_list.csv")
        cells = select_cells(owner, rows, params)
        zipped = raw_dir / "recordings.zip"
        container = str(zipped if zipped.exists() else raw_dir / "recordings")
        members = list_recordings(container)
        if not members:
            raise RawDataError(f"{owner}: {container} holds no recording archives "
                               "(<SITE>_<hex>.tgz); download recordings.zip again.")
        scans = parallel_map(scan_site, [(container, m) for m in members], n_jobs=n_jobs,
                             progress=progress, desc=f"{owner}: archives")
        plan = plan_archives(owner, scans, cells, {r["cellid"] for r in rows}, quirks)
        waveform = self._front_end.return_waveform
        shift = (params["prestim_ms"] if params["prestim_ms"] is not None else "epoch") \
            if waveform else 0.0
        sites = parallel_map(read_site, [(container, m, cs, params["subset"],
                                          params["log_offset"], shift)
                                         for m, cs in plan.items()],
                             n_jobs=n_jobs, progress=progress, desc=f"{owner}: sessions")
        # what the reader tolerated, once per archive (from its full read when it was read)
        for found in [s for s in scans if s["member"] not in plan] + sites:
            count_quirks(quirks, found["quirks"])
            for message in found["warnings"]:
                warnings.warn(message, DataQuirkWarning, stacklevel=2)
        planned = {c for cs in plan.values() for c in cs}
        kept = [c for c in cells if c["cellid"] in planned]
        index = {c["cellid"]: n for n, c in enumerate(kept)}
        neurons = [self._neuron(c) for c in kept]
        k = int(round(self._front_end.dt_ms / NATIVE_MS))
        stims: list[Any] = []
        trials: dict[tuple[int, int], SpikeTrains] = {}
        for site in sites:
            sessions: dict[str, list[str]] = {}
            for cell in site["trains"]:
                sessions.setdefault(cell_parts(cell)["session"], []).append(cell)
            for session, session_cells in sessions.items():
                for name, tile, T, pre, reps in site["stims"]:
                    meta = {"name": name, "subset": "val" if name.startswith("STIM_00")
                            else "est", "session": session, "wav": name[len("STIM_"):],
                            "n_repeats": reps, "archive": Path(site["member"]).name}
                    for cell in session_cells:
                        trials[(len(stims), index[cell])] = SpikeTrains(
                            *site["trains"][cell][name])
                    stims.append(self._stim(raw_dir, meta, T // k, pre, params)
                                 if waveform else SpectrogramArrayStim(tile, NATIVE_MS, meta))
        if waveform:
            absent = [s.meta["wav"] for s in stims if not Path(s.path).is_file()]
            if absent:
                raise RawDataError(f"{owner}: waveform mode needs every sound in "
                                   f"{raw_dir / 'wav'}; missing {len(absent)}, e.g. "
                                   f"{sorted(set(absent))[:3]} (re-extract wav.zip).")
        return Recording(stims=stims, neurons=neurons, trials=trials, quirks=quirks)

    @staticmethod
    def _stim(raw_dir: Path, meta: dict[str, Any], n_bins: int, pre: int,
              params: Mapping[str, Any]) -> WavStim:
        inset = params["prestim_ms"] if params["prestim_ms"] is not None else pre * NATIVE_MS
        return WavStim(raw_dir / "wav" / meta["wav"], meta, expected_sr=SOUND_RATE,
                       inset_ms=inset, n_bins=n_bins)

    @staticmethod
    def _neuron(row: Mapping[str, Any]) -> dict[str, Any]:
        meta = {"cell_id": row["cellid"], "site": row["siteid"]}
        meta.update({k: v for k, v in row.items() if k not in ("cellid", "siteid")})
        meta.update(cell_parts(row["cellid"]))
        return meta
