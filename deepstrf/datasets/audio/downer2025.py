"""Downer 2025 / Ahmed 2025: squirrel monkey auditory cortex multi-unit activity.

=========  ===========================================================
species    squirrel monkey (*Saimiri sciureus*), 3 animals (b, c, f), awake,
           passive
areas      core (A1, R) and non-primary (ML, AL, CL, CPB, RPB)
signal     threshold-crossing multi-unit activity, one unit per channel
N          1718 channels in 41 sessions (core 909, non-primary 809)
S          TIMIT 499 sentences (489 at R=1, 10 test ones at R=11 or 22) or
           303 monkey vocalisations (mVocs; 11 test ones, R up to 30)
R          1 (estimation), 11-22 (TIMIT test), varies per session (mVocs)
access     open, Zenodo record 16175377: ``auditory_cortex_data.zip``
           (about 29 GB), read in place (no unpacked copy needed)
=========  ===========================================================

Preprocessing
-------------
* Archive: the zip's members are read directly, session by session (the
  zip has a central directory); an unpacked ``auditory_cortex_data/`` works
  too. A channel file is read without its spike-waveform matrix
  (``spike.events``).
* Neurons: channel files ``<a>_<YYMMDD>_Ch<N>[p|s2|ps2]_MUspk.mat`` of the
  sessions in ``sessions_metadata.yml``, bad sessions skipped; ``cell_id``
  ``<a>_<YYMMDD>_Ch<N><suffix>``; fine areas from the table transcribed from
  the YAML's comments (as deepSTRF).
* Trials: the session's ``TRIALINFO`` file (else its first channel file)
  gives ``stimon`` and the per-trial stimulus codes (0: another class); a
  channel file whose own trial table differs is read with its own (warned).
* TIMIT: ``sentdet(k).sound`` with ``befaft`` (0.5 s each side) cut off, so
  the sound starts at ``stimon``; T = ``round(speech duration / dt)``.
* mVocs: the first play of each id in ``MonkVocs_15Blocks.wav``, **channel 0
  only** (channel 1 holds the trigger pulses; deepSTRF averaged both),
  length the shortest interval between that id's onsets (the last runs to
  the end of the file).
* Spectrogram: the Kaldi 80-band log mel filter bank (``kind="kaldi"``,
  :mod:`deepstrf.preprocessing.kaldi`) at 16 kHz, 25 ms Hann window,
  0-``fmax`` Hz, frames on the response grid (10 ms frames averaged above
  10 ms bins); z-scored per stimulus and band over time
  (``spec_zscore``). Waveform mode: the sound at ``audio_fs``.
* Responses: per channel, spikes relative to each trial's ``stimon`` in
  ``[0, T dt)``, R = that stimulus's trials in the session; sentinels where
  a session did not play it.
* Splits: the published test sets (TIMIT ids 12, 13, 32, 43, 56, 163, 212,
  218, 287, 308; mVocs ids 7, 9, 12, 15, 24, 29, 30, 33, 44, 45, 48),
  ``stim_meta['split']``.
* Cache: one shard per session (and one for the stimuli), each keyed by its
  own parameters and raw files (:mod:`deepstrf.io.shards`): a later, wider
  selection reuses them, and a killed build resumes at the first missing one.
* ``nrn_meta``: ``cell_id``, ``session_id``, ``animal_id``, ``hemisphere``,
  ``area_group``, ``area``, ``channel``, ``channel_suffix``,
  ``n_channels_in_session``, ``coord_x``, ``coord_y``, ``recording_type``.
  ``stim_meta``: ``name``, ``type``, ``stim_id``, ``duration_s``,
  ``n_samples``, ``sample_rate``, ``split``, ``n_reps_canonical``,
  ``befaft_s`` (TIMIT), ``n_reps_in_wav`` (mVocs), ``n_bins``.

Parameters
----------
%(path)s
stimuli : {'timit', 'mvocs'}, default 'timit'
    Which stimulus class (each a dataset of its own, as in the papers).
%(dt_ms)s
    Default 5.0; above 10 ms a multiple of 10 (10 ms frames averaged).
n_bands : int, default 80
    Mel bins of the filter bank (``n_mels`` is accepted as its older name).
spec_zscore : bool, default True
    z-score each stimulus's spectrogram per band over time.
%(smooth)s
    Default True (as deepSTRF).
subset : {'all', 'estimation', 'test'}, default 'all'
    The published split.
animals : 'all' or sequence of {'b', 'c', 'f'}
    The monkeys (``animal_id``), by their one-letter ids; 'all' (default): all three.
areas : None or sequence of str
    Area groups (``'core'``, ``'non-primary'``; ``'primary'`` for core) or
    fine areas (``'A1'``, ``'R'``, ``'ML'``, ``'AL'``, ``'CL'``, ``'CPB'``,
    ``'RPB'``); None: all.
sessions : None or sequence of str
    Session ids (``'180413'``); None: all.
%(audio_fs)s
    Default 16000, the rate of the filter bank (and of waveform mode).
fmax : float, default 8000
    Top of the mel bins, Hz.
window_ms : float, default 25.0
    Frame length of the filter bank.
compression : {'log', 'log1p', 'cubic', 'none'}, default 'log'
    Of the mel energies; 'log' is Kaldi's (deepSTRF's ``compression``
    argument had no effect).
%(return_waveform)s
%(download)s
%(n_jobs)s
    Sessions (and stimuli) are built in parallel.
%(cache)s
%(progress)s

References
----------
Ahmed B., Downer J.D., Malone B.J. & Makin J.G. (2025). Deep neural networks
explain spiking activity in auditory cortex. PLoS Comput Biol 21:e1013334.
Downer J.D., Bigelow J., Runfeldt M.J. & Malone B.J. (2021). Temporally
precise population coding of dynamic sounds by auditory cortex.
J Neurophysiol. doi:10.1152/jn.00709.2020
Dataset: doi:10.5281/zenodo.16175377
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_int, check_names, check_positive
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._source import DatasetInfo
from deepstrf.datasets.audio._spikes_audio import AudioSourceDataset, make_front_end
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.download import RemoteFile

__doc__ = fill_doc(__doc__)
__all__ = ["FINE_AREAS", "MVOC_TEST_IDS", "TIMIT_TEST_IDS", "Downer2025Dataset"]

logger = logging.getLogger(__name__)

ZIP_NAME = "auditory_cortex_data.zip"
TOP = "auditory_cortex_data"
META_YML = "sessions_metadata.yml"
TIMIT_MAT = "stimuli/out_sentence_details_timit_all_loudness.mat"
PLAYLIST_MAT = "stimuli/SqMoPhys_MVOCStimcodes.mat"
VOC_WAV = "stimuli/MonkVocs_15Blocks.wav"
#: The published TIMIT test set (Ahmed et al. 2025): the sentences with >= 11 repeats in
#: some session.
TIMIT_TEST_IDS = (12, 13, 32, 43, 56, 163, 212, 218, 287, 308)
#: The published mVocs test set: the vocalisations played exactly 15 times in the play list.
MVOC_TEST_IDS = (7, 9, 12, 15, 24, 29, 30, 33, 44, 45, 48)
#: Session -> (area group, fine area), transcribed from the comments of sessions_metadata.yml.
FINE_AREAS: dict[str, tuple[str, str]] = {
    **{s: ("core", "A1") for s in (
        "180627", "180719", "180810", "180814", "180720", "180731", "190604", "190606",
        "190726", "190801", "191209", "200313", "191113", "191125", "191206", "200206",
        "200207", "180808")},
    **{s: ("core", "R") for s in ("180807", "200213", "180501")},
    "191219": ("non-primary", "CL"),
    **{s: ("non-primary", "ML") for s in ("180613", "190703", "200219", "191115", "200205")},
    **{s: ("non-primary", "AL") for s in ("180622", "191211", "180413", "180420")},
    **{s: ("non-primary", "CPB") for s in ("180724", "200318", "191121")},
    **{s: ("non-primary", "RPB") for s in (
        "180502", "180728", "190605", "191210", "180717", "180730", "200212")},
}
AREA_GROUPS = ("core", "non-primary")
FINE_AREA_NAMES = ("A1", "R", "ML", "AL", "CL", "CPB", "RPB")
ANIMALS = ("b", "c", "f")
_CHANNEL_FILE = re.compile(r"^([a-z])_(\d{6})_Ch(\d+)([A-Za-z][A-Za-z0-9]*)?_MUspk\.mat$")
_TRIALINFO_FILE = re.compile(r"^([a-z])_(\d{6})_TRIALINFO\.mat$")
_SESSION_ID = re.compile(r"^\d{6}$")
_QUIRKS = {
    "channel_trial_table_differs": "channel files hold a trial table that differs from their "
                                   "session's TRIALINFO; each is read with its own",
    "sessions_without_trialinfo": "sessions have no TRIALINFO file; their trial table is read "
                                  "from the first channel file",
    "trials_with_unknown_code": "trials carry a stimulus code with no stimulus in the release "
                                "and are left out",
    "unsorted_spike_times": "channel files hold spike times out of order (sorted on reading)",
    "sessions_not_in_metadata": "session folders are not listed in sessions_metadata.yml and "
                                "are left out",
}


# ---------------------------------------------------------------------------- the release
@dataclass(frozen=True)
class Release:
    """The release as the zip or an unpacked folder; picklable, opened by each worker.

    ``prefix`` is the members' leading folder inside the zip (``auditory_cortex_data/``).
    """

    path: str
    is_zip: bool
    prefix: str = ""

    @classmethod
    def locate(cls, raw_dir: Path) -> Release:
        for folder in (raw_dir / TOP, raw_dir):
            if (folder / META_YML).is_file():
                return cls(str(folder), False)
        archive = raw_dir / ZIP_NAME
        if not archive.is_file():
            raise RawDataError(f"Downer2025Dataset: neither {raw_dir / TOP}/{META_YML} nor "
                               f"{archive} exists.")
        try:
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise RawDataError(f"Downer2025Dataset: {archive} is not a readable zip file "
                               f"({err}); download it again.") from err
        for prefix in (f"{TOP}/", ""):
            if prefix + META_YML in names:
                return cls(str(archive), True, prefix)
        raise RawDataError(f"Downer2025Dataset: {archive} holds no {META_YML} (neither at its "
                           f"top nor under {TOP}/); it is not the Zenodo release.")

    def reader(self) -> _Reader:
        return _Reader(self)


class _Reader:
    """Open access to the release's members (one zip handle for many reads)."""

    def __init__(self, release: Release):
        self.release = release
        self._zip = zipfile.ZipFile(release.path) if release.is_zip else None
        if self._zip is not None:
            p = release.prefix
            self._infos = {i.filename[len(p):]: i for i in self._zip.infolist()
                           if i.filename.startswith(p) and not i.is_dir()}

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def where(self, name: str) -> str:
        r = self.release
        return f"{r.path}!{r.prefix}{name}" if r.is_zip else str(Path(r.path) / name)

    def names(self) -> list[str]:
        if self._zip is not None:
            return sorted(self._infos)
        root = Path(self.release.path)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return name in self._infos
        return (Path(self.release.path) / name).is_file()

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(self._infos[name])
            return (Path(self.release.path) / name).read_bytes()
        except KeyError:
            raise RawDataError(f"Downer2025Dataset: {self.where(name)} is missing.") from None
        except (OSError, zipfile.BadZipFile, EOFError) as err:
            raise RawDataError(f"Downer2025Dataset: cannot read {self.where(name)}: {err}.") \
                from err

    def open(self, name: str):
        if self._zip is not None:
            return self._zip.open(self._infos[name])
        return open(Path(self.release.path) / name, "rb")

    def fingerprint(self, names: list[str]) -> dict[str, Any]:
        """Of these members: CRC32s and sizes from the zip's directory, or raw_fingerprint."""
        if self._zip is None:
            from deepstrf.io.cache import raw_fingerprint

            return raw_fingerprint(Path(self.release.path), sorted(names),
                                   content_limit_bytes=1 << 20)
        h = hashlib.sha256(b"zip-members-v1\n")
        for name in sorted(names):
            info = self._infos[name]
            h.update(f"{name}\0{info.file_size}\0{info.CRC:08x}\n".encode())
        return {"n_files": len(names), "zip_crc_sha256": h.hexdigest()}


