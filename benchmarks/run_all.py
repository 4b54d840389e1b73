"""Run every benchmark in turn (``./dev bench``); arguments go to the data-API benchmark.

Each script runs with its defaults (the real sizes of each release, simulated), so a
whole run takes about an hour and needs ~15 GB of memory and disk; run a script on
its own for one figure (each documents its options).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Every benchmark, in order (the first gets this script's arguments).
SCRIPTS = ("bench_data_api.py", "bench_aa1.py", "bench_nat4.py", "bench_ac1.py",
           "bench_alice.py", "bench_downer_build.py", "bench_packed_epoch.py", "bench_video.py")


def main(argv: list[str]) -> int:
    code = 0
    for i, script in enumerate(SCRIPTS):
        print(f"### {script}", flush=True)
        code |= subprocess.call([sys.executable, str(HERE / script), *(argv if i == 0 else [])])
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
