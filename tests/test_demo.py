"""The demo end to end at a small size: report, recovery, figure, cache reuse."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from deepstrf.demo import run_demo


@pytest.mark.slow
def test_demo_small(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    lines = []
    report = run_demo(tmp_path / "demo", size="small", output=tmp_path / "demo.png",
                      progress=False, log=lines.append)
    assert [line[:5] for line in lines] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert 0 < report.n_kept <= report.n_neurons == 24
    good = np.isfinite(report.strf_corr)
    assert np.median(report.strf_corr[good]) > 0.8  # well-driven neurons recover their STRF
    assert np.nanmedian(report.cc_norm) > np.nanmedian(report.cc_raw)
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(tmp_path / "demo.png").shape[0] > 500
    text = report.text()
    assert "CCnorm (test)" in text and "STRF vs truth" in text and "figure" in text
    again = run_demo(tmp_path / "demo", size="small", output=None, progress=False)
    assert again.from_cache and again.figure is None
    np.testing.assert_allclose(again.strf_corr, report.strf_corr)


@pytest.mark.slow
def test_demo_command(tmp_path):
    env = {"DEEPSTRF_DATA_DIR": str(tmp_path), "DEEPSTRF_PROGRESS": "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "deepstrf", "demo", "--size", "small",
                           "--output", str(tmp_path / "d.png"), "--quiet"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "deepstrf demo: simulated CRCNS AA1 data" in proc.stdout
    assert (tmp_path / "d.png").is_file()
