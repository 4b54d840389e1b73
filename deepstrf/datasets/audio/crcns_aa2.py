"""CRCNS AA2: zebra finch MLd, OV, Field L and CM single units to song and ripples.

=========  ===========================================================
species    adult male zebra finch, anaesthetised (57 birds)
areas      MLd, OV, Field L (L, L1, L2a, L2b, L3), CM, unidentified
signal     extracellular single units, spike times
N          494 cells
S          117 (class, wav) stimuli: 72 conspecific, 20 flat ripple, 25 song ripple
R          10 to 20 repeats
access     CRCNS (free account), three tar.gz archives, about 30 MB
=========  ===========================================================

Preprocessing
-------------
As :class:`~deepstrf.datasets.audio.crcns_aa1.CRCNSAA1Dataset` (same lab,
same file format): spike times binned at ``dt_ms`` from onset to the end of
the stimulus with every spike and every empty trial kept, 21 ms unit-sum
Hanning smoothing by default, 32 kHz wavs to a mel spectrogram aligned with
the response bins (or the waveform on the grid).

* Stimuli are the (class, wav) pairs the selected cells' ``stimN`` files name
  (12 wavs are played both as conspecific song and as song ripple context, so
  they appear once per class, as in the release's own counts); the 40 wavs in
  ``all_stims/`` that no cell heard are not loaded.
* ``cell_regions.csv`` (``cell,region`` rows, no header) gives each cell's
  label, kept as ``area``; ``area_group`` maps it to ``Field_L`` (L, L1, L2a,
  L2b, L3), ``MLd``, ``OV``, ``CM`` or ``None``. The ``areas`` filter accepts
  the labels, the groups and ``'Field_L'``/``'L'`` for all of Field L. A cell
  missing from the file, or a missing file, gives ``area = 'None'`` with a
  :class:`~deepstrf.errors.DataQuirkWarning`.
* Unpaired ``stimN``/``spikeN`` files (cell ``oo1220_6_B`` has some) are
  skipped, repeated stimuli in a protocol merged, both with a warning.
* The cell folders are authoritative: ``cell_stim_classes.csv`` is not read
  (deepSTRF 0.1.0 reads it with a header row, which loses its first cell;
  the file has none) and ``stim_data.csv`` is not needed, since durations
  come from the wavs themselves.

Parameters
----------
path : path-like, optional
    Folder holding ``all_cells/`` and ``all_stims/`` (or a ``raw/`` folder with
    them). Default: ``<data home>/AA2``.
areas : str or sequence, default all
    Labels ``'L', 'L1', 'L2a', 'L2b', 'L3', 'mld', 'OV', 'CM', 'None'`` or
    groups ``'Field_L'`` (also ``'L'``), ``'MLd'``.
stimuli : str or sequence of {'conspecific', 'flatrip', 'songrip'}
animals : 'all' or sequence of bird ids (cell-name prefix)
dt_ms, smooth, n_bands, n_mels, window_ms, compression, spectrogram, return_waveform,
audio_fs, download, username, password, n_jobs, cache, progress :
    As for :class:`~deepstrf.datasets.audio.crcns_aa1.CRCNSAA1Dataset`.

References
----------
Theunissen F.E., Gill P., Amin N., Zhang J., Woolley S.M.N. & Fremouw T.E.
(2011). Single-unit recordings from the auditory areas of male zebra finches.
CRCNS.org. doi:10.6080/K0JW8BSC
Gill P., Zhang J., Woolley S.M.N., Fremouw T. & Theunissen F.E. (2006). Sound
representation methods for spectro-temporal receptive field estimation.
J Comput Neurosci 21:5-20. doi:10.1007/s10827-006-7059-4
Amin N., Gill P. & Theunissen F.E. (2010). Role of the zebra finch auditory
thalamus in generating complex representations for natural sounds.
J Neurophysiol 104:784-798. doi:10.1152/jn.00128.2010
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
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.download import RemoteFile

__all__ = ["CRCNSAA2Dataset"]

LABELS = ("L", "L1", "L2a", "L2b", "L3", "mld", "OV", "CM", "None")
GROUP_OF = {"L": "Field_L", "L1": "Field_L", "L2a": "Field_L", "L2b": "Field_L",
            "L3": "Field_L", "mld": "MLd", "OV": "OV", "CM": "CM", "None": "None"}
ALIASES = {"Field_L": ("L", "L1", "L2a", "L2b", "L3"), "L": ("L", "L1", "L2a", "L2b", "L3"),
           "MLd": ("mld",)}
STIMULI = ("conspecific", "flatrip", "songrip")


class CRCNSAA2Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="aa2", title="CRCNS AA2: zebra finch MLd, OV, Field L, CM",
        species="zebra finch", area="MLd, OV, Field L, CM", signal="single units (spike times)",
        n_neurons=494, n_stims=117, repeats="10-20", download_size="30 MB",
        access="CRCNS login",
        citation="Theunissen F.E., Gill P., Amin N., Zhang J., Woolley S.M.N. & Fremouw T.E. "
                 "(2011). Single-unit recordings from the auditory areas of male zebra "
                 "finches. CRCNS.org.",
        doi="10.6080/K0JW8BSC", url="https://crcns.org/data-sets/aa/aa-2",
        papers=("Gill et al. (2006) J Comput Neurosci 21:5",
                "Amin, Gill & Theunissen (2010) J Neurophysiol 104:784"))
    folder = "AA2"
    # Sizes and md5 of the 2016 release (datalad mirror); a change is reported clearly.
    remote_files = (
        RemoteFile("crcns-aa2-docs.tar.gz", crcns=("aa-2", "crcns-aa2-docs.tar.gz"),
                   size=10_020, md5="53b0f92ca7dc6a7eec5fb2992111e5ea"),
        RemoteFile("crcns-aa2-all_cells.tar.gz", crcns=("aa-2", "crcns-aa2-all_cells.tar.gz"),
                   size=17_152_249, md5="ceea87a446a2907816bee449ccfe1361"),
        RemoteFile("crcns-aa2-all_stims.tar.gz", crcns=("aa-2", "crcns-aa2-all_stims.tar.gz"),
                   size=14_413_299, md5="687f54bf4ebf01e6641512523b0355f6"),
    )
    archives = (ArchiveSpec("crcns-aa2-docs.tar.gz", 2, provides=("cell_regions.csv",)),
                ArchiveSpec("crcns-aa2-all_cells.tar.gz", 2, provides=("all_cells",)),
                ArchiveSpec("crcns-aa2-all_stims.tar.gz", 2, provides=("all_stims",)))
    raw_markers = ("all_cells", "all_stims")
    raw_subpaths = ("all_cells", "all_stims", "cell_regions.csv")
    cache_version = 1
    sample_rate = 32000

    def __init__(self, path: Any = None, areas: Any = ("Field_L", "mld", "OV", "CM", "None"),
                 stimuli: Any = STIMULI, animals: Any = "all", dt_ms: float = 1.0,
                 smooth: bool | float = True, n_bands: int | None = None,
                 compression: str = "cubic",
                 window_ms: float = 10.0, return_waveform: bool = False, audio_fs: int = 32000,
                 download: bool = False, username: str | None = None,
                 password: str | None = None, *, spectrogram: Any = None, n_mels: int | None = None,
                 n_jobs: int | None = 1, cache: str = "use", progress: bool | None = None):
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, n_bands=n_bands, n_mels=n_mels,
                               default_n_bands=32,
                               compression=compression, window_ms=window_ms,
                               return_waveform=return_waveform, audio_fs=audio_fs,
                               spectrogram=spectrogram)
        params = {"areas": check_subset("areas", areas, LABELS, aliases=ALIASES),
                  "stimuli": check_subset("stimuli", stimuli, STIMULI),
                  "animals": check_names("animals", animals)}
        full = (set(params["areas"]) == set(LABELS) and set(params["stimuli"]) == set(STIMULI)
                and params["animals"] == "all")
        self._init_source(path, params, front, download=download, username=username,
                          password=password, n_jobs=n_jobs, cache=cache, progress=progress,
                          expect_full=full)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.preprocessing.parallel import parallel_map

        owner = type(self).__name__
        regions = _read_regions(raw_dir / "cell_regions.csv", owner)
        cells, neurons, unlabelled = [], [], []
        for cell_dir in sorted(p for p in (raw_dir / "all_cells").iterdir() if p.is_dir()):
            label = regions.get(cell_dir.name)
            if label is None:
                unlabelled.append(cell_dir.name)
                label = "None"
            animal, seq, rig = parse_cell_name(cell_dir.name)
            if label not in params["areas"]:
                continue
            if params["animals"] != "all" and animal not in params["animals"]:
                continue
            if not any((cell_dir / c).is_dir() for c in params["stimuli"]):
                continue
            cells.append(cell_dir)
            neurons.append({"cell_id": cell_dir.name, "animal_id": animal, "area": label,
                            "area_group": GROUP_OF.get(label, "None"), "cell_seq": seq,
                            "rig": rig})
        if unlabelled and regions:
            warnings.warn(f"{owner}: {len(unlabelled)} cell(s) are missing from "
                          f"cell_regions.csv and get area 'None' (e.g. {unlabelled[0]}).",
                          DataQuirkWarning, stacklevel=2)
        protocols = parallel_map(read_cell_protocol, [(c, params["stimuli"]) for c in cells],
                                 n_jobs=n_jobs, progress=progress, desc=f"{owner}: cells")
        wav_dir = raw_dir / "all_stims"
        referenced = sorted({(e.stim_class, e.wav) for p in protocols for e in p.entries},
                            key=lambda cw: (params["stimuli"].index(cw[0]), cw[1]))
        stims, stim_index = [], {}
        for stim_class, wav in referenced:
            if not (wav_dir / wav).is_file():
                continue  # collect_trials names the stimN file that points here
            stim_index[(stim_class, wav)] = len(stims)
            stims.append(WavStim(wav_dir / wav, {"name": wav, "type": stim_class},
                                    expected_sr=self.sample_rate))
        quirks: dict[str, int] = {}
        if unlabelled and regions:
            quirks["cells_without_region"] = len(unlabelled)
        trials = collect_trials(protocols, stim_index, owner=owner,
                                wav_dir_for={c: wav_dir for c in params["stimuli"]},
                                quirks=quirks)
        return Recording(stims=stims, neurons=neurons, trials=trials, quirks=quirks)


def _read_regions(path: Path, owner: str) -> dict[str, str]:
    """``cell -> region label`` from ``cell_regions.csv`` (no header, ``cell,region`` rows)."""
    if not path.is_file():
        warnings.warn(f"{owner}: {path} is missing, so every cell gets area 'None'. Extract "
                      "crcns-aa2-docs.tar.gz next to all_cells/ to get the regions.",
                      DataQuirkWarning, stacklevel=3)
        return {}
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0]:
            raise RawDataError(f"{path}, line {number}: expected 'cell,region'; got {line!r}.")
        cell, label = fields
        if label not in LABELS:
            if number == 1 and label.lower() in ("region", "area"):
                continue  # a header some copies may carry
            raise RawDataError(f"{path}, line {number}: unknown region {label!r} for cell "
                               f"{cell!r}; known labels are {', '.join(LABELS)}.")
        out[cell] = label
    return out
