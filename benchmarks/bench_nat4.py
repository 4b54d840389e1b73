"""NAT4 build benchmark on a simulated A1 release of the real size.

Writes a simulated NAT4 A1 release with :func:`deepstrf.testing.fixtures.nat4.write_nat4`
at the real size (849 cells on 22 sites, 575 estimation sounds at R=1 and 18
validation sounds at R=20, 10 ms bins: a population raster of 88 950 x 849
values written as ``%.18e`` text, as NEMS0 writes it), then measures in fresh
processes the cold build (read the population recording and the 22 site
recordings, render, write the cache) with ``n_jobs=1`` and ``n_jobs=2``, the
warm load from the processed cache, and peak memory. Targets (issue 12): cold
build under 60 s, warm load at least 50x faster than the cold build, peak
memory under 2x the built data (responses plus stimuli).

    python benchmarks/bench_nat4.py [--repeats 1] [--tree DIR] [--cells 849] [--est 575]

``--tree DIR`` keeps the written release in DIR (written there if it holds
none yet), so later runs skip the minutes of writing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("bench_nat4")

# 22 A1 sites as the release names them: 3 letters, a number, a session letter
SITES = tuple(f"{animal}{num:03d}{letter}" for animal, num, letter in (
    ("ARM", 29, "a"), ("ARM", 30, "a"), ("ARM", 31, "a"), ("ARM", 32, "a"), ("ARM", 33, "a"),
    ("CLT", 22, "a"), ("CLT", 23, "a"), ("CLT", 27, "a"), ("CLT", 28, "a"), ("CLT", 29, "a"),
    ("CLT", 30, "d"), ("CLT", 32, "c"), ("CLT", 33, "c"), ("DRX", 6, "b"), ("DRX", 7, "a"),
    ("DRX", 8, "b"), ("TNC", 8, "a"), ("TNC", 15, "a"), ("TNC", 16, "a"), ("TNC", 17, "a"),
    ("TNC", 18, "a"), ("TNC", 19, "a")))

# mean driven rates of cortical single units; with them the 22 site files come to about
# the release's 70 MB (the writer's default, 40-100 Hz, writes six times more spikes)
RATE_HZ = (3.0, 15.0)

CHILD = """
import glob, json, os, resource, sys, time
t0 = time.perf_counter()
from deepstrf.datasets.audio.nat4 import NAT4Dataset
t_import = time.perf_counter() - t0
root, n_jobs, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
ds = NAT4Dataset(root, n_jobs=n_jobs, cache=cache, progress=False)
elapsed = time.perf_counter() - t0
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
stim_bytes = sum(x.numel() * x.element_size() for x in ds.stims)

def hwm(pid):
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec from the parent
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

def workers(pid):
    # the pool's processes, still alive (joblib reuses them); loky starts them from a child
    kids = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        kids += [int(k) for k in open(path).read().split()]
    return kids + [g for k in kids for g in workers(k)]

pool = {}
for pid in workers(os.getpid()):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"LokyProcess" not in f.read():  # not the resource trackers
                continue
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        pool[pid] = (hwm(pid), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    except (OSError, StopIteration):
        pass
big = list(pool.values())
print(json.dumps({"seconds": elapsed, "import_seconds": t_import,
                  "cpu_seconds": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
                  "cache_hit": ds.provenance["cache_hit"], "peak_rss": hwm(os.getpid()),
                  "peak_rss_workers": max((v[0] for v in big), default=0),
                  "n_workers": len(big), "worker_cpu_seconds": sum(v[1] for v in big),
                  "n_neurons": ds.get_N(), "n_stims": ds.get_S(),
                  "n_pairs": ds.response_store.n_pairs,
                  "response_bytes": ds.response_store.nbytes, "stim_bytes": stim_bytes}))
"""

BASELINE = """
import sys, time
t0 = time.perf_counter()
from deepstrf.datasets.audio.nat4 import NAT4Dataset
print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
           if line.startswith("VmHWM:")))
