"""CRCNS AC1: rat A1 and MGB, whole-cell membrane potential and cell-attached spikes.

=========  ===========================================================
species    rat (Sprague-Dawley), anaesthetised
areas      A1 (whole-cell, both subsets), MGB (cell-attached, Asari)
signal     membrane potential (mV, signed, subthreshold) and spikes
N          Wehr 25 A1 cells; Asari 39 A1 + 14 MGB cells
S          Wehr 51 natural-sound fragments; Asari sequences of segments
R          a few to tens of repeats per (stimulus, cell)
access     CRCNS (free account), ``crcns-ac1.zip`` (+ 2 Asari results zips), ~1.6 GB
=========  ===========================================================

Two experimenters' recordings, standardised by H. Asari in MATLAB structs:
Wehr (2002-2003, A1 whole-cell at 4 kHz, one ``.mat`` per trial; Machens,
Wehr & Zador 2004) and Asari (2005-2007, A1 whole-cell and MGB cell-attached
at 10 kHz, many triggers per recording file; Asari & Zador 2009).

Raw layout (the zips unpacked into the raw folder)::

    wehr/Stimuli/<category>/<int>.mat           stimulus.samples, .param.sf/.description
    wehr/Results/<YYYYMMDD>-mw-<NNN>/*.mat       response.trace/.scale/.sf, triggers(1)
    asari/Stimuli/class<N>/<name>.mat            stimulus.sample, .param.sf (97656 Hz)
    asari-results-{1,2}/<YYYYMMDD>-ha<k>-<NNN>/*.mat
                                                 param.stimulus(1xK).file, param.recording
                                                 .site/.type, triggers(1xM), response

Preprocessing
-------------
* Trials: Wehr files use their first trigger; its type ``naturalsound`` (or
  the typo ``nauralsound``, reported as a quirk, or ``natural``) marks a
  natural-sound trial, matched to its stimulus by the exact
  ``param.description``; other protocols are skipped (logged). Asari
  triggers of type ``naturalsound``/``natural sound`` carry a description
  ``'Sequence 1: 2  1  3'`` of 1-based positions in the file's
  ``param.stimulus``; a trigger naming a position the file does not have is
  skipped (quirk). A response starts at the 1-based ``time`` sample and lasts
  ``param.duration`` ms. Repeats are the trials sharing a stimulus key
  (Wehr: category and file; Asari: the sequence of segment files) within a
  session (one cell).
* Membrane potential (``trace * scale``, mV, kept signed): the slow baseline,
  a ``detrend_med_ms`` running median smoothed by a ``detrend_gauss_ms``
  Gaussian, is subtracted from the whole trace; then repeats are gated
  (:class:`~deepstrf.preprocessing.intracellular.RepeatGating`: raw Vm beyond
  +-150 mV, over 0.5 % of samples 30 mV from the median, or, with 3 or more
  repeats, r < 0.05 with the median of the others). Gated repeats are warned
  about and listed in ``nrn_meta['gated_repeats']``. Average pooling to
  ``dt_ms`` (whole samples per bin: ``dt_ms`` a multiple of 0.25 ms for
  Wehr, 0.1 ms for Asari).
* Cell-attached (MGB) traces: detrended likewise, then spikes detected by
  threshold (:class:`~deepstrf.preprocessing.intracellular.SpikeDetection`,
  5 robust SDs) and binned as counts at ``dt_ms`` (smoothed with ``smooth``).
  ``nrn_meta['signal_type']`` says ``'subthreshold'`` or ``'spikes'``; loading
  both kinds together warns.
* Length: ``T = min(stimulus bins, trigger duration / dt)`` per stimulus; a
  repeat whose trace ends earlier is NaN past its end (quirk), where deepSTRF
  0.1.0 truncates the stimulus for every cell to the shortest repeat.
* Stimuli: Wehr waveforms at their own rate; Asari sequences assembled from
  the segment files, each segment with 5 ms sin-squared onset and offset
  ramps. The spectrogram is the lab's ``logspectrogram.m``
  (:mod:`deepstrf.preprocessing.logspectrogram`): log-spaced frequencies
  ``fmin * 2**(k / bins_per_octave)`` up to ``fmax`` (F = 53 for
  100 Hz-45 kHz at 6 per octave), Hamming window of ``window_ms`` (default
  ``2 * dt_ms``), frame i centred on ``i * dt``, dB. Bands at or above a
  stimulus's Nyquist frequency are not evaluated (they are silence, -240 dB;
  deepSTRF 0.1.0 evaluates them and aliases lower frequencies into them);
  ``stim_meta['n_bands_above_nyquist']`` counts them. With
  ``return_waveform=True``: the waveform resampled to ``audio_fs``.

Parameters
----------
%(path)s
experimenter : str or sequence of {'wehr', 'asari'}, default both
    The subsets to load (Wehr: 4 kHz, one file per trial; Asari: 10 kHz).
sites : str or sequence of {'A1', 'MGB'}, default both
    MGB cells exist only in the Asari subset (``param.recording.site``
    containing ``'cortex'`` is A1, anything else MGB).
dt_ms : float, default 5.0
    Response bin width, ms.
fmin, fmax : float, default 100.0, 45000.0
    Range of the log-spaced band centres, Hz.
bins_per_octave : float, default 6
    Density of the log-spaced bands.
window_ms : float, optional
    Hamming window length, ms (default ``2 * dt_ms``).
detrend_med_ms, detrend_gauss_ms : float or None, default 100.0, 10.0
    Running median width and Gaussian SD of the subtracted baseline (None
    switches detrending, or the Gaussian step, off).
gating : None, False, RepeatGating or dict, default None
    None: the lab's thresholds (``RepeatGating()``); False: keep every
    repeat; a ``RepeatGating`` or a dict of its fields: those thresholds.
%(return_waveform)s
audio_fs : float, default 96000
    Sample rate of waveform stimuli (``audio_fs * dt_ms / 1000`` whole).
%(download)s
username, password : str, optional
    CRCNS credentials (else ``$CRCNS_USERNAME``/``$CRCNS_PASSWORD`` or ``~/.netrc``).
smooth : bool or float, default True
    Smoothing of the spike counts of cell-attached cells (21 ms unit-sum
    Hanning; a number: that window in ms; False: none). Membrane potential
    is never smoothed.
spike_detection : SpikeDetection or dict, optional
    Thresholds of the spike detection (default ``SpikeDetection()``).
%(n_jobs)s
%(cache)s
%(progress)s

References
----------
Asari H., Wehr M., Machens C.K. & Zador A.M. (2009). Auditory cortex and
thalamic neuronal responses to various natural and synthetic sounds.
CRCNS.org. doi:10.6080/K0KW5CXR
Machens C.K., Wehr M.S. & Zador A.M. (2004). Linearity of cortical receptive
fields measured with natural sounds. J Neurosci 24:1089. doi:10.1523/JNEUROSCI.4445-03.2004
Asari H. & Zador A.M. (2009). Long-lasting context dependence constrains
neural encoding models in rodent auditory cortex. J Neurophysiol 102:2638.
doi:10.1152/jn.00577.2009
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_positive, check_subset
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._crcns_ac1_read import (
    WEHR_TYPO_TYPES,
    AsariSequenceStim,
    read_asari_recording,
    read_segment_info,
    read_wehr_stim,
    read_wehr_trial,
)
from deepstrf.datasets.audio._spikes_audio import (
    AudioSourceDataset,
    BinnedRows,
    ContinuousTrace,
    Recording,
    WaveformArrayStim,
    make_front_end,
)
from deepstrf.errors import DataQuirkWarning, DeepSTRFWarning, RawDataError
from deepstrf.io.download import RemoteFile
from deepstrf.preprocessing.intracellular import RepeatGating, SpikeDetection

__doc__ = fill_doc(__doc__)
__all__ = ["CRCNSAC1Dataset", "WEHR_VALID_NEURONS"]

logger = logging.getLogger(__name__)

EXPERIMENTERS = ("wehr", "asari")
SITES = ("A1", "MGB")
#: documented raw sample rates of the responses (Hz), for checking dt_ms before any I/O
RESPONSE_RATES = {"wehr": 4000.0, "asari": 10000.0}
#: 1-based Wehr cell indices (sorted session order) used in the papers: cells 1, 2, 4 and 8
#: are left out (three unresponsive, one with too little data)
WEHR_VALID_NEURONS = tuple(i for i in range(1, 26) if i not in (1, 2, 4, 8))
ASARI_RESULTS = ("asari-results-1", "asari-results-2")
#: where deepSTRF 0.1.0 keeps each folder (it unpacks every zip into a folder named after the
#: zip); a raw folder laid out so is read as it is
DEEPSTRF_LAYOUT = {"wehr": "crcns-ac1/wehr", "asari": "crcns-ac1/asari",
                   **{r: f"crcns-ac1-{r}/{r}" for r in ASARI_RESULTS}}
# a session folder: <date>-<experimenter/animal>-<penetration>, three parts, the date starting
# with 4 digits (the test deepSTRF 0.1.0 applies; e.g. 20020508-mw-003, 20050610-ha1-001)
_SESSION = re.compile(r"^(\d{4}[^-]*)-([^-]+)-([^-]+)$")
_MAIN_ZIP = "crcns-ac1.zip"


def _zip(name: str, **kw: Any) -> RemoteFile:
    return RemoteFile(name, crcns=("ac-1", name), **kw)


def _gating(value: Any) -> RepeatGating | None:
    if value is None:
        return RepeatGating()
    if value is False:
        return None
    if isinstance(value, RepeatGating):
        return value
    if isinstance(value, Mapping):
        try:
            return RepeatGating(**value)
        except TypeError as err:
            fields = [f.name for f in dataclasses.fields(RepeatGating)]
            raise TypeError(f"gating: {err}; the fields are {fields}.") from None
    raise TypeError(f"gating must be None (the default thresholds), False (off), a "
                    f"RepeatGating or a dict of its fields; got {value!r}.")


def _spike_detection(value: Any) -> SpikeDetection:
    if value is None:
        return SpikeDetection()
    if isinstance(value, SpikeDetection):
        return value
    if isinstance(value, Mapping):
        return SpikeDetection(**value)
    raise TypeError(f"spike_detection must be a SpikeDetection, a dict of its fields or None; "
                    f"got {value!r}.")


def _optional_ms(name: str, value: Any) -> float | None:
    return None if value is None or value == 0 else check_positive(name, value)


class CRCNSAC1Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="ac1", title="CRCNS AC1: rat A1 and MGB, intracellular",
        species="rat", area="A1, MGB",
        signal="whole-cell membrane potential (mV); cell-attached spikes",
        n_neurons=78, n_stims=None, repeats="a few to tens", download_size="1.6 GB",
        access="CRCNS login",
        citation="Asari H., Wehr M., Machens C.K. & Zador A.M. (2009). Auditory cortex and "
                 "thalamic neuronal responses to various natural and synthetic sounds. "
                 "CRCNS.org.",
        doi="10.6080/K0KW5CXR", url="https://crcns.org/data-sets/ac/ac-1",
        papers=("Machens, Wehr & Zador (2004) J Neurosci 24:1089",
                "Asari & Zador (2009) J Neurophysiol 102:2638"))
    folder = "AC1"
    remote_files = (_zip(_MAIN_ZIP),
                    *(_zip(f"crcns-ac1-{r}.zip", when={"experimenter": "asari"})
                      for r in ASARI_RESULTS))
    # the zips' wrapping folders are not documented: "auto" strips one when present
    archives = (ArchiveSpec(_MAIN_ZIP, strip_components="auto", provides=("wehr", "asari")),
                *(ArchiveSpec(f"crcns-ac1-{r}.zip", strip_components="auto", provides=(r,))
                  for r in ASARI_RESULTS))
    raw_markers = ("wehr", "asari", *ASARI_RESULTS)
    raw_subpaths = ("wehr/Stimuli", "wehr/Results", "asari/Stimuli", *ASARI_RESULTS)
    cache_version = 1

    def __init__(self, path: Any = None, experimenter: Any = EXPERIMENTERS, sites: Any = SITES,
                 dt_ms: float = 5.0, fmin: float = 100.0, fmax: float = 45000.0,
                 bins_per_octave: float = 6, window_ms: float | None = None,
                 detrend_med_ms: float | None = 100.0, detrend_gauss_ms: float | None = 10.0,
                 gating: Any = None, return_waveform: bool = False, audio_fs: float = 96000,
                 download: bool = False, username: str | None = None,
                 password: str | None = None, *, smooth: bool | float = True,
                 spike_detection: Any = None, n_jobs: int | None = 1, cache: str = "use",
                 progress: bool | None = None):
        from deepstrf.preprocessing.logspectrogram import log_band_grid
        from deepstrf.preprocessing.spectrogram import SpectrogramParams

        dt_ms = check_positive("dt_ms", dt_ms)
        chosen = check_subset("experimenter", experimenter, EXPERIMENTERS)
        for who in chosen:
            per_bin = RESPONSE_RATES[who] * dt_ms / 1000.0
            if abs(per_bin - round(per_bin)) > 1e-6:
                raise ValueError(f"dt_ms={dt_ms:g} is not a whole number of samples of the "
                                 f"{who} responses ({RESPONSE_RATES[who]:g} Hz); use a multiple "
                                 f"of {1000.0 / RESPONSE_RATES[who]:g} ms (e.g. 5).")
        n_bands, top = log_band_grid(fmin, fmax, bins_per_octave)
        window = 2.0 * dt_ms if window_ms is None else check_positive("window_ms", window_ms)
        spec = SpectrogramParams(dt_ms=dt_ms, kind="logspectrogram", n_bands=n_bands,
                                 window_ms=window, f_min=float(fmin), f_max=top,
                                 compression="log")
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, compression="log", window_ms=window,
                               return_waveform=return_waveform, audio_fs=audio_fs,
                               spectrogram=spec)
        gate = _gating(gating)
        spikes = _spike_detection(spike_detection)
        params = {"experimenter": chosen,
                  "sites": check_subset("sites", sites, SITES),
                  "detrend_med_ms": _optional_ms("detrend_med_ms", detrend_med_ms),
                  "detrend_gauss_ms": _optional_ms("detrend_gauss_ms", detrend_gauss_ms),
                  "gating": None if gate is None else gate.to_dict(),
                  "spike_detection": spikes.to_dict(),
                  "bins_per_octave": float(bins_per_octave), "fmax_requested": float(fmax)}
        self._gate, self._spikes, self._path_arg = gate, spikes, path
        full = set(params["experimenter"]) == set(EXPERIMENTERS) and \
            set(params["sites"]) == set(SITES)
        self._init_source(path, params, front, download=download, username=username,
                          password=password, n_jobs=n_jobs, cache=cache, progress=progress,
                          expect_full=full)
        kinds = sorted({m["signal_type"] for m in self.nrn_meta})
        if len(kinds) > 1:
            warnings.warn(f"{type(self).__name__}: the selection mixes membrane potential "
                          "(mV, nrn_meta['signal_type'] == 'subthreshold') and spike counts "
                          "('spikes') in one dataset; select one kind (sites='A1' or "
                          "select_pop_by_nrn_predicate) before fitting a shared model.",
                          DeepSTRFWarning, stacklevel=2)

    # ------------------------------------------------------------------ files needed
    def _needs(self, params: Mapping[str, Any]):
        """Only the chosen experimenters' folders are required, unpacked and fingerprinted."""
        files, archives, required, fingerprinted = super()._needs(params)
        chosen = set(params["experimenter"])
        keep = tuple(e for e in EXPERIMENTERS if e in chosen)
        archives = tuple(dataclasses.replace(a, members=keep, provides=keep)
                         if a.name == _MAIN_ZIP else a for a in archives)
        drop = {e for e in EXPERIMENTERS if e not in chosen}
        required = tuple(m for m in required if m.split("/")[0] not in drop)
        fingerprinted = tuple(m for m in fingerprinted if m.split("/")[0] not in drop)
        layout = _layout(self.default_paths(self._path_arg).raw)
        if layout is not _FLAT:  # read deepSTRF's folders where they are

            def moved(m: str) -> str:
                top, _, rest = m.partition("/")
                return layout[top] + (f"/{rest}" if rest else "")

            required = tuple(moved(m) for m in required)
            fingerprinted = tuple(moved(m) for m in fingerprinted)
        return files, archives, required, fingerprinted

    @classmethod
    def default_paths(cls, path: Any = None):
        """As for every dataset, and a folder in deepSTRF's layout is read in place too."""
        from deepstrf.io.paths import DatasetPaths, data_home

        paths = super().default_paths(path)
        root = paths.root
        if path is not None and not paths.in_place and not paths.raw.is_dir() and \
                _layout(root) is not _FLAT:
            return DatasetPaths(root=root, raw=root,
                                processed=data_home() / cls.folder / "processed", in_place=True)
        return paths

    # ------------------------------------------------------------------ parsing
    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        front = self._front_end
        opts = {"median_ms": params["detrend_med_ms"], "gauss_ms": params["detrend_gauss_ms"],
                "gating": self._gate, "spikes": self._spikes, "dt_ms": front.dt_ms}
        state = _State(owner=type(self).__name__, dt_ms=front.dt_ms)
        if not front.return_waveform:
            from deepstrf.preprocessing.logspectrogram import log_band_frequencies

            state.band_freqs = log_band_frequencies(front.spectrogram)
        if "wehr" in params["experimenter"] and "A1" in params["sites"]:
            self._parse_wehr(raw_dir, opts, state, n_jobs, progress)
        if "asari" in params["experimenter"]:
            self._parse_asari(raw_dir, params, opts, state, n_jobs, progress)
        return state.finish(self._gate)

    def _parse_wehr(self, raw_dir: Path, opts: dict[str, Any], state: _State,
                    n_jobs: int | None, progress: bool | None) -> None:
        from deepstrf.preprocessing.parallel import parallel_map

        owner = state.owner
        wehr_dir = raw_dir / _layout(raw_dir)["wehr"]
        stim_files = sorted((wehr_dir / "Stimuli").glob("*/*.mat"))
        infos = parallel_map(read_wehr_stim, stim_files, n_jobs=n_jobs, progress=progress,
                             desc=f"{owner}: Wehr stimuli")
        by_description: dict[str, tuple[Path, dict[str, Any]]] = {}
        duplicates = []
        for path, stim in zip(stim_files, infos):
            if stim["description"] in by_description:
                duplicates.append(f"{path} repeats {by_description[stim['description']][0]}")
                continue
            by_description[stim["description"]] = (path, stim)
        state.quirk("duplicate_stimulus_descriptions", duplicates,
                    "Wehr stimulus files share a description; the first (sorted) is used")
        results = wehr_dir / "Results"
        folders = sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
        sessions = [p for p in folders if _SESSION.match(p.name)]
        state.quirk("unrecognised_session_folders",
                    [str(p) for p in folders if p not in sessions],
                    "folders under wehr/Results not named <date>-<id>-<NNN> are skipped")
        tasks = [(f, opts) for s in sessions for f in sorted(s.glob("*.mat"))]
        trials = parallel_map(read_wehr_trial, tasks, n_jobs=n_jobs, progress=progress,
                              desc=f"{owner}: Wehr trials")
        by_session: dict[str, list[dict[str, Any]]] = {}
        for (path, _), trial in zip(tasks, trials):
            by_session.setdefault(path.parent.name, []).append(trial)
        typos, others = [], {}
        for cell_idx, session in enumerate(sessions, start=1):
            date, animal, pen = _SESSION.match(session.name).groups()
            n = state.neuron({"cell_id": session.name, "experimenter": "wehr",
                              "session": session.name, "animal_id": animal, "penetration": pen,
                              "date": date, "site": "A1", "area": "A1",
                              "recording_type": "whole-cell", "signal_type": "subthreshold",
                              "species": "rat", "_wehr_cell_idx": cell_idx})
            for trial in by_session.get(session.name, []):
                kind = trial["type"].strip().lower()
                if "repeat" not in trial:
                    others[trial["type"]] = others.get(trial["type"], 0) + 1
                    continue
                if kind in WEHR_TYPO_TYPES:
                    typos.append(trial["path"])
                found = by_description.get(trial["description"])
                if found is None:
                    raise RawDataError(
                        f"{trial['path']}: triggers(1).param.description = "
                        f"{trial['description']!r} matches no stimulus under "
                        f"{wehr_dir / 'Stimuli'} (stimuli are matched by their exact "
                        "param.description).")
                path, stim = found
                key = ("wehr", path.parent.name, path.stem)
                s = state.stim(key, lambda p=path, st=stim: WaveformArrayStim(
                    st["sample_rate"], {"name": f"wehr/{p.parent.name}/{p.stem}",
                                        "experimenter": "wehr", "category": p.parent.name,
                                        "description": st["description"],
                                        "idx": int(p.stem) if p.stem.isdigit() else p.stem},
                    path=p, key=("stimulus", "samples")), stim["sample_rate"],
                    stim["n_samples"])
                state.repeat(s, n, "subthreshold", trial["sample_rate"], trial["duration_ms"],
                             trial["repeat"], Path(trial["path"]).name)
        state.quirk("trigger_type_typo", typos,
                    "Wehr trial files with the trigger type 'nauralsound' are read as natural "
                    "sounds")
        if others:
            logger.info("%s: Wehr trials of other protocols skipped: %s", owner, others)

    def _parse_asari(self, raw_dir: Path, params: Mapping[str, Any], opts: dict[str, Any],
                     state: _State, n_jobs: int | None, progress: bool | None) -> None:
        from deepstrf.preprocessing.parallel import parallel_map

        owner = state.owner
        sessions: list[Path] = []
        strays: list[str] = []
        layout = _layout(raw_dir)
        for folder in ASARI_RESULTS:
            base = raw_dir / layout[folder]
            for p in sorted(q for q in base.iterdir() if q.is_dir()) if base.is_dir() else []:
                (sessions if _SESSION.match(p.name) else strays).append(p)
        state.quirk("unrecognised_session_folders", [str(p) for p in strays],
                    "folders under asari-results-* not named <date>-<id>-<NNN> are skipped")
        tasks = [(f, opts) for s in sessions for f in sorted(s.glob("*.mat"))]
        recordings = parallel_map(read_asari_recording, tasks, n_jobs=n_jobs, progress=progress,
                                  desc=f"{owner}: Asari recordings")
        by_session: dict[Path, list[dict[str, Any]]] = {}
        for (path, _), rec in zip(tasks, recordings):
            by_session.setdefault(path.parent, []).append(rec)
        stim_root = raw_dir / layout["asari"] / "Stimuli"
        segment_info: dict[str, dict[str, Any]] = {}
        wanted = sorted({rec["files"][p - 1] for recs in by_session.values() for rec in recs
                         for rep in rec["repeats"] for p in rep["positions"]})
        for name in wanted:
            if not (stim_root / name).is_file():
                user = next(rec["path"] for recs in by_session.values() for rec in recs
                            if name in rec["files"])
                raise RawDataError(f"{user}: param.stimulus names {name!r}, which is not under "
                                   f"{stim_root}.")
        for name, info in zip(wanted, parallel_map(read_segment_info,
                                                   [stim_root / w for w in wanted],
                                                   n_jobs=n_jobs, progress=progress,
                                                   desc=f"{owner}: Asari segments")):
            segment_info[name] = info
        missing, others = [], {}
        state.quirk("windows_path_separators",
                    [f"{rec['path']}: {w!r}" for recs in by_session.values() for rec in recs
                     for w in rec["backslash_paths"]],
                    "param.stimulus file names with '\\' separators are read with '/'")
        for session in sessions:
            recs = by_session.get(session, [])
            if not recs:
                continue
            first = recs[0]
            for rec in recs[1:]:
                if (rec["site"], rec["recording_type"]) != (first["site"],
                                                             first["recording_type"]):
                    raise RawDataError(
                        f"{rec['path']}: param.recording says site {rec['site']!r}, type "
                        f"{rec['recording_type']!r}, but {first['path']} of the same session "
                        f"says {first['site']!r}, {first['recording_type']!r}; one session is "
                        "one cell.")
            area = "A1" if "cortex" in first["site"].lower() else "MGB"
            for rec in recs:
                missing += [f"{rec['path']}: {m}" for m in rec["missing_refs"]]
                for t, c in rec["other_types"].items():
                    others[t] = others.get(t, 0) + c
            if area not in params["sites"]:
                continue
            date, animal, pen = _SESSION.match(session.name).groups()
            n = state.neuron({"cell_id": session.name, "experimenter": "asari",
                              "session": session.name, "animal_id": animal, "penetration": pen,
                              "date": date, "site": first["site"], "area": area,
                              "recording_type": first["recording_type"],
                              "signal_type": first["signal_type"], "species": "rat"})
            for rec in recs:
                for rep in rec["repeats"]:
                    files = tuple(rec["files"][p - 1] for p in rep["positions"])
                    rates = {segment_info[f]["sample_rate"] for f in files}
                    if len(rates) > 1:
                        raise RawDataError(f"{rec['path']}: the sequence {files} mixes segment "
                                           f"rates {sorted(rates)}.")
                    rate = rates.pop()
                    s = state.stim(("asari", files), lambda f=files, r=rep, sr=rate:
                                   AsariSequenceStim(tuple(stim_root / x for x in f), sr,
                                                     _asari_meta(f, r)),
                                   rate, sum(segment_info[f]["n_samples"] for f in files))
                    state.repeat(s, n, rec["signal_type"], rec["sample_rate"],
                                 rep["duration_ms"], rep,
                                 f"{Path(rec['path']).name}#{rep['onset'] + 1}")
        state.quirk("missing_stimulus_references", missing,
                    "Asari triggers naming a position absent from the file's param.stimulus "
                    "are skipped")
        if others:
            logger.info("%s: Asari triggers of other types skipped: %s", owner, others)


