"""Tests of deepstrf.preprocessing.spectrogram: grid, alignment, filter banks, params."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deepstrf.preprocessing.spectrogram import (
    LOG_FLOOR,
    LOGFREQ_DEFAULT_FMIN_HZ,
    SpectrogramParams,
    band_frequencies,
    compute_spectrogram,
    grid_sample_rate,
    waveform_on_grid,
)
from deepstrf.preprocessing.spikes import n_bins_for_duration


def tone(sample_rate: float, duration_s: float, freq: float, start_s: float = 0.0,
         stop_s: float | None = None) -> np.ndarray:
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    stop_s = duration_s if stop_s is None else stop_s
    gate = (t >= start_s) & (t < stop_s)
    return (np.sin(2 * np.pi * freq * t) * gate).astype(np.float32)


# --- grid -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "dt", "expected"),
    [
        (24414.0625, 1.0, (24000.0, 24)),
        (24414.0625, 5.0, (24400.0, 122)),
        (32000, 5.0, (32000.0, 160)),
        (32000, 0.5, (32000.0, 16)),
        (44100, 2.5, (44000.0, 110)),
        (44100, 10.0, (44100.0, 441)),
        (44100, 0.3, (13 * 1000 / 0.3, 13)),
        (1000, 0.1, (10000.0, 1)),
    ],
)
def test_grid_sample_rate(rate, dt, expected):
    got_rate, hop = grid_sample_rate(rate, dt)
    assert hop == expected[1]
    assert got_rate == pytest.approx(expected[0], rel=1e-12)


@pytest.mark.parametrize("dt", [0.5, 1, 2, 2.5, 5, 10, 20])
@pytest.mark.parametrize("rate", [32000, 44100, 24414.0625])
def test_frame_count_equals_response_length(dt, rate):
    params = SpectrogramParams(dt_ms=dt, n_bands=16, window_ms=max(10.0, dt))
    rng = np.random.default_rng(0)
    for n_samples in (1, 37, 3201, int(rate * 0.25), int(rate * 0.25) + 1):
        y = rng.standard_normal(n_samples).astype(np.float32) * 0.1
        spec = compute_spectrogram(y, rate, params)
        assert spec.shape == (16, n_bins_for_duration(n_samples, rate, dt))
        assert spec.dtype == np.float32 and np.isfinite(spec).all()


def test_empty_waveform_gives_zero_frames():
    spec = compute_spectrogram(np.zeros(0, np.float32), 32000, SpectrogramParams(dt_ms=5))
    assert spec.shape == (32, 0) and spec.dtype == np.float32


# --- alignment ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mel", "logfreq"])
def test_tone_burst_lights_the_right_frames_and_band(kind):
    rate, dt = 32000, 5.0
    # Samples 6400..9599 (bins 40..59), a cosine about their middle so that
    # the burst reads the same backwards.
    n = np.arange(16000)
    middle = (6400 + 9599) / 2
    y = (np.cos(2 * np.pi * 2000.0 * (n - middle) / rate) * ((n >= 6400) & (n < 9600)))
    params = SpectrogramParams(dt_ms=dt, kind=kind, n_bands=24, f_min=100.0,
                               compression="none")
    spec = compute_spectrogram(y, rate, params)
    assert spec.shape == (24, 100)
    freqs = band_frequencies(params, rate)
    band = int(np.argmax(spec[:, 50]))
    assert band == int(np.argmin(np.abs(freqs - 2000.0)))
    energy = spec[band]
    # Bins 40..59 hold the tone; the 10 ms window reaches one bin beyond.
    assert np.all(energy[41:59] > 0.5 * energy[50])
    assert np.all(energy[:38] < 1e-3 * energy[50])
    assert np.all(energy[62:] < 1e-3 * energy[50])
    # Frames are centred on their bins, so the picture is symmetric too.
    np.testing.assert_allclose(energy[39], energy[60], rtol=1e-4)
    np.testing.assert_allclose(energy[40], energy[59], rtol=1e-4)


@pytest.mark.parametrize(("rate", "dt"), [(32000, 1.0), (32000, 5.0), (32000, 2.5),
                                          (44100, 10.0), (48000, 0.5), (1000, 5.0)])
def test_frame_k_is_centred_on_response_bin_k(rate, dt):
    """An impulse at the middle of bin k peaks in frame k, with equal neighbours."""
    rate_used, hop = grid_sample_rate(rate, dt)
    assert rate_used == rate
    k = 7
    y = np.zeros(hop * 20, dtype=np.float32)
    middle = k * hop + (hop - 1) / 2
    y[int(np.floor(middle))] = 1.0
    y[int(np.ceil(middle))] = 1.0
    params = SpectrogramParams(dt_ms=dt, n_bands=8, window_ms=3 * dt, compression="none")
    energy = compute_spectrogram(y, rate, params).sum(axis=0)
    assert int(np.argmax(energy)) == k
    np.testing.assert_allclose(energy[k - 1], energy[k + 1], rtol=1e-5)
    np.testing.assert_allclose(energy[k - 2], energy[k + 2], rtol=1e-4, atol=1e-12)


def test_resampled_native_rate_keeps_alignment():
    rate, dt = 24414.0625, 1.0
    y = tone(rate, 1.0, 3000.0, start_s=0.4, stop_s=0.6)
    params = SpectrogramParams(dt_ms=dt, n_bands=32, compression="none")
    spec = compute_spectrogram(y, rate, params)
    assert spec.shape[1] == n_bins_for_duration(y.size, rate, dt) == 1000
    energy = spec.sum(axis=0)
    on = energy > 0.5 * energy[500]
    # Onset at 400 ms and offset at 600 ms, to within the 10 ms window.
    assert abs(int(np.flatnonzero(on)[0]) - 400) <= 5
    assert abs(int(np.flatnonzero(on)[-1]) - 599) <= 5


def test_explicit_sample_rate_resamples_first():
    y = tone(48000, 0.3, 1000.0)
    params = SpectrogramParams(dt_ms=5.0, sample_rate=32000, compression="none")
    spec = compute_spectrogram(y, 48000, params)
    assert spec.shape == (32, 60)
    freqs = band_frequencies(params, 48000)
    assert freqs[-1] < 16000  # Nyquist of the 32 kHz analysis rate, not 24 kHz
    assert abs(freqs[int(np.argmax(spec[:, 30]))] - 1000) < 200


# --- filter banks and compression ---------------------------------------------


def test_compressions_are_functions_of_the_power():
    y = tone(32000, 0.2, 1500.0) + 0.01 * np.random.default_rng(1).standard_normal(6400)
    base = dict(dt_ms=5.0, n_bands=20)
    power = compute_spectrogram(y, 32000, SpectrogramParams(**base, compression="none"))
    assert power.min() >= 0
    for compression, func in [("cubic", np.cbrt), ("log1p", np.log1p),
                              ("log", lambda p: np.log(p + LOG_FLOOR))]:
        out = compute_spectrogram(y, 32000, SpectrogramParams(**base, compression=compression))
        np.testing.assert_allclose(out, func(power.astype(np.float64)), rtol=2e-5, atol=1e-6)


def test_silence_is_finite():
    silence = np.zeros(3200, np.float32)
    for compression in ("cubic", "log1p", "none"):
        out = compute_spectrogram(silence, 32000, SpectrogramParams(dt_ms=5,
                                                                    compression=compression))
        np.testing.assert_array_equal(out, 0.0)
    log = compute_spectrogram(silence, 32000, SpectrogramParams(dt_ms=5, compression="log"))
    np.testing.assert_allclose(log, np.log(np.float32(LOG_FLOOR)))


def test_logfreq_bands_are_log_spaced_with_default_floor():
    params = SpectrogramParams(dt_ms=5, kind="logfreq", n_bands=10, f_max=8000.0)
    assert params.effective_f_min == LOGFREQ_DEFAULT_FMIN_HZ
    freqs = band_frequencies(params, 32000)
    edges = np.geomspace(LOGFREQ_DEFAULT_FMIN_HZ, 8000.0, 12)
    np.testing.assert_allclose(freqs, edges[1:-1])
    ratios = freqs[1:] / freqs[:-1]
    np.testing.assert_allclose(ratios, ratios[0])


def test_mel_bands_follow_the_htk_scale():
    params = SpectrogramParams(dt_ms=5, n_bands=4, f_min=0.0, f_max=8000.0)
    freqs = band_frequencies(params, 32000)
    mel = 2595 * np.log10(1 + np.r_[0.0, freqs, 8000.0] / 700)
    np.testing.assert_allclose(np.diff(mel), np.diff(mel)[0], rtol=1e-6)


def test_narrow_bands_are_never_empty():
    # 64 log bands from 250 Hz with a 10 ms window: the low bands are far
    # narrower than the 100 Hz FFT bin spacing.
    y = 0.1 * np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    for kind in ("logfreq", "mel"):
        spec = compute_spectrogram(y, 32000, SpectrogramParams(dt_ms=5, kind=kind, n_bands=64,
                                                               compression="none"))
        assert np.all(spec.sum(axis=1) > 0)


# --- waveform_on_grid -----------------------------------------------------------


def test_waveform_on_grid_keeps_samples_and_pads():
    y = np.random.default_rng(3).standard_normal(1001).astype(np.float32)
    out = waveform_on_grid(y, 32000, 5.0, 32000)
    assert out.dtype == np.float32 and out.shape == (7 * 160,)
    np.testing.assert_array_equal(out[:1001], y)
    np.testing.assert_array_equal(out[1001:], 0.0)


@pytest.mark.parametrize(("rate", "target", "dt"), [(24414.0625, 24000, 1.0),
                                                    (48000, 32000, 5.0), (44100, 48000, 2.5)])
def test_waveform_on_grid_resamples(rate, target, dt):
    y = tone(rate, 0.5, 1000.0)
    out = waveform_on_grid(y, rate, dt, target)
    hop = round(target * dt / 1000)
    assert out.size == n_bins_for_duration(y.size, rate, dt) * hop
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * target / out.size
    assert abs(peak_hz - 1000.0) < 5


def test_waveform_on_grid_rejects_fractional_hop():
    with pytest.raises(ValueError, match=r"whole number.*target_rate=24000"):
        waveform_on_grid(np.zeros(10, np.float32), 24414.0625, 1.0, 24414.0625)


# --- parameters -------------------------------------------------------------------


def test_params_to_dict_round_trips_and_normalises_types():
    params = SpectrogramParams(dt_ms=5, kind="logfreq", n_bands=16, f_max=8000,
                               sample_rate=32000)
    d = params.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert SpectrogramParams(**d) == params
    assert d == SpectrogramParams(dt_ms=5.0, kind="logfreq", n_bands=16, f_max=8000.0,
                                  sample_rate=32000.0).to_dict()
    assert isinstance(d["dt_ms"], float) and isinstance(d["n_bands"], int)
    assert set(d) == {f.name for f in dataclasses.fields(SpectrogramParams)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.dt_ms = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(dt_ms=0), ValueError, "dt_ms"),
        (dict(dt_ms="5"), TypeError, "dt_ms"),
        (dict(dt_ms=5, kind="bark"), ValueError, "kind.*'mel', 'logfreq'"),
        (dict(dt_ms=5, n_bands=0), ValueError, "n_bands"),
        (dict(dt_ms=5, n_bands=3.5), TypeError, "n_bands"),
        (dict(dt_ms=5, window_ms=-1), ValueError, "window_ms"),
        (dict(dt_ms=5, f_min=-10), ValueError, "f_min"),
        (dict(dt_ms=5, f_max=0), ValueError, "f_max"),
        (dict(dt_ms=5, f_min=1000, f_max=500), ValueError, "f_max must be above f_min"),
        (dict(dt_ms=5, kind="logfreq", f_max=200), ValueError, "logfreq"),
        (dict(dt_ms=5, compression="sqrt"), ValueError, "compression"),
        (dict(dt_ms=5, sample_rate=0), ValueError, "sample_rate"),
        (dict(dt_ms=1, sample_rate=24414.0625), ValueError, "sample_rate=24000"),
        (dict(dt_ms=5, sample_rate=16000, f_max=10000), ValueError, "Nyquist"),
        (dict(dt_ms=5, sample_rate=16000, f_min=9000), ValueError, "Nyquist"),
    ],
)
def test_params_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        SpectrogramParams(**kwargs)


def test_compute_rejects_bad_inputs():
    params = SpectrogramParams(dt_ms=5)
    with pytest.raises(ValueError, match="1-D"):
        compute_spectrogram(np.zeros((2, 100)), 32000, params)
    with pytest.raises(ValueError, match="NaN"):
        compute_spectrogram(np.array([0.0, np.nan]), 32000, params)
    with pytest.raises(TypeError, match="real numbers"):
        compute_spectrogram(np.array(["a"]), 32000, params)
    with pytest.raises(TypeError, match="SpectrogramParams"):
        compute_spectrogram(np.zeros(100), 32000, {"dt_ms": 5})
    with pytest.raises(ValueError, match="sample_rate"):
        compute_spectrogram(np.zeros(100), -1, params)
    with pytest.raises(ValueError, match="Nyquist"):
        compute_spectrogram(np.zeros(100), 16000, SpectrogramParams(dt_ms=5, f_max=10000))
    with pytest.raises(ValueError, match="window_ms"):
        compute_spectrogram(np.zeros(100), 1000, SpectrogramParams(dt_ms=5, window_ms=1))


def test_numpy_front_end_is_exactly_librosa():
    """The STFT, mel filter bank and resampler equal librosa's (they stand in for it)."""
    import librosa

    from deepstrf.preprocessing import spectrogram as sp

    rng = np.random.default_rng(0)
    y = rng.standard_normal(6000).astype(np.float32)
    for n_fft, hop, win in ((512, 160, 321), (256, 24, 241), (1024, 32, 320)):
        ours = sp._power_frames(y, n_fft, hop, win)
        ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win,
                                  window="hann", center=False)) ** 2
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    for rate, n_fft, n_bands, f_min, f_max in ((32000.0, 512, 32, 0.0, 16000.0),
                                               (24000.0, 256, 18, 200.0, 8000.0)):
        ours = sp._filterbank("mel", rate, n_fft, n_bands, f_min, f_max)
        ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_bands, fmin=f_min,
                                  fmax=f_max, htk=True, norm=None)
        filled = (ref > 0).any(axis=1)  # ours gives empty bands their nearest FFT bin
        np.testing.assert_allclose(ours[filled], ref[filled], atol=1e-6)
        np.testing.assert_allclose(sp._band_centres("mel", n_bands, f_min, f_max),
                                   librosa.mel_frequencies(n_bands + 2, fmin=f_min, fmax=f_max,
                                                           htk=True)[1:-1])
    x = rng.standard_normal(24414).astype(np.float32)
    np.testing.assert_allclose(sp._resample(x, 24414.0, 24000.0),
                               librosa.resample(x, orig_sr=24414, target_sr=24000,
                                                res_type="soxr_hq"), atol=1e-6)


