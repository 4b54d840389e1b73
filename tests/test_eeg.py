"""Tests of deepstrf.preprocessing.eeg on small MNE recordings whose every sample is known."""

from __future__ import annotations

import csv
import datetime
import logging
import pickle
import warnings
import zipfile
from fractions import Fraction

import numpy as np
import pytest
import soundfile

mne = pytest.importorskip("mne")

from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError  # noqa: E402
from deepstrf.preprocessing import eeg  # noqa: E402
from deepstrf.preprocessing.continuous import pool_mean, time_to_sample  # noqa: E402
from deepstrf.preprocessing.eeg import (  # noqa: E402
    EEGParams,
    EEGSubjectTask,
    check_fif,
    mne_log_level,
    preprocess_raw,
    preprocess_subject,
    preprocess_subjects,
    read_raw_eeg,
    report_quirks,
    segment_onsets,
)
from deepstrf.testing.fixtures import alice as alice_fx  # noqa: E402

SF = 500.0
NAN = np.nan
NO_FILTER = dict(hp_freq_hz=None, lp_freq_hz=None)


def make_raw(data, *, sfreq=SF, names=None, types=None, first_samp=0, meas_date=None,
             annotations=(), bads=()):
    """A RawArray; annotation onsets are seconds from the first data sample."""
    # MNE saves single precision by default (as the Alice converter did): quantise first so
    # the samples read back are exactly the ones a test computes its expectations from.
    data = np.asarray(data, dtype=np.float32).astype(np.float64)
    names = names or [str(i + 1) for i in range(data.shape[0])]
    info = mne.create_info(names, sfreq, types or "eeg")
    raw = mne.io.RawArray(data, info, first_samp=first_samp, verbose="error")
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    if annotations:
        onsets, durations, descriptions = zip(*annotations)
        # orig_time=None: onsets count from the first data sample; MNE moves them onto the
        # recording clock (adds first_samp / sfreq) itself.
        raw.set_annotations(mne.Annotations(list(onsets), list(durations), list(descriptions)))
    raw.info["bads"] = list(bads)
    return raw


def ramp(n_channels, n_times, scale=1e-6):
    """Channel c holds (sample index + 1000 c) * scale: a value names its sample."""
    return (np.arange(n_times)[None, :] + 1000.0 * np.arange(n_channels)[:, None]) * scale


def save(raw, tmp_path, name="S01_alice-raw.fif"):
    path = tmp_path / name
    raw.save(path, overwrite=True, verbose="error")
    return path


# --- parameters --------------------------------------------------------------

def test_mne_log_level():
    assert mne_log_level(None) == "ERROR"
    assert mne_log_level(False) == "ERROR"
    assert mne_log_level(True) == "INFO"
    assert mne_log_level("debug") == "DEBUG"
    with pytest.raises(ValueError, match="verbose must be"):
        mne_log_level("loud")
    with pytest.raises(ValueError, match="verbose must be"):
        mne_log_level(3)


def test_params_defaults_and_rate():
    p = EEGParams()
    assert (p.dt_ms, p.hp_freq_hz, p.lp_freq_hz, p.reference, p.method) == \
        (10.0, 1.0, None, None, "resample")
    assert p.sfreq_out == 100.0
    assert EEGParams(dt_ms=4.0).sfreq_out == 250.0
    assert EEGParams(reference="25").reference == ("25",)
    assert EEGParams(reference=["25", "29"]).reference == ("25", "29")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(dt_ms=0), ValueError, "dt_ms"),
    (dict(hp_freq_hz=-1.0), ValueError, "hp_freq_hz"),
    (dict(hp_freq_hz=10.0, lp_freq_hz=5.0), ValueError, "below lp_freq_hz"),
    (dict(hp_freq_hz=5.0, lp_freq_hz=5.0), ValueError, "below lp_freq_hz"),
    (dict(method="fft"), ValueError, "method"),
    (dict(reference=""), ValueError, "reference"),
    (dict(reference=[]), ValueError, "reference"),
    (dict(reference=["25", "25"]), ValueError, "twice"),
    (dict(reference=5), TypeError, "reference"),
    (dict(verbose="chatty"), ValueError, "verbose"),
])
def test_params_reject_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        EEGParams(**kwargs)


@pytest.mark.parametrize(("segments", "error", "match"), [
    ({}, ValueError, "at least one"),
    ({1: 10}, TypeError, "non-empty strings"),
    ({"1": -1}, ValueError, "n_bins"),
    ({"1": 2.5}, TypeError, "n_bins"),
    ([("1", 3), ("1", 4)], ValueError, "twice"),
    ([("1", 3, 4)], ValueError, "pairs"),
    (5, TypeError, "segments must map"),
])
def test_task_rejects_bad_segments(segments, error, match):
    with pytest.raises(error, match=match):
        EEGSubjectTask("x.fif", segments)


def test_task_normalises_and_pickles(tmp_path):
    task = EEGSubjectTask(tmp_path / "a.fif", {"2": 5, "1": 3}, EEGParams(dt_ms=2.0), "S01")
    assert task.path == str(tmp_path / "a.fif")
    assert task.segments == (("2", 5), ("1", 3))
    assert pickle.loads(pickle.dumps(task)) == task
    with pytest.raises(TypeError, match="EEGParams"):
        EEGSubjectTask("a.fif", {"1": 3}, params={"dt_ms": 2.0})


# --- onsets and first_samp -----------------------------------------------------

@pytest.mark.parametrize("first_samp", [0, 1000, 12345])
@pytest.mark.parametrize("meas_date", [None, datetime.datetime(2019, 5, 1, tzinfo=datetime.timezone.utc)])
def test_onsets_account_for_first_samp(tmp_path, first_samp, meas_date):
    raw = make_raw(ramp(2, 3000), first_samp=first_samp, meas_date=meas_date,
                   annotations=[(2.0, 0.1, "1"), (3.5, 0.1, "2")])
    raw = read_raw_eeg(save(raw, tmp_path))
    assert raw.first_samp == first_samp
    onsets, missing = segment_onsets(raw, ["1", "2", "3"])
    # FIF stores onsets in single precision on the recording clock: ~1e-6 s at 30 s.
    assert onsets == pytest.approx({"1": 2.0, "2": 3.5}, abs=1e-5)
    assert missing == ("3",)
    # deepSTRF 0.1.0 read raw.annotations.onset, which runs on the recording clock.
    assert raw.annotations.onset[0] == pytest.approx(2.0 + first_samp / SF)

    result = preprocess_raw(raw, {"1": 4, "2": 2}, EEGParams(method="pool", **NO_FILTER))
    # 10 ms pooled bins = 5 samples; segment 1 starts at data sample 1000, segment 2 at 1750.
    np.testing.assert_allclose(result.segments["1"][0], [1002e-6, 1007e-6, 1012e-6, 1017e-6],
                               rtol=1e-6)
    np.testing.assert_allclose(result.segments["2"][1], [2752e-6, 2757e-6], rtol=1e-6)
    assert result.cuts["1"].start == 1000 and result.cuts["2"].start == 1750
    assert result.first_samp == first_samp


