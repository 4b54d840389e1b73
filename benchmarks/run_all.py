"""Run every benchmark in turn (``./dev bench``); arguments go to the data-API benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    code = 0
    for script, args in (("bench_data_api.py", argv), ("bench_aa1.py", []), ("bench_nat4.py", [])):
        print(f"### {script}", flush=True)
        code |= subprocess.call([sys.executable, str(HERE / script), *args])
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