def _loadmat(data: bytes, where: str, names: list[str] | None = None) -> dict[str, Any]:
    """A member's MATLAB variables (any version, v7.3 included), structs as dicts."""
    from deepstrf.io.readers import read_mat

    return read_mat(data, names, name=where)


def _field(obj: Any, name: str, where: str) -> Any:
    if isinstance(obj, dict):
        if name not in obj:
            raise RawDataError(f"{where}: the struct has no field {name!r} (fields: "
                               f"{sorted(obj)}).")
        return obj[name]
    if not hasattr(obj, name):
        raise RawDataError(f"{where}: the struct has no field {name!r} (fields: "
                           f"{sorted(getattr(obj, '_fieldnames', []) or [])}).")
    return getattr(obj, name)


def _vector(value: Any, where: str, what: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).reshape(-1)
    if not np.isfinite(arr).all():
        raise RawDataError(f"{where}: {what} holds NaN or inf values.")
    return arr


def _trial_table(obj: Any, where: str) -> dict[str, np.ndarray]:
    stimon = _vector(_field(obj, "stimon", where), where, "trial.stimon")
    out = {"stimon": stimon}
    for key, name in (("timit", "timitStimcode"), ("mvoc", "mVocStimcode")):
        codes = _vector(_field(obj, name, where), where, f"trial.{name}")
        if codes.shape != stimon.shape or (codes != np.round(codes)).any() or (codes < 0).any():
            raise RawDataError(f"{where}: trial.{name} must hold one whole code >= 0 per trial "
                               f"({stimon.size} trials); got {codes.size} values.")
        out[key] = codes.astype(np.int64)
    return out


