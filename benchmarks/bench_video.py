"""Movie-dataset benchmark: ``ds[i]``, one epoch against its memory-copy floor, peak memory.

The issue's size: 200 stimuli, 100 neurons, 64x64-pixel grayscale movies of
3 s at 10 ms bins (300 frames, one per bin), every neuron on every stimulus
with ``--repeats`` repeats (default 5). Movies alone are 200 x 64 x 64 x 300
float32 = 983 MB. Prints, as JSON lines:

* ``build``: seconds for ``VideoNeuralDataset.from_data`` on packed blocks
  (validation included) and the bytes held;
* ``item``: median latency of ``ds[i]`` over 2000 random indices;
* ``epoch``: ``DataLoader(batch_size=8, shuffle=True, collate_fn=neural_collate)``,
  first epoch and median of the next ones, next to two floors measured in
  the same run: the bytes of the padded batches (stims, responses, mask) at
  the warm memory-copy bandwidth of this machine (copy into memory already
  touched), and at the bandwidth of copying into fresh memory (what a batch
  in new memory costs); target: within 5x of the warm floor;
* ``methods``: seconds and peak-RSS growth of ``change_spatial_resolution(32)``
  and ``normalize_videos()`` on the whole dataset;
* ``peak_rss``: the process's high-water mark (``VmHWM``) against the data held.

    python benchmarks/bench_video.py                # 200 x 100, R = 5
    python benchmarks/bench_video.py --repeats 10 --epochs 4
    python benchmarks/bench_video.py --threads 1    # on cores shared with busy processes

On a machine whose cores are shared with other busy processes, PyTorch's
thread team can stall on every parallel region (a copy split over two
threads ran at 0.4 GB/s instead of 4 GB/s here); ``--threads 1`` then gives
the figures the hardware allows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

S, N, H, W, T = 200, 100, 64, 64, 300


def _hwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def build(repeats: int, seed: int = 0):
    from deepstrf.datasets._storage import ResponseStore
    from deepstrf.datasets.video import VideoNeuralDataset

    g = torch.Generator().manual_seed(seed)
    stims = [torch.rand(1, H, W, T, generator=g) for _ in range(S)]
    blocks = [(np.arange(N), np.full(N, repeats),
               torch.poisson(torch.full((N * repeats, T), 0.3), generator=g)) for _ in range(S)]
    t0 = time.perf_counter()
    store = ResponseStore.from_blocks(N, blocks)
    ds = VideoNeuralDataset.from_data(stims, store, dt_ms=10.0,
                                      stim_meta=[{"name": f"movie{s}"} for s in range(S)])
    return ds, time.perf_counter() - t0


def copy_bandwidth(n_bytes: int = 1 << 26) -> tuple[float, float]:
    """``(warm, fresh)`` bytes per second of a tensor copy on this machine."""
    src = torch.rand(n_bytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        warm.append(time.perf_counter() - t0)
    fresh = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = torch.empty_like(src)
        out.copy_(src)
        fresh.append(time.perf_counter() - t0)
        del out
    return n_bytes / min(warm), n_bytes / min(fresh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (1 gives steadier figures on shared cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from torch.utils.data import DataLoader

    from deepstrf.utils.data import neural_collate

    ds, seconds = build(args.repeats)
    built_hwm = _hwm()
    stim_bytes = sum(x.numel() * 4 for x in ds.stims)
    resp_bytes = ds.response_store.nbytes
    print(json.dumps({"build": {"seconds": round(seconds, 3), "threads": torch.get_num_threads(),
                                "stim_bytes": stim_bytes,
                                "response_bytes": resp_bytes, "S": S, "N": N,
                                "frame": [H, W], "T": T, "repeats": args.repeats}}), flush=True)

    rng = np.random.default_rng(0)
    lat = []
    for i in rng.integers(0, len(ds), 2000):
        t0 = time.perf_counter()
        ds[int(i)]
        lat.append(time.perf_counter() - t0)
    print(json.dumps({"item": {"median_us": round(statistics.median(lat) * 1e6, 1),
                               "p95_us": round(float(np.percentile(lat, 95)) * 1e6, 1)}}),
          flush=True)

    B = args.batch_size
    # bytes an epoch hands over: padded stims, responses (float32) and mask (bool) per batch
    per_item = H * W * T * 4 + N * args.repeats * T * (4 + 1)
    epoch_bytes = per_item * S
    warm_bw, fresh_bw = copy_bandwidth()
    times = []
    for _ in range(args.epochs):
        loader = DataLoader(ds, batch_size=B, shuffle=True, collate_fn=neural_collate)
        t0 = time.perf_counter()
        n_items = 0
        for batch in loader:
            n_items += batch["stims"].shape[0]
        times.append(time.perf_counter() - t0)
        assert n_items == S
    warm_floor, fresh_floor = epoch_bytes / warm_bw, epoch_bytes / fresh_bw
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    print(json.dumps({"epoch": {
        "first_s": round(times[0], 3), "steady_s": round(steady, 3),
        "bytes": epoch_bytes, "warm_copy_GBps": round(warm_bw / 1e9, 2),
        "fresh_copy_GBps": round(fresh_bw / 1e9, 2),
        "warm_floor_s": round(warm_floor, 3), "fresh_floor_s": round(fresh_floor, 3),
        "x_warm_floor": round(steady / warm_floor, 2),
        "x_fresh_floor": round(steady / fresh_floor, 2),
        "target_met": steady <= 5 * warm_floor}}), flush=True)

    methods = {}
    for name, call in (("normalize_videos", lambda: ds.normalize_videos()),
                       ("change_spatial_resolution(32)",
                        lambda: ds.change_spatial_resolution(32))):
        before = _rss()
        t0 = time.perf_counter()
        call()
        methods[name] = {"seconds": round(time.perf_counter() - t0, 3),
                         "rss_growth_MB": round((_rss() - before) / 1e6, 1)}
    print(json.dumps({"methods": methods}), flush=True)
    held = stim_bytes + resp_bytes
    # the build's peak includes the generator's own copies of the inputs; the rest is the
    # dataset's: indexing, epochs, the methods
    print(json.dumps({"peak_rss": {"after_build": built_hwm, "overall": _hwm(),
                                   "data_bytes": held,
                                   "x_data": round(_hwm() / held, 2)}}), flush=True)


if __name__ == "__main__":
    main()
