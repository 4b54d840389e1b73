"""Plots draw without a display and fail clearly without matplotlib."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from deepstrf import plotting
from tests.conftest import toy_parts

RNG = np.random.default_rng(0)


@pytest.fixture
def ds():
    from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset

    stims, responses, stim_meta, nrn_meta, _ = toy_parts()
    return AudioNeuralDataset.from_data(stims, responses, dt_ms=5.0, stim_meta=stim_meta,
                                        nrn_meta=nrn_meta)


def test_each_plot_returns_a_saveable_figure(ds, tmp_path):
    figs = [
        plotting.plot_spectrogram_raster_psth(ds, 0, 3, prediction=torch.rand(5)),
        plotting.plot_strfs(RNG.random((3, 4, 5)), dt_ms=5.0),
        plotting.plot_strfs(RNG.random((2, 4, 5)), truth=RNG.random((2, 4, 5)),
                            titles=["a", "b"]),
        plotting.plot_prediction(RNG.random(20), RNG.random(20), dt_ms=5.0, label="x"),
        plotting.plot_metric_distribution(np.array([0.5, np.nan, 0.7, 0.9])),
    ]
    for k, fig in enumerate(figs):
        out = tmp_path / f"{k}.png"
        fig.savefig(out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figs[2].axes) == 4  # true and fitted side by side


def test_plots_compose_into_subfigures(ds, tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    a, b = fig.subfigures(1, 2)
    plotting.plot_strfs(RNG.random((2, 3, 4)), fig=a)
    plotting.plot_spectrogram_raster_psth(ds, 1, 1, fig=b)
    fig.savefig(tmp_path / "both.png")


def test_plot_errors(ds):
    with pytest.raises(ValueError, match="no responses to stimulus 1"):
        plotting.plot_spectrogram_raster_psth(ds, 1, 0)
    with pytest.raises(ValueError, match=r"strfs must be \(K, F, L\)"):
        plotting.plot_strfs(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="truth has shape"):
        plotting.plot_strfs(np.zeros((1, 2, 3)), truth=np.zeros((1, 2, 2)))


def test_missing_matplotlib_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'deepstrf-datasets\[plot\]'"):
        plotting.plot_metric_distribution([0.1, 0.2])
