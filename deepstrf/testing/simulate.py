"""Simulated sounds and neurons whose spectro-temporal receptive fields are known.

Use these to test an encoding-model pipeline end to end: the responses
depend on the sound through a known linear-nonlinear-Poisson model, so a
fitted STRF can be compared with the true one.

Sounds
------
:func:`make_sounds` draws mono float32 sounds in [-1, 1] at any rate,
deterministically from a seed (sound ``i`` depends only on the seed and
``i``), in five kinds:

``"song"``
    zebra-finch-song-like: a motif of 3-6 syllables repeated until the
    duration is filled, syllables (40-150 ms) separated by 10-60 ms
    silences; most syllables are harmonic stacks (fundamental 400-900 Hz)
    with slow and fast frequency modulation under a formant-like spectral
    envelope, the rest are band-pass noise bursts.
``"call"``
    zebra-finch-call-like: one or more 80-220 ms harmonic stacks with an
    arched pitch contour (rising then falling), separated by 150-500 ms
    silences.
``"flatrip"``
    ripple noise with a flat modulation spectrum: 20 moving spectro-temporal
    ripples with temporal rates uniform in +-100 Hz and spectral densities
    uniform in 0-4 cycles/octave (the AA1/AA2 "flatrip" class).
``"songrip"``
    ripple noise whose modulations follow a song-like spectrum: rates and
    densities drawn from exponentials (scales 15 Hz and 0.7 cycles/octave),
    so slow, broad modulations dominate (the AA2 "songrip" class).
``"mlnoise"``
    modulation-limited noise: 40 ripples, rates within +-50 Hz and
    densities within 0-2 cycles/octave (the AA4 "mlnoise" class).

Ripple noises are noise between 250 Hz and 8 kHz (or 0.45 times the rate
when lower) whose level in dB is the sum of the ripples (standard deviation
8-10 dB), built frame by frame in the short-time Fourier domain with random
phases and overlap-added. Every sound gets 5 ms onset and offset ramps, a
peak level drawn in 0.5-0.9, and a faint white noise floor (-54 dB re full
scale) so that silences are not digital zeros. :func:`to_pcm16` and :func:`pcm16_to_float`
give the 16-bit version a wav file stores and the float32 samples a reader
returns from it.

Neurons
-------
:func:`make_neurons` draws a :class:`NeuronPopulation`: per neuron a
spectro-temporal receptive field (STRF) of shape ``(F, L)`` in the space of
the spectrograms that :func:`~deepstrf.preprocessing.spectrogram.compute_spectrogram`
produces with a given :class:`~deepstrf.preprocessing.spectrogram.SpectrogramParams`
(F bands, L lags of ``dt_ms``), and a static output nonlinearity. The STRF
is a Gabor patch (Gaussian envelope over bands and lags times a cosine
carrier) centred on a best band and a latency, minus an inhibitory Gaussian
side band offset in frequency and delayed in time, so it has excitatory and
inhibitory parts.

The model, for a spectrogram ``S`` of shape ``(F, T)``:

1. standardise each band: ``z[f, t] = (S[f, t] - band_mean[f]) / band_std[f]``
   (the statistics are those of the sound set the population was calibrated
   on, :meth:`NeuronPopulation.calibrate`, stored in the population);
2. linear drive, causal: ``drive[n, t] = bias[n] + sum_{f, l} strf[n, f, l]
   * z[f, t - l]`` with ``z = 0`` (the band mean) before the onset
   (:func:`lag_matrix` builds the ``(F * L, T)`` design matrix of this sum);
3. rate in spikes/s: ``min(gain_hz[n] * g(drive[n, t]), max_rate_hz)`` with
   ``g`` the neuron's nonlinearity: ``"softplus"`` ``log(1 + e^x)``,
   ``"relu"`` ``max(x, 0)`` or ``"exp"`` ``e^x``;
4. spikes: Poisson counts per bin of ``dt_ms`` (or at most one spike per bin
   with a refractory period), at times drawn within the bins
   (:func:`draw_spike_trains`).

Calibration makes the rates realistic whatever the sounds: the STRF is
scaled and the bias set so that the drive over the calibration sounds has
mean ``-threshold`` and standard deviation 1, and the gain so that the mean
rate (ceiling included) equals the neuron's target rate (drawn in 5-30
spikes/s by default).
Before calibration the same rule is applied assuming a standard normal
drive (unit-norm STRFs on white, standardised spectrograms).

Spike times
-----------
Times are in ms relative to stimulus onset. A spike in bin ``k`` (covering
``[k dt, (k + 1) dt)``) is placed on a tick of a sampling clock (32 kHz by
default, as in the CRCNS recordings) inside the bin, and the tick time is
rounded DOWN to a whole microsecond, the 3 decimals of the CRCNS text files.
A tick is only chosen if its rounded time is still inside the bin, so
:func:`~deepstrf.preprocessing.spikes.bin_spike_times` of the written times
gives back exactly the drawn counts. Spontaneous spikes (at the rate the
neuron has for ``z = 0``) may be added before the onset (negative times) and
after the stimulus.

:func:`simulate` ties these together for a list of sounds.
"""

from __future__ import annotations

import logging
import math
import numbers
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.preprocessing.spectrogram import SpectrogramParams, compute_spectrogram

__all__ = [
    "SOUND_KINDS",
    "NONLINEARITIES",
    "make_sounds",
    "to_pcm16",
    "pcm16_to_float",
    "make_neurons",
    "NeuronPopulation",
    "NeuronTruth",
    "lag_matrix",
    "draw_spike_trains",
    "Simulation",
    "simulate",
]

logger = logging.getLogger(__name__)

#: Kinds of sound :func:`make_sounds` can draw.
SOUND_KINDS = ("song", "call", "flatrip", "songrip", "mlnoise")
#: Output nonlinearities a simulated neuron can have.
NONLINEARITIES = ("softplus", "relu", "exp")
_SPIKE_MODELS = ("poisson", "bernoulli")

# Sound synthesis constants (see the module docstring).
_F_LOW_HZ = 250.0
_F_HIGH_HZ = 8000.0
_RAMP_S = 0.005
_NOISE_FLOOR = 2e-3
_MIN_SAMPLE_RATE = 4000.0
_RIPPLES = {
    # n ripples, rate law, rate scale (Hz), density law, density scale (cyc/oct), level sd (dB)
    "flatrip": (20, "uniform", 100.0, "uniform", 4.0, 10.0),
    "songrip": (20, "exponential", 15.0, "exponential", 0.7, 10.0),
    "mlnoise": (40, "uniform", 50.0, "uniform", 2.0, 8.0),
}

