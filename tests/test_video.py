"""Movies as stimuli: the contract, the eleven methods, sources, simulation, recovery."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deepstrf.datasets.video import VideoNeuralDataset
from deepstrf.datasets.video._build import make_video_front_end
from deepstrf.datasets.video._stimuli import ImageSequenceStim, MovieArrayStim, MovieFileStim
from deepstrf.errors import ContractError, DataQuirkWarning, RawDataError
from deepstrf.preprocessing import video as pv
from deepstrf.utils.data import concat_neural_datasets, neural_collate

NAN = float("nan")


def sentinel():
    return torch.full((1, 1), NAN)


def small(C=1, H=6, W=5, T=(12, 9, 7), seed=0, **kw):
    """3 movies, 3 neurons; neuron 2 never saw movie 1 (a sentinel)."""
    g = torch.Generator().manual_seed(seed)
    stims = [torch.rand(C, H, W, t, generator=g) for t in T]
    resp = []
    for s, t in enumerate(T):
        row = [torch.poisson(torch.full((3, t), 2.0), generator=g) for _ in range(3)]
        if s == 1:
            row[2] = sentinel()
        resp.append(row)
    meta = [{"name": f"m{s}"} for s in range(len(T))]
    return VideoNeuralDataset.from_data(stims, resp, dt_ms=10.0, stim_meta=meta, **kw)


# ---------------------------------------------------------------------- the contract
def test_from_data_reads_the_attributes():
    ds = small(C=3)
    assert (ds.C, ds.H, ds.W) == (3, 6, 5)
    assert ds.frame_rate_hz == 100.0 and ds.frames_per_bin == 1 and ds.get_dt() == 10.0
    assert ds.nrn_masks.tolist() == [[True, True, True], [True, True, False],
                                     [True, True, True]]


def test_frame_count_off_by_one_names_the_stimulus():
    stims = [torch.rand(1, 4, 4, 10), torch.rand(1, 4, 4, 8)]
    resp = [[torch.ones(2, 10)], [torch.ones(2, 9)]]
    with pytest.raises(ContractError, match=r"stims\[1\] has 8 frames .* 9 bins .*-1 off"):
        VideoNeuralDataset.from_data(stims, resp, dt_ms=10)


@pytest.mark.parametrize("stim, match", [
    (torch.rand(4, 4, 10), r"stims\[0\] must be a movie \(C, H, W, T\)"),
    (torch.rand(1, 1, 4, 4, 10), r"stims\[0\] must be a movie"),
    (torch.rand(2, 4, 4, 10), r"stims\[0\] has 2 channels .* 1 \(grayscale\) or 3 \(RGB\)"),
])
def test_wrong_rank_or_channels(stim, match):
    with pytest.raises(ContractError, match=match):
        VideoNeuralDataset.from_data([stim], [[torch.ones(1, 10)]], dt_ms=10, C=1, H=4, W=4)


def test_float64_and_frame_size_and_nan():
    with pytest.raises(TypeError, match=r"stims\[0\] must be float32; got torch.float64"):
        VideoNeuralDataset.from_data([torch.rand(1, 4, 4, 5, dtype=torch.float64)],
                                     [[torch.ones(1, 5)]], dt_ms=10)
    with pytest.raises(ContractError, match=r"stims\[1\] frames are 4x3 pixels but .* 4x4"):
        VideoNeuralDataset.from_data([torch.rand(1, 4, 4, 5), torch.rand(1, 4, 3, 5)],
                                     [[torch.ones(1, 5)], [torch.ones(1, 5)]], dt_ms=10)
    movie = torch.rand(1, 4, 4, 5)
    movie[0, 1, 1, 2] = NAN
    with pytest.raises(ContractError, match=r"stims\[0\] contains NaN"):
        VideoNeuralDataset.from_data([movie], [[torch.ones(1, 5)]], dt_ms=10)


def test_several_frames_per_bin_lock():
    stims = [torch.rand(1, 4, 4, 20)]
    ds = VideoNeuralDataset.from_data(stims, [[torch.ones(2, 10)]], dt_ms=10, frames_per_bin=2)
    assert ds.frame_rate_hz == 200 and ds.frames_per_bin == 2
    with pytest.raises(ContractError, match=r"has 20 frames .* 7 bins .* needs 14 frames"):
        VideoNeuralDataset.from_data(stims, [[torch.ones(2, 7)]], dt_ms=10, frames_per_bin=2)
    with pytest.raises(ContractError, match=r"1.5 frames per bin is not a whole number"):
        VideoNeuralDataset.from_data(stims, [[torch.ones(2, 10)]], dt_ms=10,
                                     frame_rate_hz=150.0)


def test_standardize_stims_uses_the_channel_axis():
    ds = small(C=3, T=(30, 20, 10))
    for c in range(3):
        ds.stims[0][c] += 10.0 * c
    record = ds.standardize_stims()
    assert record["mean"].shape == (3, 1, 1, 1)
    flat = torch.cat([x.reshape(3, -1) for x in ds.stims], dim=1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.std(1), torch.ones(3), atol=1e-4)


def test_video_package_imports_lazily():
    code = ("import sys, deepstrf.datasets.video as v; print('torch' in sys.modules); "
            "v.VideoNeuralDataset; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]


# ---------------------------------------------------------------------- batches, concatenation
def test_collate_movie_batches():
    ds = small(C=3)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=neural_collate)))
    assert batch["stims"].shape == (3, 3, 6, 5, 12)
    assert torch.equal(batch["stims"][1, ..., :9], ds.stims[1])
    assert (batch["stims"][1, ..., 9:] == 0).all()
    assert batch["responses"].shape == (3, 3, 3, 12)
    assert torch.isnan(batch["responses"][1, 2]).all()           # the sentinel
    assert torch.isnan(batch["responses"][2, :, :, 7:]).all()    # time padding
    assert torch.equal(batch["responses"][0, 1], ds.responses[0][1])
    assert batch["valid_mask"].sum() == 3 * 3 * 12 + 2 * 3 * 9 + 3 * 3 * 7


def test_concatenation_refuses_different_frame_sizes():
    a, b = small(), small(seed=1)
    both = a + b
    assert isinstance(both, VideoNeuralDataset) and (both.C, both.H, both.W) == (1, 6, 5)
    assert both.get_S() == 6 and both.N_neurons == 6
    c = small(H=8, W=8)
    with pytest.raises(ValueError, match="different frame sizes: .* 6x5, .* 8x8"):
        concat_neural_datasets([a, c])
    with pytest.raises(ValueError, match="1 and 3 channels"):
        a + small(C=3)


# ---------------------------------------------------------------------- the eleven methods
def test_grayscale_of_a_colour_grating():
    x = torch.linspace(0, 1, 5)
    grating = torch.stack([x, 0.5 * x, 1 - x])[:, None, :, None].expand(3, 4, 5, 6).contiguous()
    ds = VideoNeuralDataset.from_data([grating], [[torch.ones(2, 6)]], dt_ms=10)
    ds.from_rgb_to_grayscale()
    expected = 0.299 * x + 0.587 * 0.5 * x + 0.114 * (1 - x)
    assert ds.C == 1 and ds.stims[0].shape == (1, 4, 5, 6)
    assert torch.allclose(ds.stims[0][0, 2, :, 3], expected, atol=1e-6)
    white = pv.rgb_to_grayscale(torch.ones(3, 2, 2, 1))
    assert torch.equal(white, torch.ones(1, 2, 2, 1))             # the weights sum to 1
    with pytest.raises(ValueError, match="already grayscale"):
        ds.from_rgb_to_grayscale()
    with pytest.raises(ValueError, match="needs an RGB movie .* got C=1"):
        pv.rgb_to_grayscale(torch.ones(1, 2, 2, 3))
    assert ds.provenance["operations"][-1]["operation"] == "from_rgb_to_grayscale"


def test_resize_of_known_patterns():
    ramp = torch.arange(16.0)[None, None, :, None].expand(1, 8, 16, 3).contiguous()
    ds = VideoNeuralDataset.from_data([ramp, torch.full((1, 8, 16, 3), 0.25)],
                                      [[torch.ones(1, 3)], [torch.ones(1, 3)]], dt_ms=10)
    ds.change_spatial_resolution((4, 8))
    assert (ds.H, ds.W) == (4, 8) and ds.stims[0].shape == (1, 4, 8, 3)
    # a linear ramp stays linear: output pixel j sits at input 2j + 0.5 (away from the borders)
    assert torch.allclose(ds.stims[0][0, 1, 2:6, 0], 2 * torch.arange(2.0, 6.0) + 0.5,
                          atol=1e-4)
    assert torch.allclose(ds.stims[1], torch.full((1, 4, 8, 3), 0.25))
    # antialiasing: a one-pixel checkerboard shrunk 3x averages out instead of aliasing
    # into a coarse checkerboard (the samples land on pixel centres 1, 4, 7, ...)
    checker = ((torch.arange(15)[:, None] + torch.arange(15)[None, :]) % 2).float()
    movie = checker[None, :, :, None]
    assert pv.resize_movie(movie, 5).std() < 0.1
    assert pv.resize_movie(movie, 5, antialias=False).std() > 0.45
    assert ds.provenance["operations"][-1]["parameters"]["size"] == [4, 8]


def test_temporal_resolution_block_sums_and_frame_means():
    movie = torch.arange(10.0)[None, None, None, :].expand(1, 2, 2, 10).contiguous()
    rows = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0, 1, 0, 1, NAN, 1, 0, 0, 1, 1]])
    ds = VideoNeuralDataset.from_data([movie, movie[..., :9].contiguous()],
                                      [[rows, sentinel()], [rows[:, :9], torch.ones(1, 9)]],
                                      dt_ms=10)
    with pytest.warns(DataQuirkWarning, match=r"dropped .* \{1: 1\}"):
        record = ds.change_temporal_resolution(20)
    assert record["factor"] == 2 and record["dropped_bins"] == {1: 1} and ds.dt == 20
    assert ds.frame_rate_hz == 50 and ds.frames_per_bin == 1
    r = ds.responses[0][0]
    assert torch.equal(r[0], torch.tensor([3.0, 7, 11, 15, 19]))
    assert torch.isnan(r[1, 2]) and torch.equal(r[1, [0, 1, 3, 4]], torch.tensor([1.0, 1, 0, 2]))
    assert torch.equal(ds.stims[0][0, 0, 0], torch.tensor([0.5, 2.5, 4.5, 6.5, 8.5]))
    assert ds.stims[1].shape[-1] == 4 and ds.responses[1][1].shape == (1, 4)
    assert torch.isnan(ds.responses[0][1]).all() and not ds.nrn_masks[0, 1]   # sentinel kept
    ds.change_temporal_resolution(10)          # finer: counts spread, frames repeated
    assert torch.equal(ds.responses[0][0][0, :4], torch.tensor([1.5, 1.5, 3.5, 3.5]))
    assert torch.equal(ds.stims[0][0, 0, 0, :4], torch.tensor([0.5, 0.5, 2.5, 2.5]))
    with pytest.raises(ValueError, match="from 10 ms to 15 ms: the ratio 1.5 is not a whole"):
        ds.change_temporal_resolution(15)
    ds.normalize_responses()
    with pytest.raises(ValueError, match="denormalize_responses"):
        ds.change_temporal_resolution(20)


def test_temporal_resolution_with_two_frames_per_bin():
    movie = torch.arange(12.0)[None, None, None, :].expand(1, 1, 1, 12).contiguous()
    ds = VideoNeuralDataset.from_data([movie], [[torch.arange(6.0)[None]]], dt_ms=10,
                                      frames_per_bin=2)
    ds.change_temporal_resolution(30)
    assert ds.frames_per_bin == 2 and ds.frame_rate_hz == pytest.approx(1000 / 15)
    assert torch.equal(ds.responses[0][0], torch.tensor([[3.0, 12.0]]))
    assert torch.equal(ds.stims[0].flatten(), torch.tensor([1.0, 4, 7, 10]))


def test_video_temporal_resolution_keeps_the_responses():
    ds = small(T=(12, 8, 6))
    before = ds.responses[0][0].clone()
    first = ds.stims[0].clone()
    ds.change_video_temporal_resolution(10, 5)
    assert ds.frames_per_bin == 2 and ds.stims[0].shape[-1] == 24
    assert torch.equal(ds.stims[0][..., 1::2], first)
    ds.change_video_temporal_resolution(target_dt=10)
    assert torch.allclose(ds.stims[0], first) and torch.equal(ds.responses[0][0], before)
    with pytest.raises(ValueError, match="frames of 20 ms do not divide the 10 ms"):
        ds.change_video_temporal_resolution(target_dt=20)
    with pytest.raises(ValueError, match="ratio .* is not a whole number"):
        ds.change_video_temporal_resolution(target_dt=10 / 3 * 2)
    with pytest.raises(ValueError, match="native_dt=5 ms but the movies' frames last 10 ms"):
        ds.change_video_temporal_resolution(5, 10)


def test_normalize_videos_global_and_per_stimulus():
    ds = small(T=(20, 10, 10))
    originals = [x.clone() for x in ds.stims]
    ds.stims[2] = ds.stims[2] * 5 + 3
    originals[2] = ds.stims[2].clone()
    ds.normalize_videos("global", stim_indices=[0, 1])
    both = torch.cat([ds.stims[0].reshape(-1), ds.stims[1].reshape(-1)])
    assert abs(float(both.mean())) < 1e-5 and abs(float(both.std()) - 1) < 1e-4
    assert float(ds.stims[2].mean()) > 5                 # test movie: not part of the statistics
    ds.normalize_videos("stimulus")                      # replaces the previous one
    for x in ds.stims:
        assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    ds.denormalize_videos()
    for x, y in zip(ds.stims, originals):
        assert torch.allclose(x, y, atol=1e-5)
    with pytest.raises(RuntimeError, match="not normalised"):
        ds.denormalize_videos()
    ops = [o["operation"] for o in ds.provenance["operations"]]
    assert ops[-3:] == ["normalize_videos", "normalize_videos", "denormalize_videos"]


def test_clips_boundaries_and_padding():
    ds = small(T=(10, 7, 4))
    movie0, resp0 = ds.stims[0].clone(), ds.responses[0][1].clone()
    meta = ds.split_into_clips(4)
    assert ds.get_S() == 3 + 2 + 1
    assert [m["clip_source_stim"] for m in meta] == [0, 0, 0, 1, 1, 2]
    assert [m["clip_onset_bin"] for m in meta] == [0, 4, 8, 0, 4, 0]
    assert [m["clip_valid_bins"] for m in meta] == [4, 4, 2, 4, 3, 4]
    assert meta[2]["name"] == "m0" and meta[2]["clip_onset_ms"] == 80.0
    assert all(x.shape[-1] == 4 for x in ds.stims)
    assert torch.equal(ds.stims[2][..., :2], movie0[..., 8:]) and (ds.stims[2][..., 2:] == 0).all()
    assert torch.equal(ds.responses[1][1], resp0[:, 4:8])
    assert torch.equal(ds.responses[2][1][:, :2], resp0[:, 8:])
    assert torch.isnan(ds.responses[2][1][:, 2:]).all()         # NaN, not zero spikes
    assert not ds.nrn_masks[3, 2] and not ds.nrn_masks[4, 2]    # the sentinel follows its clips
    assert ds[2]["valid_mask"][:, :, 2:].sum() == 0
    with pytest.raises(ValueError, match="clip_length_frames must be an int >= 1"):
        ds.split_into_clips(0)
    original = small(T=(10, 7, 4))
    ds.merge_clips()                                            # the undo
    assert ds.get_S() == 3 and [x.shape[-1] for x in ds.stims] == [10, 7, 4]
    assert ds.stim_meta == original.stim_meta
    for s in range(3):
        assert torch.equal(ds.stims[s], original.stims[s])
        for n in range(3):
            assert torch.equal(ds.responses[s][n].nan_to_num(-1),
                               original.responses[s][n].nan_to_num(-1))
    with pytest.raises(ValueError, match="not clips of split_into_clips"):
        ds.merge_clips()
    ds.split_into_clips(4)
    ds.select_stims([0])
    with pytest.raises(ValueError, match="reset_stim_selection"):
        ds.split_into_clips(2)


def test_gaussian_smoothing_is_centred_and_keeps_nan():
    rows = torch.zeros(2, 21)
    rows[0, 10] = 1.0
    rows[1, 3] = NAN
    ds = VideoNeuralDataset.from_data([torch.rand(1, 2, 2, 21)], [[rows]], dt_ms=10)
    ds.smooth_responses(sigma_time_step=2, kernel_size=11, padding=5)
    out = ds.responses[0][0]
    kernel = pv.gaussian_kernel(2, 11)
    assert np.allclose(kernel, kernel[::-1]) and abs(kernel.sum() - 1) < 1e-12
    assert torch.allclose(out[0, 5:16], torch.from_numpy(kernel).float(), atol=1e-7)
    assert int(out[0].argmax()) == 10 and abs(float(out[0].sum()) - 1) < 1e-6
    assert torch.isnan(out[1, 3]) and int(torch.isnan(out).sum()) == 1
    with pytest.raises(ValueError, match="padding=3 would change the responses' length"):
        ds.smooth_responses(sigma_time_step=2, kernel_size=11, padding=3)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ds.smooth_responses(sigma_time_step=2, kernel_size=10)
    ds.smooth_responses(21.0)                  # the base signature still works
    ops = ds.provenance["operations"]
    assert ops[0]["parameters"]["kind"] == "gaussian" and ops[-1]["parameters"]["window_ms"] == 21


def test_noise_is_seeded():
    a, b, c = small(), small(), small()
    clean = a.stims[0].clone()
    a.add_noise_to_videos(0.2, seed=3)
    b.add_noise_to_videos(0.2, seed=3)
    c.add_noise_to_videos(0.2, seed=4)
    assert torch.equal(a.stims[0], b.stims[0]) and not torch.equal(a.stims[0], c.stims[0])
    noise = torch.cat([(a.stims[0] - clean).reshape(-1)])
    assert abs(float(noise.std()) - 0.2) < 0.03 and abs(float(noise.mean())) < 0.03
    assert a.provenance["operations"][-1]["parameters"] == {"noise_level": 0.2, "seed": 3}
    with pytest.raises(ValueError, match="noise_level must be a standard deviation >= 0"):
        a.add_noise_to_videos(-1)


def test_signal_power_matches_the_metrics_module():
    from deepstrf.metrics import signal_power

    ds = small(T=(40, 30, 20), seed=2)
    batch = neural_collate([ds[i] for i in range(len(ds))])
    expected = signal_power(batch["responses"].to(torch.float64), reduction="none")
    got = ds.get_responses_signal_power()
    assert got.shape == (3,) and torch.allclose(got, expected, atol=1e-10)
    per = ds.get_responses_signal_power(per_stimulus=True)
    assert per.shape == (3, 3) and torch.isnan(per[2, 1])
    dense = batch["responses"].permute(1, 0, 2, 3).to(torch.float64)     # (N, S, R, T)
    assert torch.allclose(per, pv.responses_signal_power(dense), atol=1e-10, equal_nan=True)
    # Sahani & Linden from first principles for one pair
    r = ds.responses[0][0].to(torch.float64)
    R = r.shape[0]
    sp = (R * r.mean(0).var() - r.var(1).mean()) / (R - 1)
    assert torch.allclose(per[0, 0], sp)


def test_deepstrf_tensor_calls_point_at_the_pure_functions():
    ds = small()
    with pytest.raises(TypeError, match=r"preprocessing\.video\.resize_movie"):
        ds.change_spatial_resolution(torch.rand(3, 1, 6, 5, 12), (3, 3))
    with pytest.raises(TypeError, match=r"in place"):
        ds.normalize_responses(torch.rand(3, 3, 3, 12))
    with pytest.raises(TypeError, match=r"normalize_movie"):
        ds.normalize_videos(torch.rand(3, 1, 6, 5, 12))
    with pytest.raises(TypeError, match=r"rgb_to_grayscale"):
        ds.from_rgb_to_grayscale(torch.rand(3, 3, 6, 5, 12))
    with pytest.raises(TypeError, match=r"smooth_gaussian"):
        ds.smooth_responses(torch.rand(3, 3, 3, 12), sigma_time_step=2)
    z = pv.zscore_time(torch.tensor([[1.0, 2.0, NAN, 3.0]]))
    assert torch.allclose(z[0, [0, 1, 3]], torch.tensor([-1.0, 0.0, 1.0])) and torch.isnan(z[0, 2])


def test_pure_functions():
    x = torch.arange(12.0).reshape(1, 1, 1, 12)
    assert pv.time_factor(10, 30) == ("down", 3) and pv.time_factor(10, 2.5) == ("up", 4)
    assert torch.equal(pv.downsample_time(x, 5, reduce="sum")[0, 0, 0], torch.tensor([10.0, 35]))
    assert torch.equal(pv.upsample_time(torch.tensor([4.0, 2]), 2, spread=True),
                       torch.tensor([2.0, 2, 1, 1]))
    clips = pv.split_into_clips(torch.arange(5.0), 2, pad_value=NAN)
    assert [(c.tolist()[:1], o, n) for c, o, n in clips] == [([0.0], 0, 2), ([2.0], 2, 2),
                                                             ([4.0], 4, 1)]
    assert torch.isnan(clips[-1][0][1])
    y, m, s = pv.normalize_movie(torch.rand(3, 4, 4, 5), per_channel=True)
    assert m.shape == (3, 1, 1, 1) and torch.allclose(y.mean((1, 2, 3)), torch.zeros(3),
                                                      atol=1e-6)
    with pytest.raises(ValueError, match="at least 4 axes"):
        pv.resize_movie(torch.rand(4, 4, 5), 2)


# ---------------------------------------------------------------------- stimulus sources
def front(**kw):
    return make_video_front_end(dt_ms=kw.pop("dt_ms", 10.0), **kw)


def test_array_sources_from_npy_hdf5_and_matlab(tmp_path):
    import h5py

    from deepstrf.testing.matfiles import write_mat

    frames = (np.arange(6 * 4 * 5) % 251).astype(np.uint8).reshape(6, 4, 5)   # (T, H, W)
    np.save(tmp_path / "m.npy", frames)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["movie/frames"] = np.moveaxis(frames, 0, -1)                          # (H, W, T)
    write_mat(tmp_path / "m.mat", {"mov": np.moveaxis(frames, 0, -1)})
    expected = np.moveaxis(frames, 0, -1)[None].astype(np.float32) / 255
    for source in (MovieArrayStim(100.0, path=tmp_path / "m.npy"),
                   MovieArrayStim(100.0, path=tmp_path / "m.h5", key="movie/frames",
                                  layout="HWT"),
                   MovieArrayStim(100.0, path=tmp_path / "m.mat", key="mov", layout="HWT"),
                   MovieArrayStim(100.0, movie=frames)):
        movie, facts = source.render(front(), None)
        assert movie.dtype == np.float32 and np.array_equal(movie, expected)
        assert facts["n_bins"] == 6
    # 200 Hz frames on 10 ms bins: averaged in pairs
    movie, facts = MovieArrayStim(200.0, movie=frames).render(front(), None)
    assert facts["n_bins"] == 3 and np.allclose(movie, expected.reshape(1, 4, 5, 3, 2).mean(-1))
    with pytest.raises(ValueError, match=r"frames of 6.66667 ms .* cannot be pooled"):
        MovieArrayStim(150.0, movie=frames).render(front(), None)
    with pytest.raises(RawDataError, match="grid needs 7 bins .* has 6 frames"):
        MovieArrayStim(100.0, movie=frames).render(front(), 7)
    # a damaged .npz, and one without the key asked for, are named
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(RawDataError, match=r"bad\.npz: not a readable \.npz archive"):
        MovieArrayStim(100.0, path=tmp_path / "bad.npz", key="mov").render(front(), None)
    np.savez(tmp_path / "m.npz", other=frames)
    with pytest.raises(RawDataError, match=r"m\.npz: give key= among \['other'\]"):
        MovieArrayStim(100.0, path=tmp_path / "m.npz", key="mov").render(front(), None)
    with pytest.raises(RawDataError, match="layout 'THWC' needs a 4-D array"):
        MovieArrayStim(100.0, movie=frames, layout="THWC").render(front(), None)
    with pytest.raises(ValueError, match="layout must be one of"):
        MovieArrayStim(100.0, movie=frames, layout="XYZ")


def test_image_sequence_in_natural_order(tmp_path):
    from PIL import Image

    for t in (0, 1, 2, 10, 11):   # frame10 must come after frame2
        Image.fromarray(np.full((3, 4), t * 10, np.uint8)).save(tmp_path / f"frame{t}.png")
    movie, facts = ImageSequenceStim(tmp_path, 100.0).render(front(), None)
    assert movie.shape == (1, 3, 4, 5)
    assert np.allclose(movie[0, 0, 0] * 255, [0, 10, 20, 100, 110])
    rgb, _ = ImageSequenceStim(tmp_path, 100.0).render(front(size=(6, 8)), None)
    assert rgb.shape == (1, 6, 8, 5)
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "frame12.png")
    with pytest.raises(RawDataError, match="frame12.png: frame of shape"):
        ImageSequenceStim(tmp_path, 100.0).render(front(), None)
    with pytest.raises(RawDataError, match="no image files"):
        ImageSequenceStim(tmp_path, 100.0, pattern="*.jpg").render(front(), None)


def test_video_file_source(tmp_path):
    pytest.importorskip("av")
    from deepstrf.testing.visual import _write_mp4

    frames = np.stack([np.full((8, 6), 20 * t, np.uint8) for t in range(8)], axis=-1)
    assert _write_mp4(tmp_path / "clip.mkv", frames, 100.0)
    movie, facts = MovieFileStim(tmp_path / "clip.mkv").render(front(), None)
    assert movie.shape == (1, 8, 6, 8) and facts["native_frame_rate_hz"] == 100.0
    assert np.allclose(movie[0, 0, 0] * 255, 20 * np.arange(8))
    with pytest.raises(RawDataError, match="100 frames/s, but the dataset documents 25"):
        MovieFileStim(tmp_path / "clip.mkv", expected_rate_hz=25).render(front(), None)
    (tmp_path / "bad.mkv").write_bytes(b"not a movie")
    with pytest.raises(RawDataError, match="bad.mkv: cannot decode"):
        MovieFileStim(tmp_path / "bad.mkv").render(front(), None)


def test_from_data_renders_sources(tmp_path):
    frames = np.random.default_rng(0).random((3, 20, 4, 4)).astype(np.float32)  # (C, T, H, W)
    src = MovieArrayStim(200.0, {"name": "rgb"}, movie=np.moveaxis(frames, 0, 1),
                         layout="TCHW")
    ds = VideoNeuralDataset.from_data([src], [[torch.ones(2, 8)]], dt_ms=10, channels="gray")
    assert (ds.C, ds.H, ds.W) == (1, 4, 4) and ds.stims[0].shape == (1, 4, 4, 8)
    gray = (0.299 * frames[0] + 0.587 * frames[1] + 0.114 * frames[2])      # (T, H, W)
    pooled = gray[:16].reshape(8, 2, 4, 4).mean(1)
    assert np.allclose(ds.stims[0][0].numpy(), np.moveaxis(pooled, 0, -1), atol=1e-6)
    assert ds.stim_meta[0]["name"] == "rgb" and ds.stim_meta[0]["native_frame_rate_hz"] == 200


# ---------------------------------------------------------------------- simulation on disk
@pytest.fixture
def release(tmp_path, monkeypatch):
    from deepstrf.testing.visual import write_visual_release

    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    formats = ("npy", "h5", "png", "mat") + (("mp4",) if _has_av() else ())
    return write_visual_release(tmp_path / "release", n_neurons=6, n_movies=len(formats),
                                n_frames=(30, 25, 20, 30, 22)[:len(formats)], H=8, W=10,
                                formats=formats)


def _has_av():
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def test_worker_side_code_imports_no_torch(tmp_path):
    code = ("import sys, numpy as np\n"
            "from deepstrf.datasets.video._tasks import make_video_front_end, movie_task\n"
            "from deepstrf.datasets.video._stimuli import MovieArrayStim\n"
            "from deepstrf.datasets._responses import SpikeTrains\n"
            "rgb = (np.arange(5 * 4 * 4 * 3) % 256).astype(np.uint8).reshape(5, 4, 4, 3)\n"
            "src = MovieArrayStim(100.0, movie=rgb, layout='THWC')\n"
            "front = make_video_front_end(dt_ms=10, channels='gray')\n"
            "movie, rows, facts = movie_task((src, front, [SpikeTrains.from_trials([[1.0]])]))\n"
            "print(movie.shape, rows.tolist(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "(1, 4, 4, 5) [[1.0, 0.0, 0.0, 0.0, 0.0]] False"


def test_simulated_release_loads_exactly(release):
    from deepstrf.testing.visual import SimulatedVisualDataset

    ds = SimulatedVisualDataset(release.root)
    assert (ds.C, ds.H, ds.W, ds.frame_rate_hz) == (1, 8, 10, 100)
    assert [m["name"] for m in ds.stim_meta] == release.names
    for s, stored in enumerate(release.stored):
        assert torch.equal(ds.stims[s][0], torch.from_numpy(stored)), release.formats[s]
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            truth = release.counts.get((s, n))
            got = ds.responses[s][n]
            if truth is None:
                assert got.shape == (1, 1) and torch.isnan(got).all()
            else:
                assert np.array_equal(got.numpy(), truth)
    assert not ds.nrn_masks[-1, 2] and not ds.nrn_masks[-1, 5] and ds.nrn_masks[:-1].all()
    again = SimulatedVisualDataset(release.root)
    assert again.provenance["cache_hit"] and torch.equal(again.stims[2], ds.stims[2])
    parallel = SimulatedVisualDataset(release.root, n_jobs=2, cache="off")   # worker processes
    assert all(torch.equal(a, b) for a, b in zip(parallel.stims, ds.stims))
    assert all(torch.equal(parallel.responses[s][n].nan_to_num(-1), ds.responses[s][n]
                           .nan_to_num(-1)) for s in range(ds.get_S()) for n in range(6))
    v1 = SimulatedVisualDataset(release.root, areas=["V1"], dt_ms=20, size=(4, 5))
    assert [m["area"] for m in v1.nrn_meta] == ["V1"] * 3 and (v1.H, v1.W) == (4, 5)
    assert np.array_equal(v1.responses[0][0].numpy(),
                          release.counts[(0, 0)].reshape(5, 15, 2).sum(-1))


def test_broken_release_files_are_named_and_leave_no_cache(release):
    from deepstrf.testing.visual import SimulatedVisualDataset

    home = release.root.parent / "home"
    npy = release.root / "movies" / "movie000.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    with pytest.raises(RawDataError, match=r"movie000\.npy: not a readable \.npy array"):
        SimulatedVisualDataset(release.root)
    assert not list(home.rglob("manifest.json"))
    (release.root / "movies" / "movie002" / "frame3.png").write_bytes(b"broken")
    np.save(npy, np.zeros((30, 8, 10), np.uint8))
    with pytest.raises(RawDataError, match=r"frame3\.png: cannot read as an image"):
        SimulatedVisualDataset(release.root)
    assert not list(home.rglob("manifest.json"))


def test_movie_kinds_are_distinct_and_deterministic():
    from deepstrf.testing.visual import make_movies

    a = make_movies(["grating", "blobs", "noise"], 40, 12, 12, seed=5)
    b = make_movies(["grating", "blobs", "noise"], 40, 12, 12, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == (12, 12, 40) and 0 <= x.min() and x.max() <= 1 for x in a)
    grating, _, noise = a
    # a drifting grating sin(k.x - w t) = sin(k.x) cos(w t) - cos(k.x) sin(w t): rank 2
    sv = np.linalg.svd(grating.reshape(144, 40) - grating.mean(), compute_uv=False)
    assert (sv[:2] ** 2).sum() > 0.999 * (sv ** 2).sum()
    sv_noise = np.linalg.svd(noise.reshape(144, 40) - noise.mean(), compute_uv=False)
    assert (sv_noise[:2] ** 2).sum() < 0.9 * (sv_noise ** 2).sum()
    # 1/f noise: more power at low than at high spatial frequencies
    p = np.abs(np.fft.fft2(noise[..., 0] - noise[..., 0].mean())) ** 2
    assert p[1:3, 1:3].mean() > 10 * p[5:7, 5:7].mean()


@pytest.mark.slow
def test_linear_strf_recovers_spatio_temporal_filters(tmp_path, monkeypatch):
    from deepstrf.models import fit_ridge, split_stimuli
    from deepstrf.testing.visual import SimulatedVisualDataset, write_visual_release

    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    # natural spatial statistics (1/f amplitude), milder temporal correlation
    rel = write_visual_release(tmp_path / "rel", n_neurons=10, n_movies=40, n_frames=250,
                               n_repeats=10, formats=("npy",), kinds=("noise",), n_weak=2,
                               base_rate_hz=40, alpha=1.0, alpha_time=0.5, seed=1)
    ds = SimulatedVisualDataset(rel.root)
    quality = ds.compute_neuron_quality()
    train, val, _ = split_stimuli(ds, (0.8, 0.2, 0.0), seed=0)
    ds.standardize_stims(train + val)
    fit = fit_ridge(ds, train, val, n_lags=rel.population.n_lags)
    fitted = fit.model.weight.detach().numpy().reshape(ds.N_neurons, ds.C, ds.H, ds.W, -1)
    truth = rel.population.rfs
    corr = np.array([np.corrcoef(fitted[n, 0].ravel(), truth[n].ravel())[0, 1]
                     for n in range(ds.N_neurons)])
    good = quality["snr"].numpy() > 0.3
    assert good.sum() == 8 and not good[:2].any()      # the two weak neurons are rejected
    assert (corr[good] > 0.8).all(), corr
    # a filter shifted by one lag is caught: frames and bins are aligned
    shifted = np.roll(truth, 1, axis=-1)
    shifted[..., 0] = 0
    corr_shift = np.array([np.corrcoef(fitted[n, 0].ravel(), shifted[n].ravel())[0, 1]
                           for n in np.flatnonzero(good)])
    assert np.median(corr_shift) < np.median(corr[good]) - 0.2


# ---------------------------------------------------------------------- the docs page
def test_video_page_prints_what_it_shows(tmp_path, monkeypatch):
    from tests.test_docs import run_page

    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    run_page("video.md", compare=True)


def test_a_subclass_filling_lists_gets_its_attributes():
    class MyMovies(VideoNeuralDataset):
        def __init__(self):
            super().__init__(None, 10.0)
            self.stims = [torch.rand(3, 5, 7, 6), torch.rand(3, 5, 7, 4)]
            self.responses = [[torch.ones(2, 6)], [sentinel()]]
            self.stim_meta, self.nrn_meta = [{}, {}], [{"id": 0}]
            self.N_neurons = 1
            self.validate()

    ds = MyMovies()
    assert (ds.C, ds.H, ds.W, ds.frame_rate_hz) == (3, 5, 7, 100.0)
    assert ds.response_store.T(1) == 4                 # nobody heard movie 1: from its frames
    ds.normalize_videos(stim_indices=[0])
    assert ds.video_normalization["stim_indices"] == [0]


def test_normalize_videos_per_channel():
    ds = small(C=3, T=(20, 15, 10))
    for x in ds.stims:
        x[1] += 4.0
        x[2] *= 3.0
    originals = [x.clone() for x in ds.stims]
    record = ds.normalize_videos(per_channel=True)
    assert record["mean"][0].shape == (3, 1, 1, 1)
    flat = torch.cat([x.reshape(3, -1) for x in ds.stims], dim=1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.std(1), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match="per-channel normalisation is active"):
        ds.from_rgb_to_grayscale()
    ds.denormalize_videos()
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ds.stims, originals))
