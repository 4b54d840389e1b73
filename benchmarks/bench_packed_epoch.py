"""Epochs over a Downer-sized dataset from the cache: warm open, dense vs packed, peak memory.

Builds simulated releases with the Downer 2025 sizes (1718 channels in 41
sessions, 499 TIMIT-like and 303 vocalisation-like stimuli of the documented
durations, 80 bands; see :func:`deepstrf.testing.large.downer_like_spec`)
straight into the processed cache, then measures in fresh processes:

- warm open (median of ``--repeats``), target under 1 s;
- one epoch of batches (``--batch-size``, shuffled) in the dense form
  (``DataLoader(ds, collate_fn=neural_collate)``) and the packed form
  (:func:`deepstrf.utils.data.packed_loader`), load only;
- training steps (batch + ``mse_loss`` + backward against a constant
  prediction) in both forms over the first ``--loss-batches`` batches of the
  same order, as time per batch and the epoch extrapolated from it;
- peak resident memory (``VmHWM``) of each process, and its growth over the
  open dataset.

At ``dt_ms=5`` each session hears ``--coverage`` of the stimuli (default 25 %,
the target's setting: packed at least 3x faster). At ``dt_ms=1`` the coverage
is raised until the responses exceed ``--ram-fraction`` (default half) of the
machine's memory, disk permitting (the build needs the size twice: scratch and
entry); only the packed epoch runs there, because one dense batch of it needs
several GB (its size is printed). Target: epoch peak RSS under 2 GB.

    python benchmarks/bench_packed_epoch.py [--root DIR] [--dt-ms 5 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

root, mode = sys.argv[1], sys.argv[2]
import torch
from torch.utils.data import DataLoader
from deepstrf.testing.large import LargeSyntheticDataset

if mode == "build":
    t = time.perf_counter()
    ds = LargeSyntheticDataset(root)
    print(json.dumps({"seconds": time.perf_counter() - t, "cache_hit": ds._cache_hit,
                      "bytes": ds.response_store.nbytes, "pairs": ds.response_store.n_pairs,
                      "stim_bytes": sum(x.numel() * 4 for x in ds.stims)}))
    raise SystemExit

rss0 = status("VmRSS")
t = time.perf_counter()
ds = LargeSyntheticDataset(root, cache="readonly")
open_s = time.perf_counter() - t
rss_open = status("VmRSS")
if mode == "open":
    print(json.dumps({"open_s": open_s, "rss_open_growth": rss_open - rss0}))
    raise SystemExit

from deepstrf.metrics import mse_loss
from deepstrf.utils.data import neural_collate, packed_loader
form, batch_size, max_batches, loss = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
gen = torch.Generator().manual_seed(0)
if form == "packed":
    loader = packed_loader(ds, batch_size=batch_size, shuffle=True, generator=gen)
else:
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen,
                        collate_fn=neural_collate)
n_batches = len(loader)
t = time.perf_counter()
done = values = 0
for batch in loader:
    if loss:
        responses = batch if form == "packed" else batch["responses"]
        B, N, _, T = responses.shape
        pred = torch.full((B, N, 1, T), 0.5, requires_grad=True)
        mse_loss(pred, responses, mask=batch["valid_mask"]).backward()
        del pred, responses
    values += int(batch.values.numel()) if form == "packed" else int(batch["valid_mask"].sum())
    del batch
    done += 1
    if done == max_batches:
        break
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "batches": done, "n_batches": n_batches,
                  "values": values, "peak_rss": status("VmHWM"),
                  "epoch_growth": status("VmHWM") - rss_open, "open_s": open_s}))
"""


def run(root: Path, *args: object) -> dict:
    env = dict(os.environ, DEEPSTRF_PROGRESS="0")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, str(root),
                           *map(str, args)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"the benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def dense_batch_bytes(spec: dict, batch_size: int) -> int:
    """Bytes of the largest dense batch (responses + mask) the spec's stimuli can give."""
    from deepstrf.testing.large import _layout

    lay = _layout(spec)
    T = sorted(lay["T"].tolist())[-batch_size:]
    return batch_size * spec["n_neurons"] * int(lay["reps"].max()) * max(T) * 5


