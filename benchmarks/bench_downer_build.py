"""Downer 2025 build benchmark on a simulated release at the real counts.

Writes (once, then reused) a simulated ``auditory_cortex_data.zip`` with
:func:`deepstrf.testing.fixtures.downer2025.write_downer2025_large`: 41
sessions, 1718 channels, 499 TIMIT sentences, 303 vocalisations in a
780-slot play list, multi-unit spike times (no waveforms). Then, each in a
fresh interpreter reading the zip in place:

* the cold build (every session shard and the stimulus shard, then the
  composition at load time: a record of the shards, no composed copy) with
  ``n_jobs=1`` and with ``n_jobs=2``, with the build's phases
  (``timings_s`` of the manifest);
* the warm open (the shards' entries opened and joined);
* a cold build after ``sessions=[first two]``: the composition then reuses
  those two shards;
* what one channel file costs to read: the streaming reader of
  :mod:`deepstrf.io.matv5` against :func:`scipy.io.loadmat`, on a channel
  file with a realistic waveform matrix (``--waveform-samples``).

Targets: ``n_jobs=2`` at least 1.6x faster than ``n_jobs=1`` on the cold
build; warm open under 1 s.

    python benchmarks/bench_downer_build.py [--scale 1.0] [--dt-ms 5] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from deepstrf.datasets.audio.downer2025 import Downer2025Dataset
t_import = time.perf_counter() - t0
path, dt_ms, n_jobs, sessions = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sessions = None if sessions == "all" else sessions.split(",")
t0 = time.perf_counter()
ds = Downer2025Dataset(path, dt_ms=dt_ms, n_jobs=n_jobs, sessions=sessions, progress=False)
elapsed = time.perf_counter() - t0
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
report = ds.shard_report
print(json.dumps({"seconds": elapsed, "import_seconds": t_import,
                  "cache_hit": ds.provenance["cache_hit"], "peak_rss": hwm,
                  "peak_rss_workers":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                  "n_neurons": ds.get_N(), "n_stims": ds.get_S(),
                  "response_bytes": ds.response_store.nbytes,
                  "timings_s": (ds.provenance["manifest"] or {}).get("timings_s"),
                  "entry_kind": (ds.provenance["manifest"] or {}).get("kind"),
                  "built": len(report.built) if report else None,
                  "reused": len(report.reused) if report else None}))
"""


