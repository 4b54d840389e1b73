"""Shared fixtures: a small hand-built ragged dataset whose every value is known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

NAN = float("nan")

#: ../shared/realdata next to the repository (real public files, read in place).
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def sentinel() -> torch.Tensor:
    return torch.full((1, 1), NAN)


def toy_parts():
    """Three stims (T = 5, 3, 4) x four neurons; stim 2 was heard by nobody.

    ====== ===== ===== ===== =====
    stim   n0    n1    n2    n3
    ====== ===== ===== ===== =====
    0      R=2   --    R=1   R=3
    1      --    R=2   --    --
    2      --    --    --    --
    ====== ===== ===== ===== =====
    """
    r = {
        (0, 0): torch.arange(10, dtype=torch.float32).reshape(2, 5),
        (0, 2): torch.full((1, 5), 7.0),
        (0, 3): torch.arange(15, dtype=torch.float32).reshape(3, 5) + 100,
        (1, 1): torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]),
    }
    T = [5, 3, 4]
    responses = [[r.get((s, n), sentinel()) for n in range(4)] for s in range(3)]
    stims = [torch.rand(1, 6, t, generator=torch.Generator().manual_seed(t)) for t in T]
    stim_meta = [{"name": "s0", "type": "song", "duration_s": 0.025},
                 {"name": "s1", "type": "call", "duration_s": 0.015},
                 {"name": "s2", "type": "song"}]
    nrn_meta = [{"cell_id": "c0", "area": "L", "snr": 0.9},
                {"cell_id": "c1", "area": "M", "snr": 0.2},
                {"cell_id": "c2", "area": "L"},
                {"cell_id": "c3", "area": "M", "snr": 0.7}]
    return stims, responses, stim_meta, nrn_meta, r


@pytest.fixture
def toy():
    from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset

    stims, responses, stim_meta, nrn_meta, _ = toy_parts()
    return AudioNeuralDataset.from_data(stims, responses, dt_ms=5.0, stim_meta=stim_meta,
                                        nrn_meta=nrn_meta, path="toy")


@pytest.fixture
def toy_values():
    return toy_parts()[4]


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real public data not available at {REALDATA}")
    return REALDATA