def choose_spec(dt_ms: float, args, free_disk: int) -> tuple[dict, str]:
    from deepstrf.testing.large import downer_like_spec, spec_nbytes

    if dt_ms != 1.0 or args.ram_fraction <= 0:
        spec = downer_like_spec(dt_ms=dt_ms, coverage=args.coverage)
        return spec, f"coverage {args.coverage:.0%}"
    target = args.ram_fraction * mem_total()
    note = ""
    for cov in [x / 20 for x in range(5, 21)]:
        spec = downer_like_spec(dt_ms=dt_ms, coverage=cov)
        size = spec_nbytes(spec)
        if 2.2 * size > free_disk:
            note = f"; scaled down: {gb(2.2 * size)} of disk needed, {gb(free_disk)} free"
            spec = downer_like_spec(dt_ms=dt_ms, coverage=max(0.05, cov - 0.05))
            break
        if size > target:
            break
    return spec, f"coverage {spec['coverage']:.0%}, responses {gb(spec_nbytes(spec))} vs " \
                 f"{args.ram_fraction:.0%} of RAM = {gb(target)}{note}"


def bench(dt_ms: float, args, base: Path) -> None:
    from deepstrf.testing.large import spec_nbytes, write_spec

    free = shutil.disk_usage(base).free
    spec, why = choose_spec(dt_ms, args, free)
    root = write_spec(base / f"downer_like_dt{dt_ms:g}", spec)
    print(f"## dt_ms={dt_ms:g}: {why}", flush=True)
    built = run(root, "build")
    print(f"build ({'cached' if built['cache_hit'] else 'simulated + written'}): "
          f"{built['seconds']:.1f} s; responses {gb(built['bytes'])}, "
          f"{built['pairs']} (stim, neuron) pairs, stims {gb(built['stim_bytes'])}", flush=True)
    assert built["bytes"] == spec_nbytes(spec)
    opens = [run(root, "open") for _ in range(args.repeats)]
    times = [o["open_s"] for o in opens]
    runs = ", ".join(f"{x:.3f}" for x in times)
    growth = max(o["rss_open_growth"] for o in opens)
    print(f"warm open: median {statistics.median(times):.3f} s (runs: {runs}); resident "
          f"growth {gb(growth)}", flush=True)
    forms = ["packed"] if dt_ms == 1.0 and not args.dense_at_1ms else ["dense", "packed"]
    if "dense" not in forms:
        print(f"dense form skipped: its largest batch would be "
              f"{gb(dense_batch_bytes(spec, args.batch_size))} (responses + mask)")
    results = {}
    for form in forms:
        load = run(root, "epoch", form, args.batch_size, 0, 0)
        results[form] = load
        print(f"{form:6s} epoch (load only): {load['seconds']:.1f} s for {load['batches']} "
              f"batches; peak RSS {gb(load['peak_rss'])} (growth {gb(load['epoch_growth'])})",
              flush=True)
    if len(results) == 2:
        print(f"packed vs dense, load only: {results['dense']['seconds'] / results['packed']['seconds']:.1f}x "
              f"faster (target >= 3x)")
    if args.loss_batches:
        steps = {}
        for form in forms:
            step = run(root, "epoch", form, args.batch_size, args.loss_batches, 1)
            steps[form] = step
            per = step["seconds"] / step["batches"]
            print(f"{form:6s} training steps (batch + mse_loss + backward): {per:.2f} s per "
                  f"batch over {step['batches']} batches, epoch ~{per * step['n_batches']:.0f} s;"
                  f" peak RSS {gb(step['peak_rss'])}", flush=True)
        if len(steps) == 2:
            ratio = (steps["dense"]["seconds"] / steps["dense"]["batches"]) / \
                (steps["packed"]["seconds"] / steps["packed"]["batches"])
            print(f"packed vs dense, training steps: {ratio:.1f}x faster")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="where to build (default: a temporary folder)")
    parser.add_argument("--dt-ms", type=float, nargs="+", default=[5.0, 1.0])
    parser.add_argument("--coverage", type=float, default=0.25)
    parser.add_argument("--ram-fraction", type=float, default=0.5,
                        help="at dt_ms=1, make the responses larger than this share of RAM")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--loss-batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-at-1ms", action="store_true",
                        help="also run the dense epoch at dt_ms=1 (needs several GB a batch)")
    parser.add_argument("--keep", action="store_true", help="keep the built caches")
    args = parser.parse_args(argv)
    base = args.root or Path(tempfile.mkdtemp(prefix="bench_packed_"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"# packed-epoch benchmark under {base}; {os.cpu_count()} CPUs, RAM {gb(mem_total())}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    for dt in args.dt_ms:
        bench(dt, args, base)
    if args.root is None and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
