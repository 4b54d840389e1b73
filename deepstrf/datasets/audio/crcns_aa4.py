"""CRCNS AA4: zebra finch auditory forebrain units to the vocal repertoire.

=========  ===========================================================
species    adult zebra finches (4 male, 2 female), anaesthetised
areas      Field L (L1, L2, L3), CLM, CMM, NCM (no per-unit area assignment)
signal     extracellular single and multi units, spike times
N          1401 units (914 single), 1343 once noise/TDT sorts are left out
S          about 170 unique stimuli (songs, calls, ripple noise) up to ~3 s
R          about 10 repeats
access     CRCNS (free account), one tar.gz per bird (hundreds of MB each)
=========  ===========================================================

Preprocessing
-------------
* Units: one HDF5 file per unit (``<bird>/Site..._e<electrode>_s<sort>.h5``);
  units whose ``sortType`` is ``'noise'`` or ``'tdt'`` are left out (the
  ``unit_types`` parameter), ``'singl'`` is read as ``'single'``.
* Stimuli are identified across units and birds by ``stim_md5``; the audio
  comes from the first bird's ``wavfiles/stim<K>.wav`` that has it. The wavs
  are at the TDT rate (24414.0625 Hz, stored as 24414 in the header); the
  spectrogram front end resamples to the nearest rate with a whole-sample hop
  (24000 Hz at 1 ms), so frames do not drift against the response bins
  (deepSTRF 0.1.0 rounds the hop down: 0.983 ms frames, 50 ms off after 3 s).
* Trials: ``spike_times`` (seconds from onset) to ms, binned from onset to the
  end of the stimulus. An empty trial (stored as -999) is kept as a zero-count
  repeat and a unit that never fired to a stimulus keeps its zero responses;
  deepSTRF 0.1.0 drops such trials and pairs, so its repeat counts shrink and
  silent responses vanish. A stimulus presented in several protocols of a unit
  has its trials merged.
* 21 ms unit-sum Hanning smoothing by default; mel spectrogram or waveform
  (``audio_fs``, default 24000 Hz) as for the other CRCNS datasets.

Parameters
----------
path : path-like, optional
    Folder holding the bird folders (or a ``raw/`` folder with them).
    Default: ``<data home>/AA4``.
animals : 'all' or sequence of the six bird ids
stimuli : str or sequence of {'song', 'call', 'mlnoise'}
unit_types : sequence of {'single', 'multi', 'noise', 'tdt'}, default ('single', 'multi')
dt_ms, smooth, n_bands, n_mels, window_ms, compression, spectrogram, return_waveform,
audio_fs, download, username, password, n_jobs, cache, progress :
    As for :class:`~deepstrf.datasets.audio.crcns_aa1.CRCNSAA1Dataset`.

References
----------
Elie J.E. & Theunissen F.E. (2019). Single-unit recordings from the zebra
finch auditory forebrain to the vocal repertoire. CRCNS.org. doi:10.6080/K00C4T06
Elie J.E. & Theunissen F.E. (2015). Meaning in the avian auditory cortex:
neural representation of communication calls. Eur J Neurosci 41:546-567.
doi:10.1111/ejn.12812
Elie J.E. & Theunissen F.E. (2019). Invariant neural responses for sensory
categories revealed by the time-varying information for communication calls.
PLoS Comput Biol 15:e1006698. doi:10.1371/journal.pcbi.1006698
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepstrf._validation import check_names, check_subset
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._crcns_aa import read_unit
from deepstrf.datasets.audio._spikes_audio import (
    AudioSourceDataset,
    Recording,
    WavStim,
    make_front_end,
)
from deepstrf.io.download import RemoteFile

__all__ = ["CRCNSAA4Dataset"]

ANIMALS = ("BlaBro09xxF", "GreBlu9508M", "LblBlu2028M", "WhiBlu5396M", "WhiWhi4522M",
           "YelBlu6903F")
STIMULI = ("song", "call", "mlnoise")
UNIT_TYPES = ("single", "multi", "noise", "tdt")


class CRCNSAA4Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="aa4", title="CRCNS AA4: zebra finch forebrain, vocal repertoire",
        species="zebra finch", area="Field L, CLM, CMM, NCM",
        signal="single and multi units (spike times)", n_neurons=1343, n_stims=None,
        repeats="~10", download_size="several GB (one archive per bird)",
        access="CRCNS login",
        citation="Elie J.E. & Theunissen F.E. (2019). Single-unit recordings from the zebra "
                 "finch auditory forebrain to the vocal repertoire. CRCNS.org.",
        doi="10.6080/K00C4T06", url="https://crcns.org/data-sets/aa/aa-4",
        papers=("Elie & Theunissen (2015) Eur J Neurosci 41:546",
                "Elie & Theunissen (2019) PLoS Comput Biol 15:e1006698"))
    folder = "AA4"
    remote_files = tuple(RemoteFile(f"{a}.tar.gz", crcns=("aa-4", f"{a}.tar.gz"))
                         for a in ANIMALS)
    archives = tuple(ArchiveSpec(f"{a}.tar.gz", provides=(a,)) for a in ANIMALS)
    raw_markers = ANIMALS
    cache_version = 1

    def __init__(self, path: Any = None, animals: Any = "all", stimuli: Any = STIMULI,
                 dt_ms: float = 1.0, smooth: bool | float = True, n_bands: int | None = None,
                 compression: str = "cubic", window_ms: float = 10.0,
                 return_waveform: bool = False, audio_fs: int = 24000, download: bool = False,
                 username: str | None = None, password: str | None = None, *,
                 unit_types: Any = ("single", "multi"), spectrogram: Any = None,
                 n_mels: int | None = None,
                 n_jobs: int | None = 1, cache: str = "use", progress: bool | None = None):
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, n_bands=n_bands, n_mels=n_mels,
                               default_n_bands=32,
                               compression=compression, window_ms=window_ms,
                               return_waveform=return_waveform, audio_fs=audio_fs,
                               spectrogram=spectrogram)
        chosen = check_names("animals", animals)
        params = {"animals": check_subset("animals", ANIMALS if chosen == "all" else chosen,
                                          ANIMALS),
                  "stimuli": check_subset("stimuli", stimuli, STIMULI),
                  "unit_types": check_subset("unit_types", unit_types, UNIT_TYPES)}
        full = (set(params["animals"]) == set(ANIMALS)
                and set(params["stimuli"]) == set(STIMULI)
                and set(params["unit_types"]) == {"single", "multi"})
        self._init_source(path, params, front, download=download, username=username,
                          password=password, n_jobs=n_jobs, cache=cache, progress=progress,
                          expect_full=full)

    def _needs(self, params: Mapping[str, Any]):
        animals = params["animals"]
        files = tuple(f for f in self.remote_files if f.name[:-len(".tar.gz")] in animals)
        archives = tuple(a for a in self.archives if a.name[:-len(".tar.gz")] in animals)
        return files, archives, tuple(animals), tuple(animals)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.preprocessing.parallel import parallel_map

        owner = type(self).__name__
        tasks = [(p, animal, params["unit_types"]) for animal in params["animals"]
                 for p in sorted((raw_dir / animal).glob("*.h5"))]
        units = [u for u in parallel_map(read_unit, tasks, n_jobs=n_jobs, progress=progress,
                                         desc=f"{owner}: units") if u is not None]
        stims: list[WavStim] = []
        stim_index: dict[str, int] = {}
        missing_audio: set[str] = set()
        for unit in units:
            animal = unit.meta["animal_id"]
            for md5, (attrs, _) in unit.stims.items():
                if md5 in stim_index or attrs.get("stim_type") not in params["stimuli"]:
                    continue
                wav = raw_dir / animal / "wavfiles" / f"stim{attrs['number']}.wav"
                if not wav.is_file():
                    missing_audio.add(md5)
                    continue
                missing_audio.discard(md5)
                stim_index[md5] = len(stims)
                stims.append(WavStim(wav, {"name": md5, "type": attrs.get("stim_type"),
                                              "class": attrs.get("stim_class")}))
        if missing_audio:
            import warnings

            from deepstrf.errors import DataQuirkWarning

            warnings.warn(f"{owner}: {len(missing_audio)} stimulus/stimuli have no wav file in "
                          f"any bird's wavfiles/ folder and are left out.", DataQuirkWarning,
                          stacklevel=2)
        trials = {(stim_index[md5], n): t for n, unit in enumerate(units)
                  for md5, (_, t) in unit.stims.items() if md5 in stim_index}
        return Recording(stims=stims, neurons=[u.meta for u in units], trials=trials)