# --- front-end registry -----------------------------------------------------


def _envelope_bands(waveform, sample_rate, params):
    """A toy front end: the rectified sound averaged per response bin, copied per band."""
    hop = int(round(sample_rate * params.dt_ms / 1000))
    n = n_bins_for_duration(len(waveform), sample_rate, params.dt_ms)
    padded = np.zeros(n * hop, np.float32)
    padded[:min(len(waveform), n * hop)] = np.abs(waveform[:n * hop])
    return np.repeat(padded.reshape(n, hop).mean(axis=1)[None, :], params.n_bands, axis=0)


def _wrong_shape(waveform, sample_rate, params):
    return np.zeros((params.n_bands, 1))


def _envelope_centres(params, sample_rate):
    return np.linspace(100.0, 1000.0, params.n_bands)


def test_registered_front_end_serves_params_compute_and_band_frequencies():
    from deepstrf.preprocessing import spectrogram as sp

    sp.register_front_end("toyenv", _envelope_bands, band_frequencies=_envelope_centres)
    try:
        assert "toyenv" in sp.front_end_kinds()
        params = SpectrogramParams(dt_ms=5, kind="toyenv", n_bands=3)
        y = np.concatenate([np.zeros(800), np.ones(800)]).astype(np.float32)  # 16 kHz
        spec = compute_spectrogram(y, 16000, params)
        np.testing.assert_array_equal(spec, np.repeat([[0] * 10 + [1] * 10], 3, axis=0))
        np.testing.assert_array_equal(band_frequencies(params, 16000), [100, 550, 1000])
        # the same functions again are fine (a module imported twice), others are refused
        sp.register_front_end("toyenv", _envelope_bands, band_frequencies=_envelope_centres)
        with pytest.raises(ValueError, match="already registered"):
            sp.register_front_end("toyenv", _envelope_centres)
        with pytest.raises(TypeError, match="module:function"):
            sp.register_front_end("toyenv2", 3)
    finally:
        sp._REGISTRY.pop("toyenv", None)
    with pytest.raises(ValueError, match="kind must be one of 'mel', 'logfreq'"):
        SpectrogramParams(dt_ms=5, kind="toyenv")


