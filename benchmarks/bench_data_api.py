"""Data-API benchmark: packing, masks, selection, indexing, epochs, whole-dataset ops.

Builds three synthetic datasets deterministically and prints, per scale:
packing them the way a list-filling subclass does (``self.responses`` as
lists of tensors, then ``validate()``), first ``nrn_masks``, ``len`` after a
predicate selection (first and cached), ``ds[i]`` latency next to
deepSTRF-style list indexing of the same tensors, several epochs through
``DataLoader(batch_size=8, shuffle=True, collate_fn=neural_collate)`` (the
first one, and the median of the others as the steady state) against two
floors measured in the same run (the bytes of the padded batches at a warm
memory-copy bandwidth, and at the bandwidth of copying into fresh memory),
and each whole-dataset operation with its peak RSS against the stored data
plus one block. Each scale runs in its own process so peak RSS is its own.

    python benchmarks/bench_data_api.py            # all scales
    python benchmarks/bench_data_api.py small medium
    python benchmarks/bench_data_api.py --threads 1 medium   # torch.set_num_threads(1)
    python benchmarks/bench_data_api.py --thp large  # PyTorch's transparent huge pages on

On a machine whose cores are shared with other busy processes, PyTorch's
thread team can stall on every parallel region (a thread waits for a core);
``--threads 1`` then gives steadier figures.

Batches are new memory, so part of an epoch is the kernel zeroing fresh
pages. ``--thp`` runs with ``THP_MEM_ALLOC_ENABLE=1``, PyTorch's opt-in to
back large CPU tensors with transparent huge pages (where the kernel allows
it, ``madvise`` or ``always``), which makes that much cheaper. It is a
process-wide setting with memory trade-offs, so deepstrf does not set it.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SCALES = ("small", "medium", "large")


def build(scale: str):
    from deepstrf.testing.synthetic import make_ragged_dataset

    if scale == "small":
        return make_ragged_dataset(40, 50, n_bands=32, T_range=(200, 400), coverage=0.8,
                                   repeats=(1, 10), seed=1)
    if scale == "medium":
        # R = 1 for most stims, 20 for every 30th ("a few"), ~90% coverage
        return make_ragged_dataset(600, 300, n_bands=18, T_range=(150, 150), coverage=0.9,
                                   repeats=lambda rng, s: 20 if s % 30 == 0 else 1, seed=2)
    if scale == "large":
        return make_ragged_dataset(2000, 1500, n_bands=32, T_range=(100, 600), coverage=0.25,
                                   repeats=(1, 10), seed=3)
    raise ValueError(f"unknown scale {scale!r}; choose from {SCALES}")


def copy_bandwidth(n_bytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Bytes per second of a large tensor copy (the best of a few runs)."""
    src = torch.ones(n_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best


def fresh_copy_bandwidth(n_bytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Bytes per second of copying into newly allocated memory (``clone``).

    Every batch a DataLoader yields is new memory, so producing it also pays the
    kernel's first-touch page faults, which the warm copy above does not.
    """
    src = torch.ones(n_bytes // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst = src.clone()
        best = min(best, time.perf_counter() - t0)
        del dst
    return n_bytes / best


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _stored_bytes(ds) -> int:
    return ds.response_store.nbytes + sum(x.numel() * x.element_size() for x in ds.stims)


def _largest_block_bytes(ds) -> int:
    store = ds.response_store
    return max(store.block(s)[2].numel() * 4 for s in range(store.n_stims))


def to_nested(ds, distinct_sentinels: bool) -> dict:
    """The parts of ``ds`` with responses as the contract's list of S lists of N tensors.

    Each stored block is split into per-pair views (``torch.split``), as a
    loader that reads one matrix per stimulus would; missing pairs get a
    ``(1, 1)`` NaN sentinel each (``distinct_sentinels``) or one shared
    sentinel object (used at the large scale, where 2 million separate
    sentinels would cost ~1 GB of Python objects and seconds to build, and
    the packing cost per pair is the same).
    """
    from deepstrf.datasets._storage import nan_sentinel

    store = ds.response_store
    N = store.n_neurons
    shared = nan_sentinel()
    rows = []
    for s in range(store.n_stims):
        neurons, reps, data = store.block(s)
        row = [nan_sentinel() for _ in range(N)] if distinct_sentinels else [shared] * N
        for n, v in zip(neurons.tolist(), torch.split(data, reps.tolist())):
            row[n] = v
        rows.append(row)
    return {"stims": list(ds.stims), "stim_meta": ds.stim_meta, "nrn_meta": ds.nrn_meta,
            "dt": ds.dt, "F": ds.F, "responses": rows}


def pack_like_a_subclass(parts: dict):
    """A dataset built the deepSTRF way: fill ``self.responses`` as lists, call ``validate()``.

    ``parts`` gives up its list, so the packing can release each row once
    packed (peak memory near one copy of the data).
    """
    from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
    from deepstrf.datasets.neural_dataset import NeuralDataset

    class ListFilledDataset(AudioNeuralDataset):
        def __init__(self, parts):  # noqa: D107 (a benchmark stand-in for a loader)
            NeuralDataset.__init__(self, None, parts["dt"])
            self.F = parts["F"]
            self.stims = parts["stims"]
            self.stim_meta = parts["stim_meta"]
            self.nrn_meta = parts["nrn_meta"]
            self.N_neurons = len(self.nrn_meta)
            self.responses = parts.pop("responses")
            self.validate()

    return ListFilledDataset(parts)


def list_indexing_baseline(ds, positions) -> float:
    """Median time of deepSTRF 0.1.0-style item access: list lookups, no copies.

    deepSTRF keeps ``responses[s][n]`` as separate tensors and its
    ``__getitem__`` returns ``(stim, [responses[s][n] for n in I], mask, meta)``;
    this reproduces that on nested lists of the same tensors.
    """
    store = ds.response_store
    N = store.n_neurons
    shared = torch.full((1, 1), float("nan"))
    rows = {}
    for s in set(ds.iterable_stims[p] for p in positions):
        neurons, reps, data = store.block(s)
        row = [shared] * N
        for n, v in zip(neurons.tolist(), torch.split(data, reps.tolist())):
            row[n] = v
        rows[s] = row
    masks = ds.nrn_masks
    I = ds.I
    stims, metas, iterable = ds.stims, ds.stim_meta, ds.iterable_stims
    lat = []
    for p in positions:
        t0 = time.perf_counter()
        s = iterable[p]
        resp = rows[s]
        _ = (stims[s], [resp[n] for n in I], masks[s, I], metas[s])
        lat.append(time.perf_counter() - t0)
    return statistics.median(lat)


def _epoch(loader) -> tuple[float, int]:
    produced = 0
    t0 = time.perf_counter()
    for batch in loader:
        produced += sum(batch[k].numel() * batch[k].element_size()
                        for k in ("stims", "responses", "valid_mask"))
    return time.perf_counter() - t0, produced


def _measure(call) -> tuple[float, int, int]:
    """``(seconds, peak RSS during the call, RSS before it)``; peaks 0 where unsupported."""
    supported = _reset_peak_rss()
    before = _rss_now() if supported else 0
    t0 = time.perf_counter()
    call()
    elapsed = time.perf_counter() - t0
    return elapsed, (_peak_rss_now() if supported else 0), before


def run_scale(scale: str) -> dict:
    from torch.utils.data import DataLoader

    from deepstrf.utils.data import neural_collate

    torch.manual_seed(0)
    out: dict = {"scale": scale, "threads": torch.get_num_threads(), "rss_start": _rss_now()}
    t0 = time.perf_counter()
    source = build(scale)
    out["construct_validate_s"] = time.perf_counter() - t0

    # packing: the same data as lists of tensors, packed by validate()
    distinct = scale != "large"
    parts = to_nested(source, distinct_sentinels=distinct)
    out["pack_distinct_sentinels"] = distinct
    del source
    holder = {}
    elapsed, peak, before = _measure(lambda: holder.update(ds=pack_like_a_subclass(parts)))
    ds = holder.pop("ds")
    del parts
    stored = _stored_bytes(ds)
    block = _largest_block_bytes(ds)
    out["stored_bytes"], out["block_bytes"] = stored, block
    out["op_pack_s"], out["op_pack_peak"], out["op_pack_before"] = elapsed, peak, before

    store = ds.response_store
    out["S"], out["N"], out["pairs"] = ds.get_S(), ds.get_N(), store.n_pairs

    ds.invalidate_nrn_masks()
    t0 = time.perf_counter()
    _ = ds.nrn_masks
    out["first_nrn_masks_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ds.select_pop_by_nrn_predicate(lambda m: m["area"] == "A1")
    ds.select_stims_by_predicate(lambda m: m["type"] != "c")
    n = len(ds)
    out["len_after_selection_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        n = len(ds)
    out["len_cached_s"] = (time.perf_counter() - t0) / 1000
    out["len_selected"] = n
    ds.reset_pop_selection()
    ds.reset_stim_selection()

    idx = [int(i) for i in np.random.default_rng(0).integers(0, len(ds), size=300)]
    for i in idx[:20]:
        ds[i]
    lat = []
    for i in idx:
        t0 = time.perf_counter()
        ds[i]
        lat.append(time.perf_counter() - t0)
    out["getitem_median_s"] = statistics.median(lat)
    out["list_indexing_median_s"] = list_indexing_baseline(ds, idx)

    # epochs: the first pays for whatever memory is new; later ones show the steady state
    bandwidth = copy_bandwidth()
    fresh_bandwidth = fresh_copy_bandwidth()
    out["copy_bandwidth_Bps"] = bandwidth
    out["fresh_copy_bandwidth_Bps"] = fresh_bandwidth
    loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=neural_collate)
    n_epochs = 3 if scale == "large" else 5
    _reset_peak_rss()
    times, produced = [], 0
    for _ in range(n_epochs):
        elapsed, produced = _epoch(loader)
        times.append(elapsed)
    out["epoch_peak_rss"] = _peak_rss_now()
    out["epoch_times_s"] = times
    out["epoch_bytes"] = produced
    out["epoch_floor_s"] = produced / bandwidth
    out["epoch_fresh_floor_s"] = produced / fresh_bandwidth
    out["first_epoch_s"] = times[0]
    out["steady_epoch_s"] = statistics.median(times[1:])
    out.update(extra_measurements(ds))
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["peak_rss_over_stored"] = out["peak_rss_bytes"] / stored
    return out


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss_now() -> int:
    return _status("VmHWM:")


def _rss_now() -> int:
    return _status("VmRSS:")


OPS = (("compute_neuron_quality", lambda ds: ds.compute_neuron_quality()),
       ("smooth_responses", lambda ds: ds.smooth_responses()),
       ("normalize_responses_zscore", lambda ds: ds.normalize_responses("zscore")),
       ("normalize_responses_max", lambda ds: ds.normalize_responses("max")))


def extra_measurements(ds) -> dict:
    """Whole-dataset operations: time and peak RSS during each, against the stored data."""
    try:  # the batch buffers of the epochs are not part of an operation's memory
        from deepstrf.utils.data import release_batch_memory
        release_batch_memory()
    except ImportError:
        pass
    out = {}
    # floors of a streaming op on this data, measured now: one read of every block
    # (a float32 row sum) and one in-place rewrite (a multiplication by 1)
    blocks = [ds.response_store.block(s)[2].numpy() for s in range(ds.get_S())]
    for _ in range(2):  # the second of two runs (the first may fault pages in)
        t0 = time.perf_counter()
        for x in blocks:
            np.add.reduce(x, axis=1)
        out["read_floor_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for x in blocks:
            np.multiply(x, np.float32(1), out=x)
        out["rewrite_floor_s"] = time.perf_counter() - t0
    del blocks
    for name, call in OPS:
        elapsed, peak, before = _measure(lambda: call(ds))
        out[f"op_{name}_s"], out[f"op_{name}_peak"], out[f"op_{name}_before"] = \
            elapsed, peak, before
    return out


TARGETS = {
    "pack": {"large": 5.0},
    "normalize_responses_zscore": {"large": 3.0},
    "normalize_responses_max": {"large": 3.0},
    "smooth_responses": {"large": 3.0},
    "compute_neuron_quality": {"large": 15.0},
}


def report(r: dict) -> None:
    mb = 1e6
    scale = r["scale"]
    print(f"== {scale}: S={r['S']} N={r['N']} pairs={r['pairs']} "
          f"stored={r['stored_bytes'] / mb:.0f} MB (largest block {r['block_bytes'] / mb:.1f} MB), "
          f"torch threads={r['threads']}")
    print(f"  build (from_blocks)      {r['construct_validate_s'] * 1e3:10.1f} ms")
    print(f"  first nrn_masks          {r['first_nrn_masks_s'] * 1e3:10.2f} ms")
    print(f"  len after selection      {r['len_after_selection_first_s'] * 1e3:10.2f} ms (first), "
          f"{r['len_cached_s'] * 1e6:.2f} us cached  [target < 1 ms cached]")
    target = {"small": " [target < 0.05 ms]", "medium": " [target < 0.1 ms]"}.get(scale, "")
    print(f"  ds[i] median             {r['getitem_median_s'] * 1e3:10.3f} ms{target}; "
          f"deepSTRF-style list indexing {r['list_indexing_median_s'] * 1e3:.3f} ms "
          f"-> {r['getitem_median_s'] / r['list_indexing_median_s']:.1f}x")
    times = ", ".join(f"{t:.2f}" for t in r["epoch_times_s"])
    print(f"  epochs (bs=8, shuffle)   {times} s; {r['epoch_bytes'] / mb:.0f} MB of batches each")
    print(f"    floors: warm copy {r['epoch_floor_s']:.3f} s "
          f"({r['copy_bandwidth_Bps'] / 1e9:.1f} GB/s), fresh memory {r['epoch_fresh_floor_s']:.3f} s "
          f"({r['fresh_copy_bandwidth_Bps'] / 1e9:.1f} GB/s)")
    print(f"    first epoch  {r['first_epoch_s']:.3f} s = "
          f"{r['first_epoch_s'] / r['epoch_fresh_floor_s']:.2f}x fresh floor [target < 1.5x]")
    print(f"    steady epoch {r['steady_epoch_s']:.3f} s = "
          f"{r['steady_epoch_s'] / r['epoch_floor_s']:.2f}x warm floor [target < 3x at medium/large]")
    print(f"    peak RSS over the epochs {(r['epoch_peak_rss'] - r['rss_start']) / mb:.0f} MB "
          f"= stored + {(r['epoch_peak_rss'] - r['rss_start'] - r['stored_bytes']) / mb:.0f} MB")
    budget = r["stored_bytes"] + r["block_bytes"]
    base = r["rss_start"]
    print(f"  (peak RSS below is net of the {base / mb:.0f} MB the process held before building: "
          "interpreter, torch, deepstrf)")
    read, rewrite = r["read_floor_s"], r["rewrite_floor_s"]
    print(f"  streaming floors: one read of the data {read:.2f} s, one in-place rewrite "
          f"{rewrite:.2f} s")
    for name in ["pack"] + [n for n, _ in OPS]:
        secs, peak, before = r[f"op_{name}_s"], r[f"op_{name}_peak"], r[f"op_{name}_before"]
        line = f"  {name:<28} {secs:8.2f} s"
        t = TARGETS.get(name, {}).get(scale)
        if t:
            line += f" [target < {t:g} s]"
        if name != "pack":
            line += f" = {secs / (read + rewrite):.1f}x (read + rewrite)"
        if peak:
            line += (f"   peak RSS {(peak - base) / mb:.0f} MB = {(peak - base) / budget:.2f}x "
                     f"(stored + one block) [target < 1.2x]; "
                     f"growth during the op {(peak - before) / mb:.0f} MB")
        print(line)
    print(f"  peak RSS                 {r['peak_rss_bytes'] / mb:10.0f} MB = "
          f"{r['peak_rss_over_stored']:.2f}x stored data (gross)")


def main(argv: list[str]) -> int:
    import os

    if argv[:1] == ["--one"]:
        if len(argv) > 2:
            torch.set_num_threads(int(argv[2]))
        print(json.dumps(run_scale(argv[1])))
        return 0
    env = dict(os.environ)
    threads = []
    if "--threads" in argv:
        i = argv.index("--threads")
        threads = [argv[i + 1]]
        argv = argv[:i] + argv[i + 2:]
    if "--thp" in argv:
        argv = [a for a in argv if a != "--thp"]
        env["THP_MEM_ALLOC_ENABLE"] = "1"
        print("(THP_MEM_ALLOC_ENABLE=1: large tensors on transparent huge pages)")
    scales = argv or list(SCALES)
    for scale in scales:
        if scale not in SCALES:
            print(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}", file=sys.stderr)
            return 2
    for scale in scales:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", scale,
                               *threads],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return proc.returncode
        report(json.loads(proc.stdout.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
