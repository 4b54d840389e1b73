"""Alice EEG: human scalp EEG to chapter 1 of *Alice in Wonderland* (Bhattasali et al. 2020).

=========  ===========================================================
species    human (33 adults), passive listening
area       scalp EEG, 61 channels (easycap M10 acti61, names '1'..'61')
signal     continuous EEG, volts (ICA-cleaned, referenced to 25 and 29)
N          61 channels per subject: 2013 in ``treat_subjects_as='neurons'``
           (every subject's channels), 61 in ``'repeats'``
S          12 segments of chapter 1 (about 744 s, 2129 words)
R          1 (``'neurons'``) or one row per subject (``'repeats'``)
access     open, UMD DRUM (Brodbeck et al. 2023 restructure): ``stimuli.zip``
           and ``eeg.0.zip`` .. ``eeg.2.zip``, about 2.5 GiB with the stimuli
=========  ===========================================================

Preprocessing
-------------
* Responses: each subject's ``Sxx_alice-raw.fif`` through
  :mod:`deepstrf.preprocessing.eeg` (MNE, the ``eeg`` extra), one subject
  per parallel task: EEG channels only (``VEOG``, ``Aux5``, ``AUD`` left
  out), band-pass ``hp_freq_hz``/``lp_freq_hz`` (MNE's zero-phase FIR; the
  files are high-passed at only 0.1 Hz), then ``1000 / dt_ms`` Hz by MNE's FFT
  resampling on an exact grid (``method='resample'``) or by block means of
  the 500 Hz samples (``method='pool'``); each segment cut at its annotation
  onset (``raw.first_samp`` accounted for, which deepSTRF 0.1.0 ignores) for
  the segment's spectrogram length. Bad channels (``info['bads']``) and
  ``BAD_*`` spans are NaN, and so are the bins past the end of a recording.
  Values stay in volts (``nrn_meta['unit'] == 'V'``); no smoothing.
* Channels are matched by name, never by position (the files store ``'29'``
  last), and listed in numeric order.
* Segments: ``stimuli/1.wav`` .. ``12.wav`` (44.1 kHz, checked); ``T`` of a
  segment is ``ceil(duration / dt)``, the spectrogram's frames, and every
  subject is cut to it.
* Subjects S26, S34, S35 and S36 have no segment 1 (their files carry the
  11 annotations ``'2'`` to ``'12'``): in ``'neurons'`` mode their channels are
  sentinels on segment 1, in ``'repeats'`` mode their rows are NaN. Each
  missing segment is reported (``DataQuirkWarning``) and counted in the
  build record (``missing_segment``). deepSTRF 0.1.0 raises on them.
* ``'repeats'``: neuron ``n`` is channel ``n`` of every subject; repeat ``r``
  is subject ``stim_meta[s]['subjects'][r]`` (the same order for every
  segment), NaN where that subject lacks the segment or has the channel bad.
* Both layouts are read: ``eeg/Sxx/`` (what the official downloader makes of
  the four zips, and what ``download=True`` makes) and ``eeg.N/eeg/Sxx/``
  (one folder per zip, deepSTRF's).
* Stimuli: the shared audio front ends (a mel spectrogram of ``n_bands``
  bands by default), or the waveform at ``audio_fs``.
* Words: ``stimuli/AliceChapterOne-EEG.csv`` (2129 words) is attached to
  each segment as ``stim_meta[s]['words']``, column -> list in file order
  (``Word``, ``onset``/``offset`` in s from the segment's audio onset,
  ``LogFreq``, ``NGRAM``, ``RNN``, ``CFG``, ...; the file's ``NaN`` as None,
  so the table is plain JSON) plus ``bin``, the response bin of each onset:
  ``floor(onset * 1000 / dt_ms)`` with the edge snapping of
  :func:`~deepstrf.preprocessing.spikes.bin_spike_times` (bin ``k`` covers
  ``[k*dt, (k+1)*dt)``, like the EEG bins and spectrogram frames). A word
  whose onset falls outside ``[0, T)`` bins, or a missing table (``words``
  None), is reported and counted (``word_outside_segment``,
  ``missing_word_table``). :func:`render_word_feature` turns any numeric
  column into an impulse predictor on the response grid.

Parameters
----------
%(path)s
subjects : None, str or sequence of str
    Subjects to load (``'S01'``, ...); None: every subject in the folder.
%(dt_ms)s
    Default 10.0. With ``method='pool'``, ``dt_ms * 0.5`` must be whole
    (a multiple of 2 ms).
%(n_bands)s
    Default 8.
treat_subjects_as : {'neurons', 'repeats'}, default 'neurons'
    Every subject's channels as separate neurons, or subjects on the repeat
    axis of 61 channel neurons.
hp_freq_hz : float or None, default 1.0
    High-pass cut-off, Hz; None for none.
lp_freq_hz : float or None, default None
    Low-pass cut-off, Hz; None for none beyond resampling's anti-aliasing.
window_ms : float, default 25.0
    Analysis window of the spectrogram, ms.
%(compression)s
    Default 'log1p'.
%(download)s
%(return_waveform)s
audio_fs : float, default 44100
    Sample rate of waveform stimuli (``audio_fs * dt_ms / 1000`` whole).
method : {'resample', 'pool'}, default 'resample'
    How the 500 Hz EEG reaches ``dt_ms`` (see Preprocessing).
reference : None, 'average' or sequence of str, default None
    None keeps the files' reference (25 and 29); see
    :class:`~deepstrf.preprocessing.eeg.EEGParams`.
%(spectrogram)s
%(n_jobs)s
    One task per subject.
%(cache)s
%(progress)s
verbose : bool, str or None
    MNE's log level while it runs (quiet by default).

References
----------
Bhattasali S., Brennan J., Luh W.-M., Franzluebbers B. & Hale J. (2020). The
Alice Datasets: fMRI & EEG observations of natural language comprehension.
Proceedings of LREC 2020, 120-125.
Brennan J.R., Hale J.T. & Bolhuis J.J. (2019). Hierarchical structure guides
rapid linguistic predictions during naturalistic listening. PLoS ONE
14:e0207741. doi:10.1371/journal.pone.0207741
Brodbeck C., Das P., Gillis M., Kulasingham J.P., Bhattasali S., Gaston P.,
Resnik P. & Simon J.Z. (2023). Eelbrain, a Python toolkit for time-continuous
analysis with temporal response functions. eLife 12:e85012.
doi:10.7554/eLife.85012
Data: doi:10.13016/pulf-lndn
"""

