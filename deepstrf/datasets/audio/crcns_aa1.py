"""CRCNS AA1: zebra finch Field L and MLd single units to song and ripple noise.

=========  ===========================================================
species    adult male zebra finch (*Taeniopygia guttata*), anaesthetised
areas      Field L and MLd (auditory midbrain)
signal     extracellular single units, spike times
N          100 cells (50 Field L, 50 MLd)
S          30 stimuli: 10 conspecific songs, 20 flat ripple noises, up to 5 s
R          about 10 repeats per (cell, stimulus)
access     CRCNS (free account), ``crcns-aa1.zip``, about 17 MB
=========  ===========================================================

Preprocessing
-------------
* Responses: each ``spikeN`` line is one trial (an empty line is a trial
  without spikes and is kept as a zero-count repeat); spike times, in ms from
  stimulus onset, are binned at ``dt_ms`` on ``[k dt, (k+1) dt)`` from onset
  to the end of the stimulus, dropping spikes before onset and after the end.
  Lines are split on any whitespace, so every spike counts whether or not the
  line ends with the lab writer's trailing space; deepSTRF 0.1.0 splits on
  single spaces and drops the last token, which loses the last spike of any
  line written without that space.
* ``smooth=True`` (default) convolves each trial with a 21 ms Hanning window
  of unit sum (Hsu, Borst & Theunissen 2004), so values stay spike counts;
  deepSTRF 0.1.0's kernel is not normalised (its smoothed counts are scaled by
  about K/2).
* Stimuli: 32 kHz wavs (checked) to a mel spectrogram (``n_bands`` bands,
  ``window_ms`` window, ``compression``) whose frame k is centred on response
  bin k, or, with ``return_waveform=True``, the waveform on the response grid
  at ``audio_fs``.
* A stimulus presented twice in one cell's protocol has its trials merged; a
  ``stimN`` without ``spikeN`` (or the reverse) is skipped with a
  :class:`~deepstrf.errors.DataQuirkWarning`. Stimuli no selected cell heard
  are dropped.

Parameters
----------
path : path-like, optional
    The dataset's folder (holding ``all_stims/`` and ``Field_L_cells/``
    directly, or a ``raw/`` folder with them). Default: ``<data home>/AA1``.
areas : str or sequence of {'Field_L', 'MLd'}, default both
stimuli : str or sequence of {'conspecific', 'flatrip'}, default both
animals : 'all' or sequence of str
    Bird ids (the cell-name prefix, e.g. ``'gg0304'``).
dt_ms : float, default 1.0
smooth : bool or float, default True
    True: 21 ms Hanning smoothing; a number: that window in ms; False: none.
n_bands, window_ms, compression : spectrogram settings (32, 10.0, 'cubic').
    ``n_bands`` is the number of mel bands F.
n_mels : int, optional
    The older name of ``n_bands`` (deepSTRF 0.1.0), still accepted.
spectrogram : SpectrogramParams, optional
    Full control of the front end (replaces the three settings above).
return_waveform : bool, default False
audio_fs : int, default 32000
    Sample rate of waveform stimuli (``audio_fs * dt_ms / 1000`` must be an integer).
download : bool, default False
    Download ``crcns-aa1.zip`` when the raw files are absent (needs CRCNS
    credentials: ``username``/``password``, ``$CRCNS_USERNAME``/
    ``$CRCNS_PASSWORD`` or ``~/.netrc``).
n_jobs : int, default 1
    Parallel workers for the first build (joblib; -1 = all cores).
cache : {'use', 'rebuild', 'readonly', 'off'}, default 'use'
progress : bool, optional
    Progress bars (default: on a terminal only).

References
----------
Theunissen F.E. et al. (2009). Single-unit recordings from multiple auditory
areas in male zebra finches. CRCNS.org. doi:10.6080/K0F769GP
Woolley S.M.N. et al. (2005). Tuning for spectro-temporal modulations as a
mechanism for auditory discrimination of natural sounds. Nat Neurosci 8:1371.
doi:10.1038/nn1536
Hsu A., Woolley S.M.N., Fremouw T.E. & Theunissen F.E. (2004). Modulation
power and phase spectrum of natural sounds enhance neural encoding performed by
single auditory neurons. J Neurosci 24:9201. doi:10.1523/JNEUROSCI.2449-04.2004
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepstrf._validation import check_names, check_subset
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._crcns_aa import collect_trials, parse_cell_name, read_cell_protocol
from deepstrf.datasets.audio._spikes_audio import (
    AudioSourceDataset,
    Recording,
    WavStim,
    make_front_end,
)
from deepstrf.errors import DataQuirkWarning
from deepstrf.io.download import RemoteFile

__all__ = ["CRCNSAA1Dataset"]

AREAS = ("Field_L", "MLd")
STIMULI = ("conspecific", "flatrip")


class CRCNSAA1Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="aa1", title="CRCNS AA1: zebra finch Field L and MLd",
        species="zebra finch", area="Field L, MLd", signal="single units (spike times)",
        n_neurons=100, n_stims=30, repeats="~10", download_size="17 MB",
        access="CRCNS login",
        citation="Theunissen F.E., Hauber M.E., Woolley S.M.N., Gill P., Shaevitz S.S., "
                 "Amin N., Hsu A., Singh N.C., Grace G.E., Fremouw T., Zhang J., Cassey P., "
                 "Doupe A.J. & David S.V. (2009). Single-unit recordings from multiple "
                 "auditory areas in male zebra finches. CRCNS.org.",
        doi="10.6080/K0F769GP", url="https://crcns.org/data-sets/aa/aa-1",
        papers=("Woolley et al. (2005) Nat Neurosci 8:1371",
                "Hsu et al. (2004) J Neurosci 24:9201"))
    folder = "AA1"
    remote_files = (RemoteFile("crcns-aa1.zip", crcns=("aa-1", "crcns-aa1.zip")),)
    # the zip's layout (flat, or wrapped in one folder) is not documented: accept both
    archives = (ArchiveSpec("crcns-aa1.zip", strip_components="auto",
                            provides=("all_stims", "Field_L_cells", "MLd_cells")),)
    raw_markers = ("all_stims",)
    raw_subpaths = ("all_stims", "Field_L_cells", "MLd_cells")
    cache_version = 1
    sample_rate = 32000

    def __init__(self, path: Any = None, areas: Any = AREAS, stimuli: Any = STIMULI,
                 animals: Any = "all", dt_ms: float = 1.0, smooth: bool | float = True,
                 n_bands: int | None = None, compression: str = "cubic", window_ms: float = 10.0,
                 return_waveform: bool = False, audio_fs: int = 32000, download: bool = False,
                 username: str | None = None, password: str | None = None, *,
                 spectrogram: Any = None,
                 n_mels: int | None = None, n_jobs: int | None = 1, cache: str = "use",
                 progress: bool | None = None):
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, n_bands=n_bands, n_mels=n_mels,
                               default_n_bands=32,
                               compression=compression, window_ms=window_ms,
                               return_waveform=return_waveform, audio_fs=audio_fs,
                               spectrogram=spectrogram)
        params = {"areas": check_subset("areas", areas, AREAS),
                  "stimuli": check_subset("stimuli", stimuli, STIMULI),
                  "animals": check_names("animals", animals)}
        full = (set(params["areas"]) == set(AREAS) and set(params["stimuli"]) == set(STIMULI)
                and params["animals"] == "all")
        self._init_source(path, params, front, download=download, username=username,
                          password=password, n_jobs=n_jobs, cache=cache, progress=progress,
                          expect_full=full)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.preprocessing.parallel import parallel_map

        stim_dirs = {c: raw_dir / "all_stims" / c for c in params["stimuli"]}
        stims, stim_index = [], {}
        for stim_class, folder in stim_dirs.items():
            for wav in sorted(folder.glob("*.wav")) if folder.is_dir() else []:
                stim_index[(stim_class, wav.name)] = len(stims)
                stims.append(WavStim(wav, {"name": wav.name, "type": stim_class},
                                        expected_sr=self.sample_rate))
        cells, neurons = [], []
        quirks: dict[str, int] = {}
        for area, cell_dir in self._cell_folders(raw_dir, quirks):
            animal, seq, rig = parse_cell_name(cell_dir.name)
            if area not in params["areas"]:
                continue
            if params["animals"] != "all" and animal not in params["animals"]:
                continue
            if not any((cell_dir / c).is_dir() for c in params["stimuli"]):
                continue
            cells.append(cell_dir)
            neurons.append({"cell_id": cell_dir.name, "animal_id": animal, "area": area,
                            "cell_seq": seq, "rig": rig})
        protocols = parallel_map(read_cell_protocol, [(c, params["stimuli"]) for c in cells],
                                 n_jobs=n_jobs, progress=progress,
                                 desc=f"{type(self).__name__}: cells")
        trials = collect_trials(protocols, stim_index, owner=type(self).__name__,
                                wav_dir_for=stim_dirs, quirks=quirks)
        return Recording(stims=stims, neurons=neurons, trials=trials, quirks=quirks)

    def _cell_folders(self, raw_dir: Path, quirks: dict[str, int]) -> list[tuple[str, Path]]:
        """``(area, cell folder)`` of every cell; a cell filed under two areas is kept once.

        Every area folder is scanned, whatever the selection, so that which copy
        is kept (the first area in :data:`AREAS` order) does not depend on it.
        """
        found: list[tuple[str, Path]] = []
        first_area: dict[str, str] = {}
        twice: list[str] = []
        for area in AREAS:
            area_dir = raw_dir / f"{area}_cells"
            for cell_dir in sorted(p for p in area_dir.iterdir() if p.is_dir()) \
                    if area_dir.is_dir() else []:
                if cell_dir.name in first_area:
                    twice.append(f"{cell_dir.name} (kept {first_area[cell_dir.name]}_cells, "
                                 f"skipped {area}_cells)")
                    continue
                first_area[cell_dir.name] = area
                found.append((area, cell_dir))
        if twice:
            quirks["duplicate_cell_folders"] = len(twice)
            warnings.warn(f"{type(self).__name__}: {len(twice)} cell folder(s) appear under "
                          f"more than one area folder; each is loaded once: "
                          f"{'; '.join(twice[:3])}.", DataQuirkWarning, stacklevel=3)
        return found

