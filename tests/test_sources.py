"""Stimulus and response sources of the build pipeline, rendered and packed."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from deepstrf.datasets._docs import DOCS, fill_doc
from deepstrf.datasets._responses import (
    BinnedRows,
    ContinuousTrace,
    SpikeTrains,
    render_responses,
)
from deepstrf.datasets.audio._spike_tasks import make_front_end, stim_task
from deepstrf.datasets.audio._spikes_audio import Recording, build_recording
from deepstrf.datasets.audio._stimuli import SpectrogramArrayStim, WaveformArrayStim, WavStim
from deepstrf.preprocessing.spectrogram import compute_spectrogram
from deepstrf.testing.matfiles import write_mat
from deepstrf.testing.simulate import pcm16_to_float, to_pcm16


def _front(dt_ms=5.0, **kw):
    args = dict(dt_ms=dt_ms, smooth=False, compression="log1p", window_ms=10.0,
                return_waveform=False, audio_fs=16000, n_bands=8)
    args.update(kw)
    return make_front_end(**args)


def _tone(n, rate, freq=1000.0):
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


@pytest.fixture
def stereo_wav(tmp_path):
    rate = 16000
    left = pcm16_to_float(to_pcm16(_tone(8000, rate)))
    pulses = np.zeros(8000, np.float32)
    pulses[::800] = 0.9
    right = pcm16_to_float(to_pcm16(pulses))
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([to_pcm16(left), to_pcm16(right)], axis=1), rate,
                    subtype="PCM_16")
    return path, left, right, rate


def test_wav_channel_choice_and_segment(stereo_wav):
    path, left, right, rate = stereo_wav
    wave, sr = WavStim(path, channel=0).load()
    np.testing.assert_allclose(wave, left, atol=1e-4)
    np.testing.assert_allclose(WavStim(path, channel=1).load()[0], right, atol=1e-4)
    np.testing.assert_allclose(WavStim(path).load()[0], (left + right) / 2, atol=1e-4)
    seg, _ = WavStim(path, channel=0, start_s=0.1, stop_s=0.2).load()
    np.testing.assert_array_equal(seg, wave[1600:3200])
    with pytest.raises(Exception, match="2 channel"):
        WavStim(path, channel=2).load()
    with pytest.raises(Exception, match="segment"):
        WavStim(path, channel=0, start_s=0.4, stop_s=0.9).load()


def test_inset_shifts_the_sound_by_whole_bins_and_n_bins_crops_or_pads(stereo_wav):
    path, left, _, rate = stereo_wav
    front = _front().prepare([rate])
    plain, facts = WavStim(path, channel=0).render(front, None)
    assert facts["n_bins"] == 100 and plain.shape == (1, 8, 100)
    inset, facts = WavStim(path, channel=0, inset_ms=50.0).render(front, None)
    assert facts["n_bins"] == 110 and facts["inset_ms"] == 50.0
    # frames well inside the sound are the same frames, 10 bins later
    np.testing.assert_allclose(inset[0, :, 15:100], plain[0, :, 5:90], atol=1e-5)
    silent = compute_spectrogram(np.zeros(8000, np.float32), rate, front.spectrogram)
    np.testing.assert_allclose(inset[0, :, :8], silent[:, :8], atol=1e-6)
    cropped, facts = WavStim(path, channel=0).render(front, 40)
    assert facts["n_bins"] == 40
    np.testing.assert_array_equal(cropped, plain[:, :, :40])
    longer, _ = WavStim(path, channel=0).render(front, 130)
    assert longer.shape == (1, 8, 130)
    np.testing.assert_allclose(longer[0, :, 110:], silent[:, :20], atol=1e-6)
    wf = _front(return_waveform=True)
    wave, facts = WavStim(path, channel=0, inset_ms=50.0).render(wf, None)
    assert wave.shape == (1, 110 * 80)
    np.testing.assert_array_equal(wave[0, :800], 0)
    np.testing.assert_array_equal(wave[0, 800:8800], WavStim(path, channel=0).load()[0])


def test_waveform_array_from_memory_and_from_matlab_and_hdf5(tmp_path):
    import h5py

    samples = _tone(4000, 16000, 500)
    write_mat(tmp_path / "s.mat", {"sentdet": [{"sound": samples, "name": "a"},
                                                {"sound": samples[::-1].copy(), "name": "b"}]},
              version="5")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["grp/x"] = samples
    a = WaveformArrayStim(16000, samples=samples).load()[0]
    b = WaveformArrayStim(16000, path=tmp_path / "s.mat", key=("sentdet", 1, "sound")).load()[0]
    c = WaveformArrayStim(16000, path=tmp_path / "s.h5", key="grp/x").load()[0]
    np.testing.assert_array_equal(a, samples)
    np.testing.assert_array_equal(b, samples[::-1])
    np.testing.assert_array_equal(c, samples)
    with pytest.raises(Exception, match="no element 5"):
        WaveformArrayStim(16000, path=tmp_path / "s.mat", key=("sentdet", 5, "sound")).load()
    with pytest.raises(ValueError, match="either samples or path"):
        WaveformArrayStim(16000)


def test_precomputed_spectrogram_is_pooled_to_a_multiple_of_its_bin():
    spec = np.arange(2 * 9, dtype=np.float64).reshape(2, 9)
    source = SpectrogramArrayStim(spec, bin_ms=5.0)
    out, facts = source.render(_front(dt_ms=5.0), None)
    np.testing.assert_array_equal(out[0], spec)
    out, facts = source.render(_front(dt_ms=15.0), None)
    assert facts["n_bins"] == 3
    np.testing.assert_array_equal(out[0], spec.reshape(2, 3, 3).mean(axis=2))
    out, _ = source.render(_front(dt_ms=10.0), 2)
    np.testing.assert_array_equal(out[0], [[0.5, 2.5], [9.5, 11.5]])
    with pytest.raises(ValueError, match="whole multiple of the 5 ms bin"):
        source.render(_front(dt_ms=7.0), None)
    with pytest.raises(ValueError, match="only 4"):
        source.render(_front(dt_ms=10.0), 5)
    with pytest.raises(ValueError, match="no waveform"):
        source.render(_front(return_waveform=True), None)
    with pytest.raises(ValueError, match="inset"):
        SpectrogramArrayStim(spec, bin_ms=5.0, inset_ms=10)


def test_binned_rows_block_sum_keeps_nan_and_pads_with_nan():
    rows = np.array([[1, 2, 3, 4, np.nan, 6, 7], [0, 0, 1, 1, 1, 1, 9]], dtype=float)
    out = BinnedRows(rows, bin_ms=10.0).render(20.0, 4)
    np.testing.assert_array_equal(out, [[3, 7, np.nan, np.nan], [0, 2, 2, np.nan]])
    assert BinnedRows(rows, bin_ms=10.0).natural_bins(20.0) == 3


def test_continuous_trace_pool_is_nan_aware_and_signed_and_resample_masks():
    data = np.array([[-1.0, -3.0, np.nan, 4.0, 5.0, np.nan, np.nan, 2.0]])
    trace = ContinuousTrace(data, sample_rate=1000.0)  # 1 ms samples
    np.testing.assert_array_equal(trace.render(2.0, 5), [[-2.0, 4.0, 5.0, 2.0, np.nan]])
    late = ContinuousTrace(data, sample_rate=1000.0, start_sample=-2)
    np.testing.assert_array_equal(late.render(2.0, 2), [[np.nan, -2.0]])
    assert trace.natural_bins(2.0) == 4
    with pytest.raises(ValueError, match="whole number of input samples"):
        ContinuousTrace(data, sample_rate=1000.0).render(2.5, 2)
    t = np.arange(400) / 400.0
    smooth = np.sin(2 * np.pi * 3 * t)[None, :]
    smooth[0, 200] = np.nan
    out = ContinuousTrace(smooth, sample_rate=400.0, method="resample").render(10.0, 100)
    assert out.shape == (1, 100)
    assert np.isnan(out[0, 50]) and np.isfinite(out[0, 10]) and np.isfinite(out[0, 80])
    np.testing.assert_allclose(out[0, 10:40], np.sin(2 * np.pi * 3 * np.arange(10, 40) / 100),
                               atol=0.05)


def test_spikes_are_counted_from_the_grid_start_with_inset_and_edges():
    trains = SpikeTrains.from_trials([[-50.0, -10.0, 0.0, 15.0, 19.999], []])
    rows = render_responses([trains], 5.0, 6, onset_ms=-10.0, smooth_ms=None)
    # -10 ms is the grid's start (bin 0), 0 ms the sound's onset (bin 2)
    np.testing.assert_array_equal(rows, [[1, 0, 1, 0, 0, 2], [0] * 6])


def test_build_packs_every_kind_of_response_source_in_one_store(stereo_wav):
    path, _, _, rate = stereo_wav
    recording = Recording(
        stims=[WavStim(path, {"name": "a"}, channel=0, n_bins=10),
               SpectrogramArrayStim(np.ones((8, 30)), 5.0, {"name": "b"}, n_bins="response")],
        neurons=[{"cell_id": "spiking"}, {"cell_id": "raster"}, {"cell_id": "vm"}],
        trials={(0, 0): SpikeTrains.from_trials([[1.0, 2.0, 47.0], [6.0]]),
                (0, 1): BinnedRows(np.arange(20.0).reshape(1, 20), bin_ms=2.5),
                (1, 2): ContinuousTrace(-np.ones((3, 100)), sample_rate=1000.0)})
    built = build_recording(recording, _front(), n_jobs=1)
    assert [m["n_bins"] for m in built.stim_meta] == [10, 20]
    neurons, reps, rows = built.store.block(0)
    assert list(neurons) == [0, 1] and list(reps) == [2, 1]
    np.testing.assert_array_equal(rows[:2].numpy(), [[2, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                                                        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(rows[2].numpy(), np.arange(20.0).reshape(10, 2).sum(1))
    neurons, reps, rows = built.store.block(1)
    assert list(neurons) == [2] and list(reps) == [3]
    np.testing.assert_array_equal(rows.numpy(), -np.ones((3, 20)))
    assert built.attributes["F"] == 8


def test_response_window_needs_a_sized_response():
    task = (SpectrogramArrayStim(np.ones((2, 4)), 5.0, {"name": "x"}, n_bins="response"),
            _front(), [SpikeTrains.from_trials([[1.0]])])
    with pytest.raises(ValueError, match="give the stimulus n_bins"):
        stim_task(task)


def test_n_bands_and_n_mels_name_the_same_setting():
    assert _front(n_bands=12).spectrogram.n_bands == 12
    assert _front(n_bands=None, n_mels=12).spectrogram.n_bands == 12
    with pytest.raises(ValueError, match="give one of them"):
        _front(n_bands=12, n_mels=16)
    with pytest.raises(ValueError, match="n_mels must be >= 1"):
        _front(n_bands=None, n_mels=0)


def test_fill_doc_inserts_shared_text_at_the_placeholder_indent():
    @fill_doc
    class Documented:
        """Title.

        Parameters
        ----------
        %(dt_ms)s
        own : int
            Its own text.
        """

    assert "        dt_ms : float\n            Response bin width" in Documented.__doc__
    assert DOCS["dt_ms"].splitlines()[1].strip() in Documented.__doc__
    with pytest.raises(KeyError, match="no shared text for %\\(nope\\)s"):
        fill_doc("x\n    %(nope)s\n")


def test_a_build_imports_neither_librosa_nor_scipy_signal(stereo_wav, tmp_path):
    import subprocess
    import sys

    path = stereo_wav[0]
    code = f"""
