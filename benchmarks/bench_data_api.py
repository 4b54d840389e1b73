"""Data-API benchmark: construction, masks, selection, indexing, one DataLoader epoch.

Builds three synthetic datasets deterministically and prints, per scale:
construct+validate, first ``nrn_masks``, ``len`` after a predicate selection
(first and cached), ``ds[i]`` latency, one epoch through
``DataLoader(batch_size=8, shuffle=True, collate_fn=neural_collate)``, peak RSS
against the stored data, and the epoch's floor: the bytes of the padded
batches it must produce divided by a memory-copy bandwidth measured in the
same run. Each scale runs in its own process so peak RSS is its own.

    python benchmarks/bench_data_api.py            # all scales
    python benchmarks/bench_data_api.py small medium
    python benchmarks/bench_data_api.py --thp large  # PyTorch's transparent huge pages on

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


def run_scale(scale: str) -> dict:
    from torch.utils.data import DataLoader

    from deepstrf.utils.data import neural_collate

    torch.manual_seed(0)
    out: dict = {"scale": scale}
    t0 = time.perf_counter()
    ds = build(scale)
    out["construct_validate_s"] = time.perf_counter() - t0
    store = ds.response_store
    stim_bytes = sum(x.numel() * x.element_size() for x in ds.stims)
    out["stored_bytes"] = store.nbytes + stim_bytes
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

    lat = []
    idx = np.random.default_rng(0).integers(0, len(ds), size=200)
    for i in idx:
        t0 = time.perf_counter()
        ds[int(i)]
        lat.append(time.perf_counter() - t0)
    out["getitem_median_s"] = statistics.median(lat)

    bandwidth = copy_bandwidth()
    fresh_bandwidth = fresh_copy_bandwidth()
    loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=neural_collate)
    produced = 0
    t0 = time.perf_counter()
    for batch in loader:
        produced += sum(batch[k].numel() * batch[k].element_size()
                        for k in ("stims", "responses", "valid_mask"))
    out["epoch_s"] = time.perf_counter() - t0
    out["epoch_bytes"] = produced
    out["copy_bandwidth_Bps"] = bandwidth
    out["epoch_floor_s"] = produced / bandwidth
    out["epoch_over_floor"] = out["epoch_s"] / out["epoch_floor_s"]
    out["fresh_copy_bandwidth_Bps"] = fresh_bandwidth
    out["epoch_over_fresh_floor"] = out["epoch_s"] * fresh_bandwidth / produced
    out.update(extra_measurements(ds))
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["peak_rss_over_stored"] = out["peak_rss_bytes"] / out["stored_bytes"]
    return out


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def extra_measurements(ds) -> dict:
    """Whole-dataset operations: time and peak RSS during each, against the stored data."""
    stored = ds.response_store.nbytes + sum(x.numel() * x.element_size() for x in ds.stims)
    out = {}
    for name, call in (("compute_neuron_quality", lambda: ds.compute_neuron_quality()),
                       ("smooth_responses", lambda: ds.smooth_responses()),
                       ("normalize_responses", lambda: ds.normalize_responses("max"))):
        supported = _reset_peak_rss()
        t0 = time.perf_counter()
        call()
        elapsed = time.perf_counter() - t0
        peak = _peak_rss_now() if supported else 0
        text = f"{elapsed:8.2f} s"
        if supported:
            text += f"   peak RSS {peak / 1e6:.0f} MB = {peak / stored:.2f}x stored data"
        out[f"op_{name}"] = text
        out[f"{name}_s"] = elapsed
        out[f"{name}_peak_over_stored"] = peak / stored if supported else None
    return out


def report(r: dict) -> None:
    mb = 1e6
    print(f"== {r['scale']}: S={r['S']} N={r['N']} pairs={r['pairs']} "
          f"stored={r['stored_bytes'] / mb:.0f} MB")
    print(f"  construct+validate       {r['construct_validate_s'] * 1e3:10.1f} ms")
    print(f"  first nrn_masks          {r['first_nrn_masks_s'] * 1e3:10.2f} ms")
    print(f"  len after selection      {r['len_after_selection_first_s'] * 1e3:10.2f} ms (first), "
          f"{r['len_cached_s'] * 1e6:.2f} us cached  [target < 1 ms cached]")
    print(f"  ds[i] median             {r['getitem_median_s'] * 1e3:10.3f} ms"
          + ("  [target < 1 ms at medium]" if r["scale"] == "medium" else ""))
    print(f"  epoch (bs=8, shuffle)    {r['epoch_s']:10.2f} s   floor {r['epoch_floor_s']:.2f} s "
          f"({r['epoch_bytes'] / mb:.0f} MB at {r['copy_bandwidth_Bps'] / 1e9:.1f} GB/s) "
          f"-> {r['epoch_over_floor']:.2f}x floor  [target <= 5x at medium/large]")
    print(f"  (into fresh memory at {r['fresh_copy_bandwidth_Bps'] / 1e9:.1f} GB/s the floor is "
          f"{r['epoch_bytes'] / r['fresh_copy_bandwidth_Bps']:.2f} s -> "
          f"{r['epoch_over_fresh_floor']:.2f}x)")
    targets = {"medium": {"compute_neuron_quality": "< 3 s", "smooth_responses": "< 0.5 s"},
               "large": {"compute_neuron_quality": "< 60 s, peak < 1.2x stored"}}
    for key, value in r.items():
        if key.startswith("op_"):
            target = targets.get(r["scale"], {}).get(key[3:])
            print(f"  {key[3:]:<24} {value}" + (f"  [target {target}]" if target else ""))
    print(f"  peak RSS                 {r['peak_rss_bytes'] / mb:10.0f} MB = "
          f"{r['peak_rss_over_stored']:.2f}x stored data  [target < 1.5x at large]")


def main(argv: list[str]) -> int:
    import os

    if argv[:1] == ["--one"]:
        print(json.dumps(run_scale(argv[1])))
        return 0
    env = dict(os.environ)
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
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", scale],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return proc.returncode
        report(json.loads(proc.stdout.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