def test_onset_rounding_on_the_input_and_output_grids(tmp_path):
    # 2.0031 s = sample 1001.55 at 500 Hz -> 1002; = 200.31 at 100 Hz -> 200.
    raw = make_raw(ramp(1, 3000), first_samp=77, annotations=[(2.0031, 0.1, "1")])
    path = save(raw, tmp_path)
    pooled = preprocess_subject(EEGSubjectTask(path, {"1": 3}, EEGParams(method="pool",
                                                                         **NO_FILTER)))
    assert pooled.cuts["1"].start == 1002
    assert pooled.cuts["1"].origin_s == pytest.approx(2.004)
    np.testing.assert_allclose(pooled.segments["1"][0], [1004e-6, 1009e-6, 1014e-6], rtol=1e-6)
    resampled = preprocess_subject(EEGSubjectTask(path, {"1": 3}, EEGParams(**NO_FILTER)))
    assert resampled.cuts["1"].start == 200
    assert resampled.cuts["1"].origin_s == pytest.approx(2.0)
    assert resampled.cuts["1"].onset_s == pytest.approx(2.0031)


# --- values: pooling, resampling, filtering, referencing -------------------------

def band_limited(n_times, sfreq, n_channels=3, seed=0):
    """Sums of sinusoids below 20 Hz, as an analytic function of time."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(1.5, 20.0, size=(n_channels, 4))
    phases = rng.uniform(0, 2 * np.pi, size=(n_channels, 4))
    amps = rng.uniform(2e-6, 1e-5, size=(n_channels, 4))

    def at(t):
        t = np.asarray(t, dtype=np.float64)
        return np.einsum("ck,ckt->ct", amps,
                         np.sin(2 * np.pi * freqs[:, :, None] * t[None, None, :]
                                + phases[:, :, None]))

    return at(np.arange(n_times) / sfreq), at


@pytest.mark.parametrize(("n_times", "dt_ms"), [(10_000, 10.0), (10_003, 10.0), (9_001, 3.0),
                                              (10_001, 4.0), (8_191, 8.0)])
def test_resample_values_equal_the_band_limited_signal_at_the_output_times(tmp_path, n_times,
                                                                           dt_ms):
    # MNE's default padding would put these samples up to dt/2 off their times (the
    # _resample_exact docstring); the signal is band-limited, so the values pin the times down.
    data, at = band_limited(n_times, SF)
    raw = make_raw(data, first_samp=250, annotations=[(4.0, 0.1, "1"), (10.5, 0.1, "2")])
    n1, n2 = int(3000 / dt_ms), int(6000 / dt_ms)
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": n1, "2": n2},
                                               EEGParams(dt_ms=dt_ms, **NO_FILTER)))
    assert result.sfreq_out == pytest.approx(1000.0 / dt_ms)
    for label, n in (("1", n1), ("2", n2)):
        cut = result.cuts[label]
        assert abs(cut.origin_s - cut.onset_s) <= dt_ms / 2000.0 + 1e-12
        seg = result.segments[label]
        assert seg.dtype == np.float32
        recorded = np.isfinite(seg[0])
        t = cut.origin_s + np.arange(n) * dt_ms / 1000.0
        # Finite up to the last output sample of the whole number of output periods the
        # recording holds (ratio p/q: the last n % q input samples are left out); away from
        # the end (edge effects of the FFT) equal to the analytic signal.
        ratio = Fraction(1000) / (Fraction(dt_ms) * int(SF))
        n_out = (n_times // ratio.denominator) * ratio.denominator * ratio
        assert recorded.tolist() == [cut.start + j < n_out for j in range(n)]
        inner = t < n_times / SF - 1.0
        np.testing.assert_allclose(seg[:, inner], at(t[inner]), atol=5e-8)


def test_pool_values_are_block_means(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((4, 4000)) * 1e-5           # signed, white
    data = data.astype(np.float32).astype(np.float64)      # as saved
    raw = make_raw(data, annotations=[(1.0, 0.1, "7"), (5.0, 0.1, "8")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"7": 50, "8": 20},
                                               EEGParams(dt_ms=4.0, method="pool",
                                                         **NO_FILTER)))
    np.testing.assert_allclose(result.segments["7"],
                               data[:, 500:600].reshape(4, 50, 2).mean(-1), rtol=1e-5)
    np.testing.assert_allclose(result.segments["8"],
                               data[:, 2500:2540].reshape(4, 20, 2).mean(-1), rtol=1e-5)
    assert result.sfreq_out == 250.0


@pytest.mark.parametrize(("hp", "lp"), [(1.0, None), (None, 30.0), (0.5, 40.0)])
def test_band_pass_equals_mne_filter_data_computed_here(tmp_path, hp, lp):
    rng = np.random.default_rng(5)
    data = np.cumsum(rng.standard_normal((3, 15_000)), axis=1) * 1e-7   # drifting, 30 s
    raw = make_raw(data, annotations=[(10.0, 0.1, "1")])
    result = preprocess_subject(EEGSubjectTask(
        save(raw, tmp_path), {"1": 500}, EEGParams(dt_ms=2.0, hp_freq_hz=hp, lp_freq_hz=lp)))
    expected = mne.filter.filter_data(data, SF, hp, lp, verbose="error")[:, 5000:5500]
    np.testing.assert_allclose(result.segments["1"], expected, rtol=1e-5, atol=1e-12)
    assert not np.allclose(result.segments["1"], data[:, 5000:5500], atol=1e-9)


def test_high_pass_removes_a_drift_and_keeps_a_10_hz_tone(tmp_path):
    t = np.arange(30_000) / SF
    tone = 5e-6 * np.sin(2 * np.pi * 10.0 * t)
    drift = 1e-5 * np.sin(2 * np.pi * 0.05 * t)
    raw = make_raw(np.vstack([tone + drift, tone - drift]), annotations=[(20.0, 0.1, "1")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 1000},
                                               EEGParams(dt_ms=2.0, hp_freq_hz=1.0)))
    np.testing.assert_allclose(result.segments["1"], np.vstack([tone, tone])[:, 10000:11000],
                               atol=5e-8)
    assert np.abs(result.segments["1"]).max() == pytest.approx(5e-6, rel=0.01)


def test_average_reference_leaves_bad_channels_out(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((4, 2000)) * 1e-5
    data[2] += 1e-3                                           # a bad, offset channel
    raw = make_raw(data, annotations=[(1.0, 0.1, "1")], bads=["3"])
    result = preprocess_subject(EEGSubjectTask(
        save(raw, tmp_path), {"1": 200},
        EEGParams(dt_ms=2.0, reference="average", **NO_FILTER)))
    good = [0, 1, 3]
    expected = data[good] - data[good].mean(axis=0)
    np.testing.assert_allclose(result.segments["1"][good], expected[:, 500:700],
                               rtol=1e-5, atol=1e-12)
    assert np.isnan(result.segments["1"][2]).all()


def test_channel_reference(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((4, 2000)) * 1e-5
    raw = make_raw(data, annotations=[(1.0, 0.1, "1")])
    result = preprocess_subject(EEGSubjectTask(
        save(raw, tmp_path), {"1": 200}, EEGParams(dt_ms=2.0, reference=("2", "4"),
                                                   **NO_FILTER)))
    expected = data - data[[1, 3]].mean(axis=0)
    np.testing.assert_allclose(result.segments["1"], expected[:, 500:700], rtol=1e-5,
                               atol=1e-12)


@pytest.mark.parametrize(("reference", "bads", "match"), [
    (("2",), ["2"], "marked bad"),
    (("9",), [], "not EEG channels"),
])
def test_bad_or_absent_reference_channel_is_an_error_naming_the_file(tmp_path, reference, bads,
                                                                     match):
    raw = make_raw(ramp(3, 1000), annotations=[(0.5, 0.1, "1")], bads=bads)
    path = save(raw, tmp_path)
    with pytest.raises(RawDataError, match=match) as info:
        preprocess_subject(EEGSubjectTask(path, {"1": 5}, EEGParams(reference=reference)))
    assert str(path) in str(info.value)


# --- NaN: bad channels, bad spans, padding -----------------------------------------

def test_bad_channels_are_nan_rows_and_others_untouched(tmp_path):
    raw = make_raw(ramp(4, 2000), annotations=[(1.0, 0.1, "1")], bads=["2", "4"])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 10},
                                               EEGParams(method="pool", **NO_FILTER)))
    seg = result.segments["1"]
    assert result.bads == ("2", "4")
    assert np.isnan(seg[[1, 3]]).all()
    np.testing.assert_allclose(seg[0], (502 + 5 * np.arange(10)) * 1e-6, rtol=1e-6)
    np.testing.assert_allclose(seg[2], (2502 + 5 * np.arange(10)) * 1e-6, rtol=1e-6)


@pytest.mark.parametrize(("method", "expected_bins"), [
    # Segment from 1.0 s on 10 ms bins; BAD from 1.034 to 1.0605 s.
    ("pool", [3, 4, 5, 6]),           # bins [1.03,1.04) ... [1.06,1.07)
    ("resample", [3, 4, 5, 6]),       # cells [1.025,1.035) ... [1.055,1.065)
])
def test_bad_spans_mask_every_bin_they_touch(tmp_path, method, expected_bins):
    data, _ = band_limited(3000, SF, n_channels=2)
    raw = make_raw(data, first_samp=500, annotations=[
        (1.0, 0.1, "1"), (1.034, 0.0265, "BAD_muscle"), (1.5, 0.02, "bad blink"),
        (1.2, 0.1, "speech")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 100},
                                               EEGParams(method=method, **NO_FILTER)))
    seg = result.segments["1"]
    # 'bad blink' (lower case) at 1.5-1.52 s: bins 50, 51 (pool) / cells 50, 51, 52 (resample)
    extra = [50, 51] if method == "pool" else [50, 51, 52]
    nan_bins = np.flatnonzero(np.isnan(seg).all(axis=0)).tolist()
    assert nan_bins == expected_bins + extra
    assert np.isfinite(np.delete(seg, expected_bins + extra, axis=1)).all()
    assert result.cuts["1"].n_bad_span == len(expected_bins + extra)
    assert [d for _, _, d in result.bad_spans] == ["BAD_muscle", "bad blink"]
    assert result.bad_spans[0][0] == pytest.approx(1.034)
    assert result.other_annotations == ("speech",)


def test_masking_comes_after_filtering(tmp_path):
    # A large artefact in a BAD span is filtered with the rest; the unmasked samples equal the
    # filter of the whole trace (including the artefact), the masked ones are NaN.
    rng = np.random.default_rng(9)
    data = rng.standard_normal((1, 10_000)) * 1e-6
    data[0, 4000:4100] += 1e-3
    raw = make_raw(data, annotations=[(7.0, 0.1, "1"), (8.0, 0.2, "BAD_jump")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 1000},
                                               EEGParams(dt_ms=2.0, hp_freq_hz=1.0)))
    seg = result.segments["1"][0]
    expected = mne.filter.filter_data(data, SF, 1.0, None, verbose="error")[0, 3500:4500]
    # Samples 500..600 (8.0 to 8.2 s): sample 600's cell [8.199, 8.201) overlaps the span.
    assert np.isnan(seg[500:601]).all()
    keep = np.r_[0:500, 601:1000]
    np.testing.assert_allclose(seg[keep], expected[keep], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("method", ["pool", "resample"])
def test_nan_padding_past_the_end_with_a_quirk(tmp_path, method):
    # 2003 samples = 4.006 s; segment at 3.0 s for 150 bins of 10 ms.
    raw = make_raw(ramp(2, 2003), annotations=[(3.0, 0.1, "1")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 150},
                                               EEGParams(method=method, **NO_FILTER)))
    seg = result.segments["1"]
    # Bins 0..99 cover 3.0-4.0 s; bin 100 would need samples past 4.006 s: missing, not
    # part-averaged (pool) or extrapolated (resample).
    n_recorded = 100
    assert np.isfinite(seg[:, :n_recorded]).all()
    assert np.isnan(seg[:, n_recorded:]).all()
    assert result.cuts["1"].n_padded == 150 - n_recorded
    assert [q.kind for q in result.quirks] == ["segment_past_end"]
    assert "runs past the end" in result.quirks[0].message
    if method == "pool":
        np.testing.assert_allclose(seg[0, :3], [1502e-6, 1507e-6, 1512e-6], rtol=1e-6)


def test_non_finite_samples_make_a_channel_bad(tmp_path):
    data = ramp(3, 2000)
    data[1, 700] = np.nan
    raw = make_raw(data, annotations=[(1.0, 0.1, "1")])
    result = preprocess_raw(raw, {"1": 10}, EEGParams(method="pool", hp_freq_hz=1.0))
    assert result.bads == ("2",)
    assert np.isnan(result.segments["1"][1]).all()
    assert np.isfinite(result.segments["1"][[0, 2]]).all()
    assert [q.kind for q in result.quirks] == ["nonfinite_samples"]


# --- segments and annotations ------------------------------------------------------

def test_missing_segment_is_a_quirk_not_an_error(tmp_path):
    raw = make_raw(ramp(2, 3000), annotations=[(1.0, 0.1, str(k)) for k in (2, 3)])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 5, "2": 5, "3": 5},
                                               EEGParams(method="pool", **NO_FILTER)))
    assert result.missing == ("1",)
    assert list(result.segments) == ["2", "3"]
    assert [q.kind for q in result.quirks] == ["missing_segment"]
    with pytest.warns(DataQuirkWarning, match="no annotation '1'"):
        counts = report_quirks([result])
    assert counts == {"missing_segment": 1}


@pytest.mark.parametrize(("annotations", "match"), [
    ((), "has no annotations"),
    ([(1.0, 0.1, "one"), (2.0, 0.1, "two")], "none of the segment labels"),
    ([(1.0, 0.1, "1"), (2.0, 0.1, "1")], "annotated 2 times"),
])
def test_annotation_errors_name_the_file(tmp_path, annotations, match):
    raw = make_raw(ramp(2, 2000), annotations=annotations)
    path = save(raw, tmp_path)
    with pytest.raises(RawDataError, match=match) as info:
        preprocess_subject(EEGSubjectTask(path, {"1": 5, "2": 5}))
    assert str(path) in str(info.value)


def test_rates_the_recording_cannot_support(tmp_path):
    raw = make_raw(ramp(1, 2000), annotations=[(1.0, 0.1, "1")])
    path = save(raw, tmp_path)
    with pytest.raises(RawDataError, match="Nyquist"):
        preprocess_subject(EEGSubjectTask(path, {"1": 5}, EEGParams(lp_freq_hz=250.0)))
    with pytest.raises(RawDataError, match="whole number of input samples") as info:
        preprocess_subject(EEGSubjectTask(path, {"1": 5}, EEGParams(dt_ms=3.0, method="pool")))
    assert str(path) in str(info.value)


def test_preprocess_raw_requires_loaded_eeg_only():
    raw = make_raw(ramp(2, 1000), names=["1", "AUD"], types=["eeg", "stim"],
                   annotations=[(0.5, 0.1, "1")])
    with pytest.raises(ValueError, match="only EEG"):
        preprocess_raw(raw, {"1": 5})
    with pytest.raises(TypeError, match="EEGParams"):
        preprocess_raw(raw.pick("eeg"), {"1": 5}, params={"dt_ms": 5})


# --- reading files --------------------------------------------------------------

def test_read_raw_eeg_keeps_eeg_channels_bads_and_positions(tmp_path):
    names = ["1", "2", "3", "VEOG", "AUD"]
    raw = make_raw(ramp(5, 1000), names=names, types=["eeg"] * 3 + ["eog", "stim"],
                   annotations=[(0.5, 0.1, "1")], bads=["2", "VEOG"])
    pos = {"1": [0.0, 0.08, 0.04], "2": [0.07, 0.0, 0.04], "3": [-0.07, 0.0, 0.04]}
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=pos, coord_frame="head"))
    loaded = read_raw_eeg(save(raw, tmp_path))
    assert loaded.ch_names == ["1", "2", "3"]
    assert loaded.info["bads"] == ["2"]
    assert loaded.preload
    result = preprocess_raw(loaded, {"1": 2}, EEGParams(method="pool", **NO_FILTER))
    assert result.ch_names == ("1", "2", "3") and result.unit == "V"
    for name, xyz in pos.items():
        assert result.positions[name] == pytest.approx(tuple(xyz), abs=1e-7)


def test_positions_are_none_without_a_montage(tmp_path):
    raw = make_raw(ramp(2, 1000), annotations=[(0.5, 0.1, "1")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 2}))
    assert result.positions == {"1": None, "2": None}


def test_missing_file(tmp_path):
    with pytest.raises(MissingRawDataError, match="no such file"):
        read_raw_eeg(tmp_path / "S99_alice-raw.fif")


def test_not_a_fif_file(tmp_path):
    path = tmp_path / "S01_alice-raw.fif"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(64))
    with pytest.raises(RawDataError, match="not a FIF file") as info:
        read_raw_eeg(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.999])
def test_truncated_fif_is_an_error_naming_the_file(tmp_path, keep):
    raw = make_raw(ramp(3, 5000), annotations=[(0.5, 0.1, "1")])
    path = save(raw, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(RawDataError, match="truncated FIF file") as info:
        read_raw_eeg(path)
    assert str(path) in str(info.value)


def test_check_fif_accepts_what_mne_writes(tmp_path):
    raw = make_raw(ramp(3, 5000), first_samp=10, annotations=[(0.5, 0.1, "1")], bads=["1"])
    path = save(raw, tmp_path)
    assert check_fif(path) == path


def test_fif_without_eeg_channels(tmp_path):
    raw = make_raw(ramp(2, 1000), names=["VEOG", "AUD"], types=["eog", "stim"],
                   annotations=[(0.5, 0.1, "1")])
    path = save(raw, tmp_path)
    with pytest.raises(RawDataError, match="no EEG channel") as info:
        read_raw_eeg(path)
    assert str(path) in str(info.value) and "VEOG (eog)" in str(info.value)


# --- parallel workers, logging ------------------------------------------------------

def subject_files(tmp_path, n=3):
    paths = []
    for k in range(n):
        rng = np.random.default_rng(k)
        data = rng.standard_normal((4, 6000)) * 1e-5
        annotations = [(1.0 + k * 0.013, 0.1, "1"), (5.0, 0.1, "2"), (9.0, 0.1, "BAD_x")]
        if k == 1:
            annotations = annotations[1:]                # subject 1 lacks segment 1
        raw = make_raw(data, first_samp=100 * k, annotations=annotations, bads=[str(k + 1)])
        paths.append(save(raw, tmp_path, f"S{k + 1:02d}_alice-raw.fif"))
    return paths


def test_n_jobs_1_and_2_give_identical_results(tmp_path, caplog):
    paths = subject_files(tmp_path)
    params = EEGParams(hp_freq_hz=1.0, lp_freq_hz=30.0)
    tasks = [EEGSubjectTask(p, {"1": 300, "2": 800}, params, f"S{k + 1:02d}")
             for k, p in enumerate(paths)]
    runs = {}
    caplog.set_level(logging.INFO, logger="deepstrf.preprocessing.eeg")
    for n_jobs in (1, 2):
        counts = {}
        with pytest.warns(DataQuirkWarning) as record:
            runs[n_jobs] = preprocess_subjects(tasks, n_jobs=n_jobs, progress=False,
                                               counts=counts)
        # Subject 2 lacks segment 1; every subject's segment 2 runs past the end (12 s).
        assert counts == {"missing_segment": 1, "segment_past_end": 3}
        # only the quirks: loky may add its own UserWarning when it restarts a worker it
        # had let idle between tests ("A worker stopped while some jobs were given...")
        quirks = [w for w in record if issubclass(w.category, DataQuirkWarning)]
        assert len(quirks) == 4, [(n_jobs, str(w.message)) for w in record]
    summary = [r.getMessage() for r in caplog.records if r.name == "deepstrf.preprocessing.eeg"]
    assert summary[-1] == ("preprocessed 3 EEG recording(s): 5 segment(s), 3 bad channel(s); "
                           "quirks missing_segment=1, segment_past_end=3")
    for a, b in zip(runs[1], runs[2]):
        assert a.subject == b.subject and a.path == b.path
        assert a.bads == b.bads and a.cuts == b.cuts and a.missing == b.missing
        assert list(a.segments) == list(b.segments)
        for label in a.segments:
            assert a.segments[label].tobytes() == b.segments[label].tobytes()
    assert [r.subject for r in runs[1]] == ["S01", "S02", "S03"]
    assert runs[1][1].missing == ("1",)
    assert runs[1][2].bads == ("3",)


def test_worker_errors_name_the_file(tmp_path):
    paths = subject_files(tmp_path, n=2)
    raw = make_raw(ramp(2, 1000))
    broken = save(raw, tmp_path, "S09_alice-raw.fif")              # no annotations
    tasks = [EEGSubjectTask(p, {"2": 10}) for p in [*paths, broken]]
    with pytest.raises(RawDataError, match="has no annotations") as info:
        preprocess_subjects(tasks, n_jobs=2, progress=False)
    assert str(broken) in str(info.value)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize(("verbose", "loud"), [(None, False), (False, False), (True, True),
                                               ("INFO", True)])
def test_mne_logging_is_quiet_unless_asked(tmp_path, verbose, loud):
    raw = make_raw(ramp(2, 3000), annotations=[(1.0, 0.1, "1")])
    path = save(raw, tmp_path)
    handler = _Collect()
    mne.utils.logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # MNE warnings would fail the quiet cases
            preprocess_subject(EEGSubjectTask(path, {"1": 10},
                                              EEGParams(hp_freq_hz=1.0, verbose=verbose)))
    finally:
        mne.utils.logger.removeHandler(handler)
    messages = [r.getMessage() for r in handler.records if r.levelno >= logging.INFO]
    if loud:
        assert any("filter" in m.lower() for m in messages)
    else:
        assert messages == []


def test_result_pickles(tmp_path):
    raw = make_raw(ramp(2, 3000), annotations=[(1.0, 0.1, "1")])
    result = preprocess_subject(EEGSubjectTask(save(raw, tmp_path), {"1": 10}))
    back = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(back.segments["1"], result.segments["1"])
    assert back.cuts == result.cuts


def test_public_names():
    for name in eeg.__all__:
        assert hasattr(eeg, name)


# --- the Alice fixture: format ------------------------------------------------------


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    root = tmp_path_factory.mktemp("alice")
    return alice_fx.write_alice_eeg(root, subjects=("S01", "S26", "S44"),
                                    first_samp={"S44": 2345}, seed=4)


def test_alice_fixture_tree_and_file_format(alice):
    root = alice.root
    assert sorted(p.name for p in (root / "stimuli").iterdir()) == sorted(
        [f"{s}.wav" for s in range(1, 13)] + ["AliceChapterOne-EEG.csv"])
    assert sorted(p.name for p in (root / "eeg").iterdir()) == ["S01", "S26", "S44"]
    for subject, record in alice.subjects.items():
        assert record.path == root / "eeg" / subject / f"{subject}_alice-raw.fif"
        raw = mne.io.read_raw_fif(record.path, verbose="error")
        assert raw.info["sfreq"] == 500.0
        assert tuple(raw.ch_names) == alice_fx.ALICE_FILE_CHANNELS
        assert raw.ch_names[-4:] == ["VEOG", "Aux5", "AUD", "29"]
        types = raw.get_channel_types()
        assert types.count("eeg") == 61 and types[-4:-1] == ["stim"] * 3
        assert raw.info["bads"] == list(record.bads) and record.bads
        assert raw.info["highpass"] == pytest.approx(0.1) and raw.info["lowpass"] == 200.0
        assert raw.info["meas_date"] is None
        assert raw.first_samp == record.first_samp
        assert raw.get_montage() is not None and len(raw.get_montage().ch_names) == 61
        ann = raw.annotations
        assert list(ann.description) == [str(s) for s in record.segments]
        np.testing.assert_allclose(ann.duration, 0.1, atol=1e-5)   # FIF: float32 on/offsets
        np.testing.assert_allclose(ann.onset - raw.first_samp / 500.0,
                                   [record.onsets_s[s] for s in record.segments], atol=1e-5)
        data = raw.get_data(picks=["25", "29"])
        np.testing.assert_array_equal(data[0], -data[1])        # re-referenced to 25 & 29
        assert 1e-6 < np.abs(raw.get_data(picks="eeg")).max() < 1e-3   # volts
    assert alice.subjects["S26"].segments == tuple(range(2, 13))
    assert alice.subjects["S26"].played == tuple(range(1, 13))
    assert alice.subjects["S01"].segments == tuple(range(1, 13))


def test_alice_fixture_segments_follow_each_other_like_the_real_recordings(alice):
    for record in alice.subjects.values():
        onsets = record.onsets_s
        assert 0.2 <= onsets[1] <= 17.0
        for s in range(1, 12):
            gap = onsets[s + 1] - onsets[s] - alice.segments[s].duration_s
            assert 0.034 <= gap <= 0.109
        end = onsets[12] + alice.segments[12].duration_s
        assert 0.4 <= record.n_samples / 500.0 - end <= 0.9 + 0.002


def test_alice_fixture_stimuli(alice):

    for s, seg in alice.segments.items():
        info = soundfile.info(seg.wav)
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
        assert info.frames == seg.n_audio_samples == round(seg.duration_s * 44100)
        assert seg.duration_s == pytest.approx(alice_fx.ALICE_SEGMENT_DURATIONS_S[s] / 20,
                                               abs=1e-3)
        # The wav's envelope is the known one: loud where it is high, quiet in pauses.
        audio, _ = soundfile.read(seg.wav)
        frames = np.abs(audio[:len(audio) // 441 * 441]).reshape(-1, 441).max(axis=1)
        env = alice.truth.envelope(s, (np.arange(frames.size) + 0.5) / 100.0)
        assert np.corrcoef(frames, env)[0, 1] > 0.9
    text = alice.word_table.read_bytes()
    assert text.startswith(",".join(alice_fx.WORD_TABLE_COLUMNS).encode() + b"\r\n")
    rows = list(csv.DictReader(alice.word_table.open(newline="")))
    assert tuple(rows[0]) == alice_fx.WORD_TABLE_COLUMNS
    assert rows == [w for s in range(1, 13) for w in alice.segments[s].words]
    for s in range(1, 13):
        words = alice.segments[s].words
        assert words and all(w["Segment"] == str(s) for w in words)
        onsets = alice.segments[s].word_onsets_s()
        assert (np.diff(onsets) > 0).all() and onsets[0] > 0
        assert float(words[-1]["offset"]) < alice.segments[s].duration_s
    orders = [int(r["Order"]) for r in rows]
    assert orders == sorted(set(orders))


def test_alice_fixture_sharded_layout_and_zips(tmp_path):
    fx = alice_fx.write_alice_eeg(tmp_path / "tree", subjects=("S01", "S22", "S48"),
                                  layout="sharded", segment_durations_s=40.0)
    assert {s: r.shard for s, r in fx.subjects.items()} == {"S01": 0, "S22": 1, "S48": 2}
    for s, r in fx.subjects.items():
        assert r.path == tmp_path / "tree" / f"eeg.{r.shard}" / "eeg" / s / f"{s}_alice-raw.fif"
    zips = alice_fx.write_alice_zips(fx, tmp_path / "zips")
    assert sorted(zips) == sorted(alice_fx.ALICE_ZIPS)
    names = {k: sorted(zipfile.ZipFile(p).namelist()) for k, p in zips.items()}
    assert names["eeg.1.zip"] == ["eeg/", "eeg/S22/", "eeg/S22/S22_alice-raw.fif"]
    assert "stimuli/12.wav" in names["stimuli.zip"]
    assert "stimuli/AliceChapterOne-EEG.csv" in names["stimuli.zip"]
    with zipfile.ZipFile(zips["eeg.2.zip"]) as z:
        assert z.read("eeg/S48/S48_alice-raw.fif") == fx.subjects["S48"].path.read_bytes()
    again = alice_fx.write_alice_zips(fx, tmp_path / "zips2")
    assert all(zips[k].read_bytes() == again[k].read_bytes() for k in zips)


def test_alice_fixture_is_deterministic(tmp_path):
    a = alice_fx.write_alice_eeg(tmp_path / "a", subjects=("S03",), segment_durations_s=40.0)
    b = alice_fx.write_alice_eeg(tmp_path / "b", subjects=("S03",), segment_durations_s=40.0)
    np.testing.assert_array_equal(a.subjects["S03"].eeg, b.subjects["S03"].eeg)
    assert a.word_table.read_bytes() == b.word_table.read_bytes()
    assert a.segments[5].wav.read_bytes() == b.segments[5].wav.read_bytes()


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(subjects=("S1",)), "names like"),
    (dict(subjects=("S01", "S01")), "twice"),
    (dict(layout="flat"), "layout"),
    (dict(segment_durations_s=100.0), "1 s or less"),
    (dict(segment_durations_s={1: 3.0}), "all 12"),
    (dict(plans={"S09": alice_fx.AliceSubjectPlan(segments=(1,))}), "not written"),
])
def test_alice_fixture_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        alice_fx.write_alice_eeg(tmp_path, **kwargs)


@pytest.mark.parametrize(("kwargs", "error"), [
    (dict(segments=()), ValueError),
    (dict(segments=(3, 2)), ValueError),
    (dict(segments=(13,)), ValueError),
    (dict(segments=(1,), bads="59"), TypeError),
    (dict(segments=(1,), bads=("62",)), ValueError),
    (dict(segments=(1, 2), onsets_s={1: 2.0}), ValueError),
])
def test_alice_plan_rejects_bad_values(kwargs, error):
    with pytest.raises(error):
        alice_fx.AliceSubjectPlan(**kwargs)


# --- the Alice fixture through the EEG preprocessing ------------------------------------

def _segments_grid(alice, dt_ms=10.0):
    return {str(s): int(alice.segments[s].duration_s * 1000 / dt_ms) for s in range(1, 13)}


def test_alice_preprocessing_recovers_the_written_samples(alice):
    segments = _segments_grid(alice)
    tasks = [EEGSubjectTask(r.path, segments, EEGParams(method="pool", **NO_FILTER), s)
             for s, r in alice.subjects.items()]
    with pytest.warns(DataQuirkWarning, match="no annotation '1'"):
        results = preprocess_subjects(tasks, progress=False)
    for result in results:
        record = alice.subjects[result.subject]
        assert result.ch_names == record.eeg_names
        assert result.bads == tuple(c for c in record.eeg_names if c in record.bads)
        assert result.first_samp == record.first_samp
        assert sorted(result.segments, key=int) == [str(s) for s in record.segments]
        good = [i for i, c in enumerate(record.eeg_names) if c not in record.bads]
        bad = [i for i, c in enumerate(record.eeg_names) if c in record.bads]
        for label, seg in result.segments.items():
            start = time_to_sample(record.onsets_s[int(label)], 500.0)
            n = segments[label]
            expected = pool_mean(record.eeg[:, start:start + 5 * n], 5)
            np.testing.assert_allclose(seg[good], expected[good], rtol=1e-5, atol=1e-12)
            assert np.isnan(seg[bad]).all()
    assert results[1].missing == ("1",) and results[0].missing == ()


def test_alice_preprocessing_filtered_values_equal_the_filter_computed_here(alice):
    record = alice.subjects["S44"]           # first_samp 2345
    result = preprocess_subject(EEGSubjectTask(record.path, {"4": 200, "12": 100},
                                               EEGParams(method="pool", hp_freq_hz=1.0,
                                                         lp_freq_hz=40.0)))
    filtered = mne.filter.filter_data(record.eeg, 500.0, 1.0, 40.0, verbose="error")
    good = [i for i, c in enumerate(record.eeg_names) if c not in record.bads]
    for label, n in (("4", 200), ("12", 100)):
        start = time_to_sample(record.onsets_s[int(label)], 500.0)
        expected = pool_mean(filtered[:, start:start + 5 * n], 5)
        np.testing.assert_allclose(result.segments[label][good], expected[good], rtol=1e-4,
                                   atol=1e-11)


def _ridge_trf(results, alice, n_lags, dt_s, lam):
    """Fit per channel: EEG(t) = sum_l a[l] env(t - l dt) + b[l] word(t - l dt) + c."""
    rows_x, rows_y = [], []
    for result in results:
        record = alice.subjects[result.subject]
        order = [record.eeg_names.index(c) for c in alice_fx.ALICE_EEG_CHANNELS]
        for label, seg in result.segments.items():
            s = int(label)
            cut = result.cuts[label]
            n = seg.shape[1]
            t = cut.origin_s + np.arange(n) * dt_s - record.onsets_s[s]
            env = alice.truth.envelope(s, t)
            words = np.zeros(n)
            for onset, value in zip(alice.segments[s].word_onsets_s(),
                                    alice.segments[s].word_values(alice.truth.word_feature)):
                k = int(np.floor((onset - t[0]) / dt_s + 0.5))
                if 0 <= k < n:
                    words[k] += value
            lagged = []
            for x in (env, words):
                for lag in range(n_lags):
                    lagged.append(np.r_[np.zeros(lag), x[:n - lag]])
            X = np.column_stack(lagged + [np.ones(n)])
            keep = slice(n_lags, n)                    # lags reach back before the cut
            rows_x.append(X[keep])
            rows_y.append(seg[order].T.astype(np.float64)[keep])
    X, Y = np.vstack(rows_x), np.vstack(rows_y)
    finite = np.isfinite(Y).all(axis=0)
    reg = lam * np.eye(X.shape[1])
    reg[-1, -1] = 0.0
    coef = np.full((X.shape[1], Y.shape[1]), np.nan)
    coef[:, finite] = np.linalg.solve(X.T @ X + reg, X.T @ Y[:, finite])
    return coef[:n_lags].T, coef[n_lags:2 * n_lags].T


def test_alice_trf_recovery_through_the_preprocessing(tmp_path):
    fx = alice_fx.write_alice_eeg(tmp_path, subjects=("S01", "S03"), segment_durations_s=5.0,
                                  seed=11)
    dt_s = 0.01
    segments = {str(s): int(fx.segments[s].duration_s / dt_s) for s in range(1, 13)}
    results = preprocess_subjects([EEGSubjectTask(r.path, segments, EEGParams(hp_freq_hz=1.0),
                                                  s) for s, r in fx.subjects.items()],
                                  progress=False)
    n_lags = 60
    env_fit, word_fit = _ridge_trf(results, fx, n_lags, dt_s, lam=1.0)
    # The truth on the 10 ms grid: the 500 Hz kernel summed over each output period's lags.
    lag_rows = (np.arange(fx.truth.lags_s.size) + 2) // 5
    env_true = np.zeros((61, n_lags))
    word_true = np.zeros((61, n_lags))
    for src, dst in ((fx.truth.kernels("envelope"), env_true),
                     (fx.truth.kernels("word"), word_true)):
        for lag in range(n_lags):
            dst[:, lag] = src[:, lag_rows == lag].sum(axis=1)
    gains = np.abs(fx.truth.envelope_gain)
    well = np.flatnonzero(gains > 0.5 * gains.max())
    bad_anywhere = {c for r in fx.subjects.values() for c in r.bads}
    well = [i for i in well if alice_fx.ALICE_EEG_CHANNELS[i] not in bad_anywhere]
    assert len(well) > 10
    r_env = [np.corrcoef(env_fit[i], env_true[i])[0, 1] for i in well]
    assert min(r_env) > 0.8, r_env
    word_gains = np.abs(fx.truth.word_gain)
    well_w = [i for i in np.flatnonzero(word_gains > 0.5 * word_gains.max())
              if alice_fx.ALICE_EEG_CHANNELS[i] not in bad_anywhere]
    r_word = [np.corrcoef(word_fit[i], word_true[i])[0, 1] for i in well_w]
    assert min(r_word) > 0.8, r_word
    # Bad channels of a subject are NaN rows for that subject only.
    for result in results:
        record = fx.subjects[result.subject]
        for label, seg in result.segments.items():
            rows = [record.eeg_names.index(c) for c in record.bads]
            assert np.isnan(seg[rows]).all()
            assert np.isfinite(np.delete(seg, rows, axis=0)).all()


# --- the real Alice source files (read in place; skipped when absent) -----------------------

def _alice_real(realdata):
    path = realdata / "alice"
    if not path.is_dir():
        pytest.skip(f"real Alice files not available at {path}")
    return path


def _segments_table(path):
    with open(path / "SEGMENTS_per_subject.tsv", newline="") as fh:
        return {row["subject"]: row for row in csv.DictReader(fh, delimiter="\t")}


@pytest.mark.realdata
def test_real_subjects_and_their_segments_and_bads(realdata):
    """The converter's per-subject inputs give what the fixture writes (segments, bads)."""
    from scipy.io import loadmat

    path = _alice_real(realdata)
    use = [str(s)[:3] for s in loadmat(path / "datasets.mat", squeeze_me=True)["use"]]
    assert tuple(use) == alice_fx.ALICE_SUBJECTS
    table = _segments_table(path)
    assert sorted(table) == sorted(use)
    without_1 = []
    for subject in use:
        name, plan = alice_fx.plan_from_proc(path / "proc" / f"{subject}.mat")
        assert name == subject
        row = table[subject]
        assert list(plan.segments) == [int(s) for s in row["segments_present"].split(",")]
        assert list(plan.bads) == [b for b in row["bad_channels_after_conversion"].split(",")
                                   if b]
        assert set(plan.bads) <= set(alice_fx.ALICE_EEG_CHANNELS)
        # Segments follow each other with 34-109 ms between them, as the fixture draws them.
        onsets = plan.onsets_s
        for a, b in zip(plan.segments, plan.segments[1:]):
            gap = onsets[b] - onsets[a] - alice_fx.ALICE_SEGMENT_DURATIONS_S[a]
            assert 0.0339 <= gap <= 0.1091, (subject, a, gap)
        if 1 not in plan.segments:
            without_1.append(subject)
        else:
            assert 0.2 <= onsets[1] <= 17.0, (subject, onsets[1])
    assert tuple(without_1) == alice_fx.ALICE_SUBJECTS_WITHOUT_SEGMENT_1
    # The ICA channel lists (FieldTrip labels after the implicit reference '29' was appended)
    # run in the fixture's file order: '1'..'28', '30'..'61', then '29'.
    eeg_order = [c for c in alice_fx.ALICE_FILE_CHANNELS if c in alice_fx.ALICE_EEG_CHANNELS]
    for subject in use:
        proc = loadmat(path / "proc" / f"{subject}.mat", squeeze_me=True,
                       struct_as_record=False)["proc"]
        labels = [str(c) for c in proc.ica.topolabel]
        assert labels == sorted(labels, key=eeg_order.index), subject
        assert len(labels) >= 61 - 18          # at most 18 channels rejected (S25)
    # S12's bad-channel list is a bare string in the .mat file.
    assert alice_fx.plan_from_proc(path / "proc" / "S12.mat")[1].bads == ("59",)


