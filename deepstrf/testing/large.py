"""Large simulated datasets built straight into the processed cache (for memory tests, benchmarks).

:class:`LargeSyntheticDataset` is a :class:`~deepstrf.datasets._source.SourceDataset`
whose "raw folder" holds one small ``spec.json`` (sizes and seed). Its build
simulates multi-unit spike counts session by session, stimulus by stimulus,
into a scratch memory map (so a release larger than memory is never held in
RAM), and the shared cache writes the entry from it. Constructing it again is
an ordinary warm open of that entry, which is what memory and speed
measurements need: the same code path as a public dataset.

:func:`downer_like_spec` gives the sizes of the Downer 2025 release (1718
channels in 41 sessions, 499 TIMIT-like and 303 vocalisation-like stimuli of
the documented durations).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepstrf.datasets._source import DatasetInfo, SourceDataset
from deepstrf.datasets._storage import ResponseStore
from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.io.cache import BuiltData

__all__ = ["LargeSyntheticDataset", "downer_like_spec", "write_spec", "spec_nbytes"]

_INFO = DatasetInfo(name="synthetic-large", title="Large simulated multi-unit recording",
                    species="simulated", area="simulated", signal="spike counts",
                    n_neurons=None, n_stims=None, repeats="per spec", download_size="0",
                    access="open", citation="-", doi="-", url="-")


def downer_like_spec(*, dt_ms: float = 5.0, coverage: float = 0.25, n_bands: int = 80,
                     seed: int = 0, n_neurons: int = 1718, n_sessions: int = 41,
                     n_timit: int = 499, n_mvocs: int = 303, rate_hz: float = 20.0
                     ) -> dict[str, Any]:
    """Sizes of a Downer 2025-like release (datasets reference section 9).

    Each session hears a random fraction ``coverage`` of the stimuli (every
    stimulus at least one session); TIMIT-like stimuli last 1.99-3.59 s and
    vocalisation-like ones 0.95-4.69 s; the 10 + 11 test stimuli have 11 and
    15 repeats, the others one.
    """
    return {"dt_ms": float(dt_ms), "coverage": float(coverage), "n_bands": int(n_bands),
            "seed": int(seed), "n_neurons": int(n_neurons), "n_sessions": int(n_sessions),
            "n_timit": int(n_timit), "n_mvocs": int(n_mvocs), "rate_hz": float(rate_hz),
            "timit_s": [1.99, 3.59], "mvocs_s": [0.95, 4.69], "test_timit": 10,
            "test_mvocs": 11, "reps_timit_test": 11, "reps_mvocs_test": 15}


def _layout(spec: dict[str, Any]) -> dict[str, Any]:
    """Stimulus lengths, repeats, and which sessions heard what (cheap: no responses)."""
    rng = np.random.default_rng(spec["seed"])
    dt_s = spec["dt_ms"] / 1000.0
    dur = np.concatenate([rng.uniform(*spec["timit_s"], size=spec["n_timit"]),
                          rng.uniform(*spec["mvocs_s"], size=spec["n_mvocs"])])
    T = np.maximum(1, np.round(dur / dt_s)).astype(np.int64)
    S = len(T)
    reps = np.ones(S, dtype=np.int64)
    timit_test = rng.choice(spec["n_timit"], size=min(spec["test_timit"], spec["n_timit"]),
                            replace=False)
    mvocs_test = spec["n_timit"] + rng.choice(spec["n_mvocs"], replace=False,
                                              size=min(spec["test_mvocs"], spec["n_mvocs"]))
    reps[timit_test] = spec["reps_timit_test"]
    reps[mvocs_test] = spec["reps_mvocs_test"]
    n_sess = spec["n_sessions"]
    session = np.sort(np.arange(spec["n_neurons"]) % n_sess)
    heard = rng.random((S, n_sess)) < spec["coverage"]
    heard[np.arange(S), rng.integers(0, n_sess, size=S)] = True
    return {"T": T, "reps": reps, "session": session, "heard": heard, "dur": dur}


def spec_nbytes(spec: dict[str, Any]) -> int:
    """Bytes of the response values a spec produces (before building anything)."""
    lay = _layout(spec)
    counts = np.bincount(lay["session"], minlength=spec["n_sessions"])
    pairs = lay["heard"] @ counts  # neurons hearing each stimulus
    return int((pairs * lay["reps"] * lay["T"]).sum()) * 4


def write_spec(root: Path, spec: dict[str, Any]) -> Path:
    """Write ``root/raw/spec.json``; return ``root`` (pass it as ``path=``)."""
    raw = Path(root) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "spec.json").write_text(json.dumps(spec, sort_keys=True), encoding="utf-8")
    return Path(root)


class LargeSyntheticDataset(SourceDataset, AudioNeuralDataset):
    """A simulated multi-unit recording of any size, from ``<path>/raw/spec.json``.

    Spike counts are Poisson, with a rate shared by the neurons of a session
    on a stimulus (a slow random modulation of ``rate_hz``) times a gain per
    neuron; stimuli are random ``(1, n_bands, T)`` spectrograms. The build
    writes the responses block by block into a scratch memory map, unlinked
    at once, so building a dataset larger than memory needs its size in free
    disk twice (scratch and entry), never in RAM.
    """

    info = _INFO
    folder = "SyntheticLarge"
    raw_markers = ("spec.json",)

    def __init__(self, path: Any, *, cache: str = "use", progress: bool | None = False):
        AudioNeuralDataset.__init__(self, str(path), 1.0)
        spec_path = Path(path) / "raw" / "spec.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"LargeSyntheticDataset: no {spec_path}; write one with "
                                    "deepstrf.testing.large.write_spec(path, spec).")
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        self.dt = float(spec["dt_ms"])
        self._load(path, {"spec": spec}, download=False, username=None, password=None,
                   n_jobs=1, cache=cache, progress=progress, expect_full=False)

    def _build(self, raw_dir: Path, params: dict[str, Any], n_jobs: int | None,
               progress: bool | None) -> BuiltData:
        spec = params["spec"]
        lay = _layout(spec)
        T, reps, session, heard = lay["T"], lay["reps"], lay["session"], lay["heard"]
        S, N, F = len(T), int(spec["n_neurons"]), int(spec["n_bands"])
        members = [np.flatnonzero(heard[s][session]) for s in range(S)]
        sizes = np.array([len(m) * reps[s] * T[s] for s, m in enumerate(members)], np.int64)
        scratch_dir = Path(raw_dir).parent / "processed"
        scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".scratch-", dir=scratch_dir)
        os.close(fd)
        try:
            flat = np.memmap(name, dtype=np.float32, mode="w+", shape=(max(1, int(sizes.sum())),))
        finally:
            os.unlink(name)  # the mapping keeps the space until it is released
        rng = np.random.default_rng(spec["seed"] + 1)
        gain = rng.uniform(0.3, 1.7, size=N)
        lam_bin = spec["rate_hz"] * spec["dt_ms"] / 1000.0
        blocks, off = [], 0
        for s in range(S):
            nrn = members[s]
            n_rows = int(len(nrn) * reps[s])
            t = np.arange(T[s])
            modulation = 1.0 + 0.8 * np.sin(2 * np.pi * t / max(8, T[s] / rng.uniform(2, 6))
                                            + rng.uniform(0, 2 * np.pi))
            lam = (gain[nrn, None] * lam_bin) * modulation[None, :]
            rows = flat[off:off + n_rows * T[s]].reshape(n_rows, T[s])
            rows[:] = rng.poisson(np.repeat(lam, reps[s], axis=0))
            blocks.append((nrn, np.full(len(nrn), reps[s]), torch.from_numpy(rows)))
            off += n_rows * int(T[s])
        store = ResponseStore.from_blocks(N, blocks)
        g = torch.Generator().manual_seed(spec["seed"])
        stims = [torch.rand((1, F, int(t)), generator=g) for t in T]
        n_timit = spec["n_timit"]
        stim_meta = [{"name": f"{'timit' if s < n_timit else 'mvoc'}{s:04d}",
                      "type": "timit" if s < n_timit else "mvoc",
                      "duration_s": float(lay["dur"][s]), "n_reps": int(reps[s])}
                     for s in range(S)]
        nrn_meta = [{"cell_id": f"sim_{int(session[n]):02d}_Ch{n}",
                     "session_id": int(session[n]), "gain": float(gain[n])} for n in range(N)]
        return BuiltData(stims=stims, store=store, stim_meta=stim_meta, nrn_meta=nrn_meta,
                         attributes={"F": F}, sources=[{"file": "spec.json"}])