def read_channel(reader: _Reader, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(spike times in s, trial table)`` of one ``*_MUspk.mat`` file.

    Streams the member and skips ``spike.events`` (the waveforms) and every
    per-spike code unread (:mod:`deepstrf.io.matv5`); a file of another
    layout is read whole by scipy instead.
    """
    from deepstrf.io.matv5 import MatFormatError, read_struct_fields

    where = reader.where(name)
    try:
        with reader.open(name) as f:
            spike, trial = read_struct_fields(f, {"spike": ("spktimes",), "trial": None})
    except MatFormatError:
        mat = _loadmat(reader.read(name), where, ["spike", "trial"])
        spike, trial = mat["spike"], mat["trial"]
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise RawDataError(f"{where}: cannot read the file ({err}).") from err
    return (_vector(_field(spike, "spktimes", where), where, "spike.spktimes"),
            _trial_table(trial, where))


# ---------------------------------------------------------------------------- shard builds
def _build_session(task: dict[str, Any], n_jobs: int | None = 1):
    """One session's shard: every channel's responses to the stimuli of one class."""
    import torch

    from deepstrf.datasets._responses import SpikeTrains, render_responses
    from deepstrf.datasets._storage import ResponseStore
    from deepstrf.io.cache import BuiltData

    quirks: dict[str, int] = {}
    key, table, dt = task["class"], task["table"], task["dt_ms"]
    with task["release"].reader() as reader:
        session_trials = None
        if task["trialinfo"] is not None:
            where = reader.where(task["trialinfo"])
            mat = _loadmat(reader.read(task["trialinfo"]), where, ["trial"])
            session_trials = _trial_table(mat["trial"], where)
        else:
            quirks["sessions_without_trialinfo"] = 1
        channels = []
        for name in task["files"]:
            spk, own = read_channel(reader, name)
            if session_trials is None:
                session_trials = own
            elif not (own["stimon"].shape == session_trials["stimon"].shape
                      and np.allclose(own["stimon"], session_trials["stimon"], atol=1e-6)
                      and all(np.array_equal(own[k], session_trials[k])
                              for k in ("timit", "mvoc"))):
                quirks["channel_trial_table_differs"] = \
                    quirks.get("channel_trial_table_differs", 0) + 1
            else:
                own = session_trials
            if spk.size > 1 and (np.diff(spk) < 0).any():
                quirks["unsorted_spike_times"] = quirks.get("unsorted_spike_times", 0) + 1
                spk = np.sort(spk)
            channels.append((spk, own))
    by_code: dict[int, int] = {int(c): s for s, (c, _, _) in enumerate(table)}
    unknown = 0
    stim_meta, blocks = [], []
    trains_of: dict[int, list[list[np.ndarray]]] = {}
    for c, (spk, trials) in enumerate(channels):
        codes = trials[key]
        for r in np.flatnonzero(codes):
            s = by_code.get(int(codes[r]))
            if s is None:
                unknown += c == 0
                continue
            on, T = trials["stimon"][r], table[s][2]
            lo, hi = np.searchsorted(spk, [on, on + T * dt / 1000.0 + 1e-9])
            trains_of.setdefault(s, [[] for _ in channels])[c].append(
                (spk[lo:hi] - on) * 1000.0)
    if unknown:
        quirks["trials_with_unknown_code"] = unknown
    n_ch = len(channels)
    for s in sorted(trains_of):
        per_channel = trains_of[s]
        reps = [len(t) for t in per_channel]
        if min(reps) == 0:  # a channel with its own trial table may miss a stimulus
            keep = [c for c in range(n_ch) if reps[c]]
        else:
            keep = list(range(n_ch))
        trials = [t for c in keep for t in per_channel[c]]
        source = SpikeTrains.from_trials(trials)
        rows = render_responses([source], dt, table[s][2], onset_ms=0.0,
                                smooth_ms=task["smooth_ms"])
        blocks.append((keep, [reps[c] for c in keep], torch.from_numpy(rows)))
        stim_meta.append({"name": table[s][1], "n_bins": int(table[s][2])})
    store = ResponseStore.from_blocks(n_ch, blocks, owned=True)  # rendered here
    return BuiltData(stims=[], store=store, stim_meta=stim_meta, nrn_meta=task["nrn_meta"],
                     attributes={}, quirks=quirks)


def _build_stimuli(task: tuple, n_jobs: int | None = 1):
    """The stimulus shard: every stimulus of the class rendered (in parallel over stimuli)."""
    import torch

    from deepstrf.datasets._storage import ResponseStore
    from deepstrf.datasets.audio._spike_tasks import stim_task
    from deepstrf.io.cache import BuiltData
    from deepstrf.preprocessing.parallel import parallel_map

    make_sources, front, zscore = task
    sources = make_sources()
    front = front.prepare({s.declared_rate() for s in sources})
    results = parallel_map(stim_task, [(s, front, []) for s in sources], n_jobs=n_jobs,
                           desc="Downer2025Dataset: stimuli")
    stims, metas = [], []
    for source, (stim, _, facts) in zip(sources, results):
        if zscore and not front.return_waveform:
            mean = stim.mean(axis=-1, keepdims=True)
            std = stim.std(axis=-1, keepdims=True)
            stim = ((stim - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
        stims.append(torch.from_numpy(np.ascontiguousarray(stim)))
        meta = dict(source.meta)
        for k, v in facts.items():
            meta.setdefault(k, v)
        metas.append(meta)
    store = ResponseStore.from_blocks(0, [([], [], torch.zeros((0, int(m["n_bins"]))))
                                          for m in metas])
    return BuiltData(stims=stims, store=store, stim_meta=metas, nrn_meta=[],
                     attributes={"F": int(front.spectrogram.n_bands),
                                 "audio_fs": int(front.audio_fs) if front.return_waveform
                                 else None})


@dataclass(frozen=True)
class _StimSources:
    """Makes the stimulus sources (reads the sounds) only when the stimulus shard is built."""

    release: Release
    stimuli: str
    entries: tuple[dict[str, Any], ...]

    def __call__(self) -> list[Any]:
        from deepstrf.datasets.audio._stimuli import WaveformArrayStim

        with self.release.reader() as reader:
            if self.stimuli == "timit":
                # the samples read for the stimulus table, or (if dropped) read again
                samples = {e["name"]: e.get("_samples") for e in self.entries}
                if any(v is None for v in samples.values()):
                    samples = {facts["name"]: speech for speech, facts in _timit_sounds(reader)}
                return [WaveformArrayStim(float(e["sample_rate"]), meta=_public(e),
                                          samples=samples[e["name"]], n_bins=int(e["n_bins"]))
                        for e in self.entries]
            wave, rate = _voc_channel0(reader)
            out = []
            for e in self.entries:
                lo = int(round(e["onset_s"] * rate))
                hi = lo + int(round(e["duration_s"] * rate))
                out.append(WaveformArrayStim(float(rate), meta=_public(e),
                                             samples=np.ascontiguousarray(wave[lo:hi]),
                                             n_bins=int(e["n_bins"])))
            return out


def _public(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_") and k != "onset_s"}


def _timit_sounds(reader: _Reader) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """``(speech samples, facts)`` of every sentdet entry, befaft cut off."""
    where = reader.where(TIMIT_MAT)
    mat = _loadmat(reader.read(TIMIT_MAT), where, ["sentdet"])
    out = []
    for k, entry in enumerate(np.atleast_1d(mat["sentdet"])):
        at = f"{where}: sentdet({k + 1})"
        sound = _vector(_field(entry, "sound", at), at, "sound")
        rate = float(np.asarray(_field(entry, "soundf", at)).item())
        befaft = _vector(_field(entry, "befaft", at), at, "befaft")
        if befaft.size != 2 or (befaft < 0).any():
            raise RawDataError(f"{at}: befaft must be [before after] seconds; got {befaft}.")
        lo, hi = int(round(befaft[0] * rate)), sound.size - int(round(befaft[1] * rate))
        if hi <= lo:
            raise RawDataError(f"{at}: befaft {befaft.tolist()} s leaves no speech in its "
                               f"{sound.size / rate:g} s sound.")
        speech = sound[lo:hi].astype(np.float32)
        out.append((speech, {"name": str(_field(entry, "name", at)),
                             "stim_id": int(np.asarray(_field(entry, "sentId", at)).item()),
                             "sample_rate": rate, "n_samples": int(speech.size),
                             "duration_s": speech.size / rate,
                             "befaft_s": [float(befaft[0]), float(befaft[1])]}))
    return out


def _voc_channel0(reader: _Reader) -> tuple[np.ndarray, float]:
    """Channel 0 of the mVocs wav (channel 1 holds the trigger pulses), float in [-1, 1)."""
    import soundfile

    where = reader.where(VOC_WAV)
    try:
        with reader.open(VOC_WAV) as f:
            data, rate = soundfile.read(f, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise RawDataError(f"{where}: not a readable wav file ({err}).") from err
    if data.shape[1] != 2:
        raise RawDataError(f"{where}: expected 2 channels (sound, trigger pulses); got "
                           f"{data.shape[1]}.")
    return np.ascontiguousarray(data[:, 0]), float(rate)


# ---------------------------------------------------------------------------- the dataset
class Downer2025Dataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="downer2025", title="Downer 2025: squirrel monkey auditory cortex multi-unit",
        species="squirrel monkey", area="A1, R (core); ML, AL, CL, CPB, RPB (non-primary)",
        signal="multi-unit activity (threshold-crossing spike times)", n_neurons=1718,
        n_stims=499, repeats="1 (estimation), 11-22 (TIMIT test); varies (mVocs)",
        download_size="29 GB", access="open",
        citation="Ahmed B., Downer J.D., Malone B.J. & Makin J.G. (2025). Deep neural networks "
                 "explain spiking activity in auditory cortex. PLoS Comput Biol 21:e1013334.",
        doi="10.5281/zenodo.16175377", url="https://zenodo.org/records/16175377",
        papers=("Ahmed, Downer, Malone & Makin (2025) PLoS Comput Biol 21:e1013334",
                "Downer, Bigelow, Runfeldt & Malone (2021) J Neurophysiol, "
                "doi:10.1152/jn.00709.2020"))
    folder = "Downer2025"
    remote_files = (RemoteFile.zenodo(ZIP_NAME, record=16175377),)
    raw_markers = (ZIP_NAME, TOP, META_YML)
    cache_version = 1

    def __init__(self, path: Any = None, stimuli: str = "timit", dt_ms: float = 5.0,
                 n_bands: int | None = None, spec_zscore: bool = True, smooth: bool | float = True,
                 subset: str = "all", animals: Any = "all", areas: Any = None,
                 sessions: Any = None, audio_fs: float = 16000, fmax: float = 8000.0,
                 window_ms: float = 25.0, compression: str = "log",
                 return_waveform: bool = False, download: bool = False, *,
                 n_mels: int | None = None, n_jobs: int | None = 1, cache: str = "use",
                 progress: bool | None = None):
        from deepstrf.preprocessing.spectrogram import SpectrogramParams

        owner = type(self).__name__
        dt_ms = check_positive("dt_ms", dt_ms)
        if dt_ms > 10 and abs(dt_ms / 10 - round(dt_ms / 10)) > 1e-9:
            raise ValueError(f"{owner}: above 10 ms, dt_ms must be a multiple of 10 (10 ms "
                             f"filter-bank frames are averaged); got dt_ms={dt_ms:g}.")
        if n_mels is not None and n_bands is not None and n_mels != n_bands:
            raise ValueError(f"n_mels is another name of n_bands; give one (got n_bands="
                             f"{n_bands!r}, n_mels={n_mels!r}).")
        bands = check_int("n_bands", n_mels if n_mels is not None else
                          (80 if n_bands is None else n_bands), minimum=1)
        audio_fs = check_positive("audio_fs", audio_fs)
        spec = SpectrogramParams(dt_ms=dt_ms, kind="kaldi", n_bands=bands,
                                 window_ms=check_positive("window_ms", window_ms),
                                 f_min=0.0, f_max=check_positive("fmax", fmax),
                                 compression=check_choice("compression", compression,
                                                          ("log", "log1p", "cubic", "none")),
                                 sample_rate=audio_fs)
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, compression=compression,
                               window_ms=window_ms, return_waveform=return_waveform,
                               audio_fs=audio_fs, spectrogram=spec)
        if not isinstance(spec_zscore, bool):
            raise TypeError(f"spec_zscore must be True or False; got {spec_zscore!r}.")
        animals = check_names("animals", animals)
        if animals != "all" and set(animals) - set(ANIMALS):
            raise ValueError(f"animals must be 'all' or among {ANIMALS}; got {list(animals)}.")
        if areas is not None:
            areas = (areas,) if isinstance(areas, str) else tuple(areas)
            known = AREA_GROUPS + FINE_AREA_NAMES + ("primary",)
            bad = [a for a in areas if a not in known]
            if bad or not areas:
                raise ValueError(f"areas must be None or among {known}; got {list(areas)}.")
            areas = tuple(sorted({"core" if a == "primary" else a for a in areas}))
        if sessions is not None:
            sessions = (sessions,) if isinstance(sessions, (str, int)) else tuple(sessions)
            sessions = tuple(sorted({str(s) for s in sessions}))
            bad = [s for s in sessions if not _SESSION_ID.match(s)]
            if bad or not sessions:
                raise ValueError(f"sessions must be None or session ids of 6 digits (YYMMDD, "
                                 f"e.g. '180413'); got {list(sessions)}.")
        params = {"stimuli": check_choice("stimuli", stimuli, ("timit", "mvocs")),
                  "subset": check_choice("subset", subset, ("all", "estimation", "test")),
                  "animals": animals, "areas": areas, "sessions": sessions,
                  "spec_zscore": spec_zscore}
        self._path_arg = path
        self._cache_mode = cache
        self.shard_report = None
        self._init_source(path, params, front, download=download, n_jobs=n_jobs, cache=cache,
                          progress=progress,
                          expect_full=(params["stimuli"] == "timit" and subset == "all"
                                       and animals == "all" and areas is None
                                       and sessions is None))

    # ------------------------------------------------------------------ files
    def _needs(self, params: Mapping[str, Any]):
        raw = self.default_paths(self._path_arg).raw
        for marker in (TOP, META_YML):
            if (raw / marker).exists():
                return self.remote_files, (), (marker,), (marker if marker == TOP else ".",)
        return self.remote_files, (), (ZIP_NAME,), (ZIP_NAME,)

    # ------------------------------------------------------------------ build
    def _build(self, raw_dir: Path, params: dict[str, Any], n_jobs: int | None,
               progress: bool | None):
        from deepstrf.io.cache import read_manifest
        from deepstrf.io.shards import Shard, build_shards, compose_shards, join_shards

        owner = type(self).__name__
        clock = [time.perf_counter()]
        timings: dict[str, float] = {}

        def lap(name: str) -> None:
            clock.append(time.perf_counter())
            timings[name] = round(clock[-1] - clock[-2], 3)

        release = Release.locate(Path(raw_dir))
        front = self._front_end
        quirks: dict[str, int] = {}
        with release.reader() as reader:
            names = reader.names()
            meta = self._metadata(reader)
            chosen = self._sessions(names, meta, params, quirks, reader)
            entries, stim_fp = self._stim_table(reader, params["stimuli"], front.dt_ms)
            session_fp = {sid: reader.fingerprint(files + ([ti] if ti else []))
                          for sid, (files, ti, _) in chosen.items()}
        lap("metadata_and_stimulus_table")
        key = "timit" if params["stimuli"] == "timit" else "mvoc"
        table = [(e["stim_id"], e["name"], int(e["n_bins"])) for e in entries]
        stim_shard = Shard(
            name=f"stimuli {params['stimuli']}",
            params={"stimuli": params["stimuli"], "front_end": front.to_dict(),
                    "spec_zscore": params["spec_zscore"],
                    "entries": [_public(e) for e in entries]},
            fingerprint=stim_fp,
            task=(_StimSources(release, params["stimuli"], tuple(entries)), front,
                  params["spec_zscore"]))
        from deepstrf.preprocessing.spikes import SMOOTHING_ARITHMETIC

        session_shards = []
        for sid, (files, trialinfo, nrn_meta) in chosen.items():
            session_shards.append(Shard(
                name=f"session {sid} {params['stimuli']}",
                params={"stimuli": params["stimuli"], "dt_ms": front.dt_ms,
                        "smooth_ms": front.smooth_ms, "table": table, "nrn_meta": nrn_meta,
                        **({"smoothing": SMOOTHING_ARITHMETIC} if front.smooth_ms else {})},
                fingerprint=session_fp[sid],
                task={"release": release, "class": key, "table": table, "dt_ms": front.dt_ms,
                      "smooth_ms": front.smooth_ms, "files": files, "trialinfo": trialinfo,
                      "nrn_meta": nrn_meta}))
        mode = self._cache_mode
        processed = self.default_paths(self._path_arg).processed
        if mode != "off":
            processed = self._writable_processed(processed, self.folder)
        common = {"owner": owner, "cache_version": self.cache_version, "mode": mode}
        (stim_data,), stim_report = build_shards(processed, [stim_shard], _build_stimuli,
                                                 n_jobs=n_jobs, progress=progress,
                                                 desc="stimuli", **common)
        lap("stimulus_shard")
        parts, report = build_shards(processed, session_shards, _build_session, n_jobs=n_jobs,
                                     progress=progress, desc="sessions", **common)
        lap("session_shards")
        subset = params["subset"]
        keep = None if subset == "all" else (lambda m: m["split"] == subset)
        keys = [*stim_report.keys, *report.keys]
        if mode != "off" and all(read_manifest(processed / k) is not None for k in keys):
            # composed at load time: the entry records which shards it joins, no copy
            data = join_shards(stim_data, parts, keep=keep, owner=owner)
            data.composition = {"stimuli": stim_report.keys[0], "parts": list(report.keys),
                                "stim_names": [m["name"] for m in data.stim_meta]}
        else:  # nothing cached (cache='off', or a shard could not be written): a copy
            data = compose_shards(stim_data, parts, keep=keep, owner=owner,
                                  scratch_dir=processed if mode != "off" else None)
        lap("composition")
        for kind, count in quirks.items():
            data.quirks[kind] = data.quirks.get(kind, 0) + count
        for kind, count in sorted(data.quirks.items()):
            warnings.warn(f"{owner}: {count} {_QUIRKS.get(kind, kind)}.", DataQuirkWarning,
                          stacklevel=4)
        if not data.nrn_meta:
            raise RawDataError(f"{owner}: no responses match the selection "
                               f"{ {k: v for k, v in params.items() if k != 'front_end'} } in "
                               f"{raw_dir}. Widen the selection or check the folder.")
        self.shard_report = report
        logger.info("%s: build phases %s", owner, timings)
        data.manifest_extra = {"timings_s": timings, "shards": [
            {"name": s.name, "key": k, "reused": s.name in r.reused}
            for shards, r in ((([stim_shard]), stim_report), (session_shards, report))
            for s, k in zip(shards, r.keys)]}
        return data

    def _metadata(self, reader: _Reader) -> dict[str, Any]:
        import yaml

        where = reader.where(META_YML)
        try:
            doc = yaml.safe_load(reader.read(META_YML).decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RawDataError(f"{where}: not readable YAML ({err}).") from err
        needed = ("c_RH_sessions", "b_RH_sessions", "f_RH_sessions", "c_LH_sessions",
                  "area_wise_sessions", "bad_sessions")
        if not isinstance(doc, dict) or any(k not in doc for k in needed):
            raise RawDataError(f"{where}: expected the keys {list(needed)}; got "
                               f"{sorted(doc) if isinstance(doc, dict) else type(doc).__name__}.")
        out: dict[str, dict[str, Any]] = {}
        for k in needed[:4]:
            for sid in doc[k] or []:
                out.setdefault(str(sid), {})
                out[str(sid)].update({"animal_id": k[0], "hemisphere": k[2:4]})
        groups = doc["area_wise_sessions"] or {}
        for group in AREA_GROUPS:
            for sid in groups.get(group) or []:
                out.setdefault(str(sid), {})["area_group"] = group
        coords = doc.get("session_coordinates") or {}
        for sid, xy in coords.items():
            xy = list(xy) if isinstance(xy, (list, tuple)) else [None, None]
            out.setdefault(str(sid), {})["coord"] = (xy + [None, None])[:2]
        return {"sessions": out, "bad": {str(s) for s in doc["bad_sessions"] or []}}

    def _sessions(self, names: list[str], meta: dict[str, Any], params: Mapping[str, Any],
                  quirks: dict[str, int], reader: _Reader) -> dict[str, tuple]:
        """Chosen sessions -> (channel files, TRIALINFO or None, nrn_meta), sorted by id."""
        found: dict[str, dict[str, Any]] = {}
        for name in names:
            parts = name.split("/")
            if len(parts) != 3 or parts[0] != "sessions":
                continue
            sid, fname = parts[1], parts[2]
            entry = found.setdefault(sid, {"files": [], "trialinfo": None})
            m = _CHANNEL_FILE.match(fname)
            if m and m.group(2) == sid:
                entry["files"].append((int(m.group(3)), m.group(4) or "", m.group(1), name))
            elif _TRIALINFO_FILE.match(fname):
                entry["trialinfo"] = name
        known = meta["sessions"]
        if params["sessions"] is not None:
            absent = [s for s in params["sessions"] if s not in found]
            if absent:
                raise ValueError(f"{type(self).__name__}: sessions {absent} are not in the "
                                 f"release; it has {sorted(found)}.")
        unlisted = [s for s in found if s not in known and s not in meta["bad"]]
        if unlisted:
            quirks["sessions_not_in_metadata"] = len(unlisted)
        chosen = {}
        for sid in sorted(found):
            if sid in meta["bad"] or sid not in known:
                continue
            if params["sessions"] is not None and sid not in params["sessions"]:
                continue
            info = known[sid]
            group, area = FINE_AREAS.get(sid, (info.get("area_group"), None))
            group = info.get("area_group", group)
            if params["animals"] != "all" and info.get("animal_id") not in params["animals"]:
                continue
            if params["areas"] is not None and group not in params["areas"] \
                    and area not in params["areas"]:
                continue
            files = sorted(found[sid]["files"])
            if not files:
                continue
            coord = info.get("coord", [None, None])
            nrn_meta = [{"cell_id": f"{animal}_{sid}_Ch{number}{suffix}", "session_id": sid,
                         "animal_id": animal, "hemisphere": info.get("hemisphere"),
                         "area_group": group, "area": area, "channel": number,
                         "channel_suffix": suffix or None, "n_channels_in_session": len(files),
                         "coord_x": coord[0], "coord_y": coord[1],
                         "recording_type": "multi-unit"}
                        for number, suffix, animal, _ in files]
            chosen[sid] = ([f[3] for f in files], found[sid]["trialinfo"], nrn_meta)
        return chosen

    def _stim_table(self, reader: _Reader, stimuli: str, dt_ms: float):
        """Every stimulus of the class (facts, ``n_bins``) and the fingerprint of its files."""
        if stimuli == "timit":
            entries = []
            for speech, facts in _timit_sounds(reader):
                sid = facts["stim_id"]
                test = sid in TIMIT_TEST_IDS
                entries.append({**facts, "type": "timit", "split": "test" if test else
                                "estimation", "n_reps_canonical": 11 if test else 1,
                                "n_bins": max(1, int(round(facts["duration_s"] * 1000 / dt_ms))),
                                "_samples": speech})
            return entries, reader.fingerprint([TIMIT_MAT])
        import soundfile

        where = reader.where(PLAYLIST_MAT)
        mat = _loadmat(reader.read(PLAYLIST_MAT), where)
        for k in ("mVocsStimCodes", "mVocsStimOnTimes"):
            if k not in mat:
                raise RawDataError(f"{where}: no {k!r} variable.")
        codes = _vector(mat["mVocsStimCodes"], where, "mVocsStimCodes").astype(np.int64)
        onsets = _vector(mat["mVocsStimOnTimes"], where, "mVocsStimOnTimes")
        if codes.shape != onsets.shape or (np.diff(onsets) <= 0).any():
            raise RawDataError(f"{where}: mVocsStimCodes and mVocsStimOnTimes must be equally "
                               f"long ({codes.size} vs {onsets.size}) with increasing onsets.")
        try:
            with reader.open(VOC_WAV) as f:
                info = soundfile.info(f)
        except (RuntimeError, soundfile.LibsndfileError, KeyError) as err:
            raise RawDataError(f"{reader.where(VOC_WAV)}: not a readable wav ({err}).") \
                from err
        total = info.frames / info.samplerate
        if onsets[-1] >= total:
            raise RawDataError(f"{where}: the last onset {onsets[-1]:g} s is past the end of "
                               f"{VOC_WAV} ({total:g} s).")
        slots = np.append(np.diff(onsets), total - onsets[-1])
        entries = []
        for vid in sorted(set(codes.tolist())):
            mine = np.flatnonzero(codes == vid)
            length = float(slots[mine].min())
            test = vid in MVOC_TEST_IDS
            n = int(round(length * info.samplerate))
            entries.append({"name": f"mvoc_{vid:03d}", "stim_id": int(vid), "type": "mvoc",
                            "duration_s": n / info.samplerate, "n_samples": n,
                            "sample_rate": float(info.samplerate),
                            "split": "test" if test else "estimation",
                            "n_reps_canonical": 15 if test else 1,
                            "n_reps_in_wav": int(mine.size),
                            "onset_s": float(onsets[mine[0]]),
                            "n_bins": max(1, int(round(length * 1000 / dt_ms)))})
        return entries, reader.fingerprint([PLAYLIST_MAT, VOC_WAV])
