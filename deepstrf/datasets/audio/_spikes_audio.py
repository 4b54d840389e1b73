"""Shared pipeline of the audio datasets recorded as spike times.

A dataset module's parse hook returns a :class:`SpikeRecording`: the stimuli
(a wav file each, with metadata), the neurons (metadata), and for every
(stimulus, neuron) pair that was recorded the trials as arrays of spike times
in ms relative to stimulus onset. :func:`build_spike_audio` turns it into
tensors, one task per stimulus through :func:`~deepstrf.preprocessing.parallel_map`:
read the wav, compute the spectrogram (or fit the waveform to the response
grid), bin every neuron's trials on the same T bins
(:func:`~deepstrf.preprocessing.spikes.bin_spike_times`, spikes before onset
and after the end dropped), and smooth them if asked. Empty trials stay as
zero-count repeats. Stimuli no neuron heard and neurons with no data are
dropped.
"""

from __future__ import annotations

import logging
import math
import numbers
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.datasets._source import SourceDataset
from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.io.cache import BuiltData

__all__ = ["AudioFrontEnd", "SpikeAudioDataset", "SpikeRecording", "StimSource",
           "build_spike_audio", "make_front_end"]

logger = logging.getLogger(__name__)

#: Window of the PSTH smoothing when ``smooth=True`` (Hsu, Borst & Theunissen 2004).
DEFAULT_SMOOTH_MS = 21.0


@dataclass(frozen=True)
class StimSource:
    """One stimulus of a recording: its wav file and metadata."""

    path: Path
    meta: dict[str, Any]
    expected_sr: float | None = None


@dataclass
class SpikeRecording:
    """What a spike-train dataset's parse hook returns.

    ``trials[(s, n)]`` lists the spike-time arrays (ms from onset) of every
    trial of neuron n on stimulus s; a missing key is a pair not recorded.
    """

    stims: list[StimSource]
    neurons: list[dict[str, Any]]
    trials: dict[tuple[int, int], list[np.ndarray]]
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AudioFrontEnd:
    """How stimuli and responses are put on the response grid."""

    dt_ms: float
    spectrogram: Any                  # SpectrogramParams
    return_waveform: bool
    audio_fs: float | None
    smooth_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"dt_ms": self.dt_ms, "spectrogram": self.spectrogram.to_dict(),
                "return_waveform": self.return_waveform, "audio_fs": self.audio_fs,
                "smooth_ms": self.smooth_ms}


def make_front_end(*, dt_ms: Any, smooth: Any, n_mels: Any, compression: Any, window_ms: Any,
                   return_waveform: Any, audio_fs: Any, spectrogram: Any = None,
                   kind: str = "mel") -> AudioFrontEnd:
    """Check the audio arguments shared by the datasets (before any I/O).

    Parameters are those of the dataset constructors; ``spectrogram`` (a
    :class:`~deepstrf.preprocessing.spectrogram.SpectrogramParams`) replaces
    ``n_mels``/``compression``/``window_ms`` when given.
    """
    from deepstrf.preprocessing.spectrogram import SpectrogramParams

    dt_ms = check_positive("dt_ms", dt_ms)
    if isinstance(smooth, bool):
        smooth_ms = DEFAULT_SMOOTH_MS if smooth else None
    elif isinstance(smooth, numbers.Real):
        smooth_ms = check_positive("smooth (window in ms)", smooth)
    else:
        raise TypeError(f"smooth must be True, False or a window in ms; got {smooth!r}.")
    if not isinstance(return_waveform, bool):
        raise TypeError(f"return_waveform must be True or False; got {return_waveform!r}.")
    if spectrogram is None:
        spectrogram = SpectrogramParams(dt_ms=dt_ms, kind=kind,
                                        n_bands=check_int("n_mels", n_mels, minimum=1),
                                        window_ms=check_positive("window_ms", window_ms),
                                        compression=check_choice(
                                            "compression", compression,
                                            ("cubic", "log1p", "log", "none")))
    elif not isinstance(spectrogram, SpectrogramParams):
        raise TypeError(f"spectrogram must be a SpectrogramParams or None; got "
                        f"{type(spectrogram).__name__}.")
    elif not math.isclose(spectrogram.dt_ms, dt_ms):
        raise ValueError(f"spectrogram.dt_ms={spectrogram.dt_ms:g} differs from dt_ms={dt_ms:g}; "
                         "they must match (the spectrogram frames are the response bins).")
    rate = None
    if return_waveform:
        rate = check_positive("audio_fs", audio_fs)
        hop = rate * dt_ms / 1000.0
        if abs(hop - round(hop)) > 1e-6 or round(hop) < 1:
            raise ValueError(f"audio_fs * dt_ms / 1000 must be a whole number of samples per "
                             f"response bin in waveform mode; got {rate:g} * {dt_ms:g} / 1000 = "
                             f"{hop:g}. Try audio_fs={max(1, round(hop)) * 1000 / dt_ms:g}.")
    return AudioFrontEnd(dt_ms=dt_ms, spectrogram=spectrogram, return_waveform=return_waveform,
                         audio_fs=rate, smooth_ms=smooth_ms)


