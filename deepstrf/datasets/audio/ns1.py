"""NS1: ferret primary auditory cortex units to natural sounds (Harper et al. 2016).

=========  ===========================================================
species    ferret (*Mustela putorius furo*), anaesthetised
area       primary auditory cortex (A1)
signal     extracellular single and multi units, spike times
N          119 units (73 in the published subset, ``units='published'``)
S          20 natural sounds of 5 s (12 DRC sets of the spike files have no
           public stimulus and are left out)
R          20 repeats
access     open: OSF project ayw2p (3 files) and ``test_data_5ms.mat`` from
           GitHub monzilur/DNet, about 160 MB
=========  ===========================================================

Preprocessing
-------------
* Stimuli: the precomputed log cochleagram ``X_nfht`` of Rahman et al.
  (2019), 34 bands at 5 ms, 999 frames, averaged in blocks when ``dt_ms`` is
  a multiple of 5. With ``return_waveform=True``, the 20 sound files (16-bit,
  header 48828 Hz, played at the TDT rate 48828.125 Hz, which is used)
  resampled to ``audio_fs`` on the same grid.
* The window is 4995 ms (999 bins of 5 ms, the cochleagram's length), not
  the sounds' 5000 ms, so stimuli and responses share one grid.
* Responses: spike times (ms from onset) binned on ``[k dt, (k+1) dt)``;
  spikes before onset or past 4995 ms are dropped; an empty repeat is a
  zero row. ``binning='counts'`` (default) counts every spike. deepSTRF 0.1.0
  rounds times to whole ms and writes a *binary* 1 ms vector before summing
  5 ms blocks, so two spikes in one millisecond count once (a spike at
  4994.6 ms rounds out of the window, one at -0.4 ms into it); ``binning=
  'deepstrf'`` reproduces that (times rounded, duplicates within a trial
  dropped, then the same bins). Counting every spike is right: a burst's
  second spike is activity, and a binary vector at 1 ms saturates exactly
  where units fire fastest.
* ``smooth=True`` (default, as deepSTRF) convolves each repeat with a 21 ms
  Hanning window of unit sum, so values stay spike counts.
* Spike files: the metadata's first struct field (read by position, its
  name is not documented) names the file, ``path`` locates it under
  ``spikesandwav/``; a file missing under that name is looked for with a
  ``_1`` suffix, and a unit whose file is absent under both is left out.
  Both are reported with a :class:`~deepstrf.errors.DataQuirkWarning`.
* ``stim_meta['split']``: the train/test split of Rahman et al. (2020)
  (test: sounds 4, 7, 10, 20).

Parameters
----------
%(path)s
%(dt_ms)s
    Default 5.0; must be a multiple of 5 (the cochleagram's bin).
%(smooth)s
%(download)s
%(return_waveform)s
audio_fs : float, default 48000
    Sample rate of waveform stimuli (``audio_fs * dt_ms / 1000`` whole).
units : 'all', 'published' or sequence of str
    'published': ``singleT`` Yes or Maybe and depth >= 0 (73 units, the set
    the papers use); or the cell ids to keep.
binning : {'counts', 'deepstrf'}, default 'counts'
    How spikes are counted (see Preprocessing).
%(n_jobs)s
%(cache)s
%(progress)s

References
----------
Harper N.S., Schoppe O., Willmore B.D.B., Cui Z., Schnupp J.W.H. & King A.J.
(2016). Network receptive field modeling reveals extensive integration and
multi-feature selectivity in auditory cortical neurons. PLoS Comput Biol
12:e1005113. doi:10.1371/journal.pcbi.1005113
Rahman M., Willmore B.D.B., King A.J. & Harper N.S. (2019). A dynamic network
model of temporal receptive fields in primary auditory cortex. PLoS Comput
Biol 15:e1006618. doi:10.1371/journal.pcbi.1006618
Rahman M., Willmore B.D.B., King A.J. & Harper N.S. (2020). Simple
transformations capture auditory input to cortex. PNAS 117:28442-28451.
doi:10.1073/pnas.1922033117
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._ns1_units import N_NATURAL, read_unit
from deepstrf.datasets.audio._spikes_audio import (
    AudioSourceDataset,
    Recording,
    SpectrogramArrayStim,
    SpikeTrains,
    WavStim,
    make_front_end,
)
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.download import RemoteFile

__doc__ = fill_doc(__doc__)
__all__ = ["NS1Dataset", "RAHMAN2020_TEST", "STIM_TYPES", "WAV_NAMES"]

#: Sound file of each of the 20 natural stimuli, in ``X_nfht`` order.
WAV_NAMES = tuple([f"source.1.sound.0.snr.0.token.0.fw.2.frozen.{k}" for k in range(1, 13)]
                  + [f"source.2.sound.0.snr.0.token.0.fw.1.frozen.{k}" for k in range(1, 9)])
#: Test stimuli of Rahman et al. (2020); the other 16 are for training.
RAHMAN2020_TEST = (3, 6, 9, 19)
#: Sound category of each natural stimulus, by its index in ``X_nfht`` (0-based).
STIM_TYPES = {0: "water_sounds", 19: "water_sounds", 3: "ferret_vocalization",
              6: "insects_buzzing", 8: "human_speech", 9: "human_speech", 10: "human_speech",
              11: "human_speech"}
NATIVE_BIN_MS, WINDOW_BINS = 5.0, 999
HEADER_RATE, TRUE_RATE = 48828, 48828.125
META_FILE, SPEC_FILE, SPIKE_DIR = "MetadataSHEnCneurons.mat", "test_data_5ms.mat", "spikesandwav"


@fill_doc
class NS1Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="ns1", title="NS1: ferret A1 units to natural sounds", species="ferret",
        area="A1", signal="single and multi units (spike times)", n_neurons=119, n_stims=20,
        repeats="20", download_size="160 MB", access="open",
        citation="Harper N.S., Schoppe O., Willmore B.D.B., Cui Z., Schnupp J.W.H. & King A.J. "
                 "(2016). Network receptive field modeling reveals extensive integration and "
                 "multi-feature selectivity in auditory cortical neurons. PLoS Comput Biol "
                 "12:e1005113.",
        doi="10.1371/journal.pcbi.1005113", url="https://osf.io/ayw2p/",
        papers=("Rahman et al. (2019) PLoS Comput Biol 15:e1006618",
                "Rahman et al. (2020) PNAS 117:28442"))
    folder = "NS1"
    remote_files = (
        RemoteFile.osf(META_FILE, guid="gdwyd"),
        RemoteFile.osf("spikesandwav.zip", guid="5nxga"),
        RemoteFile.osf("ReadMe.rtf", guid="f3rtm"),
        RemoteFile(SPEC_FILE, url="https://raw.githubusercontent.com/monzilur/DNet/master/"
                                  "test_data_5ms.mat", size=None))
    archives = (ArchiveSpec("spikesandwav.zip", provides=(SPIKE_DIR,)),)
    raw_markers = (META_FILE, SPEC_FILE, SPIKE_DIR)
    cache_version = 1

    def __init__(self, path: Any = None, dt_ms: float = 5.0, smooth: bool | float = True,
                 download: bool = False, return_waveform: bool = False,
                 audio_fs: float = 48000, *, units: Any = "all", binning: str = "counts",
                 n_jobs: int | None = 1, cache: str = "use", progress: bool | None = None):
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, n_bands=34, compression="none",
                               window_ms=10.0, return_waveform=return_waveform,
                               audio_fs=audio_fs)
        ratio = front.dt_ms / NATIVE_BIN_MS
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"NS1Dataset: dt_ms must be a multiple of 5 ms (the bin of the "
                             f"published cochleagram); got dt_ms={dt_ms!r}.")
        params = {"units": _check_units(units), "binning": check_choice(
            "binning", binning, ("counts", "deepstrf"))}
        self._init_source(path, params, front, download=download, n_jobs=n_jobs, cache=cache,
                          progress=progress, expect_full=params["units"] == "all")

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.io.readers import read_mat
        from deepstrf.preprocessing.parallel import parallel_map

        owner = type(self).__name__
        k = int(round(self._front_end.dt_ms / NATIVE_BIN_MS))
        T = WINDOW_BINS // k
        records = read_mat(raw_dir / META_FILE, ["neuron"])["neuron"]
        records = [records] if isinstance(records, dict) else records
        if not isinstance(records, list) or not records:
            raise RawDataError(f"{raw_dir / META_FILE}: 'neuron' must be a struct array.")
        neurons, files = [], []
        for i, rec in enumerate(records):
            first = next(iter(rec.values()), None)
            if not (isinstance(first, str) and first.endswith(".mat")) or "path" not in rec:
                raise RawDataError(f"{raw_dir / META_FILE}: neuron({i + 1}) must start with the "
                                   f"spike file name (*.mat) and have a path; got {first!r}.")
            meta = {"cell_id": first[:-4], "area": "A1", "depth_um": _num(rec.get("depth")),
                    "noise_ratio": _num(rec.get("NoiseRatio")),
                    "single_n": _num(rec.get("singleN"), int), "single_t": str(rec.get("singleT")),
                    "n_electrodes": _num(rec.get("NrOfElectrodes"), int),
                    "electrode_number": _num(rec.get("ElectrodeNumber"), int),
                    "spike_file": str(rec["path"])}
            if _wanted(meta, params["units"]):
                neurons.append(meta)
                files.append(raw_dir / SPIKE_DIR / str(rec["path"]))
        if isinstance(params["units"], list):
            unknown = sorted(set(params["units"]) - {m["cell_id"] for m in neurons})
            if unknown:
                raise ValueError(f"{owner}: units {unknown[:5]} are not in {META_FILE}; "
                                 "nrn_meta['cell_id'] lists the ids.")
        retried = [f for f in files if not f.is_file()
                   and f.with_name(f.stem + "_1.mat").is_file()]
        files = [f.with_name(f.stem + "_1.mat") if f in retried else f for f in files]
        units = parallel_map(read_unit, [(f, params["binning"]) for f in files],
                             n_jobs=n_jobs, progress=progress, desc=f"{owner}: units")
        quirks: dict[str, int] = {}
        missing = [f for f, u in zip(files, units) if u is None]
        for kind, found, text in (
                ("spike_file_suffix_1", retried, "were found only under the name with a '_1' "
                                                 "suffix that their metadata path lacks"),
                ("missing_spike_files", missing, "are absent (also with a '_1' suffix); "
                                                 "those units are left out")):
            if found:
                quirks[kind] = len(found)
                warnings.warn(f"{owner}: {len(found)} spike file(s) {text} (e.g. {found[0]}).",
                              DataQuirkWarning, stacklevel=3)
        trials = {(s, n): SpikeTrains.from_trials(unit[s]) for n, unit in enumerate(units)
                  if unit is not None for s in range(N_NATURAL)}
        return Recording(stims=self._stims(raw_dir, T), neurons=neurons, trials=trials,
                         quirks=quirks)

    def _stims(self, raw_dir: Path, T: int) -> list[Any]:
        from deepstrf.io.readers import read_mat

        metas = [{"name": f"nat{s + 1:02d}", "type": STIM_TYPES.get(s, "unknown"),
                  "split": "test" if s in RAHMAN2020_TEST else "train", "wav": WAV_NAMES[s]}
                 for s in range(N_NATURAL)]
        if self._front_end.return_waveform:
            folder = raw_dir / SPIKE_DIR / "SH.En.C"
            paths = [folder / n if (folder / n).is_file() else folder / f"{n}.wav"
                     for n in WAV_NAMES]
            absent = [p.name for p in paths if not p.is_file()]
            if absent:
                raise RawDataError(f"{type(self).__name__}: waveform mode needs the 20 sound "
                                   f"files in {folder}; missing {absent[:3]} (re-extract "
                                   "spikesandwav.zip).")
            return [WavStim(p, m, expected_sr=HEADER_RATE, sample_rate=TRUE_RATE, n_bins=T)
                    for p, m in zip(paths, metas)]
        x = np.asarray(read_mat(raw_dir / SPEC_FILE, ["X_nfht"])["X_nfht"])
        if x.ndim not in (3, 4) or x.shape[0] != N_NATURAL or x.shape[-1] != WINDOW_BINS \
                or (x.ndim == 4 and x.shape[2] != 1) or x.shape[1] != 34:
            raise RawDataError(f"{raw_dir / SPEC_FILE}: X_nfht must be (20, 34, 1, 999); got "
                               f"{x.shape}. The file may be another version (re-download).")
        x = x.reshape(N_NATURAL, x.shape[1], WINDOW_BINS)
        return [SpectrogramArrayStim(x[s], NATIVE_BIN_MS, metas[s], n_bins=T)
                for s in range(N_NATURAL)]


def _check_units(units: Any) -> Any:
    if isinstance(units, str):
        return check_choice("units", units, ("all", "published"))
    try:
        ids = tuple(units)
    except TypeError:
        raise TypeError(f"units must be 'all', 'published' or a sequence of cell ids; got "
                        f"{units!r}.") from None
    if not ids or not all(isinstance(i, str) for i in ids):
        raise TypeError(f"units must hold cell id strings; got {units!r}.")
    return sorted(set(ids))


def _wanted(meta: dict[str, Any], units: Any) -> bool:
    if units == "all":
        return True
    if units == "published":
        return meta["single_t"] in ("Yes", "Maybe") and meta["depth_um"] >= 0
    return meta["cell_id"] in units


def _num(value: Any, kind: Any = float) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return math.nan if kind is float else None