"""


def split_cells(n_cells: int, n_sites: int) -> list[int]:
    """``n_cells`` spread over ``n_sites`` as evenly as possible (849 on 22: 13 x 39, 9 x 38)."""
    base, extra = divmod(n_cells, n_sites)
    return [base + (i < extra) for i in range(n_sites)]


def measure(root: Path, n_jobs: int, cache: str, home: Path) -> dict:
    """One construction in a fresh interpreter; its timings and memory as a dict."""
    env = dict(os.environ, DEEPSTRF_DATA_DIR=str(home), DEEPSTRF_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, str(root), str(n_jobs),
                           cache], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"the benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_tree(raw: Path, n_cells: int, n_est: int, seed: int) -> None:
    from deepstrf.testing.fixtures.nat4 import write_nat4

    t0 = time.perf_counter()
    write_nat4(raw, n_est=n_est, n_val=18, n_val_repeats=20, sites=SITES,
               cells_per_site=split_cells(n_cells, len(SITES)), write_wav=False, seed=seed,
               rate_hz=RATE_HZ)
    sizes = {p.name: p.stat().st_size for p in raw.iterdir()}
    logger.info("wrote the simulated release in %.0f s: %s", time.perf_counter() - t0,
                ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sorted(sizes.items())))


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement")
    parser.add_argument("--cells", type=int, default=849, help="population cells (849, A1)")
    parser.add_argument("--est", type=int, default=575, help="estimation sounds (575)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tree", type=Path, default=None,
                        help="keep the written release here (reused when already written)")
    args = parser.parse_args(argv)
    if args.cells < 2 * len(SITES) or args.est < 2 or args.repeats < 1:
        parser.error(f"need --cells >= {2 * len(SITES)}, --est >= 2 and --repeats >= 1")
    # this script's progress only (the fixture writer's own INFO lines are noise here)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    with tempfile.TemporaryDirectory(prefix="bench-nat4-") as tmp:
        tmp = Path(tmp)
        raw = args.tree if args.tree is not None else tmp / "raw"
        if not (raw / "A1_pred_correlation.csv").exists():
            write_tree(raw, args.cells, args.est, args.seed)
        else:
            logger.info("reusing the release in %s", raw)
        pop_bytes = (raw / "A1_NAT4_ozgf.fs100.ch18.tgz").stat().st_size
        sites_bytes = (raw / "A1_single_sites.zip").stat().st_size
        env = dict(os.environ, DEEPSTRF_PROGRESS="0")
        baseline = int(subprocess.run([sys.executable, "-c", BASELINE], capture_output=True,
                                      text=True, env=env, check=True).stdout.split()[-1])
        load_before = _load()
        results: dict[str, list[dict]] = {"cold n_jobs=1": [], "cold n_jobs=2": [], "warm": []}
        for i in range(args.repeats):
            for n_jobs in (1, 2):
                home = tmp / f"home-{n_jobs}-{i}"
                results[f"cold n_jobs={n_jobs}"].append(measure(raw, n_jobs, "rebuild", home))
                logger.info("cold n_jobs=%d: %.1f s", n_jobs,
                            results[f"cold n_jobs={n_jobs}"][-1]["seconds"])
            results["warm"].append(measure(raw, 1, "use", home))
        load_after = _load()
        if any(r["cache_hit"] for k, v in results.items() if k != "warm" for r in v) or \
                not all(r["cache_hit"] for r in results["warm"]):
            raise RuntimeError("a cold run hit the cache or a warm run missed it")

    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    first = results["warm"][0]
    built = first["response_bytes"] + first["stim_bytes"]
    cold = max(med["cold n_jobs=1"], med["cold n_jobs=2"])
    speedup = min(med["cold n_jobs=1"], med["cold n_jobs=2"]) / med["warm"]
    peak = max(r["peak_rss"] for v in results.values() for r in v)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"NAT4 A1, simulated at the real size: {first['n_neurons']} cells x "
          f"{first['n_stims']} stimuli ({first['n_pairs']} pairs), dt_ms=10, "
          f"median of {args.repeats}")
    print(f"  raw: population recording {pop_bytes / 1e6:.0f} MB, single sites "
          f"{sites_bytes / 1e6:.0f} MB; built data {built / 1e6:.0f} MB (responses "
          f"{first['response_bytes'] / 1e6:.0f} MB, stimuli {first['stim_bytes'] / 1e6:.1f} MB)")
    print(f"  load average before {load_before}, after {load_after}")
    print(f"  interpreter with deepstrf, torch and numpy imported: {baseline / 1e6:.0f} MB RSS")
    for key, runs in results.items():
        rss = max(r["peak_rss"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] + r["worker_cpu_seconds"] for r in runs)
        workers = max(r["peak_rss_workers"] for r in runs)
        seen = f"; {runs[0]['n_workers']} workers, each at most {workers / 1e6:.0f} MB" \
            if workers else ""
        print(f"  {key:<14} {med[key]:8.2f} s wall, {cpu:6.1f} s CPU  peak RSS "
              f"{rss / 1e6:5.0f} MB ({rss / built:.2f}x built data){seen}")
    cpu1 = statistics.median(r["cpu_seconds"] for r in results["cold n_jobs=1"])
    print(f"  cold build, slower of n_jobs=1/2: {cold:.1f} s (target < 60 s: "
          f"{verdict(cold < 60)}); n_jobs=1 / n_jobs=2 "
          f"{med['cold n_jobs=1'] / med['cold n_jobs=2']:.2f}x; n_jobs=1 used {cpu1:.1f} s of "
          f"CPU, about its wall time on an idle core")
    print(f"  warm load {med['warm'] * 1000:.0f} ms: {speedup:.0f}x faster than the faster cold "
          f"build (target >= 50x: {verdict(speedup >= 50)})")
    print(f"  peak RSS {peak / 1e6:.0f} MB = {peak / built:.2f}x the built data (target < 2x: "
          f"{verdict(peak < 2 * built)}); above the bare interpreter "
          f"{(peak - baseline) / 1e6:.0f} MB = {(peak - baseline) / built:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