from __future__ import annotations

import csv
import math
import re
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
    ContinuousTrace,
    Recording,
    WavStim,
    make_front_end,
)
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.io.download import RemoteFile

__doc__ = fill_doc(__doc__)
__all__ = ["AliceEEGDataset", "SEGMENTS", "SUBJECTS", "read_word_table", "render_word_feature",
           "segment_bins", "word_bins"]

#: The 12 segments of chapter 1.
SEGMENTS = tuple(range(1, 13))
#: The 33 subjects of the release.
SUBJECTS = ("S01", "S03", "S04", "S05", "S06", "S08", "S10", "S11", "S12", "S13", "S14",
            "S15", "S16", "S17", "S18", "S19", "S20", "S21", "S22", "S25", "S26", "S34",
            "S35", "S36", "S37", "S38", "S39", "S40", "S41", "S42", "S44", "S45", "S48")
AUDIO_FS = 44100
WORD_TABLE = "AliceChapterOne-EEG.csv"
MODES = ("neurons", "repeats")
_SUBJECT = re.compile(r"S\d{2}")
_SHARD = re.compile(r"eeg\.\d+")
_DRUM = "https://drum.lib.umd.edu/bitstreams/{}/download"


def _drum(name: str, uuid: str, md5: str) -> RemoteFile:
    return RemoteFile(name, url=_DRUM.format(uuid), md5=md5)


