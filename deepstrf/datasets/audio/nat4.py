"""NAT4: ferret A1 and PEG single units to natural sounds (Pennington & David 2022/2023).

=========  ===========================================================
species    ferret (*Mustela putorius furo*), awake, passive
areas      A1 (849 units, 777 auditory) or PEG (398 units, 339 auditory)
signal     extracellular single units (multi-channel probes, spike-sorted)
N          849 (A1) / 398 (PEG)
S          593: 575 estimation sounds at R=1, then 18 validation sounds at R=20
R          1 (estimation), 20 (validation)
access     open, Zenodo record 8044773: per area the population recording,
           the prediction CSV and the single-site zip (about 108 MB for A1,
           50 MB for PEG), plus ``wav.zip`` for waveform mode
=========  ===========================================================

Preprocessing
-------------
* Grid: each 1.5 s epoch (0.25 s silence, 1 s sound, 0.25 s silence) in
  150 bins of 10 ms; ``dt_ms`` a multiple of 10 pools them.
* Stimuli: the population ``stim`` signal (18 ozgf bands, 100 Hz), ``log1p``
  as deepSTRF (a file with negative values is taken as already logarithmic,
  with a warning); or the ``wav.zip`` sounds, inset 0.25 s, at ``audio_fs``.
* Estimation responses: the population raster (counts per 10 ms), block
  sums, NaN kept; a pair NaN throughout is not recorded (sentinel).
* Validation responses: the site spike times (1 kHz) rasterised with NEMS's
  ``floor(t * fs)`` rule, 20 repeats. Site cells are matched onto the
  population's, also when electrodes have 3 digits (``TNC015a-001-1``);
  population cells in no site file have sentinels here.
* Unit: both subsets in counts per bin (deepSTRF 0.1.0 min-max scales the
  estimation ones only: ``response_scale='deepstrf'``); use
  :meth:`normalize_responses` for a common scale.
* ``nrn_meta``: ``cell_id``, ``area``, ``auditory`` (``sig_auditory``; False
  without a CSV row), ``site``, ``animal``, ``electrode``,
  ``unit_in_electrode``. ``stim_meta``: ``name``, ``subset``, ``wav``.

Parameters
----------
%(path)s
area : {'A1', 'PEG'}, default 'A1'
%(dt_ms)s
    Default 10.0; must be a multiple of 10 ms (the release's bin).
%(smooth)s
    Default False (as deepSTRF).
%(download)s
subset : {'all', 'est', 'val'}, default 'all'
    Estimation sounds, validation sounds, or both (estimation first).
%(return_waveform)s
%(audio_fs)s
    Default 44100 (the wavs' rate; 441 samples per 10 ms bin).
response_scale : {'counts', 'deepstrf'}, default 'counts'
    'deepstrf': estimation responses min-max scaled over the population
    matrix, as deepSTRF 0.1.0 (validation stays in counts).
%(n_jobs)s
%(cache)s
%(progress)s

References
----------
Pennington J.R. & David S.V. (2023). A convolutional neural network provides
a generalizable model of natural sound coding by neural populations in
auditory cortex. PLoS Comput Biol 19:e1011110. doi:10.1371/journal.pcbi.1011110
Dataset: doi:10.5281/zenodo.8044773
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._spikes_audio import (
    AudioSourceDataset,
    Recording,
    SpectrogramArrayStim,
    SpikeTrains,
    WavStim,
    ten_ms_front_end,
)
from deepstrf.datasets.audio._nat4_sites import NATIVE_MS, canonical, cell_parts, \
    count_quirks, est_blocks, read_pred_correlation, read_site
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.download import RemoteFile

__doc__ = fill_doc(__doc__)
__all__ = ["NAT4Dataset"]

AREAS, N_BANDS, SOUND_RATE = ("A1", "PEG"), 18, 44100
_RECORD = 8044773  # zenodo.org/records/8044773


def _names(area: str) -> dict[str, str]:
    return {"pop": f"{area}_NAT4_ozgf.fs100.ch18", "pred": f"{area}_pred_correlation.csv",
            "sites": f"{area}_single_sites"}


class NAT4Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="nat4", title="NAT4: ferret A1 and PEG units to natural sounds", species="ferret",
        area="A1, PEG", signal="single units (spike times; binned population raster)",
        n_neurons=849, n_stims=593, repeats="1 (estimation), 20 (validation)",
        download_size="108 MB (A1), 50 MB (PEG)", access="open",
        citation="Pennington J.R. & David S.V. (2023). A convolutional neural network provides "
                 "a generalizable model of natural sound coding by neural populations in "
                 "auditory cortex. PLoS Comput Biol 19:e1011110.",
        doi="10.5281/zenodo.8044773", url="https://zenodo.org/records/8044773",
        papers=("Pennington & David (2023) PLoS Comput Biol 19:e1011110, "
                "doi:10.1371/journal.pcbi.1011110",))
    folder = "NAT4"
    # Zenodo publishes each file's MD5 through its records API: fetched and checked on download
    remote_files = tuple(RemoteFile.zenodo(n, record=_RECORD) for area in AREAS for n in (
        _names(area)["pop"] + ".tgz", _names(area)["pred"], _names(area)["sites"] + ".zip")) \
        + (RemoteFile.zenodo("wav.zip", record=_RECORD),)
    archives = (ArchiveSpec("wav.zip", provides=("wav",)),)
    raw_markers = tuple(_names(a)["pred"] for a in AREAS)
    cache_version = 1

    def __init__(self, path: Any = None, area: str = "A1", dt_ms: float = 10.0,
                 smooth: bool | float = False, download: bool = False, subset: str = "all",
                 return_waveform: bool = False, audio_fs: float = 44100, *,
                 response_scale: str = "counts", n_jobs: int | None = 1, cache: str = "use",
                 progress: bool | None = None):
        front = ten_ms_front_end("NAT4Dataset", dt_ms=dt_ms, smooth=smooth, n_bands=N_BANDS,
                                 return_waveform=return_waveform, audio_fs=audio_fs)
        params = {"area": check_choice("area", area, AREAS),
                  "subset": check_choice("subset", subset, ("all", "est", "val")),
                  "response_scale": check_choice("response_scale", response_scale,
                                                 ("counts", "deepstrf"))}
        self._raw_hint = self.default_paths(path).raw
        self._init_source(path, params, front, download=download, n_jobs=n_jobs, cache=cache,
                          progress=progress,
                          expect_full=params["area"] == "A1" and params["subset"] == "all")

    def _needs(self, params: Mapping[str, Any]):
        names = _names(params["area"])

        def either(stem: str, ext: str) -> tuple[str, str]:  # the archive, or it extracted
            raw = self._raw_hint
            found = (raw / stem).is_dir() and not (raw / (stem + ext)).exists()
            return (stem if found else stem + ext), stem + ext
        wanted = [either(names["pop"], ".tgz"), (names["pred"], names["pred"])]
        if params["subset"] != "est":
            wanted.append(either(names["sites"], ".zip"))
        return self._needs_of(wanted)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.io.nems import NemsFormatError, RasterizedSignal, read_recording

        owner, area, subset = type(self).__name__, params["area"], params["subset"]
        names, quirks = _names(area), {}
        k = int(round(self._front_end.dt_ms / NATIVE_MS))
        pop_path = next(p for p in (raw_dir / (names["pop"] + ".tgz"), raw_dir / names["pop"])
                        if p.exists())
        rec = read_recording(pop_path, signals=["resp", "stim"], dtype=np.float32,
                             scan_all=False)
        count_quirks(quirks, rec.quirks)
        resp, stim = rec["resp"], rec["stim"]
        for sig in (resp, stim):
            width = getattr(sig, "values", np.zeros((0, 0))).shape[1]
            if not isinstance(sig, RasterizedSignal) or sig.fs != 1000.0 / NATIVE_MS or \
                    (sig is stim and width != N_BANDS):
                raise NemsFormatError(rec.archive, sig.sidecar.member, "expected a "
                                      f"RasterizedSignal at 100 Hz ({N_BANDS} bands for stim); "
                                      f"got {sig.sidecar.signal_type} at {sig.fs:g} Hz with "
                                      f"{width} channels.")
        cells = list(resp.chans or ())
        first = {}
        for occ in resp.stim_occurrences():
            first.setdefault(occ.name, occ)
        kinds = {"est": [n for n in first if not n.startswith("STIM_00")],
                 "val": [n for n in first if n.startswith("STIM_00")]}
        chosen = [(n, s) for s in ("est", "val") if subset in ("all", s) for n in kinds[s]]
        spec = stim.values
        if float(np.nanmin(spec)) < 0:
            _warn(quirks, owner, "stim_already_logarithmic", 1, "the stim signal holds negative "
                  "values, so it is taken as already logarithmic (no log1p)")
        else:
            spec = np.log1p(spec)
        stims, trials = self._stims(raw_dir, chosen, first, stim, spec, k, quirks), {}
        values = resp.values
        if params["response_scale"] == "deepstrf":  # deepSTRF 0.1.0: one min-max of the matrix
            lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
            values = (values - lo) / max(hi - lo, 1e-12)
        blocks = est_blocks(values, {s: resp.sidecar.sample_rows(resp.occurrence_samples(n))
                                     for s, (n, kind) in enumerate(chosen) if kind == "est"})
        nan_pairs = sum(len(cells) - len(b.neurons) for b in blocks.values())
        del rec, resp, values  # the raster lives on only as the est blocks (in place)
        if nan_pairs:
            _warn(quirks, owner, "est_pairs_all_nan", nan_pairs, "(estimation sound, cell) "
                  "pairs are NaN throughout the population raster (not recorded; sentinels)")
        val = {n: s for s, (n, kind) in enumerate(chosen) if kind == "val"}
        if val:
            zipped = raw_dir / (names["sites"] + ".zip")
            self._validation(zipped if zipped.exists() else raw_dir / names["sites"], cells,
                             first, val, trials, quirks, n_jobs, progress)
        pred = self._auditory(raw_dir / names["pred"], cells, quirks)
        neurons = [{"cell_id": c, "area": area, "auditory": pred.get(c, False), **cell_parts(c)}
                   for c in cells]
        return Recording(stims=stims, neurons=neurons, trials=trials, blocks=blocks,
                         quirks=quirks)

    def _stims(self, raw_dir, chosen, first, stim, spec, k, quirks) -> list[Any]:
        metas = [{"name": n, "subset": s, "wav": n[len("STIM_"):]} for n, s in chosen]
        if not self._front_end.return_waveform:
            out = []
            for meta in metas:
                occ = first[meta["name"]]
                (a, b), = stim.sidecar.sample_rows(np.array([[occ.start, occ.end]]))
                out.append(SpectrogramArrayStim(spec[a:b].T, NATIVE_MS, meta))
            return out
        found = {p.name.lower(): p for p in (raw_dir / "wav").rglob("*") if p.is_file()}
        paths, cased, absent = [], 0, []
        for meta in metas:
            exact = raw_dir / "wav" / meta["wav"]
            path = exact if exact.is_file() else found.get(meta["wav"].lower())
            cased += path is not None and path != exact
            absent += [meta["wav"]] if path is None else []
            paths.append(path)
        if absent:
            raise RawDataError(f"{type(self).__name__}: waveform mode needs every sound in "
                               f"{raw_dir / 'wav'}; missing {len(absent)}, e.g. {absent[:3]} "
                               "(re-extract wav.zip).")
        if cased:
            _warn(quirks, type(self).__name__, "wav_name_case", cased, "wav files match their "
                  "epoch names only regardless of letter case")
        return [WavStim(p, m, expected_sr=SOUND_RATE, inset_ms=first[m["name"]].pre_samples
                        * NATIVE_MS, n_bins=first[m["name"]].n_samples // k)
                for p, m in zip(paths, metas)]

    def _validation(self, container, cells, first, val, trials, quirks, n_jobs,
                    progress) -> None:
        from deepstrf.io.nems import list_recordings
        from deepstrf.preprocessing.parallel import parallel_map

        owner = type(self).__name__
        inset = float(self._front_end.return_waveform)  # spike times from the sound's onset
        wanted = {n: (first[n].n_samples, inset * first[n].pre_samples * NATIVE_MS) for n in val}
        sites = parallel_map(read_site, [(str(container), m, wanted)
                                         for m in list_recordings(container)],
                             n_jobs=n_jobs, progress=progress, desc=f"{owner}: sites")
        exact = {c: n for n, c in enumerate(cells)}
        loose = {canonical(c): n for n, c in enumerate(cells)}
        owner_of: dict[int, str] = {}
        padded, outside = 0, 0
        for site in sites:
            count_quirks(quirks, site["quirks"])
            for chan in site["chans"]:
                n = exact.get(chan, loose.get(canonical(chan)))
                if n is None:
                    outside += 1
                    continue
                padded += chan not in exact
                if n in owner_of:
                    raise RawDataError(f"{owner}: cell {cells[n]} is in two site recordings, "
                                       f"{owner_of[n]} and {site['archive']}.")
                owner_of[n] = site["archive"]
                for name, (times, lengths) in site["trains"].get(chan, {}).items():
                    trials[(val[name], n)] = SpikeTrains(times, lengths)
        absent = len(cells) - len(owner_of)
        for kind, count, text in (
                ("electrode_id_zero_padding", padded, "site-file cell ids match the "
                 "population's only with their electrode numbers read as integers"),
                ("site_cells_not_in_population", outside, "site-file cells are not in the "
                 "population recording and are left out"),
                ("cells_absent_from_site_files", absent, "population cells are in no site "
                 "file (no validation responses; sentinels)")):
            if count:
                _warn(quirks, owner, kind, count, text)

    def _auditory(self, path: Path, cells: list[str], quirks: dict[str, int]) -> dict[str, bool]:
        table = read_pred_correlation(path)
        missing = sum(c not in table for c in cells)
        if missing:
            _warn(quirks, type(self).__name__, "cells_not_in_pred_correlation", missing,
                  f"cells have no row in {path.name} (auditory=False)")
        return table


def _warn(quirks: dict[str, int], owner: str, kind: str, count: int, text: str) -> None:
    quirks[kind] = quirks.get(kind, 0) + count
    warnings.warn(f"{owner}: {count} {text}.", DataQuirkWarning, stacklevel=3)
