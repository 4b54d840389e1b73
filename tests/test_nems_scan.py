"""read_recording(scan_all=False): stop once the signals asked for are in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepstrf.io import nems
from deepstrf.testing.fixtures.nems import RasterSpec, Trial, trial_epochs, write_nems_recording


def _truncated_tail(tmp_path: Path) -> tuple[Path, np.ndarray]:
    epochs = trial_epochs([Trial("a.wav", 0.0, 0.25, 1.0, 0.25)])
    rng = np.random.default_rng(0)
    resp = rng.poisson(1.0, (150, 4)).astype(float)
    path = write_nems_recording(tmp_path / "rec.tgz", "rec", {"siteid": "rec"}, {
        "resp": RasterSpec(resp, 100.0, epochs),
        "stim": RasterSpec(rng.random((150, 3)), 100.0, epochs),
        # last and large: random text compresses badly, so it fills the archive's tail
        "mask": RasterSpec(rng.random((150, 400)), 100.0, epochs)})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])  # a download cut off inside 'mask'
    return path, resp


def test_scan_all_false_never_decompresses_past_the_wanted_signals(tmp_path):
    path, resp = _truncated_tail(tmp_path)
    with pytest.raises(nems.NemsFormatError, match="truncated"):
        nems.read_recording(path, signals=["resp", "stim"])  # the default reads to the end
    rec = nems.read_recording(path, signals=["resp", "stim"], dtype=np.float32, scan_all=False)
    np.testing.assert_array_equal(rec["resp"].values, resp.astype(np.float32))
    assert rec["resp"].values.dtype == np.float32
    assert rec.available == ("resp", "stim")  # the signals met before the stop
    with pytest.raises(nems.NemsFormatError, match="truncated"):
        nems.read_recording(path, signals=["mask"], scan_all=False)  # still wanted: read on
