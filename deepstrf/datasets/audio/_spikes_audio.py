"""Shared pipeline of the audio datasets recorded as spike times.

A dataset module's parse hook returns a :class:`SpikeRecording`: the stimuli
(a wav file each, with metadata), the neurons (metadata), and for every
(stimulus, neuron) pair that was recorded the trials as arrays of spike times
in ms relative to stimulus onset. :func:`build_spike_audio` turns it into
tensors, one task per stimulus through
:func:`~deepstrf.preprocessing.parallel_map`: put its audio on the response
grid (a spectrogram, or the waveform fitted to the grid), bin every neuron's
trials on the same T bins (spikes before onset and after the end dropped) and
smooth them if asked. Empty trials stay as zero-count repeats. Stimuli no
neuron heard and neurons with no data are dropped.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepstrf.datasets._source import SourceDataset
from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.audio._spike_tasks import (
    AudioFrontEnd,
    SpikeTrains,
    StimSource,
    make_front_end,
    stim_task,
)
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.io.cache import BuiltData

__all__ = ["AudioFrontEnd", "SpikeAudioDataset", "SpikeRecording", "SpikeTrains", "StimSource",
           "build_spike_audio", "make_front_end"]

logger = logging.getLogger(__name__)

@dataclass
class SpikeRecording:
    """What a spike-train dataset's parse hook returns.

    ``trials[(s, n)]`` holds the spike trains (ms from onset) of every trial
    of neuron n on stimulus s; a missing key is a pair not recorded.
    """

    stims: list[StimSource]
    neurons: list[dict[str, Any]]
    trials: dict[tuple[int, int], SpikeTrains]
    sources: list[dict[str, Any]] = field(default_factory=list)
    #: tolerated data quirks, kind -> count (each also reported as a DataQuirkWarning)
    quirks: dict[str, int] = field(default_factory=dict)


def build_spike_audio(recording: SpikeRecording, front: AudioFrontEnd, *,
                      n_jobs: int | None = 1, progress: bool | None = None,
                      owner: str = "") -> BuiltData:
    """Turn a parsed recording into a dataset's tensors (see the module docstring)."""
    from deepstrf.preprocessing.parallel import parallel_map

    by_stim: dict[int, list[tuple[int, SpikeTrains]]] = {}
    for (s, n), trains in sorted(recording.trials.items()):
        if trains.n_trials:
            by_stim.setdefault(s, []).append((n, trains))
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
    # filter banks made here, once, for the rates the sources declare (else read
    # from the file headers), so workers need not import librosa
    front = front.prepare({r for r in (_declared_rate(recording.stims[s]) for s in keep_stims)
                           if r is not None})
    tasks = [(recording.stims[s], front, np.concatenate([t.times for _, t in by_stim[s]]),
              np.concatenate([t.lengths for _, t in by_stim[s]])) for s in keep_stims]
    results = parallel_map(stim_task, tasks, n_jobs=n_jobs, progress=progress,
                           desc=f"{owner}: stimuli" if owner else "stimuli")
    stims, blocks, stim_meta = [], [], []
    for s, (stim, counts, facts) in zip(keep_stims, results):
        pairs = by_stim[s]
        stims.append(torch.from_numpy(stim))
        blocks.append(([new_index[n] for n, _ in pairs], [t.n_trials for _, t in pairs],
                       torch.from_numpy(counts)))
        meta = dict(recording.stims[s].meta)
        for key, value in facts.items():
            meta.setdefault(key, value)
        stim_meta.append(meta)
    store = ResponseStore.from_blocks(len(keep_neurons), blocks)
    attributes: dict[str, Any] = {"F": int(front.spectrogram.n_bands),
                                  "audio_fs": front.audio_fs if front.return_waveform else None}
    if attributes["audio_fs"] is not None and float(attributes["audio_fs"]).is_integer():
        attributes["audio_fs"] = int(attributes["audio_fs"])
    logger.info("%s: built %d stimuli x %d neurons (%d pairs)%s", owner, len(stims),
                len(keep_neurons), store.n_pairs,
                "; quirks tolerated: " + ", ".join(f"{k}={v}" for k, v in
                                                   sorted(recording.quirks.items()))
                if recording.quirks else "")
    return BuiltData(stims=stims, store=store, stim_meta=stim_meta,
                     nrn_meta=[recording.neurons[n] for n in keep_neurons],
                     attributes=attributes, sources=recording.sources or None,
                     quirks=dict(recording.quirks))


def _declared_rate(source: StimSource) -> float | None:
    if source.expected_sr is not None:
        return float(source.expected_sr)
    import soundfile

    try:
        return float(soundfile.info(str(source.path)).samplerate)
    except Exception:  # noqa: BLE001 - the worker's read reports a bad file properly
        return None


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