def segment_bins(wav: Path, dt_ms: float) -> int:
    """Bins of ``dt_ms`` a segment's wav covers (its spectrogram frames), from the header.

    Raises :class:`~deepstrf.errors.RawDataError` naming the file when it is
    not a 44.1 kHz sound file, :class:`~deepstrf.errors.MissingRawDataError`
    when it is absent.
    """
    import soundfile

    from deepstrf.preprocessing.spikes import n_bins_for_duration

    wav = Path(wav)
    if not wav.is_file():
        raise MissingRawDataError(f"{wav}: no such file; the Alice release has the 12 "
                                  "segment sounds stimuli/1.wav .. 12.wav (in stimuli.zip).")
    try:
        head = soundfile.info(str(wav))
    except Exception as err:  # soundfile raises its own error type for a bad header
        raise RawDataError(f"{wav}: not a readable sound file ({err}); expected a 44.1 kHz "
                           "mono wav of the Alice release.") from err
    if head.samplerate != AUDIO_FS:
        raise RawDataError(f"{wav}: sample rate {head.samplerate} Hz; the Alice wavs are "
                           f"{AUDIO_FS} Hz. The file may be another version (re-download "
                           "stimuli.zip).")
    if head.frames < 1:
        raise RawDataError(f"{wav}: holds no samples.")
    return n_bins_for_duration(int(head.frames), float(head.samplerate), dt_ms)