_FLAT = {k: k for k in DEEPSTRF_LAYOUT}


def _layout(raw_dir: Path) -> dict[str, str]:
    """Where the four folders are: directly in the raw folder, or in deepSTRF's layout."""
    if any((raw_dir / k).exists() for k in _FLAT):
        return _FLAT
    if any((raw_dir / v).exists() for v in DEEPSTRF_LAYOUT.values()):
        return DEEPSTRF_LAYOUT
    return _FLAT


def _asari_meta(files: tuple[str, ...], rep: dict[str, Any]) -> dict[str, Any]:
    classes = []
    for f in files:
        found = re.match(r"class(\d+)/", f)
        classes.append(int(found.group(1)) if found else None)
    distinct = {f.split("/")[0] for f in files}
    return {"name": "asari/" + "+".join(f[:-4] if f.endswith(".mat") else f for f in files),
            "experimenter": "asari",
            "category": distinct.pop() if len(distinct) == 1 else "mixed",
            "description": " + ".join(files), "class_n": classes,
            "segments": list(rep["positions"]), "segment_files": list(files),
            "sequence": rep["description"]}


class _State:
    """What the parse collects before the response sources are made."""

    def __init__(self, owner: str, dt_ms: float) -> None:
        self.owner, self.dt_ms = owner, dt_ms
        self.neurons: list[dict[str, Any]] = []
        self.stim_keys: dict[Any, int] = {}
        self.stim_makers: list[Any] = []
        self.stim_lengths: list[tuple[float, int]] = []
        self.pairs: dict[tuple[int, int], list[tuple[str, float, float, dict[str, Any], str]]] = {}
        self.quirks: dict[str, int] = {}
        #: band centres of the spectrogram (None in waveform mode)
        self.band_freqs: np.ndarray | None = None

    def quirk(self, kind: str, items: list[str], what: str) -> None:
        if not items:
            return
        self.quirks[kind] = self.quirks.get(kind, 0) + len(items)
        shown = "; ".join(items[:3]) + (f"; ... ({len(items) - 3} more)" if len(items) > 3
                                        else "")
        warnings.warn(f"{self.owner}: {len(items)} x {kind}: {what}: {shown}", DataQuirkWarning,
                      stacklevel=4)

    def neuron(self, meta: dict[str, Any]) -> int:
        self.neurons.append(meta)
        return len(self.neurons) - 1

    def stim(self, key: Any, make: Any, sample_rate: float, n_samples: int) -> int:
        if key not in self.stim_keys:
            self.stim_keys[key] = len(self.stim_makers)
            self.stim_makers.append(make)
            self.stim_lengths.append((sample_rate, n_samples))
        return self.stim_keys[key]

    def repeat(self, s: int, n: int, kind: str, sample_rate: float, duration_ms: float,
               rep: dict[str, Any], label: str) -> None:
        self.pairs.setdefault((s, n), []).append((kind, sample_rate, duration_ms, rep, label))

    def finish(self, gate: RepeatGating | None) -> Recording:
        from deepstrf.preprocessing.spikes import bin_flat_spike_times, n_bins_for_duration

        dt = self.dt_ms
        trigger_bins: dict[int, int] = {}   # the shortest trigger duration of each stimulus
        for (s, _), reps in self.pairs.items():
            shortest = min(int(round(d / dt)) for _, _, d, _, _ in reps)
            trigger_bins[s] = min(trigger_bins.get(s, shortest), shortest)
        T = [max(1, min(n_bins_for_duration(n_samples, rate, dt), trigger_bins[s]))
             for s, (rate, n_samples) in enumerate(self.stim_lengths)]
        trials: dict[tuple[int, int], Any] = {}
        truncated, gated = [], []
        for (s, n), reps in sorted(self.pairs.items()):
            kind, rate = reps[0][0], reps[0][1]
            cell = self.neurons[n]["cell_id"]
            if any(r[1] != rate for r in reps):
                raise RawDataError(f"{self.owner}: cell {cell} has responses at several rates "
                                   f"{sorted({r[1] for r in reps})} Hz.")
            for _, _, _, rep, label in reps:
                if rep["n_samples"] * 1000.0 / rate < T[s] * dt - 1e-9:
                    truncated.append(f"{cell} {label}: {rep['n_samples']} of "
                                     f"{int(math.ceil(T[s] * dt * rate / 1000 - 1e-9))} samples")
            if kind == "spikes":
                times = np.concatenate([r[3]["spike_ms"] for r in reps])
                rows = bin_flat_spike_times(times, [len(r[3]["spike_ms"]) for r in reps], dt,
                                            T[s])
                for i, r in enumerate(reps):  # bins not fully recorded are unknown
                    have = int(math.floor(r[3]["n_samples"] * 1000.0 / rate / dt + 1e-9))
                    rows[i, have:] = np.nan
                trials[(s, n)] = BinnedRows(rows, dt)
                continue
            # pooled to the bins in the worker; NaN past the end of a short repeat
            data = np.full((len(reps), T[s]), np.nan, np.float32)
            for i, r in enumerate(reps):
                x = r[3]["pooled"][:T[s]]
                data[i, :x.size] = x
            keep = list(range(len(reps)))
            if gate is not None:   # the consistency test on the bins every repeat has
                reasons = gate.decide([r[3]["stats"] for r in reps],
                                      data[:, np.isfinite(data).all(axis=0)])
                keep = [i for i, why in enumerate(reasons) if why is None]
                for i, why in enumerate(reasons):
                    if why is not None:
                        entry = f"{self.stim_name(s)} {reps[i][4]}: {why}"
                        gated.append(f"{cell} {entry}")
                        self.neurons[n].setdefault("gated_repeats", []).append(entry)
            if keep:
                trials[(s, n)] = ContinuousTrace(data[keep], 1000.0 / dt)
        self.quirk("truncated_responses", truncated,
                   "responses ending before their stimulus are NaN past their end")
        if gated:
            self.quirks["gated_repeats"] = len(gated)
            warnings.warn(f"{self.owner}: repeat gating dropped {len(gated)} repeat(s) (listed "
                          f"in nrn_meta['gated_repeats']): {'; '.join(gated[:3])}"
                          + (" ..." if len(gated) > 3 else ""), DataQuirkWarning, stacklevel=3)
        for meta in self.neurons:
            meta["n_repeats_gated"] = len(meta.get("gated_repeats", []))
            meta.setdefault("gated_repeats", [])
        stims = [dataclasses.replace(make(), n_bins=T[s])
                 for s, make in enumerate(self.stim_makers)]
        for stim, (rate, _) in zip(stims, self.stim_lengths):
            if self.band_freqs is not None:
                stim.meta["n_bands_above_nyquist"] = int((self.band_freqs >= rate / 2).sum())
        return Recording(stims=stims, neurons=self.neurons, trials=trials,
                         quirks=dict(self.quirks))

    def stim_name(self, s: int) -> str:
        for key, index in self.stim_keys.items():
            if index == s:
                return "/".join(map(str, key[1:])) if key[0] == "wehr" else "+".join(key[1])
        return str(s)