def _assert_offsets_are_next_onsets_plus_a_constant(words):
    onsets = np.array([float(r["onset"]) for r in words])
    offsets = np.array([float(r["offset"]) for r in words])
    shift = np.round(offsets[:-1] - onsets[1:], 6)
    values, counts = np.unique(shift, return_counts=True)
    constant = values[counts.argmax()]
    assert -0.053 <= constant <= 0.047
    assert counts.max() >= 0.75 * shift.size
    assert (shift[shift != constant] < constant).all()        # the rest are pauses
    np.testing.assert_allclose([float(r["Length"]) for r in words], offsets - onsets,
                               atol=2e-6)


@pytest.mark.realdata
def test_real_word_table_has_the_fixture_format(realdata, alice):
    path = _alice_real(realdata) / "AliceChapterOne-EEG.csv"
    raw = path.read_bytes()
    assert raw.startswith(",".join(alice_fx.WORD_TABLE_COLUMNS).encode() + b"\r\n")
    assert raw.count(b"\r\n") == raw.count(b"\n")
    rows = list(csv.DictReader(path.open(newline="")))
    assert len(rows) == 2129
    assert {r["Segment"] for r in rows} == {str(s) for s in range(1, 13)}
    assert {r["IsLexical"] for r in rows} == {"0", "1", "NaN"}
    assert {r["Trigger"] for r in rows} == {"1"}
    for s in range(1, 13):
        seg = [r for r in rows if r["Segment"] == str(s)]
        onsets = np.array([float(r["onset"]) for r in seg])
        assert (np.diff(onsets) > 0).all()
        assert float(seg[-1]["offset"]) < alice_fx.ALICE_SEGMENT_DURATIONS_S[s]
        assert 0.04 <= onsets[0] <= 1.06
        _assert_offsets_are_next_onsets_plus_a_constant(seg)
    # The fixture draws words the same way (checked on full-length segments: a miniature
    # segment holds too few words for the statistic).
    for s in range(1, 13):
        words = alice_fx._words_for_segment(s, alice_fx.ALICE_SEGMENT_DURATIONS_S[s], 1, 1,
                                            np.random.default_rng(s))
        assert 80 <= len(words) <= 250
        _assert_offsets_are_next_onsets_plus_a_constant(words)
    fixture_rows = list(csv.DictReader(alice.word_table.open(newline="")))
    assert list(fixture_rows[0]) == list(rows[0])
    for column in ("onset", "offset", "LogFreq", "SndPower", "NGRAM", "RNN", "CFG"):
        float(fixture_rows[0][column]), float(rows[0][column])


