"""The README's quickstart runs as written (on a simulated AA1 tree in place of the real one)."""

from __future__ import annotations

import re
from pathlib import Path

from deepstrf.testing.fixtures import write_crcns_aa1

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert '"~/data/crcns-aa1"' in code
    write_crcns_aa1(tmp_path / "aa1", n_cells=12, n_conspecific=4, n_flatrip=6, n_repeats=10,
                    duration_range_s=(1.0, 1.5), seed=3)
    code = code.replace('"~/data/crcns-aa1"', repr(str(tmp_path / "aa1")))
    exec(compile(code, "README quickstart", "exec"), {})
    printed = capsys.readouterr().out
    assert re.fullmatch(r"tensor\(0\.\d+\) tensor\(0\.\d+\)\n", printed)


def test_readme_two_commands_match_dev_script():
    text = README.read_text()
    assert "./dev demo" in text and "./dev test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./dev test" in ci