def run(path: Path, home: Path, dt_ms: float, n_jobs: int, sessions: str = "all") -> dict:
    env = dict(os.environ, DEEPSTRF_DATA_DIR=str(home), DEEPSTRF_PROGRESS="0",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, str(path), str(dt_ms),
                           str(n_jobs), sessions], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"the benchmark child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def channel_cost(tmp: Path, n_samples: int) -> dict:
    """Seconds and peak traced memory of reading one channel file, ours vs scipy."""
    import tracemalloc

    import numpy as np
    from scipy.io import loadmat, savemat

    from deepstrf.datasets.audio.downer2025 import Release, read_channel

    rng = np.random.default_rng(0)
    n = 150_000  # spikes of a channel over a ~1.2 h session at ~35 Hz
    spk = np.sort(rng.uniform(0, 4300, n))
    folder = tmp / "one" / "auditory_cortex_data"
    (folder / "sessions" / "180413").mkdir(parents=True, exist_ok=True)
    (folder / "sessions_metadata.yml").write_text("{}\n")
    path = folder / "sessions" / "180413" / "b_180413_Ch1_MUspk.mat"
    trial = {"stimon": np.arange(600.0) * 7, "timitStimcode": np.arange(600.0),
             "mVocStimcode": np.zeros(600)}
    savemat(str(path), {"spike": {"spktimes": spk,
                                  "events": rng.standard_normal((n, n_samples)).astype(
                                      np.float32) if n_samples else np.zeros((0, 0)),
                                  "trial": np.zeros(n), "timitStimcode": np.zeros(n)},
                        "trial": trial}, do_compression=True, oned_as="column")
    out = {"file_bytes": path.stat().st_size, "events_bytes": n * n_samples * 4}
    rel = Release(str(folder), False)
    for label, read in (("deepstrf", lambda: read_channel(rel.reader(), "sessions/180413/"
                                                          + path.name)),
                        ("scipy", lambda: loadmat(str(path), squeeze_me=True,
                                                  struct_as_record=False))):
        tracemalloc.start()
        t0 = time.perf_counter()
        read()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[label] = {"seconds": round(seconds, 3), "peak_bytes": peak}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the sessions (1.0: the real 41 sessions, 1718 channels)")
    parser.add_argument("--dt-ms", type=float, default=5.0)
    parser.add_argument("--root", type=Path, default=None,
                        help="where the simulated release is written (reused when present)")
    parser.add_argument("--waveform-samples", type=int, default=32,
                        help="samples per spike waveform in the channel-cost measurement")
    parser.add_argument("--keep", action="store_true", help="keep the processed caches")
    args = parser.parse_args(argv)
    from deepstrf.testing.fixtures.downer2025 import write_downer2025_large

    root = args.root or Path(tempfile.gettempdir()) / f"deepstrf-bench-downer-{args.scale:g}"
    raw = root / "data" / "raw"
    done = root / "written.json"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        facts = write_downer2025_large(raw, scale=args.scale, make_zip=True)
        facts["write_seconds"] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(raw / "auditory_cortex_data")  # the zip alone, as Zenodo serves it
        done.write_text(json.dumps(facts))
    facts = json.loads(done.read_text())
    print(f"simulated release: {facts['sessions']} sessions, {facts['channels']} channels, "
          f"{facts['spikes'] / 1e6:.1f} M spikes, {facts['timit']} TIMIT sentences, "
          f"{facts['vocs']} vocalisations; zip {(raw / 'auditory_cortex_data.zip').stat().st_size / 2**30:.2f} GiB",
          flush=True)
    results: dict = {"release": facts}
    data = root / "data"
    for n_jobs in (1, 2):
        shutil.rmtree(data / "processed", ignore_errors=True)
        r = run(data, root / "home", args.dt_ms, n_jobs)
        results[f"cold_n_jobs_{n_jobs}"] = r
        print(f"cold build n_jobs={n_jobs}: {r['seconds']:.1f} s, peak RSS "
              f"{r['peak_rss'] / 2**30:.2f} GiB (workers {r['peak_rss_workers'] / 2**30:.2f}), "
              f"N={r['n_neurons']} S={r['n_stims']}, responses "
              f"{r['response_bytes'] / 2**30:.2f} GiB; phases {r['timings_s']}", flush=True)
    speedup = results["cold_n_jobs_1"]["seconds"] / results["cold_n_jobs_2"]["seconds"]
    results["speedup"] = speedup
    print(f"  n_jobs=2 speed-up: {speedup:.2f}x (target >= 1.6x)", flush=True)
    warm = [run(data, root / "home", args.dt_ms, 1) for _ in range(3)]
    best = min(w["seconds"] for w in warm)
    results["warm"] = warm
    print(f"warm open: {best:.3f} s (best of 3; import {warm[0]['import_seconds']:.2f} s "
          "not included; target < 1 s)", flush=True)
    # reuse: two sessions first, then everything
    shutil.rmtree(data / "processed", ignore_errors=True)
    ids = sorted(__import__("deepstrf.datasets.audio.downer2025",
                            fromlist=["FINE_AREAS"]).FINE_AREAS)[:2]
    two = run(data, root / "home", args.dt_ms, 2, ",".join(ids))
    rest = run(data, root / "home", args.dt_ms, 2)
    results["two_then_all"] = {"two": two, "all": rest}
    print(f"sessions={ids}: {two['seconds']:.1f} s; then all: {rest['seconds']:.1f} s "
          f"({rest['reused']} shards reused, {rest['built']} built)", flush=True)
    cost = channel_cost(root, args.waveform_samples)
    results["channel"] = cost
    print(f"one channel file ({cost['file_bytes'] / 2**20:.1f} MiB, waveforms "
          f"{cost['events_bytes'] / 2**20:.1f} MiB): deepstrf {cost['deepstrf']['seconds']} s, "
          f"peak {cost['deepstrf']['peak_bytes'] / 2**20:.1f} MiB; scipy.io.loadmat "
          f"{cost['scipy']['seconds']} s, peak {cost['scipy']['peak_bytes'] / 2**20:.1f} MiB",
          flush=True)
    if not args.keep:
        shutil.rmtree(data / "processed", ignore_errors=True)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
