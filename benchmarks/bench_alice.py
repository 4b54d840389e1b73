"""Alice EEG build benchmark on simulated subjects of the real size.

Writes ``--subjects`` simulated subjects (default 33, the release) at the real
size (61 EEG channels plus VEOG/Aux5/AUD, 500 Hz, the 12 real segment
durations, about 744 s of audio) with :func:`deepstrf.testing.fixtures.alice.write_alice_eeg`,
then measures in fresh processes: the cold build (MNE read, filter, resample,
cut, spectrograms, cache write) with ``n_jobs=1`` and ``n_jobs=2``, the warm
load from the processed cache, and peak memory (the process's peak RSS and
its workers', sampled while the build runs). Target: peak memory under 3x (one
subject's raw data as MNE holds it, float64, plus the built dataset). The
interpreter's import baseline (numpy, torch, MNE: about 300 MB before any data)
is printed too, and the peak above it, which is what the data costs.

    python benchmarks/bench_alice.py [--subjects 33] [--repeats 1] [--dt-ms 10]
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
from pathlib import Path

logger = logging.getLogger("bench_alice")

CHILD = """
import json, sys, threading, time
import psutil
me = psutil.Process()
def hwm():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
workers = {"peak": 0, "sum": 0}
stop = threading.Event()
def sample():
    # worker processes (joblib's loky pool) outlive the build, so RUSAGE_CHILDREN misses them:
    # sample their RSS instead, every 20 ms
    while not stop.is_set():
        total = 0
        for child in me.children(recursive=True):
            try:
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            workers["peak"] = max(workers["peak"], rss)
            total += rss
        workers["sum"] = max(workers["sum"], total)
        stop.wait(0.02)
t0 = time.perf_counter()
import mne, torch
from deepstrf.datasets.audio.alice_eeg import AliceEEGDataset
import deepstrf.preprocessing.eeg
t_import = time.perf_counter() - t0
baseline = hwm()
root, dt_ms, n_jobs, cache = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t0 = time.perf_counter()
ds = AliceEEGDataset(root, dt_ms=dt_ms, n_jobs=n_jobs, cache=cache, progress=False)
elapsed = time.perf_counter() - t0
stop.set()
sampler.join()
stim_bytes = sum(x.numel() * x.element_size() for x in ds.stims)
print(json.dumps({"seconds": elapsed, "import_seconds": t_import,
                  "cache_hit": ds.provenance["cache_hit"],
                  "peak_rss": hwm(), "import_rss": baseline,
                  "peak_rss_workers": workers["peak"], "peak_rss_workers_sum": workers["sum"],
                  "n_neurons": ds.get_N(), "n_stims": ds.get_S(),
                  "built_bytes": ds.response_store.nbytes + stim_bytes}))
"""


def measure(root: Path, dt_ms: float, n_jobs: int, cache: str, home: Path) -> dict:
    """One construction in a fresh interpreter; its timings and memory as a dict."""
    env = dict(os.environ, DEEPSTRF_DATA_DIR=str(home), DEEPSTRF_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, str(root), str(dt_ms),
                           str(n_jobs), cache], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"the benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=33,
                        help="simulated subjects (1-33, the release's first N; default 33)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement")
    parser.add_argument("--dt-ms", type=float, default=10.0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to write the tree (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not 1 <= args.subjects <= 33:
        parser.error(f"--subjects must be 1..33; got {args.subjects}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from deepstrf.testing.fixtures.alice import ALICE_SUBJECTS, write_alice_eeg

    with tempfile.TemporaryDirectory(prefix="bench-alice-", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        subjects = ALICE_SUBJECTS[:args.subjects]
        import time
        t0 = time.perf_counter()
        fx = write_alice_eeg(tmp / "data" / "raw", subjects=subjects,
                             segment_durations_s="full", keep_signals=False, seed=0)
        logger.info("wrote %d subjects in %.1f s", len(subjects), time.perf_counter() - t0)
        rec = max(fx.subjects.values(), key=lambda r: r.n_samples)
        raw_bytes = (61 + 3) * rec.n_samples * 8     # what MNE holds for one subject (float64)
        fif_bytes = sum(r.path.stat().st_size for r in fx.subjects.values())
        results: dict[str, list[dict]] = {"cold n_jobs=1": [], "cold n_jobs=2": [], "warm": []}
        for i in range(args.repeats):
            for n_jobs in (1, 2):
                home = tmp / f"home-{n_jobs}-{i}"
                results[f"cold n_jobs={n_jobs}"].append(
                    measure(tmp / "data", args.dt_ms, n_jobs, "rebuild", home))
            results["warm"].append(measure(tmp / "data", args.dt_ms, 1, "use", home))
        assert all(not r["cache_hit"] for r in results["cold n_jobs=1"])
        assert all(r["cache_hit"] for r in results["warm"])
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    built = results["warm"][0]["built_bytes"]
    target = 3 * (raw_bytes + built)
    print(f"Alice EEG, {args.subjects} simulated subjects at the real size "
          f"({rec.n_samples} samples x 64 channels at 500 Hz; .fif files {fif_bytes / 1e6:.0f} MB"
          f" in all), dt_ms={args.dt_ms:g}, median of {args.repeats}:")
    print(f"  one subject's raw data (float64) {raw_bytes / 1e6:.0f} MB; built dataset "
          f"{built / 1e6:.0f} MB ({results['warm'][0]['n_neurons']} neurons x "
          f"{results['warm'][0]['n_stims']} stimuli); memory target {target / 1e6:.0f} MB")
    base = max(r["import_rss"] for v in results.values() for r in v)
    print(f"  import baseline (python + numpy + torch + mne + deepstrf, no data) "
          f"{base / 1e6:.0f} MB; 'above' = peak RSS minus it, the memory the data costs")
    for key, runs in results.items():
        rss = max(r["peak_rss"] for r in runs)
        above = max(r["peak_rss"] - r["import_rss"] for r in runs)
        workers = max(r["peak_rss_workers"] for r in runs)
        together = max(r["peak_rss_workers_sum"] for r in runs)
        line = (f"  {key:<14} {med[key]:8.2f} s  peak RSS {rss / 1e6:6.0f} MB, above "
                f"{above / 1e6:5.0f} MB ({above / target:.2f} of target; total "
                f"{rss / target:.2f})")
        if workers:
            line += (f"; largest worker {workers / 1e6:.0f} MB ({workers / target:.2f} of "
                     f"target), workers together {together / 1e6:.0f} MB")
        print(line)
    print(f"  ratios: cold n_jobs=1 / n_jobs=2 {med['cold n_jobs=1'] / med['cold n_jobs=2']:.2f}x;"
          f" cold n_jobs=1 / warm {med['cold n_jobs=1'] / med['warm']:.1f}x; per subject "
          f"(n_jobs=1) {med['cold n_jobs=1'] / args.subjects:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