def test_string_target_is_imported_on_use_and_shape_is_checked():
    from deepstrf.preprocessing import spectrogram as sp

    sp.register_front_end("toybad", "tests.test_spectrogram:_wrong_shape")
    try:
        params = SpectrogramParams(dt_ms=5, kind="toybad", n_bands=1)
        with pytest.raises(ValueError, match="'toybad' front end returned shape"):
            compute_spectrogram(np.zeros(160, np.float32), 16000, params)
        with pytest.raises(ValueError, match="without band_frequencies"):
            band_frequencies(params, 16000)
    finally:
        sp._REGISTRY.pop("toybad", None)
    sp.register_front_end("toymissing", "deepstrf_no_such_module:f")
    try:
        with pytest.raises(ImportError, match="deepstrf_no_such_module"):
            compute_spectrogram(np.zeros(160, np.float32), 16000,
                                SpectrogramParams(dt_ms=5, kind="toymissing"))
    finally:
        sp._REGISTRY.pop("toymissing", None)


@pytest.mark.parametrize("kind", ["mel", "logfreq"])
def test_prepared_front_end_equals_direct_and_carries_librosa_banks(kind):
    import librosa

    from deepstrf.preprocessing import spectrogram as sp

    params = SpectrogramParams(dt_ms=2, kind=kind, n_bands=24, window_ms=8)
    prepared = sp.prepare_front_end(params, [32000, 32000.0, 24414.0625])
    assert len(prepared.banks) == 2  # one per analysis rate
    y = np.random.default_rng(3).standard_normal(9000).astype(np.float32)
    for rate in (32000, 24414.0625):
        np.testing.assert_array_equal(prepared(y, rate), compute_spectrogram(y, rate, params))
    if kind == "mel":
        (bank,) = [w for (r, n), w in prepared.banks.items() if r == 32000.0]
        ref = librosa.filters.mel(sr=32000, n_fft=(bank.shape[1] - 1) * 2, n_mels=24,
                                  htk=True, norm=None)
        np.testing.assert_array_equal(bank, ref)
    with pytest.raises(ValueError, match="other parameters"):
        compute_spectrogram(y, 32000, dataclasses.replace(params, n_bands=8),
                            prepared=prepared)