@pytest.mark.realdata
def test_real_segment_12_wav_has_the_fixture_format(realdata):
    path = _alice_real(realdata) / "DownTheRabbitHoleFinal_SoundFile12.wav"
    info = soundfile.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == \
        (alice_fx.ALICE_AUDIO_FS, 1, "PCM_16", 2_071_953)
    assert round(info.frames / info.samplerate, 3) == alice_fx.ALICE_SEGMENT_DURATIONS_S[12]
    assert path.read_bytes()[36:40] == b"data"                    # plain 44-byte header


@pytest.mark.realdata
def test_real_montage_positions_reach_the_result(realdata, tmp_path):
    sfp = _alice_real(realdata) / "easycapM10-acti61_elec.sfp"
    fx = alice_fx.write_alice_eeg(tmp_path, subjects=("S05",), montage_path=sfp,
                                  segment_durations_s=40.0)
    assert fx.montage == sfp
    result = preprocess_subject(EEGSubjectTask(fx.subjects["S05"].path, {"3": 50}))
    montage = mne.channels.read_custom_montage(sfp).get_positions()["ch_pos"]
    assert sorted(result.positions, key=int) == list(alice_fx.ALICE_EEG_CHANNELS)
    for name, xyz in montage.items():
        assert result.positions[name] == pytest.approx(tuple(xyz), abs=1e-6)
    # The vertex electrode 33 sits at the top of the 95 mm head.
    assert result.positions["33"] == pytest.approx((0.0, 0.0, 0.095), abs=1e-4)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_subject_at_full_size(realdata, tmp_path):
    """S26 as the converter would write it: real onsets, bads, montage, length; 11 segments."""
    path = _alice_real(realdata)
    subject, plan = alice_fx.plan_from_proc(path / "proc" / "S26.mat")
    fx = alice_fx.write_alice_eeg(tmp_path, subjects=(subject,), plans={subject: plan},
                                  segment_durations_s="full", keep_signals=False,
                                  montage_path=path / "easycapM10-acti61_elec.sfp")
    record = fx.subjects[subject]
    assert record.n_samples / 500.0 > 720.0
    segments = {str(s): int(round(d * 100)) for s, d in
                alice_fx.ALICE_SEGMENT_DURATIONS_S.items()}
    with pytest.warns(DataQuirkWarning, match="no annotation '1'"):
        [result] = preprocess_subjects([EEGSubjectTask(record.path, segments,
                                                       subject=subject)], progress=False)
    assert result.missing == ("1",)
    assert sorted(result.segments, key=int) == [str(s) for s in range(2, 13)]
    for label, seg in result.segments.items():
        assert seg.shape == (61, segments[label])
        assert result.cuts[label].onset_s == pytest.approx(plan.onsets_s[int(label)], abs=1e-4)
        bad_rows = [result.ch_names.index(c) for c in plan.bads]
        assert np.isnan(seg[bad_rows]).all()
        assert np.isfinite(np.delete(seg, bad_rows, axis=0)).all()


def test_alice_fixture_signal_is_the_driven_part_plus_the_stated_noise(alice):
    record = alice.subjects["S01"]
    # Above 5 Hz (98 % of the white noise's power; the drift and offsets are slower) what is
    # left on a good channel is n_c - (n_25 + n_29) / 2, variance 1.5 noise_v^2; '25' and '29'
    # themselves carry (n_25 - n_29) / 2.
    residual = mne.filter.filter_data(record.eeg - record.driven, 500.0, 5.0, None,
                                      verbose="error")[:, 2000:-2000] / np.sqrt(0.98)
    for channel in ("1", "33", "50"):
        if channel in record.bads:
            continue
        sd = residual[record.row(channel)].std()
        assert sd == pytest.approx(np.sqrt(1.5) * alice.truth.noise_v, rel=0.05)
    assert residual[record.row("25")].std() == pytest.approx(
        np.sqrt(0.5) * alice.truth.noise_v, rel=0.05)
    bad = record.row(record.bads[0])
    assert residual[bad].std() > 10 * alice.truth.noise_v