# Calibration: at most this many frames per neuron enter the statistics.
_MAX_CALIBRATION_FRAMES = 20000
_N_GAUSS = 4000
_MICROSECONDS_PER_S = 10**6


# ---------------------------------------------------------------------------
# Sounds
# ---------------------------------------------------------------------------

def _check_seed(seed: Any) -> int:
    return check_int("seed", seed, minimum=0)


def _as_list(name: str, value: Any, n: int | None) -> list[Any]:
    if isinstance(value, (str, numbers.Real)) and not isinstance(value, bool):
        return [value] * (1 if n is None else n)
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be a value or a sequence of values; got {value!r}.") from None
    if n is not None and len(items) != n:
        raise ValueError(f"{name} must have {n} entries (one per sound); got {len(items)}.")
    return items


def make_sounds(kinds: str | Sequence[str], durations_s: float | Sequence[float],
                sample_rate: float, seed: int = 0) -> list[np.ndarray]:
    """Draw natural-like sounds, deterministically from a seed.

    Parameters
    ----------
    kinds : str or sequence of str
        Kind of each sound, among :data:`SOUND_KINDS` (module docstring). A
        single string applies to every sound.
    durations_s : float or sequence of float
        Duration of each sound in seconds, > 0 (rounded to whole samples, at
        least one). A single number applies to every sound. At least one of
        ``kinds`` and ``durations_s`` must be a sequence, which sets the
        number of sounds.
    sample_rate : float
        Sample rate in Hz, >= 4000.
    seed : int
        Seed, >= 0. Sound ``i`` depends only on ``seed`` and ``i``.

    Returns
    -------
    list of numpy.ndarray
        float32 1-D arrays with values in [-1, 1].

    Raises
    ------
    TypeError, ValueError
        On an unknown kind, a duration that is not > 0, a sample rate below
        4000 Hz, or sequences of different lengths.

    Examples
    --------
    >>> song, noise = make_sounds(["song", "flatrip"], 0.5, 32000, seed=1)
    >>> song.shape, song.dtype, bool(abs(noise).max() <= 1)
    ((16000,), dtype('float32'), True)
    """
    seed = _check_seed(seed)
    sample_rate = check_positive("sample_rate", sample_rate)
    if sample_rate < _MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be >= {_MIN_SAMPLE_RATE:g} Hz; got {sample_rate:g}.")
    single_kind = isinstance(kinds, str)
    single_duration = isinstance(durations_s, numbers.Real) and not isinstance(durations_s, bool)
    if single_kind and single_duration:
        raise ValueError("give kinds or durations_s as a sequence, to set the number of sounds; "
                         f"got kinds={kinds!r}, durations_s={durations_s!r}.")
    kind_list = None if single_kind else _as_list("kinds", kinds, None)
    duration_list = None if single_duration else _as_list("durations_s", durations_s, None)
    n = len(kind_list) if kind_list is not None else len(duration_list)
    kind_list = _as_list("kinds", kinds if kind_list is None else kind_list, n)
    duration_list = _as_list("durations_s", durations_s if duration_list is None else duration_list, n)
    for kind in kind_list:
        if not isinstance(kind, str):
            raise TypeError(f"kinds must be strings among {', '.join(SOUND_KINDS)}; got {kind!r}.")
        check_choice("kinds", kind, SOUND_KINDS)
    n_samples = []
    for duration in duration_list:
        duration = check_positive("durations_s", duration)
        n_samples.append(max(1, int(round(duration * sample_rate))))
    children = np.random.SeedSequence(seed).spawn(n)
    return [_make_sound(kind, size, sample_rate, np.random.default_rng(child))
            for kind, size, child in zip(kind_list, n_samples, children, strict=True)]


