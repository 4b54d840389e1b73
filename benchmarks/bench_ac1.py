"""CRCNS AC1 build benchmark on a simulated release in the real file format.

Writes Wehr cells (one MATLAB file per trial, 4 kHz) and Asari cells (long 10 kHz
recordings, many triggers, A1 whole-cell and MGB cell-attached) with
:func:`deepstrf.testing.fixtures.write_crcns_ac1`, then measures in fresh
processes: the cold build (reading, detrending, gating, spike detection,
spectrograms, cache write) with ``n_jobs=1`` and ``n_jobs=2``, the warm load from
the processed cache, and the peak memory of each (VmHWM).

    python benchmarks/bench_ac1.py [--wehr-cells 6] [--stims 8] [--repeats 8] [--stim-s 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from deepstrf.datasets.audio.crcns_ac1 import CRCNSAC1Dataset
root, n_jobs, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
ds = CRCNSAC1Dataset(root, n_jobs=n_jobs, cache=cache, progress=False)
elapsed = time.perf_counter() - t0
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
           if line.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "peak_mb": hwm / 2**20, "S": ds.get_S(),
                  "N": ds.get_N(), "cache_hit": ds.provenance["cache_hit"]}))
"""


def run(root: Path, n_jobs: int, cache: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(n_jobs), cache],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wehr-cells", type=int, default=6)
    parser.add_argument("--asari-a1", type=int, default=3)
    parser.add_argument("--asari-mgb", type=int, default=2)
    parser.add_argument("--stims", type=int, default=8, help="Wehr fragments")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--stim-s", type=float, default=6.0, help="Wehr fragment length, s")
    args = parser.parse_args(argv)
    from deepstrf.testing.fixtures import write_crcns_ac1

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "AC1"
        t0 = time.perf_counter()
        write_crcns_ac1(root / "raw", n_wehr_cells=args.wehr_cells, n_wehr_stims=args.stims,
                        n_asari_a1=args.asari_a1, n_asari_mgb=args.asari_mgb,
                        n_repeats=args.repeats, stim_s=args.stim_s, segment_s=1.5, seed=5)
        size = sum(p.stat().st_size for p in (root / "raw").rglob("*") if p.is_file())
        print(f"fixture: {size / 2**20:.0f} MB of .mat files written in "
              f"{time.perf_counter() - t0:.1f} s")
        for n_jobs in (1, 2):
            r = run(root, n_jobs, "rebuild")
            print(f"cold build, n_jobs={n_jobs}: {r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB"
                  f" (S={r['S']}, N={r['N']})")
        r = run(root, 1, "use")
        assert r["cache_hit"]
        print(f"warm load: {r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