def test_worker_applies_a_prepared_mel_front_end_without_importing_librosa(tmp_path):
    import pickle
    import subprocess
    import sys

    from deepstrf.preprocessing import spectrogram as sp

    params = SpectrogramParams(dt_ms=5, n_bands=16)
    y = np.random.default_rng(4).standard_normal(4000).astype(np.float32)
    (tmp_path / "task.pkl").write_bytes(pickle.dumps((sp.prepare_front_end(params, [16000]), y)))
    code = ("import pickle, sys, numpy as np\n"
            f"prepared, y = pickle.load(open({str(tmp_path / 'task.pkl')!r}, 'rb'))\n"
            f"np.save({str(tmp_path / 'out.npy')!r}, prepared(y, 16000))\n"
            "print('librosa' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                  compute_spectrogram(y, 16000, params))


@pytest.mark.parametrize(("rate", "n_fft", "n_bands", "f_min", "f_max"),
                         [(32000.0, 512, 32, 0.0, 16000.0), (24000.0, 256, 64, 0.0, 12000.0),
                          (48800.0, 1024, 34, 500.0, 22600.0), (16000.0, 400, 80, 20.0, 8000.0),
                          (44100.0, 2048, 128, 0.0, 22050.0)])
def test_mel_bank_is_librosas_element_for_element(rate, n_fft, n_bands, f_min, f_max):
    import warnings

    import librosa

    from deepstrf.preprocessing import spectrogram as sp

    ours = sp._filterbank("mel", rate, n_fft, n_bands, f_min, f_max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about its empty bands
        ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_bands, fmin=f_min,
                                  fmax=f_max, htk=True, norm=None)
    filled = (ref > 0).any(axis=1)
    np.testing.assert_array_equal(ours[filled], ref[filled])
    # librosa leaves a band narrower than an FFT bin empty; ours takes the nearest bin
    for band in np.flatnonzero(~filled):
        assert ours[band].sum() == 1.0 and (ours[band] > 0).sum() == 1


def test_an_unregistered_kind_is_looked_up_as_a_preprocessing_module(tmp_path, monkeypatch):
    """How gammatone joins: deepstrf/preprocessing/<kind>.py registers itself when imported."""
    import sys

    import deepstrf.preprocessing as pre
    from deepstrf.preprocessing import spectrogram as sp

    (tmp_path / "toyauto.py").write_text(
        "from deepstrf.preprocessing.spectrogram import register_front_end\n"
        "register_front_end('toyauto', 'tests.test_spectrogram:_envelope_bands',\n"
        "                   band_frequencies='tests.test_spectrogram:_envelope_centres')\n")
    (tmp_path / "toydep.py").write_text("import deepstrf_missing_dependency_xyz\n")
    monkeypatch.setattr(pre, "__path__", [*pre.__path__, str(tmp_path)])
    try:
        params = SpectrogramParams(dt_ms=5, kind="toyauto", n_bands=2)
        assert "toyauto" in sp.front_end_kinds()
        assert compute_spectrogram(np.ones(1600, np.float32), 16000, params).shape == (2, 20)
        with pytest.raises(ImportError, match="needs deepstrf_missing_dependency_xyz"):
            SpectrogramParams(dt_ms=5, kind="toydep")
    finally:
        sp._REGISTRY.pop("toyauto", None)
        for name in ("deepstrf.preprocessing.toyauto", "deepstrf.preprocessing.toydep"):
            sys.modules.pop(name, None)


def test_long_sounds_are_transformed_a_block_of_frames_at_a_time(monkeypatch):
    """The STFT of a long sound never exists whole: equal values, peak memory of one block."""
    import tracemalloc

    from deepstrf.preprocessing import spectrogram as sp

    rate, duration = 44100.0, 30.0
    y = np.random.default_rng(1).standard_normal(int(rate * duration)).astype(np.float32)
    params = SpectrogramParams(dt_ms=5, n_bands=32, f_max=16000.0)
    # blocks of a few frames, of one frame, and the whole sound at once give the same numbers
    whole = sp._FRAME_BLOCK_BYTES
    monkeypatch.setattr(sp, "_FRAME_BLOCK_BYTES", 10 ** 12)
    ref = compute_spectrogram(y[:int(rate)], rate, params)
    for block in (16 * 1025 * 7, 1):
        monkeypatch.setattr(sp, "_FRAME_BLOCK_BYTES", block)
        np.testing.assert_allclose(compute_spectrogram(y[:int(rate)], rate, params), ref,
                                   rtol=1e-6, atol=0)
    monkeypatch.setattr(sp, "_FRAME_BLOCK_BYTES", whole)
    compute_spectrogram(y[:1000], rate, params)  # filter banks made outside the measure
    tracemalloc.start()
    try:
        spec = compute_spectrogram(y, rate, params)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert spec.shape == (32, 6000) and np.isfinite(spec).all()
    # The whole complex spectrum would be about 6000 frames x 1025 bins x 16 bytes (98 MB,
    # 19x the sound); what is allowed is the padded copy of the sound, the output and a
    # few blocks.
    assert peak < 2 * y.nbytes + 6 * (8 << 20) + spec.nbytes * 4, peak / 1e6