def _make_sound(kind: str, n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "song":
        x = _song(n, sr, rng)
    elif kind == "call":
        x = _calls(n, sr, rng)
    else:
        x = _ripple_noise(n, sr, rng, *_RIPPLES[kind])
    x = x * _ramps(n, sr, _RAMP_S)
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak > 0:
        x = x * (rng.uniform(0.5, 0.9) / peak)
    x = x + _NOISE_FLOOR * rng.standard_normal(n)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _ramps(n: int, sr: float, ramp_s: float) -> np.ndarray:
    """Raised-cosine onset and offset ramps of ``ramp_s`` (shorter for short sounds)."""
    m = min(int(ramp_s * sr), n // 2)
    env = np.ones(n)
    if m > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        env[:m] = rise
        env[n - m:] = rise[::-1]
    return env


def _top_frequency(sr: float) -> float:
    return min(_F_HIGH_HZ, 0.45 * sr)


def _harmonic_stack(f0: np.ndarray, sr: float, formant_hz: float, width_oct: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Harmonics of the contour ``f0`` (Hz per sample) under a log-Gaussian formant."""
    f_top = _top_frequency(sr)
    n_harmonics = max(1, int(f_top // float(np.max(f0))))
    h = np.arange(1, n_harmonics + 1, dtype=np.float64)
    mean_f0 = float(np.mean(f0))
    amplitude = np.exp(-0.5 * (np.log2(h * mean_f0 / formant_hz) / width_oct) ** 2) / np.sqrt(h)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    offsets = rng.uniform(0, 2 * np.pi, n_harmonics)
    x = amplitude @ np.sin(h[:, None] * phase[None, :] + offsets[:, None])
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _noise_burst(n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    f_top = _top_frequency(sr)
    f_lo = rng.uniform(1000.0, min(3000.0, f_top / 1.6))
    f_hi = rng.uniform(f_lo * 1.5, f_top)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[(freqs < f_lo) | (freqs > f_hi)] = 0
    x = np.fft.irfft(spectrum, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _syllable(sr: float, rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of one song syllable (drawn once per motif)."""
    return {
        "harmonic": rng.random() < 0.75,
        "duration_s": rng.uniform(0.04, 0.15),
        "gap_s": rng.uniform(0.01, 0.06),
        "f0": rng.uniform(400.0, 900.0),
        "fm_rate": rng.uniform(5.0, 30.0),
        "fm_depth": rng.uniform(0.0, 0.12),
        "sweep": rng.uniform(-0.4, 0.4),
        "formant": rng.uniform(1500.0, min(5000.0, _top_frequency(sr) * 0.8)),
        "width": rng.uniform(0.5, 1.5),
        "level": rng.uniform(0.3, 1.0),
        "seed": int(rng.integers(2**31)),
    }


def _render_syllable(spec: dict[str, Any], sr: float) -> np.ndarray:
    n = max(1, int(spec["duration_s"] * sr))
    rng = np.random.default_rng(spec["seed"])
    if spec["harmonic"]:
        t = np.arange(n) / sr
        f0 = spec["f0"] * (1 + spec["fm_depth"] * np.sin(2 * np.pi * spec["fm_rate"] * t)
                           + spec["sweep"] * t / max(spec["duration_s"], 1e-3))
        x = _harmonic_stack(np.maximum(f0, 50.0), sr, spec["formant"], spec["width"], rng)
    else:
        x = _noise_burst(n, sr, rng)
    return spec["level"] * x * _ramps(n, sr, _RAMP_S)


def _song(n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    motif = [_syllable(sr, rng) for _ in range(int(rng.integers(3, 7)))]
    rendered = [_render_syllable(spec, sr) for spec in motif]
    pos = int(rng.uniform(0.01, 0.04) * sr)
    while pos < n:
        for spec, segment in zip(motif, rendered, strict=True):
            if pos >= n:
                break
            end = min(n, pos + segment.size)
            out[pos:end] += segment[:end - pos]
            pos = end + int(spec["gap_s"] * sr)
        pos += int(rng.uniform(0.05, 0.15) * sr)
    return out


def _calls(n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    pos = int(rng.uniform(0.01, 0.08) * sr)
    while pos < n:
        m = max(1, int(rng.uniform(0.08, 0.22) * sr))
        u = np.arange(m) / m
        f0 = rng.uniform(450.0, 800.0) * (1 - rng.uniform(0.1, 0.4) * (2 * u - 1) ** 2)
        formant = rng.uniform(2000.0, min(4000.0, _top_frequency(sr) * 0.8))
        call = _harmonic_stack(f0, sr, formant, rng.uniform(0.6, 1.2), rng) * _ramps(m, sr, 0.01)
        end = min(n, pos + m)
        out[pos:end] += call[:end - pos]
        pos = end + int(rng.uniform(0.15, 0.5) * sr)
    return out


def _ripple_noise(n: int, sr: float, rng: np.random.Generator, n_ripples: int, rate_law: str,
                  rate_scale: float, density_law: str, density_scale: float,
                  level_sd_db: float) -> np.ndarray:
    """Noise whose spectrogram level (dB) is a sum of moving ripples.

    Built in the short-time Fourier domain: random-phase frames whose
    magnitudes follow the ripple envelope, overlap-added (16 ms Hann
    windows, 75 % overlap). Only the 250 Hz to 8 kHz band is filled.
    """
    n_fft = 1 << max(6, int(math.ceil(math.log2(0.016 * sr))))
    hop = n_fft // 4
    n_frames = int(math.ceil(n / hop)) + 4
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    band = (freqs >= _F_LOW_HZ) & (freqs <= _top_frequency(sr))
    octaves = np.log2(np.maximum(freqs, _F_LOW_HZ) / _F_LOW_HZ)
    t_frames = (np.arange(n_frames) * hop - n_fft // 2) / sr
    if rate_law == "uniform":
        rates = rng.uniform(-rate_scale, rate_scale, n_ripples)
    else:
        rates = np.minimum(rng.exponential(rate_scale, n_ripples), 100.0)
        rates *= rng.choice([-1.0, 1.0], n_ripples)
    if density_law == "uniform":
        densities = rng.uniform(0.0, density_scale, n_ripples)
    else:
        densities = np.minimum(rng.exponential(density_scale, n_ripples), 4.0)
    phases = rng.uniform(0, 2 * np.pi, n_ripples)
    # sum_r cos(a_r(t) + b_r(x)) = cos(a) . cos(b) - sin(a) . sin(b): two small products.
    a = 2 * np.pi * rates[:, None] * t_frames[None, :] + phases[:, None]
    b = 2 * np.pi * densities[:, None] * octaves[None, :]
    level_db = np.cos(a).T @ np.cos(b) - np.sin(a).T @ np.sin(b)
    # A sum of K unit cosines has standard deviation sqrt(K / 2).
    level_db *= level_sd_db / math.sqrt(n_ripples / 2.0)
    magnitude = np.where(band[None, :], 10.0 ** (level_db / 20.0), 0.0)
    spectrum = magnitude * np.exp(2j * np.pi * rng.random(magnitude.shape))
    frames = np.fft.irfft(spectrum, n_fft, axis=1) * np.hanning(n_fft + 1)[:-1]
    out = np.zeros((n_frames + 3, hop))
    quarters = frames.reshape(n_frames, 4, hop)
    for q in range(4):
        out[q:q + n_frames] += quarters[:, q, :]
    return out.reshape(-1)[n_fft // 2:n_fft // 2 + n]


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """Quantise a float waveform in [-1, 1] to 16-bit PCM (int16).

    Values are scaled by 32767, rounded and clipped to the int16 range.

    Parameters
    ----------
    waveform : numpy.ndarray
        1-D float samples.

    Returns
    -------
    numpy.ndarray
        int16, same length.
    """
    y = np.asarray(waveform, dtype=np.float64)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise ValueError(f"waveform must be a finite 1-D array; got shape {y.shape}.")
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    """The float32 samples a reader returns for 16-bit PCM: ``samples / 32768``.

    This is what :func:`deepstrf.io.readers.read_wav` (libsndfile) gives for
    a 16-bit wav, so a simulation run on it sees exactly the sound a loader
    reads back from the file.
    """
    q = np.asarray(samples)
    if q.dtype != np.int16:
        raise TypeError(f"samples must be int16 (see to_pcm16); got dtype {q.dtype}.")
    return (q.astype(np.float32) / np.float32(32768.0)).astype(np.float32)


# ---------------------------------------------------------------------------
# Neurons
# ---------------------------------------------------------------------------

def _nonlinearity(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "exp":
        return np.exp(np.minimum(x, 50.0))
    return np.logaddexp(0.0, x)


def _apply_nonlinearities(kinds: Sequence[str], x: np.ndarray) -> np.ndarray:
    """Row ``n`` of ``x`` through nonlinearity ``kinds[n]`` (vectorised per kind)."""
    out = np.empty_like(x)
    kinds_array = np.asarray(kinds)
    for kind in set(kinds):
        rows = kinds_array == kind
        out[rows] = _nonlinearity(kind, x[rows])
    return out


def _check_range(name: str, value: Any, *, low: float | None = None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of numbers; got {value!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b)) or b < a:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high; got {value!r}.")
    if low is not None and a < low:
        raise ValueError(f"{name} must lie at or above {low:g}; got {value!r}.")
    return a, b


@dataclass(frozen=True)
class NeuronTruth:
    """Ground truth of one simulated neuron (see :class:`NeuronPopulation`).

    Attributes
    ----------
    index : int
        Row of the neuron in its population.
    strf : numpy.ndarray
        ``(F, L)`` weights on the standardised spectrogram; column ``l`` is
        lag ``l * dt_ms`` ms.
    bias : float
        Constant added to the linear drive.
    nonlinearity : str
        One of :data:`NONLINEARITIES`.
    gain_hz : float
        Rate (spikes/s) per unit of nonlinearity output.
    threshold : float
        Minus the mean drive over the calibration sounds, in units of the
        drive's standard deviation.
    latency_ms : float
        Lag of the excitatory peak of the STRF.
    best_band : int
        Band of the excitatory peak.
    sigma_time_ms, sigma_bands : float
        Widths of the STRF's Gaussian envelope.
    target_rate_hz : float
        Mean rate over the calibration sounds the gain was set for.
    spontaneous_rate_hz : float
        Rate for a spectrogram at its band means (``z = 0``), used for the
        spikes before the onset and after the stimulus.
    """

    index: int
    strf: np.ndarray
    bias: float
    nonlinearity: str
    gain_hz: float
    threshold: float
    latency_ms: float
    best_band: int
    sigma_time_ms: float
    sigma_bands: float
    target_rate_hz: float
    spontaneous_rate_hz: float


@dataclass(frozen=True, eq=False)
class NeuronPopulation:
    """Simulated neurons with known STRFs and output nonlinearities.

    Build one with :func:`make_neurons`, then :meth:`calibrate` it on the
    spectrograms of the sounds it will hear. The model is described in the
    module docstring. All arrays are read-only.

    Attributes
    ----------
    params : SpectrogramParams
        Front end whose spectrograms the STRFs apply to (F = ``n_bands``,
        lag step = ``dt_ms``).
    strfs : numpy.ndarray
        float64 ``(N, F, L)``.
    bias, gain_hz, threshold : numpy.ndarray
        float64 ``(N,)`` (see :class:`NeuronTruth`).
    nonlinearity : tuple of str
        Per neuron.
    latency_ms, sigma_time_ms, sigma_bands, target_rate_hz : numpy.ndarray
        float64 ``(N,)``.
    best_band : numpy.ndarray
        int64 ``(N,)``.
    band_mean, band_std : numpy.ndarray
        float64 ``(F,)``: the per-band statistics used to standardise
        spectrograms (0 and 1 before calibration).
    max_rate_hz : float
        Ceiling of the rate (spikes/s).
    calibrated : bool
        Whether :meth:`calibrate` set the statistics, scales and gains.
    """

    params: SpectrogramParams
    strfs: np.ndarray
    bias: np.ndarray
    gain_hz: np.ndarray
    threshold: np.ndarray
    nonlinearity: tuple[str, ...]
    latency_ms: np.ndarray
    best_band: np.ndarray
    sigma_time_ms: np.ndarray
    sigma_bands: np.ndarray
    target_rate_hz: np.ndarray
    band_mean: np.ndarray
    band_std: np.ndarray
    max_rate_hz: float = 400.0
    calibrated: bool = False

    def __post_init__(self) -> None:
        for name in ("strfs", "bias", "gain_hz", "threshold", "latency_ms", "best_band",
                     "sigma_time_ms", "sigma_bands", "target_rate_hz", "band_mean", "band_std"):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __repr__(self) -> str:
        return (f"NeuronPopulation(n_neurons={self.n_neurons}, n_bands={self.n_bands}, "
                f"n_lags={self.n_lags}, dt_ms={self.dt_ms:g}, calibrated={self.calibrated})")

    @property
    def n_neurons(self) -> int:
        """N."""
        return int(self.strfs.shape[0])

    @property
    def n_bands(self) -> int:
        """F."""
        return int(self.strfs.shape[1])

    @property
    def n_lags(self) -> int:
        """L."""
        return int(self.strfs.shape[2])

    @property
    def dt_ms(self) -> float:
        """Bin width (= lag step) in ms."""
        return float(self.params.dt_ms)

    @property
    def spontaneous_rate_hz(self) -> np.ndarray:
        """``(N,)`` rate (spikes/s) for a spectrogram at its band means."""
        rate = self.gain_hz * _apply_nonlinearities(self.nonlinearity, self.bias[:, None])[:, 0]
        return np.minimum(rate, self.max_rate_hz)

    def neuron(self, index: int) -> NeuronTruth:
        """Ground truth of neuron ``index``."""
        i = check_int("index", index, minimum=0, maximum=self.n_neurons - 1)
        return NeuronTruth(
            index=i, strf=self.strfs[i], bias=float(self.bias[i]),
            nonlinearity=self.nonlinearity[i], gain_hz=float(self.gain_hz[i]),
            threshold=float(self.threshold[i]), latency_ms=float(self.latency_ms[i]),
            best_band=int(self.best_band[i]), sigma_time_ms=float(self.sigma_time_ms[i]),
            sigma_bands=float(self.sigma_bands[i]), target_rate_hz=float(self.target_rate_hz[i]),
            spontaneous_rate_hz=float(self.spontaneous_rate_hz[i]),
        )

    def _check_spectrogram(self, spectrogram: Any) -> np.ndarray:
        spec = np.asarray(spectrogram, dtype=np.float64)
        if spec.ndim == 3 and spec.shape[0] == 1:
            spec = spec[0]  # a dataset stim, (1, F, T)
        if spec.ndim != 2 or spec.shape[0] != self.n_bands:
            raise ValueError(
                f"spectrogram must have shape (F, T) or (1, F, T) with F={self.n_bands}; "
                f"got {np.shape(spectrogram)}. Compute it with the population's params."
            )
        if not np.isfinite(spec).all():
            raise ValueError("spectrogram holds NaN or inf values.")
        return spec

    def standardize(self, spectrogram: np.ndarray) -> np.ndarray:
        """``(S - band_mean) / band_std`` per band: float64 ``(F, T)``."""
        spec = self._check_spectrogram(spectrogram)
        return (spec - self.band_mean[:, None]) / self.band_std[:, None]

    def _linear(self, z: np.ndarray) -> np.ndarray:
        weights = self.strfs.reshape(self.n_neurons, -1)
        return weights @ lag_matrix(z, self.n_lags)

    def drive(self, spectrogram: np.ndarray) -> np.ndarray:
        """Linear drive, bias included: float64 ``(N, T)``."""
        return self._linear(self.standardize(spectrogram)) + self.bias[:, None]

    def rates(self, spectrogram: np.ndarray) -> np.ndarray:
        """Expected spike count per bin of ``dt_ms``: float64 ``(N, T)``.

        Parameters
        ----------
        spectrogram : numpy.ndarray
            ``(F, T)`` (or a dataset's ``(1, F, T)``) as computed by
            :func:`~deepstrf.preprocessing.spectrogram.compute_spectrogram`
            with :attr:`params`; it is standardised here.
        """
        rate_hz = self.gain_hz[:, None] * _apply_nonlinearities(self.nonlinearity,
                                                               self.drive(spectrogram))
        return np.minimum(rate_hz, self.max_rate_hz) * (self.dt_ms / 1000.0)

    def spike_trains(self, spectrogram: np.ndarray, n_repeats: int,
                     rng: np.random.Generator | int, **kwargs: Any) -> list[list[np.ndarray]]:
        """Spike times (ms from onset) of every neuron on every repeat of one sound.

        Shorthand for :func:`draw_spike_trains` with this population's
        rates, bin width and spontaneous rates; ``kwargs`` (``pre_ms``,
        ``post_ms``, ``model``, ``refractory_ms``, ``clock_hz``) pass
        through.

        Returns
        -------
        list of list of numpy.ndarray
            ``out[n][r]``: sorted float64 times of neuron ``n`` on repeat ``r``.
        """
        return draw_spike_trains(self.rates(spectrogram), self.dt_ms, n_repeats, rng,
                                 spontaneous=self.spontaneous_rate_hz * self.dt_ms / 1000.0,
                                 **kwargs)

    def calibrate(self, spectrograms: Sequence[np.ndarray]) -> NeuronPopulation:
        """A copy calibrated on a set of sounds (module docstring, "Calibration").

        The band means and standard deviations are taken over all frames of
        ``spectrograms``; each STRF is rescaled and its bias, threshold and
        gain set so that over these sounds the drive has standard deviation
        1 and mean ``-threshold``, and the mean rate is the neuron's target
        rate. The STRF shapes, latencies and best bands do not change.

        Parameters
        ----------
        spectrograms : sequence of numpy.ndarray
            ``(F, T_s)`` spectrograms of the sounds (at least one frame in all).

        Returns
        -------
        NeuronPopulation
            With ``calibrated=True``.
        """
        specs = [self._check_spectrogram(s) for s in spectrograms]
        frames = np.concatenate(specs, axis=1) if specs else np.zeros((self.n_bands, 0))
        if frames.shape[1] < 2:
            raise ValueError("calibrate needs spectrograms with at least 2 frames in all; got "
                             f"{frames.shape[1]}.")
        band_mean = frames.mean(axis=1)
        band_std = frames.std(axis=1)
        # A constant band carries no information; leave it unscaled.
        band_std = np.where(band_std > 1e-12 * (1 + np.abs(band_mean)), band_std, 1.0)
        unit = replace(self, band_mean=band_mean, band_std=band_std,
                       strfs=self.strfs / np.sqrt((self.strfs**2).sum(axis=(1, 2)))[:, None, None])
        linear = np.concatenate([unit._linear(unit.standardize(s)) for s in specs], axis=1)
        if linear.shape[1] > _MAX_CALIBRATION_FRAMES:
            keep = np.linspace(0, linear.shape[1] - 1, _MAX_CALIBRATION_FRAMES).astype(np.int64)
            linear = linear[:, keep]
        mean = linear.mean(axis=1)
        std = linear.std(axis=1)
        std = np.where(std > 0, std, 1.0)
        normalised = (linear - mean[:, None]) / std[:, None]
        gain = _gains(self.nonlinearity, normalised, self.threshold, self.target_rate_hz,
                      self.max_rate_hz)
        return replace(unit, strfs=unit.strfs / std[:, None, None],
                       bias=-mean / std - self.threshold, gain_hz=gain, calibrated=True)


def _gains(kinds: Sequence[str], normalised_drive: np.ndarray, threshold: np.ndarray,
           target_rate_hz: np.ndarray, max_rate_hz: float) -> np.ndarray:
    """Gain giving each neuron its target mean rate for a drive ``u - threshold``.

    The rate is ``min(gain * g(u - threshold), max_rate_hz)``; its mean grows
    with the gain, so the gain is found by bisection (in log scale) from the
    gain that ignores the ceiling. A target above what the ceiling allows
    gets the largest gain tried.
    """
    output = _apply_nonlinearities(kinds, normalised_drive - threshold[:, None])
    low = target_rate_hz / np.maximum(output.mean(axis=1), 1e-9)
    high = low * 1e3

    def mean_rate(gain: np.ndarray) -> np.ndarray:
        return np.minimum(gain[:, None] * output, max_rate_hz).mean(axis=1)

    clipped = mean_rate(low) < target_rate_hz * (1 - 1e-6)
    if not clipped.any():
        return low
    lo, hi = np.log(low[clipped]), np.log(high[clipped])
    rows, target = output[clipped], target_rate_hz[clipped]
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        below = np.minimum(np.exp(mid)[:, None] * rows, max_rate_hz).mean(axis=1) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    gain = low.copy()
    gain[clipped] = np.exp(hi)
    return gain


def lag_matrix(spectrogram: np.ndarray, n_lags: int) -> np.ndarray:
    """Causal design matrix of an STRF: row ``f * L + l`` holds band ``f`` delayed by ``l`` bins.

    ``X[f * L + l, t] = S[f, t - l]``, and 0 for ``t - l < 0`` (before the
    onset), so that ``strf.reshape(-1) @ X`` is the STRF applied causally
    to ``S`` for an STRF of shape ``(F, L)``.

    Parameters
    ----------
    spectrogram : numpy.ndarray
        ``(F, T)``.
    n_lags : int
        L, >= 1.

    Returns
    -------
    numpy.ndarray
        float64 ``(F * L, T)``.
    """
    spec = np.asarray(spectrogram, dtype=np.float64)
    if spec.ndim != 2:
        raise ValueError(f"spectrogram must be 2-D (F, T); got shape {spec.shape}.")
    n_lags = check_int("n_lags", n_lags, minimum=1)
    n_bands, n_frames = spec.shape
    padded = np.zeros((n_bands, n_frames + n_lags - 1))
    padded[:, n_lags - 1:] = spec
    # windows[f, j, t] = padded[f, j + t] = S[f, t - (L - 1 - j)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_frames, axis=1)
    return windows[:, ::-1, :].reshape(n_bands * n_lags, n_frames)


def make_neurons(n: int, params: SpectrogramParams, n_lags: int | None = None, seed: int = 0, *,
                 latency_ms: tuple[float, float] = (5.0, 30.0),
                 sigma_time_ms: tuple[float, float] = (4.0, 12.0),
                 sigma_bands: tuple[float, float] = (0.8, 3.0),
                 best_bands: tuple[int, int] | None = None,
                 inhibition: tuple[float, float] = (0.3, 0.8),
                 threshold: tuple[float, float] = (-1.0, 0.0),
                 rate_hz: tuple[float, float] = (40.0, 100.0),
                 nonlinearities: Sequence[str] = ("softplus", "relu"),
                 max_rate_hz: float = 400.0) -> NeuronPopulation:
    """Draw a population of neurons with Gabor-like STRFs, deterministically.

    Parameters
    ----------
    n : int
        Number of neurons, >= 1.
    params : SpectrogramParams
        Front end whose spectrograms the STRFs apply to.
    n_lags : int, optional
        L; default covers 100 ms (``ceil(100 / dt_ms)``, at least 2).
    seed : int
        Seed, >= 0.
    latency_ms : (float, float)
        Range of the lag of the excitatory peak, ms (upper end clipped to the
        last lag).
    sigma_time_ms, sigma_bands : (float, float)
        Ranges of the envelope widths, in ms and in bands.
    best_bands : (int, int), optional
        Inclusive range of best bands; default every band but the lowest and
        the highest. Restrict it to the bands the sounds fill (see
        :func:`~deepstrf.preprocessing.spectrogram.band_frequencies`), so no
        neuron listens only to the noise floor.
    inhibition : (float, float)
        Range of the weight of the inhibitory side band relative to the
        excitatory peak.
    threshold : (float, float)
        Range of the threshold, in units of the drive's standard deviation
        (higher: sparser, more peaked firing). The default keeps neurons in a
        moderately nonlinear regime where a linear STRF is a good model, so a
        fit can be checked against the truth; sparser neurons (thresholds
        above 0) driven by songs are far from linear: even noise-free, their
        best linear STRF may correlate only ~0.5 with the true kernel.
    rate_hz : (float, float)
        Range of the target mean rate, spikes/s (driven MLd and Field L units
        fire tens of spikes per second).
    nonlinearities : sequence of str
        Nonlinearities to draw from (:data:`NONLINEARITIES`; ``'exp'`` is
        left out by default for the reason above).
    max_rate_hz : float
        Rate ceiling, spikes/s.

    Returns
    -------
    NeuronPopulation
        Uncalibrated: unit-norm STRFs, band statistics 0 and 1, gains set
        for a standard normal drive. Call :meth:`NeuronPopulation.calibrate`
        on the spectrograms of the sounds before simulating responses.
    """
    n = check_int("n", n, minimum=1)
    if not isinstance(params, SpectrogramParams):
        raise TypeError(f"params must be a SpectrogramParams; got {type(params).__name__}.")
    dt = params.dt_ms
    n_lags = max(2, int(math.ceil(100.0 / dt))) if n_lags is None else check_int(
        "n_lags", n_lags, minimum=1)
    seed = _check_seed(seed)
    lat_lo, lat_hi = _check_range("latency_ms", latency_ms, low=0.0)
    st_lo, st_hi = _check_range("sigma_time_ms", sigma_time_ms)
    sb_lo, sb_hi = _check_range("sigma_bands", sigma_bands)
    if st_lo <= 0 or sb_lo <= 0:
        raise ValueError(f"sigma_time_ms and sigma_bands must be > 0; got {sigma_time_ms!r} and "
                         f"{sigma_bands!r}.")
    inh_lo, inh_hi = _check_range("inhibition", inhibition, low=0.0)
    th_lo, th_hi = _check_range("threshold", threshold)
    rate_lo, rate_hi = _check_range("rate_hz", rate_hz)
    if rate_lo <= 0:
        raise ValueError(f"rate_hz must be > 0; got {rate_hz!r}.")
    pool = list(_as_list("nonlinearities", nonlinearities, None))
    if not pool:
        raise ValueError("nonlinearities must name at least one of " + ", ".join(NONLINEARITIES))
    for kind in pool:
        check_choice("nonlinearities", kind, NONLINEARITIES)
    max_rate_hz = check_positive("max_rate_hz", max_rate_hz)
    n_bands = params.n_bands
    if best_bands is None:
        band_lo, band_hi = (1, n_bands - 2) if n_bands >= 3 else (0, n_bands - 1)
    else:
        lo, hi = _check_range("best_bands", best_bands)
        band_lo, band_hi = int(lo), int(hi)
        if band_lo != lo or band_hi != hi or band_lo < 0 or band_hi >= n_bands:
            raise ValueError(f"best_bands must be a (low, high) pair of band indices in "
                             f"[0, {n_bands - 1}]; got {best_bands!r}.")

    rng = np.random.default_rng(seed)
    last_lag_ms = (n_lags - 1) * dt
    lat_hi = min(lat_hi, last_lag_ms)
    lat_lo = min(lat_lo, lat_hi)
    latency = rng.uniform(lat_lo, lat_hi, n)
    sigma_t = rng.uniform(st_lo, st_hi, n)
    sigma_f = rng.uniform(sb_lo, sb_hi, n)
    best = rng.integers(band_lo, band_hi + 1, n)
    rate_t = rng.uniform(0.0, 0.25, n) / sigma_t  # cycles per ms
    rate_f = rng.uniform(0.0, 1 / 6, n) / sigma_f  # cycles per band
    inh = rng.uniform(inh_lo, inh_hi, n)
    inh_df = rng.uniform(2.0, 3.0, n) * sigma_f * rng.choice([-1.0, 1.0], n)
    # Keep the inhibitory side band on the spectrogram: flip it inwards, then clip.
    outside = (best + inh_df < 0) | (best + inh_df > n_bands - 1)
    inh_df = np.where(outside, -inh_df, inh_df)
    inh_df = np.clip(best + inh_df, 0, n_bands - 1) - best
    inh_dt = np.minimum(rng.uniform(0.0, 1.5, n) * sigma_t, last_lag_ms - latency)
    thresholds = rng.uniform(th_lo, th_hi, n)
    targets = rng.uniform(rate_lo, rate_hi, n)
    kinds = tuple(str(k) for k in rng.choice(pool, n))

    f = np.arange(n_bands, dtype=np.float64)[None, :, None]
    tau = (np.arange(n_lags, dtype=np.float64) * dt)[None, None, :]
    col = (slice(None), None, None)
    df = f - best[col]
    dtau = tau - latency[col]
    excitatory = (np.exp(-0.5 * (df / sigma_f[col]) ** 2 - 0.5 * (dtau / sigma_t[col]) ** 2)
                  * np.cos(2 * np.pi * (rate_t[col] * dtau + rate_f[col] * df)))
    inhibitory = inh[col] * np.exp(-0.5 * ((df - inh_df[col]) / sigma_f[col]) ** 2
                                   - 0.5 * ((dtau - inh_dt[col]) / sigma_t[col]) ** 2)
    strfs = excitatory - inhibitory
    norms = np.sqrt((strfs**2).sum(axis=(1, 2)))
    strfs = strfs / np.where(norms > 0, norms, 1.0)[:, None, None]

    gauss = _standard_normal_sample()
    gain = _gains(kinds, np.broadcast_to(gauss, (n, gauss.size)), thresholds, targets,
                  max_rate_hz)
    return NeuronPopulation(
        params=params, strfs=strfs, bias=-thresholds, gain_hz=gain, threshold=thresholds,
        nonlinearity=kinds, latency_ms=latency, best_band=best.astype(np.int64),
        sigma_time_ms=sigma_t, sigma_bands=sigma_f, target_rate_hz=targets,
        band_mean=np.zeros(n_bands), band_std=np.ones(n_bands), max_rate_hz=max_rate_hz,
        calibrated=False,
    )


def _standard_normal_sample() -> np.ndarray:
    """Evenly spaced quantiles of N(0, 1): a deterministic stand-in for a Gaussian drive."""
    inv_cdf = statistics.NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / _N_GAUSS) for i in range(_N_GAUSS)])


# ---------------------------------------------------------------------------
# Spikes
# ---------------------------------------------------------------------------

def _whole_microseconds(name: str, value_ms: float) -> int:
    us = value_ms * 1000.0
    nearest = int(round(us))
    if abs(us - nearest) > 1e-6 * max(1.0, abs(us)):
        raise ValueError(f"{name} must be a whole number of microseconds; got {value_ms!r} ms.")
    return nearest


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


def draw_spike_trains(rates: np.ndarray, dt_ms: float, n_repeats: int,
                      rng: np.random.Generator | int, *, spontaneous: np.ndarray | None = None,
                      pre_ms: float = 0.0, post_ms: float = 0.0, model: str = "poisson",
                      refractory_ms: float = 1.0,
                      clock_hz: int | None = 32000) -> list[list[np.ndarray]]:
    """Draw spike times from expected counts per bin.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(N, T)`` expected spike counts per bin of ``dt_ms``, >= 0 (e.g.
        :meth:`NeuronPopulation.rates`). Bin ``k`` covers
        ``[k dt, (k + 1) dt)`` ms.
    dt_ms : float
        Bin width, ms, > 0, a whole number of microseconds.
    n_repeats : int
        Repeats (trials) per neuron, >= 0.
    rng : numpy.random.Generator or int
        Random generator, or a seed for a new one.
    spontaneous : numpy.ndarray, optional
        ``(N,)`` expected counts per bin before the onset and after the
        stimulus; required when ``pre_ms`` or ``post_ms`` is > 0.
    pre_ms, post_ms : float
        Length of the spontaneous windows before the onset and after the
        last bin, ms, >= 0 (rounded up to whole bins).
    model : {"poisson", "bernoulli"}
        ``"poisson"``: Poisson counts per bin. ``"bernoulli"``: at most one
        spike per bin, with probability ``1 - exp(-rate)``, never within
        ``refractory_ms`` of the previous spike (a spike with no room left in
        its bin is dropped).
    refractory_ms : float
        Absolute refractory period of the ``"bernoulli"`` model, ms, >= 0.
    clock_hz : int or None
        Rate of the acquisition clock that spike times sit on (32 kHz for the
        CRCNS AA data); None places them on a 1 microsecond grid. Every bin
        must hold at least one tick.

    Returns
    -------
    list of list of numpy.ndarray
        ``out[n][r]``: sorted float64 spike times in ms relative to the
        onset, each a whole number of microseconds (``round(t, 3) == t`` as
        decimals), so they print exactly with 3 decimals. Binning them with
        :func:`~deepstrf.preprocessing.spikes.bin_spike_times` on the
        stimulus grid gives back the drawn counts.
    """
    lam = np.asarray(rates, dtype=np.float64)
    if lam.ndim != 2:
        raise ValueError(f"rates must be 2-D (N, T); got shape {lam.shape}.")
    if not np.isfinite(lam).all() or (lam < 0).any():
        raise ValueError("rates must be finite and >= 0.")
    dt_ms = check_positive("dt_ms", dt_ms)
    dt_us = _whole_microseconds("dt_ms", dt_ms)
    n_repeats = check_int("n_repeats", n_repeats, minimum=0)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or an int seed; got {rng!r}.")
    pre_ms = check_positive("pre_ms", pre_ms, allow_zero=True)
    post_ms = check_positive("post_ms", post_ms, allow_zero=True)
    check_choice("model", model, _SPIKE_MODELS)
    refractory_ms = check_positive("refractory_ms", refractory_ms, allow_zero=True)
    clock = _MICROSECONDS_PER_S if clock_hz is None else check_int("clock_hz", clock_hz, minimum=1)
    if dt_us * clock < _MICROSECONDS_PER_S:
        raise ValueError(f"clock_hz={clock} has no tick in some bins of dt_ms={dt_ms:g}; raise "
                         "clock_hz (or pass None for a 1 microsecond grid).")
    n_neurons, n_bins = lam.shape
    n_pre = int(math.ceil(pre_ms / dt_ms - 1e-9))
    n_post = int(math.ceil(post_ms / dt_ms - 1e-9))
    if n_pre or n_post:
        if spontaneous is None:
            raise ValueError("spontaneous rates are needed when pre_ms or post_ms is > 0.")
        spont = np.asarray(spontaneous, dtype=np.float64)
        if spont.shape != (n_neurons,) or not np.isfinite(spont).all() or (spont < 0).any():
            raise ValueError(f"spontaneous must be a finite, >= 0 array of shape ({n_neurons},); "
                             f"got shape {spont.shape}.")
        lam = np.concatenate([np.repeat(spont[:, None], n_pre, axis=1), lam,
                              np.repeat(spont[:, None], n_post, axis=1)], axis=1)
    n_all = lam.shape[1]
    k = np.arange(n_all, dtype=np.int64) - n_pre
    # Ticks whose microsecond-rounded time lies in [k dt, (k + 1) dt).
    lo = _ceil_div(k * dt_us * clock, _MICROSECONDS_PER_S)
    hi = _ceil_div((k + 1) * dt_us * clock, _MICROSECONDS_PER_S)
    n_trials = n_repeats * n_neurons
    if model == "poisson":
        counts = rng.poisson(np.broadcast_to(lam, (n_repeats, n_neurons, n_all))).reshape(
            n_trials, n_all)
        per_trial = counts.sum(axis=1)
        bins = np.repeat(np.tile(np.arange(n_all), n_trials), counts.ravel())
        trial = np.repeat(np.arange(n_trials), per_trial)
        ticks = lo[bins] + np.floor(rng.random(bins.size) * (hi - lo)[bins]).astype(np.int64)
        order = np.lexsort((ticks, trial))
        ticks = ticks[order]
    else:
        ticks, per_trial = _bernoulli_ticks(lam, n_repeats, rng, lo, hi,
                                            int(math.ceil(refractory_ms * clock / 1000.0 - 1e-9)))
    times_ms = (ticks * _MICROSECONDS_PER_S // clock) / 1000.0
    trains = np.split(times_ms, np.cumsum(per_trial)[:-1]) if n_trials else []
    return [[trains[r * n_neurons + i] for r in range(n_repeats)] for i in range(n_neurons)]


def _bernoulli_ticks(lam: np.ndarray, n_repeats: int, rng: np.random.Generator, lo: np.ndarray,
                     hi: np.ndarray, refractory_ticks: int) -> tuple[np.ndarray, np.ndarray]:
    n_neurons, n_all = lam.shape
    probability = -np.expm1(-lam)
    last = np.full((n_repeats, n_neurons), np.iinfo(np.int64).min // 2, dtype=np.int64)
    chosen = np.full((n_repeats, n_neurons, n_all), -1, dtype=np.int64)
    fired = np.zeros((n_repeats, n_neurons, n_all), dtype=bool)
    # Each bin depends on the previous spike, so bins are visited in order.
    for b in range(n_all):
        spike = rng.random((n_repeats, n_neurons)) < probability[None, :, b]
        start = np.maximum(lo[b], last + refractory_ticks)
        room = hi[b] - start
        ok = spike & (room > 0)
        tick = start + np.floor(rng.random((n_repeats, n_neurons))
                                * np.maximum(room, 1)).astype(np.int64)
        chosen[:, :, b] = tick
        fired[:, :, b] = ok
        last = np.where(ok, tick, last)
    fired = fired.reshape(n_repeats * n_neurons, n_all)
    return chosen.reshape(n_repeats * n_neurons, n_all)[fired], fired.sum(axis=1)


# ---------------------------------------------------------------------------
# A simulated experiment
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Simulation:
    """A population's responses to a set of sounds (see :func:`simulate`).

    Attributes
    ----------
    sounds : tuple of numpy.ndarray
        float32 waveforms, as given.
    sample_rate : float
        Their rate, Hz.
    spectrograms : tuple of numpy.ndarray
        float32 ``(F, T_s)`` from
        :func:`~deepstrf.preprocessing.spectrogram.compute_spectrogram` with
        ``population.params``: what a loader with the same parameters gives.
    population : NeuronPopulation
        Calibrated on ``spectrograms`` (unless ``calibrate=False``).
    rates : tuple of numpy.ndarray
        float64 ``(N, T_s)`` expected counts per bin for each sound.
    """

    sounds: tuple[np.ndarray, ...]
    sample_rate: float
    spectrograms: tuple[np.ndarray, ...]
    population: NeuronPopulation
    rates: tuple[np.ndarray, ...]

    @property
    def params(self) -> SpectrogramParams:
        """The spectrogram front end."""
        return self.population.params

    def spike_trains(self, sound: int, n_repeats: int, rng: np.random.Generator | int, *,
                     neurons: Sequence[int] | None = None,
                     **kwargs: Any) -> list[list[np.ndarray]]:
        """Spike times of some neurons (default all) on ``n_repeats`` repeats of one sound.

        ``kwargs`` pass to :func:`draw_spike_trains`; the spontaneous rates
        are the population's.
        """
        s = check_int("sound", sound, minimum=0, maximum=len(self.sounds) - 1)
        pop = self.population
        rows = np.arange(pop.n_neurons) if neurons is None else np.asarray(neurons, dtype=np.int64)
        if rows.ndim != 1 or ((rows < 0) | (rows >= pop.n_neurons)).any():
            raise IndexError(f"neurons must be indices in [0, {pop.n_neurons - 1}]; got {neurons!r}.")
        return draw_spike_trains(self.rates[s][rows], pop.dt_ms, n_repeats, rng,
                                 spontaneous=pop.spontaneous_rate_hz[rows] * pop.dt_ms / 1000.0,
                                 **kwargs)


def simulate(sounds: Sequence[np.ndarray], sample_rate: float, population: NeuronPopulation, *,
             calibrate: bool = True) -> Simulation:
    """Compute spectrograms and calibrated rates of a population for a set of sounds.

    Parameters
    ----------
    sounds : sequence of numpy.ndarray
        Mono waveforms (e.g. from :func:`make_sounds`, passed through
        :func:`to_pcm16` and :func:`pcm16_to_float` to match what a wav file
        stores).
    sample_rate : float
        Their rate, Hz.
    population : NeuronPopulation
        The neurons (e.g. from :func:`make_neurons`).
    calibrate : bool
        Calibrate the population on these sounds first (recommended).

    Returns
    -------
    Simulation
    """
    if not isinstance(population, NeuronPopulation):
        raise TypeError(f"population must be a NeuronPopulation; got {type(population).__name__}.")
    sample_rate = check_positive("sample_rate", sample_rate)
    waves = tuple(np.asarray(s, dtype=np.float32) for s in sounds)
    if not waves:
        raise ValueError("sounds must hold at least one waveform; got none.")
    specs = tuple(compute_spectrogram(w, sample_rate, population.params) for w in waves)
    pop = population.calibrate(specs) if calibrate else population
    rates = tuple(pop.rates(s) for s in specs)
    logger.debug("simulated %d neurons on %d sounds (%d frames)", pop.n_neurons, len(specs),
                 sum(s.shape[1] for s in specs))
    return Simulation(sounds=waves, sample_rate=sample_rate, spectrograms=specs, population=pop,
                      rates=rates)