import sys
from deepstrf.datasets.audio._spike_tasks import make_front_end
from deepstrf.datasets.audio._spikes_audio import Recording, build_recording
from deepstrf.datasets._responses import SpikeTrains
from deepstrf.datasets.audio._stimuli import WavStim
front = make_front_end(dt_ms=5.0, smooth=True, compression="cubic", window_ms=10.0,
                       return_waveform=False, audio_fs=None, n_bands=16)
rec = Recording(stims=[WavStim({str(path)!r}, {{"name": "a"}})], neurons=[{{"cell_id": "x"}}],
                trials={{(0, 0): SpikeTrains.from_trials([[1.0, 30.0]])}})
built = build_recording(rec, front, n_jobs=1)
print(built.stims[0].shape, "librosa" in sys.modules, "scipy.signal" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-2:] == ["False", "False"]


def test_one_init_source_serves_a_video_dataset_too(tmp_path, monkeypatch):
    """The generic constructor body with another modality: frame size from the build result."""
    from dataclasses import dataclass

    import torch

    from deepstrf.datasets._source import DatasetInfo, SourceDataset
    from deepstrf.datasets._storage import ResponseStore
    from deepstrf.datasets.video.video_dataset import VideoNeuralDataset
    from deepstrf.io.cache import BuiltData
    from deepstrf.io.download import RemoteFile

    @dataclass(frozen=True)
    class Grid:
        dt_ms: float

        def to_dict(self):
            return {"dt_ms": self.dt_ms}

    class ToyMovies(SourceDataset, VideoNeuralDataset):
        info = DatasetInfo(name="toymovies", title="t", species="s", area="a", signal="x",
                           n_neurons=None, n_stims=None, repeats="1", download_size="0",
                           access="open", citation="c", doi="10.0000/x", url="https://x")
        folder = "ToyMovies"
        remote_files = (RemoteFile("movie.bin", url="https://example.org/movie.bin"),)
        raw_markers = ("movie.bin",)

        def __init__(self, path, dt_ms=10.0):
            self._init_source(path, {}, Grid(dt_ms), download=False)

        def _build(self, raw_dir, params, n_jobs, progress):
            rows = torch.arange(6.0).reshape(2, 3)
            return BuiltData(stims=[torch.zeros(1, 4, 5, 3)],
                             store=ResponseStore.from_blocks(1, [([0], [2], rows)]),
                             stim_meta=[{"name": "m"}], nrn_meta=[{"cell_id": "c"}],
                             attributes={"H": 4, "W": 5})

    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "movie.bin").write_bytes(b"x")
    ds = ToyMovies(tmp_path)
    assert (ds.H, ds.W, ds.dt) == (4, 5, 10.0) and ds.responses[0][0].shape == (2, 3)
    assert ds.provenance["manifest"]["parameters"] == {"front_end": {"dt_ms": 10.0}}
    assert ToyMovies(tmp_path).provenance["cache_hit"] is True
