"""The build pipeline of the audio datasets.

A dataset module's parse hook returns a :class:`Recording`: the stimuli (a
stimulus source each, :mod:`~deepstrf.datasets.audio._stimuli`, with its
metadata), the neurons (metadata), and for every (stimulus, neuron) pair that
was recorded a response source (:mod:`~deepstrf.datasets._responses`: spike
trains in ms from the sound's onset, pre-binned rows or a continuous trace).
:func:`build_recording` turns it into tensors, one task per stimulus through
:func:`~deepstrf.preprocessing.parallel_map`: put its sound on the response
grid (a spectrogram of the chosen front end, the waveform fitted to the grid,
or a precomputed spectrogram pooled to ``dt_ms``), render every neuron's
repeats on the same T bins (spikes outside the grid dropped) and smooth counts
if asked. Empty trials stay as zero-count repeats. Stimuli no neuron heard and
neurons with no data are dropped. The filter banks of the front end are made
once here, in the parent, for the rates the sources declare.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepstrf.datasets._responses import (
    BinnedRows,
    ContinuousTrace,
    ResponseBlock,
    SpikeTrains,
)
from deepstrf.datasets._source import SourceDataset
from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.audio._spike_tasks import AudioFrontEnd, make_front_end, stim_task, \
    ten_ms_front_end
from deepstrf.datasets.audio._stimuli import (
    SpectrogramArrayStim,
    StimSource,
    WaveformArrayStim,
    WavStim,
)
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.io.cache import BuiltData

__all__ = ["AudioFrontEnd", "AudioSourceDataset", "BinnedRows", "ContinuousTrace", "Recording",
           "ResponseBlock", "SpectrogramArrayStim", "SpikeAudioDataset", "SpikeRecording",
           "SpikeTrains", "StimSource", "WavStim", "WaveformArrayStim", "build_recording",
           "build_spike_audio", "make_front_end", "ten_ms_front_end"]

logger = logging.getLogger(__name__)

@dataclass
class Recording:
    """What a dataset's parse hook returns.

    ``trials[(s, n)]`` is the response source (every repeat) of neuron n on
    stimulus s; a missing key is a pair not recorded. ``blocks[s]`` gives the
    responses of many neurons to stimulus s in one
    :class:`~deepstrf.datasets._responses.ResponseBlock` (a population
    raster's slice: one object per stimulus, not per pair).
    """

    stims: list[Any]
    neurons: list[dict[str, Any]]
    trials: dict[tuple[int, int], Any]
    sources: list[dict[str, Any]] = field(default_factory=list)
    #: tolerated data quirks, kind -> count (each also reported as a DataQuirkWarning)
    quirks: dict[str, int] = field(default_factory=dict)
    blocks: dict[int, ResponseBlock] = field(default_factory=dict)


#: The name of :class:`Recording` when all its responses were spike trains.
SpikeRecording = Recording


def _merged(sources: list[Any]) -> list[Any]:
    """Runs of consecutive spike trains merged into one each (cheaper to send to a worker)."""
    out: list[Any] = []
    run: list[SpikeTrains] = []
    for source in [*sources, None]:
        if isinstance(source, SpikeTrains):
            run.append(source)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else SpikeTrains(
                np.concatenate([t.times for t in run]),
                np.concatenate([t.lengths for t in run])))
            run = []
        if source is not None:
            out.append(source)
    return out


def build_recording(recording: Recording, front: AudioFrontEnd, *,
                    n_jobs: int | None = 1, progress: bool | None = None,
                    owner: str = "") -> BuiltData:
    """Turn a parsed recording into a dataset's tensors (see the module docstring)."""
    from deepstrf.preprocessing.parallel import parallel_map

    # per stimulus: (neuron indices, repeats, source) entries, in neuron order
    by_stim: dict[int, list[tuple[Any, Any, Any]]] = {}
    for (s, n), trains in sorted(recording.trials.items()):
        if trains.n_trials:
            by_stim.setdefault(s, []).append(((n,), (trains.n_trials,), trains))
    for s, block in recording.blocks.items():
        if len(block.neurons):
            twice = set(block.neurons.tolist()) & {e[0][0] for e in by_stim.get(s, ())}
            if twice:
                raise ValueError(f"{owner}: stimulus {s} has neurons {sorted(twice)[:5]} both "
                                 "in a ResponseBlock and in trials; give each pair once.")
            by_stim.setdefault(s, []).append((block.neurons, block.repeats, block.source))
            by_stim[s].sort(key=lambda e: int(e[0][0]))
    heard_by = {int(n) for entries in by_stim.values() for e in entries for n in e[0]}
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
    kept = {s: _kept_block(by_stim[s], front) for s in keep_stims}
    tasks = [(recording.stims[s], front, [BinnedRows(kept[s].rows[:0], kept[s].bin_ms)]
              if kept[s] is not None else _merged([e[2] for e in by_stim[s]]))
             for s in keep_stims]
    results = parallel_map(stim_task, tasks, n_jobs=n_jobs, progress=progress,
                           desc=f"{owner}: stimuli" if owner else "stimuli")
    stims, blocks, stim_meta = [], [], []
    for s, (stim, counts, facts) in zip(keep_stims, results):
        entries = by_stim[s]
        if kept[s] is not None:  # the task rendered the sound only (see _kept_block)
            counts = kept[s].render(front.dt_ms, int(facts["n_bins"]))
        stims.append(torch.from_numpy(stim))
        blocks.append(([new_index[int(n)] for e in entries for n in e[0]],
                       [int(r) for e in entries for r in e[1]], torch.from_numpy(counts)))
        meta = dict(recording.stims[s].meta)
        for key, value in facts.items():
            meta.setdefault(key, value)
        stim_meta.append(meta)
    store = ResponseStore.from_blocks(len(keep_neurons), blocks, owned=True)  # built here
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


build_spike_audio = build_recording


def _kept_block(entries: list[tuple[Any, Any, Any]], front: AudioFrontEnd) -> Any:
    """The stimulus's one block when it is already its rendering, else None.

    Float32 rows at the response bin, unsmoothed, are their own rendering:
    they stay in this process and become the store's block without a copy;
    the task gets an empty stand-in that only gives their length. Sending
    them to a worker and back would hold them twice here (a NAT4 build with
    ``n_jobs=2``: 290 MB more) and pickle them both ways.
    """
    if len(entries) != 1 or not isinstance(entries[0][2], BinnedRows) or \
            front.smooth_ms is not None:
        return None
    rows = entries[0][2]
    ratio = front.dt_ms / rows.bin_ms
    if rows.rows.dtype != np.float32 or not rows.rows.flags.c_contiguous or \
            abs(ratio - 1.0) > 1e-9:
        return None
    return rows


def _declared_rate(source: Any) -> float | None:
    rate = source.declared_rate()
    if rate is not None or not isinstance(source, WavStim):
        return rate
    import soundfile

    try:
        return float(soundfile.info(str(source.path)).samplerate)
    except Exception:  # noqa: BLE001 - the worker's read reports a bad file properly
        return None


class AudioSourceDataset(SourceDataset, AudioNeuralDataset):
    """Base of the audio datasets built from a public release (CRCNS AA1, AA2, AA4, NS1, ...).

    Subclasses implement :meth:`~deepstrf.datasets._source.SourceDataset._parse`
    returning a :class:`Recording`; initialisation, building, caching and
    validation come from :class:`~deepstrf.datasets._source.SourceDataset`.
    """

    def _render(self, recording: Recording, front: Any, n_jobs: int | None,
                progress: bool | None) -> BuiltData:
        return build_recording(recording, front, n_jobs=n_jobs, progress=progress,
                               owner=type(self).__name__)


#: The earlier name of :class:`AudioSourceDataset`.
SpikeAudioDataset = AudioSourceDataset