def _stim_task(task: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Process one stimulus: audio to the grid, bin and smooth every neuron's trials."""
    from deepstrf.io.readers import read_wav
    from deepstrf.preprocessing.spectrogram import compute_spectrogram, waveform_on_grid
    from deepstrf.preprocessing.spikes import (
        bin_spike_times,
        hanning_kernel,
        n_bins_for_duration,
        smooth_rows,
    )

    source, front, pairs = task
    wave, sr = read_wav(source.path, expected_sr=source.expected_sr)
    T = n_bins_for_duration(len(wave), sr, front.dt_ms)
    if front.return_waveform:
        stim = waveform_on_grid(wave, sr, front.dt_ms, front.audio_fs)[None, :]
    else:
        stim = compute_spectrogram(wave, sr, front.spectrogram)[None, :, :]
    neurons = np.array([n for n, _ in pairs], dtype=np.int64)
    reps = np.array([len(trials) for _, trials in pairs], dtype=np.int64)
    rows = [bin_spike_times(trials, front.dt_ms, T) for _, trials in pairs]
    counts = np.concatenate(rows, axis=0) if rows else np.zeros((0, T), np.float32)
    if front.smooth_ms is not None and len(counts):
        kernel = hanning_kernel(front.smooth_ms, front.dt_ms)
        counts = smooth_rows(torch.from_numpy(counts), kernel).numpy()
    audio = {"sample_rate": float(sr), "n_samples": int(len(wave)),
             "duration_s": float(len(wave)) / float(sr), "n_bins": int(T)}
    return stim.astype(np.float32, copy=False), neurons, reps, counts, audio


def build_spike_audio(recording: SpikeRecording, front: AudioFrontEnd, *,
                      n_jobs: int | None = 1, progress: bool | None = None,
                      owner: str = "") -> BuiltData:
    """Turn a parsed recording into a dataset's tensors (see the module docstring)."""
    from deepstrf.preprocessing.parallel import parallel_map

    by_stim: dict[int, list[tuple[int, list[np.ndarray]]]] = {}
    for (s, n), trials in sorted(recording.trials.items()):
        if len(trials):
            by_stim.setdefault(s, []).append((n, trials))
    heard_by = {n for pairs in by_stim.values() for n, _ in pairs}
    keep_neurons = [n for n in range(len(recording.neurons)) if n in heard_by]
    new_index = {n: i for i, n in enumerate(keep_neurons)}
    dropped = len(recording.neurons) - len(keep_neurons)
    if dropped:
        logger.info("%s: %d neuron(s) have no response to any selected stimulus and are left "
                    "out", owner, dropped)
    keep_stims = sorted(by_stim)
    if len(keep_stims) < len(recording.stims):
        logger.info("%s: %d stimulus/stimuli heard by no selected neuron are left out", owner,
                    len(recording.stims) - len(keep_stims))
    tasks = [(recording.stims[s], front, [(new_index[n], t) for n, t in by_stim[s]])
             for s in keep_stims]
    results = parallel_map(_stim_task, tasks, n_jobs=n_jobs, progress=progress,
                           desc=f"{owner}: stimuli" if owner else "stimuli")
    stims, blocks, stim_meta = [], [], []
    for s, (stim, neurons, reps, counts, audio) in zip(keep_stims, results):
        stims.append(torch.from_numpy(stim))
        blocks.append((neurons, reps, torch.from_numpy(counts)))
        meta = dict(recording.stims[s].meta)
        for key, value in audio.items():
            meta.setdefault(key, value)
        stim_meta.append(meta)
    store = ResponseStore.from_blocks(len(keep_neurons), blocks)
    attributes: dict[str, Any] = {"F": int(front.spectrogram.n_bands),
                                  "audio_fs": front.audio_fs if front.return_waveform else None}
    if attributes["audio_fs"] is not None and float(attributes["audio_fs"]).is_integer():
        attributes["audio_fs"] = int(attributes["audio_fs"])
    return BuiltData(stims=stims, store=store, stim_meta=stim_meta,
                     nrn_meta=[recording.neurons[n] for n in keep_neurons],
                     attributes=attributes, sources=recording.sources or None)


class SpikeAudioDataset(SourceDataset, AudioNeuralDataset):
    """Base of the audio datasets recorded as spike times (CRCNS AA1, AA2, AA4, ...).

    Subclasses implement :meth:`_parse`; building, caching and validation come
    from here and from :class:`~deepstrf.datasets._source.SourceDataset`.
    """

    _front_end: AudioFrontEnd

    def _init_source(self, path: Any, params: Mapping[str, Any], front: AudioFrontEnd, *,
                     download: bool, username: str | None, password: str | None,
                     n_jobs: int | None, cache: str, progress: bool | None,
                     expect_full: bool) -> None:
        """Initialise, then load from the cache or build (arguments already checked)."""
        paths = self.default_paths(path)
        AudioNeuralDataset.__init__(self, str(paths.root), front.dt_ms)
        self._front_end = front
        self._load(path, {**params, "front_end": front.to_dict()}, download=download,
                   username=username, password=password, n_jobs=n_jobs, cache=cache,
                   progress=progress, expect_full=expect_full)

    @abstractmethod
    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> SpikeRecording:
        """Read the raw folder into a :class:`SpikeRecording` (the dataset's hook)."""

    def _build(self, raw_dir: Path, params: dict[str, Any], n_jobs: int | None,
               progress: bool | None) -> BuiltData:
        recording = self._parse(raw_dir, params, n_jobs, progress)
        if not recording.neurons or not recording.trials:
            from deepstrf.errors import RawDataError

            shown = {k: v for k, v in params.items() if k != "front_end"}
            raise RawDataError(f"{type(self).__name__}: no responses match the selection "
                               f"{shown} in {raw_dir}. Widen areas/stimuli/animals or check "
                               "the folder.")
        return build_spike_audio(recording, self._front_end, n_jobs=n_jobs, progress=progress,
                                 owner=type(self).__name__)