def read_word_table(path: Path) -> dict[int, dict[str, list[Any]]]:
    """``AliceChapterOne-EEG.csv``, per segment: column -> values in file order.

    Numeric columns (``onset``, ``offset``, ``LogFreq``, ``NGRAM``, ...;
    ``NaN`` as NaN) are floats, ``Word`` stays text. Onsets are seconds from
    the segment's audio onset.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingRawDataError(f"{path}: no such file (the word table of stimuli.zip).")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        need = {"Word", "Segment", "onset", "offset"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise RawDataError(f"{path}: not the Alice word table; its header must hold "
                               f"{sorted(need)}; got {reader.fieldnames}.")
        out: dict[int, dict[str, list[Any]]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                segment = int(row["Segment"])
                values = {k: (v if k == "Word" else float(v)) for k, v in row.items()
                          if k is not None}
            except (TypeError, ValueError) as err:
                raise RawDataError(f"{path}, line {line}: {err}; expected numbers in every "
                                   "column but Word.") from err
            table = out.setdefault(segment, {k: [] for k in values})
            for key, value in values.items():
                table[key].append(value)
    return out


def word_bins(onsets_s: Any, dt_ms: float) -> np.ndarray:
    """Response bin of each word onset (s from the segment onset): ``floor(onset * 1000 / dt_ms)``.

    The edge rule of :func:`~deepstrf.preprocessing.spikes.bin_spike_times`:
    bin ``k`` covers ``[k*dt, (k+1)*dt)`` and an onset within float rounding
    of an edge (``0.03`` s at 10 ms) goes to the bin starting there.
    Returns int64 bins (negative or >= T when outside the segment's grid).
    """
    t_ms = np.asarray(onsets_s, dtype=np.float64) * 1000.0
    tol = (16.0 * np.finfo(np.float64).eps) * (np.abs(t_ms) + dt_ms) / dt_ms
    return np.floor(t_ms / dt_ms + tol).astype(np.int64)


def _segment_words(table: Mapping[str, list[Any]], dt_ms: float) -> dict[str, list[Any]]:
    """One segment of :func:`read_word_table` as JSON-able ``stim_meta['words']``."""
    out = {k: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
           for k, values in table.items() if k != "Segment"}
    out["bin"] = [int(b) for b in word_bins(table["onset"], dt_ms)]
    return out


def render_word_feature(ds: Any, column: str | None = None, *,
                        missing: float | None = None) -> list[np.ndarray]:
    """A word-table column as a time series on the response grid, per stimulus.

    Parameters
    ----------
    ds : AliceEEGDataset or sequence of dict
        The dataset, or stimulus metadata dicts (e.g. a
        :func:`~deepstrf.utils.data.neural_collate` batch's ``stim_meta``).
    column : str or None
        A numeric column of ``stim_meta[s]['words']`` (``'NGRAM'``,
        ``'LogFreq'``, ...); None: 1 per word (a word-onset predictor).
    missing : float or None
        Value for a word whose entry is missing (the file's ``NaN``, e.g. in
        ``IsLexical``); None: such a word raises.

    Returns
    -------
    list of numpy.ndarray
        One ``(1, T_s)`` float32 array per stimulus (per dict): at each word's onset bin
        (``stim_meta[s]['words']['bin']``) the feature value, words sharing a
        bin summed, zero elsewhere. Words outside ``[0, T_s)`` (reported at
        build time) are left out.
    """
    out = []
    for s, meta in enumerate(getattr(ds, "stim_meta", ds)):
        words = meta.get("words")
        if words is None:
            raise ValueError(f"stimulus {s} ({meta.get('name')}) has no word table (the "
                             "build found no stimuli/AliceChapterOne-EEG.csv).")
        if column is not None and column not in words:
            raise KeyError(f"no column {column!r} in the word table; it has "
                           f"{sorted(k for k in words if k not in ('Word', 'bin'))}.")
        values = [1.0] * len(words["bin"]) if column is None else words[column]
        if missing is None and any(v is None for v in values):
            i = next(i for i, v in enumerate(values) if v is None)
            raise ValueError(f"{column!r} is missing for word {i} ({words['Word'][i]!r}) of "
                             f"{meta.get('name')}; pass missing=0.0 (or another value).")
        try:
            x = np.array([missing if v is None else v for v in values], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"column {column!r} is not numeric.") from err
        T = int(meta["n_bins"])
        bins = np.asarray(words["bin"], dtype=np.int64)
        keep = (bins >= 0) & (bins < T)
        row = np.zeros(T, dtype=np.float64)
        np.add.at(row, bins[keep], x[keep])
        out.append(row.astype(np.float32)[None])
    return out


def _check_subjects(subjects: Any) -> Any:
    if subjects is None:
        return "all"
    names = (subjects,) if isinstance(subjects, str) else subjects
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"subjects must be None, a subject name such as 'S01' or a sequence "
                        f"of them; got {subjects!r}.") from None
    if not names or not all(isinstance(s, str) and _SUBJECT.fullmatch(s) for s in names):
        raise ValueError(f"subjects must be names like 'S01' (S and two digits); got "
                         f"{subjects!r}.")
    return sorted(set(names))


def _channel_key(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)


def _layout_dirs(raw_dir: Path) -> list[str]:
    """The EEG folders present: ``eeg`` and/or ``eeg.N`` (sorted)."""
    if not raw_dir.is_dir():
        return []
    shards = sorted(p.name for p in raw_dir.iterdir() if p.is_dir() and _SHARD.fullmatch(p.name))
    return (["eeg"] if (raw_dir / "eeg").is_dir() else []) + shards


def find_subject_files(raw_dir: Path) -> dict[str, Path]:
    """Subject -> its ``Sxx_alice-raw.fif`` in either layout (a subject found twice raises)."""
    found: dict[str, Path] = {}
    for folder in _layout_dirs(raw_dir):
        base = raw_dir / folder if folder == "eeg" else raw_dir / folder / "eeg"
        if not base.is_dir():
            continue
        for sub in sorted(base.iterdir()):
            fif = sub / f"{sub.name}_alice-raw.fif"
            if not (sub.is_dir() and _SUBJECT.fullmatch(sub.name) and fif.is_file()):
                continue
            if sub.name in found:
                raise RawDataError(f"subject {sub.name} is in {found[sub.name]} and in {fif}; "
                                   "keep one copy (use one layout: eeg/Sxx/ or "
                                   "eeg.N/eeg/Sxx/).")
            found[sub.name] = fif
    return found


class AliceEEGDataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="alice_eeg", title="Alice EEG: human scalp EEG to Alice in Wonderland, chapter 1",
        species="human", area="scalp EEG (61 channels)", signal="continuous EEG (volts)",
        n_neurons=33 * 61, n_stims=12, repeats="1 (neurons) or 33 subjects (repeats)",
        download_size="2.5 GiB", access="open",
        citation="Brodbeck C. et al. (2023). Eelbrain, a Python toolkit for time-continuous "
                 "analysis with temporal response functions. eLife 12:e85012; data from "
                 "Bhattasali S. et al. (2020), The Alice Datasets, LREC 2020.",
        doi="10.13016/pulf-lndn", url="https://drum.lib.umd.edu/handle/1903/27591",
        papers=("Bhattasali et al. (2020) LREC 2020:120-125",
                "Brennan, Hale & Bolhuis (2019) PLoS ONE 14:e0207741",
                "Brodbeck et al. (2023) eLife 12:e85012"))
    folder = "AliceEEG"
    remote_files = (
        _drum("stimuli.zip", "df241468-26ee-42df-b27f-3f438cfc5a3f",
              "4336a47bef7d3e63239c40c0623dc186"),
        _drum("eeg.0.zip", "264ca110-f7f4-4fd5-9b00-896102b841ad",
              "d63d96a6e5080578dbf71320ddbec0a0"),
        _drum("eeg.1.zip", "bef532d8-cf74-4b9d-9b4c-5c1f81610ce9",
              "bdc65f168db4c0f19bb0fed20eae129b"),
        _drum("eeg.2.zip", "25fc51ae-d1fa-4094-85af-65dd4cf30251",
              "3fb33ca1c4640c863a71bddd45006815"))
    # All four unpack into the raw folder (stimuli/ and eeg/Sxx/), as Eelbrain's downloader
    # does. Which subjects each eeg.N.zip holds is not published, so they declare no
    # 'provides': they are unpacked whenever the EEG folder is missing.
    archives = (ArchiveSpec("stimuli.zip", provides=("stimuli",)),
                ArchiveSpec("eeg.0.zip"), ArchiveSpec("eeg.1.zip"), ArchiveSpec("eeg.2.zip"))
    raw_markers = ("stimuli", "eeg")
    cache_version = 2  # 2: stim_meta['words']

    def __init__(self, path: Any = None, subjects: Any = None, dt_ms: float = 10.0,
                 n_bands: int = 8, treat_subjects_as: str = "neurons",
                 hp_freq_hz: float | None = 1.0, lp_freq_hz: float | None = None,
                 window_ms: float = 25.0, compression: str = "log1p", download: bool = False,
                 return_waveform: bool = False, audio_fs: float = 44100, *,
                 method: str = "resample", reference: Any = None, spectrogram: Any = None,
                 n_jobs: int | None = 1, cache: str = "use", progress: bool | None = None,
                 verbose: bool | str | None = None):
        from deepstrf.preprocessing.eeg import EEGParams

        front = make_front_end(dt_ms=dt_ms, smooth=False, n_bands=n_bands,
                               compression=compression, window_ms=window_ms,
                               return_waveform=return_waveform, audio_fs=audio_fs,
                               spectrogram=spectrogram)
        eeg = EEGParams(dt_ms=front.dt_ms, hp_freq_hz=hp_freq_hz, lp_freq_hz=lp_freq_hz,
                        reference=reference, method=method, verbose=verbose)
        if method == "pool":
            hop = 500.0 * front.dt_ms / 1000.0
            if abs(hop - round(hop)) > 1e-9:
                raise ValueError(f"AliceEEGDataset: method='pool' averages whole 500 Hz "
                                 f"samples, so dt_ms must be a multiple of 2 ms; got "
                                 f"dt_ms={dt_ms!r}. Use method='resample' for this dt_ms.")
        for name, value in (("hp_freq_hz", eeg.hp_freq_hz), ("lp_freq_hz", eeg.lp_freq_hz)):
            if value is not None and value >= 250.0:
                raise ValueError(f"AliceEEGDataset: {name}={value:g} Hz is not below 250 Hz, "
                                 "the Nyquist rate of the 500 Hz recordings.")
        self._eeg_params = eeg
        params = {"subjects": _check_subjects(subjects),
                  "treat_subjects_as": check_choice("treat_subjects_as", treat_subjects_as,
                                                    MODES),
                  "eeg": {"dt_ms": eeg.dt_ms, "hp_freq_hz": eeg.hp_freq_hz,
                          "lp_freq_hz": eeg.lp_freq_hz,
                          "reference": list(eeg.reference)
                          if isinstance(eeg.reference, tuple) else eeg.reference,
                          "method": eeg.method},
                  "mne_version": _mne_version()}
        self._raw_hint = self.default_paths(path).raw
        full = params["subjects"] == "all" and params["treat_subjects_as"] == "neurons"
        self._init_source(path, params, front, download=download, n_jobs=n_jobs, cache=cache,
                          progress=progress, expect_full=full)

    def _needs(self, params: Mapping[str, Any]) -> tuple[Any, Any, tuple[str, ...],
                                                        tuple[str, ...]]:
        present = _layout_dirs(self._raw_hint)
        eeg_dirs = tuple(present) if present else ("eeg",)
        return (self.remote_files, self.archives, ("stimuli",) + eeg_dirs,
                ("stimuli",) + eeg_dirs)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.preprocessing.eeg import EEGSubjectTask, preprocess_subjects

        owner = type(self).__name__
        dt_ms = self._front_end.dt_ms
        wavs = {s: raw_dir / "stimuli" / f"{s}.wav" for s in SEGMENTS}
        bins = {s: segment_bins(wavs[s], dt_ms) for s in SEGMENTS}
        files = find_subject_files(raw_dir)
        if not files:
            raise MissingRawDataError(f"{owner}: no Sxx/Sxx_alice-raw.fif under {raw_dir}/eeg "
                                      "or eeg.N/eeg; unpack eeg.0.zip .. eeg.2.zip there.")
        if params["subjects"] == "all":
            chosen = sorted(files)
        else:
            absent = [s for s in params["subjects"] if s not in files]
            if absent:
                raise ValueError(f"{owner}: subjects {absent} are not in {raw_dir}; found "
                                 f"{sorted(files)}.")
            chosen = list(params["subjects"])
        quirks: dict[str, int] = {}
        tasks = [EEGSubjectTask(files[s], {str(k): bins[k] for k in SEGMENTS},
                                self._eeg_params, subject=s) for s in chosen]
        results = preprocess_subjects(tasks, n_jobs=n_jobs, progress=progress, counts=quirks)
        stims = [WavStim(wavs[s], {"name": f"{s}.wav", "segment": s, "type": "alice_chapter1"},
                         expected_sr=AUDIO_FS, n_bins=bins[s]) for s in SEGMENTS]
        sources = [{"subject": r.subject, "path": str(Path(r.path).relative_to(raw_dir)),
                    "first_samp": r.first_samp, "n_samples": r.n_samples_in,
                    "sfreq": r.sfreq_in, "bads": list(r.bads),
                    "missing_segments": [int(m) for m in r.missing]} for r in results]
        self._attach_words(raw_dir / "stimuli" / WORD_TABLE, stims, bins, dt_ms, quirks)
        rate = self._eeg_params.sfreq_out
        neurons: list[dict[str, Any]] = []
        trials: dict[tuple[int, int], ContinuousTrace] = {}
        if params["treat_subjects_as"] == "neurons":
            for r in results:
                rows = {ch: i for i, ch in enumerate(r.ch_names)}
                for ch in sorted(r.ch_names, key=_channel_key):
                    n = len(neurons)
                    neurons.append(_channel_meta(ch, r.positions.get(ch), subject=r.subject,
                                                 bad=ch in r.bads))
                    for s in SEGMENTS:
                        block = r.segments.get(str(s))
                        if block is not None:
                            i = rows[ch]
                            trials[(s - 1, n)] = ContinuousTrace(block[i:i + 1], rate)
        else:
            names = sorted({ch for r in results for ch in r.ch_names}, key=_channel_key)
            for ch in names:
                where = next(r for r in results if ch in r.ch_names)
                meta = _channel_meta(ch, where.positions.get(ch), subject=None,
                                     bad=all(ch in r.bads or ch not in r.ch_names
                                             for r in results))
                meta["bad_subjects"] = [r.subject for r in results
                                        if ch in r.bads or ch not in r.ch_names]
                neurons.append(meta)
            for s in SEGMENTS:
                T = bins[s]
                if not any(str(s) in r.segments for r in results):
                    continue
                block = np.full((len(results), len(names), T), np.nan, dtype=np.float32)
                for j, r in enumerate(results):
                    seg = r.segments.get(str(s))
                    if seg is None:
                        continue
                    for i, ch in enumerate(r.ch_names):
                        block[j, names.index(ch)] = seg[i]
                for n in range(len(names)):
                    trials[(s - 1, n)] = ContinuousTrace(np.ascontiguousarray(block[:, n]),
                                                         rate)
            for stim in stims:
                stim.meta["subjects"] = list(chosen)
        return Recording(stims=stims, neurons=neurons, trials=trials, sources=sources,
                         quirks=quirks)


    @staticmethod
    def _attach_words(path: Path, stims: list[WavStim], bins: Mapping[int, int], dt_ms: float,
                      quirks: dict[str, int]) -> None:
        """``stim_meta['words']`` of every segment; each quirk warned and counted."""
        def quirk(kind: str, message: str) -> None:
            quirks[kind] = quirks.get(kind, 0) + 1
            warnings.warn(message, DataQuirkWarning, stacklevel=3)

        if not path.is_file():
            quirk("missing_word_table", f"{path}: no word table; stim_meta[s]['words'] is None "
                                        "(it is in stimuli.zip).")
            for stim in stims:
                stim.meta["words"] = None
            return
        table = read_word_table(path)
        unknown = sorted(set(table) - set(SEGMENTS))
        if unknown:
            raise RawDataError(f"{path}: segments {unknown} are not segments 1..12.")
        empty = {k: [] for k in next(iter(table.values()), {"Word": [], "onset": []})}
        for stim in stims:
            s = stim.meta["segment"]
            words = _segment_words(table.get(s, empty), dt_ms)
            for i, b in enumerate(words["bin"]):
                if not 0 <= b < bins[s]:
                    quirk("word_outside_segment",
                          f"{path}: word {words['Word'][i]!r} of segment {s} starts at "
                          f"{words['onset'][i]} s, outside the segment's {bins[s]} bins; it "
                          "is kept in the table but not rendered.")
            stim.meta["words"] = words

    def word_predictor(self, column: str | None = None, *,
                       missing: float | None = None) -> list[np.ndarray]:
        """:func:`render_word_feature` of this dataset."""
        return render_word_feature(self, column, missing=missing)


def _channel_meta(channel: str, xyz: Any, *, subject: str | None, bad: bool) -> dict[str, Any]:
    return {"cell_id": channel if subject is None else f"{subject}_{channel}",
            "channel_id": channel, "subject": subject, "area": "EEG", "unit": "V",
            "xyz": None if xyz is None or not all(map(math.isfinite, xyz))
            else [float(v) for v in xyz],
            "bad": bool(bad)}


def _mne_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mne")
    except PackageNotFoundError as err:
        raise ImportError("AliceEEGDataset needs MNE-Python: pip install "
                          "'deepstrf-datasets[eeg]' (or pip install mne).") from err
