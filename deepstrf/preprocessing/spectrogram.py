"""Spectrogram front ends on the response time grid (librosa's definitions, numpy speed).

One parameters object, :class:`SpectrogramParams`, describes a front end;
:func:`compute_spectrogram` applies it to a waveform and returns a float32
``(F, T)`` array whose frame ``k`` summarises the sound around response bin
``k``, with ``T = n_bins_for_duration(len(waveform), sample_rate, dt_ms)``,
the length of the binned responses
(:func:`deepstrf.preprocessing.spikes.bin_spike_times`).
:func:`waveform_on_grid` does the same for models that take the raw waveform.

The time grid
-------------
The hop between frames must be a whole number of samples, or frames drift
against the response bins. When ``sample_rate * dt_ms / 1000`` is not an
integer at the rate asked for (e.g. AA4's TDT rate, 24414.0625 Hz, at
``dt = 1 ms``), the sound is first resampled (librosa with soxr) to the
nearest rate that makes it one (24000 Hz, hop 24): see
:func:`grid_sample_rate`. The published deepSTRF instead rounds the hop down
(``int(sr * dt / 1000) = 24`` at 24414 Hz), so its "1 ms" frames last
0.983 ms and drift 50 ms against the response bins over a 3 s stimulus.

Frame ``k`` is centred on response bin ``k``: the analysis window is centred
on the middle of the samples of ``[k*dt, (k+1)*dt)``, exactly (the window
length is moved by one sample when needed so that its centre falls on that
middle). The sound is zero-padded before its onset and after its end,
silence being what the animal heard there.

Front ends and compression
--------------------------
Every ``kind`` is a registered front end, so one parameters object and one
call serve them all. Two are built in, both an STFT pooled by triangular
filters: ``"mel"`` is librosa's mel filter bank
(``librosa.filters.mel(htk=True, norm=None)``, reproduced: HTK mel scale, triangles
peaking at 1, as torchaudio's defaults that the published deepSTRF used);
``"logfreq"`` puts the same triangles with centres equally spaced in log
frequency between ``f_min`` and ``f_max`` (``f_min = 0`` means
:data:`LOGFREQ_DEFAULT_FMIN_HZ`); librosa has no such bank. In both, a band
narrower than the FFT bin spacing, which would otherwise be all zeros (librosa
warns "empty filters"), takes the FFT bin nearest its centre frequency. Power
spectra are pooled by the filters, then compressed: ``"cubic"`` ``x**(1/3)``,
``"log1p"`` ``log(1 + x)``, ``"log"`` ``log(x + LOG_FLOOR)`` (:data:`LOG_FLOOR`
= 1e-10), ``"none"`` ``x``.

The STFT and the resampling are librosa's (``librosa.stft(center=False)``,
``librosa.resample(res_type="soxr_hq")``; the tests compare them), written
with numpy and soxr, and so is the mel bank (exactly
``librosa.filters.mel``, element for element, as the tests check; importing
librosa for it doubled a cold AA1 build). The filter banks are computed once
per build in the parent process (:func:`prepare_front_end`) and handed to
the worker processes inside a :class:`PreparedFrontEnd`; a worker never
imports librosa.

Adding a front end
------------------
:func:`register_front_end` adds a kind::

    register_front_end("gammatone", gammatone_spectrogram,
                       band_frequencies=gammatone_band_frequencies)

``compute(waveform, sample_rate, params) -> (params.n_bands, T)`` must return
``T = n_bins_for_duration(len(waveform), sample_rate, params.dt_ms)`` frames,
frame ``k`` describing response bin ``k``; ``band_frequencies(params,
sample_rate)`` gives the band centres in Hz. Either may also be given as a
``"module:function"`` string, imported when first used. A kind that is not
registered yet is looked up as the module ``deepstrf.preprocessing.<kind>``,
which registers it when imported: so the line above, at the end of
``deepstrf/preprocessing/gammatone.py``, makes ``SpectrogramParams(kind=
"gammatone")`` work without any import by the user. The parent process
resolves the functions into the :class:`PreparedFrontEnd` it sends to
workers, so a front end registered at run time (even in a script) reaches
them too. All the :class:`SpectrogramParams` fields are available to
``compute``; ``window_ms``, ``f_min``, ``f_max`` and ``compression`` should
keep their meaning.

The STFT uses a periodic Hann window of ``win_length = round(window_ms *
rate / 1000)`` samples (plus one when needed for centring) and ``n_fft`` the
next power of two at or above it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.preprocessing.spikes import n_bins_for_duration

__all__ = [
    "FrontEnd",
    "PreparedFrontEnd",
    "SpectrogramParams",
    "analysis_rate",
    "compute_spectrogram",
    "front_end_kinds",
    "get_front_end",
    "prepare_front_end",
    "register_front_end",
    "waveform_on_grid",
    "grid_sample_rate",
    "band_frequencies",
    "LOG_FLOOR",
    "LOGFREQ_DEFAULT_FMIN_HZ",
]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class FrontEnd:
    """A registered front end (see "Adding a front end" in the module docstring).

    ``compute`` is None for the built-in triangular filter banks.
    """

    name: str
    compute: Callable[..., Any] | str | None
    band_frequencies: Callable[..., Any] | str | None = None
    description: str = ""

    @property
    def filterbank(self) -> bool:
        """True for the built-in STFT + triangular filter bank kinds."""
        return self.compute is None

    def resolved(self) -> FrontEnd:
        """This entry with ``"module:function"`` strings imported."""
        return dataclasses.replace(self, compute=_resolve(self.name, self.compute),
                                   band_frequencies=_resolve(self.name, self.band_frequencies))


_REGISTRY: dict[str, FrontEnd] = {}


def register_front_end(name: str, compute: Callable[..., Any] | str, *,
                       band_frequencies: Callable[..., Any] | str | None = None,
                       description: str = "", replace: bool = False) -> FrontEnd:
    """Make ``kind=name`` a front end of :class:`SpectrogramParams`.

    Parameters
    ----------
    name : str
        The kind, e.g. ``"gammatone"``.
    compute : callable or str
        ``compute(waveform, sample_rate, params) -> (n_bands, T)`` array (or a
        ``"module:function"`` string naming it).
    band_frequencies : callable or str, optional
        ``band_frequencies(params, sample_rate) -> (n_bands,)`` centres, Hz.
    description : str
        One line shown in error messages and docs.
    replace : bool
        Allow replacing a different registration of ``name``. Registering the
        same functions again (a module imported twice) is always allowed.

    Returns
    -------
    FrontEnd
        The registered entry.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"front-end name must be an identifier string; got {name!r}.")
    for label, value in (("compute", compute), ("band_frequencies", band_frequencies)):
        if value is None and label == "band_frequencies":
            continue
        if not (callable(value) or (isinstance(value, str) and value.count(":") == 1)):
            raise TypeError(f"{label} must be a callable or a 'module:function' string; got "
                            f"{value!r}.")
    entry = FrontEnd(name, compute, band_frequencies, description)
    old = _REGISTRY.get(name)
    if old is not None and old != entry and not replace:
        raise ValueError(f"a front end named {name!r} is already registered ({old}); pass "
                         "replace=True to replace it.")
    _REGISTRY[name] = entry
    return entry


def get_front_end(name: str) -> FrontEnd:
    """The registered front end ``name``, importing ``deepstrf.preprocessing.<name>`` if needed.

    Raises
    ------
    ValueError
        If no front end of that name exists; the message lists the known ones.
    """
    if name not in _REGISTRY and isinstance(name, str) and name.isidentifier():
        try:
            importlib.import_module(f"deepstrf.preprocessing.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"deepstrf.preprocessing.{name}":
                raise ImportError(f"the {name!r} front end needs {err.name}, which is not "
                                  f"installed ({err}).") from err
    if name not in _REGISTRY:
        check_choice("kind", name, front_end_kinds())
    return _REGISTRY[name]


def front_end_kinds() -> tuple[str, ...]:
    """Names of the registered front ends, in registration order."""
    return tuple(_REGISTRY)


def _resolve(kind: str, target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module_name, function = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"the {kind!r} front end needs {module_name}, which cannot be "
                          f"imported ({err}).") from err
    try:
        return getattr(module, function)
    except AttributeError:
        raise AttributeError(f"{module_name} has no {function}(), which the {kind!r} front "
                             "end names.") from None


_REGISTRY["mel"] = FrontEnd("mel", None, None, "STFT power pooled by librosa's HTK mel bank")
_REGISTRY["logfreq"] = FrontEnd("logfreq", None, None,
                                "STFT power pooled by log-spaced triangular filters")
COMPRESSIONS = ("cubic", "log1p", "log", "none")
#: Added to the power before ``"log"`` compression, so silence gives log(1e-10) ~ -23.
LOG_FLOOR = 1e-10
#: Lower edge of the ``"logfreq"`` bank when ``f_min`` is 0 (log spacing needs f > 0).
LOGFREQ_DEFAULT_FMIN_HZ = 250.0
_MIN_WINDOW_SAMPLES = 4
# Relative slack for "this hop is a whole number of samples".
_WHOLE_TOL = 1e-9


def _whole(x: float) -> int | None:
    """The integer ``x`` is within float error of, or None."""
    nearest = round(x)
    return int(nearest) if abs(x - nearest) <= _WHOLE_TOL * max(1.0, abs(x)) else None


def grid_sample_rate(sample_rate: float, dt_ms: float) -> tuple[float, int]:
    """The rate nearest ``sample_rate`` at which ``dt_ms`` is a whole number of samples.

    Parameters
    ----------
    sample_rate : float
        Rate of the sound, Hz.
    dt_ms : float
        Response bin width, ms.

    Returns
    -------
    rate : float
        ``sample_rate`` itself if ``sample_rate * dt_ms / 1000`` is an
        integer, else ``hop * 1000 / dt_ms`` with ``hop`` that product
        rounded to the nearest integer (at least 1).
    hop : int
        Samples per response bin at ``rate``.

    Examples
    --------
    >>> grid_sample_rate(24414.0625, 1.0)
    (24000.0, 24)
    >>> grid_sample_rate(32000, 5.0)
    (32000.0, 160)
    """
    sample_rate = check_positive("sample_rate", sample_rate)
    dt_ms = check_positive("dt_ms", dt_ms)
    exact = sample_rate * dt_ms / 1000.0
    hop = _whole(exact)
    if hop is not None and hop >= 1:
        return sample_rate, hop
    hop = max(1, int(round(exact)))
    return hop * 1000.0 / dt_ms, hop


@dataclass(frozen=True)
class SpectrogramParams:
    """Parameters of a spectrogram front end.

    Every field is checked at construction (and again by :meth:`validate`),
    so a bad value raises before any file is read. Numbers are stored as
    float (``n_bands`` as int), so equal settings give equal
    :meth:`to_dict` output and cache keys.

    Parameters
    ----------
    dt_ms : float
        Hop between frames = response bin width, ms, > 0.
    kind : str
        Front end: ``"mel"``, ``"logfreq"`` or any registered with
        :func:`register_front_end` (see the module docstring).
    n_bands : int
        Number of frequency bands F, >= 1.
    window_ms : float
        Length of the analysis window, ms, > 0.
    f_min : float
        Lowest frequency of the bank, Hz, >= 0. For ``"logfreq"``, 0 means
        :data:`LOGFREQ_DEFAULT_FMIN_HZ` (250 Hz).
    f_max : float or None
        Highest frequency, Hz; None is the Nyquist frequency of the rate the
        spectrogram is computed at.
    compression : {"cubic", "log1p", "log", "none"}
        Amplitude compression applied to the pooled power.
    sample_rate : float or None
        Rate the spectrogram is computed at, Hz; the sound is resampled to
        it. It must make ``dt_ms`` a whole number of samples. None: the
        sound's own rate, or the nearest rate with a whole-sample hop
        (:func:`grid_sample_rate`).
    """

    dt_ms: float
    kind: str = "mel"
    n_bands: int = 32
    window_ms: float = 10.0
    f_min: float = 0.0
    f_max: float | None = None
    compression: str = "cubic"
    sample_rate: float | None = None

    def __post_init__(self) -> None:
        self.validate()
        for name in ("dt_ms", "window_ms", "f_min", "f_max", "sample_rate"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        object.__setattr__(self, "n_bands", int(self.n_bands))

    def validate(self) -> None:
        """Check every field; raise ``TypeError``/``ValueError`` naming the bad one."""
        dt_ms = check_positive("dt_ms", self.dt_ms)
        if not isinstance(self.kind, str):
            raise TypeError(f"kind must be a string; got {self.kind!r}.")
        get_front_end(self.kind)
        check_int("n_bands", self.n_bands, minimum=1)
        check_positive("window_ms", self.window_ms)
        f_min = check_positive("f_min", self.f_min, allow_zero=True)
        check_choice("compression", self.compression, COMPRESSIONS)
        low = self.effective_f_min
        if self.f_max is not None:
            f_max = check_positive("f_max", self.f_max)
            if f_max <= low:
                raise ValueError(
                    f"f_max must be above f_min ({low:g} Hz"
                    + (" for kind='logfreq' with f_min=0" if f_min == 0 and low > 0 else "")
                    + f"); got f_max={f_max:g}."
                )
        if self.sample_rate is not None:
            rate = check_positive("sample_rate", self.sample_rate)
            whole_hop = _whole(rate * dt_ms / 1000.0)
            if whole_hop is None or whole_hop < 1:
                nearest, hop = grid_sample_rate(rate, dt_ms)
                raise ValueError(
                    f"sample_rate={rate:g} Hz makes dt_ms={dt_ms:g} ms "
                    f"{rate * dt_ms / 1000.0:g} samples; the hop must be a whole number. "
                    f"Use sample_rate={nearest:g} (hop {hop}) or None to pick it automatically."
                )
            if self.f_max is not None and self.f_max > rate / 2:
                raise ValueError(
                    f"f_max={self.f_max:g} Hz is above the Nyquist frequency {rate / 2:g} Hz "
                    f"of sample_rate={rate:g}; lower f_max or raise sample_rate."
                )
            if low >= rate / 2:
                raise ValueError(
                    f"f_min={low:g} Hz is not below the Nyquist frequency {rate / 2:g} Hz "
                    f"of sample_rate={rate:g}."
                )

    @property
    def effective_f_min(self) -> float:
        """``f_min`` as used: :data:`LOGFREQ_DEFAULT_FMIN_HZ` for logfreq when 0."""
        if self.kind == "logfreq" and self.f_min == 0:
            return LOGFREQ_DEFAULT_FMIN_HZ
        return float(self.f_min)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields; ``SpectrogramParams(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


def _check_params(params: Any) -> SpectrogramParams:
    if not isinstance(params, SpectrogramParams):
        raise TypeError(
            f"params must be a SpectrogramParams; got {type(params).__name__}. Build one "
            "with SpectrogramParams(dt_ms=..., kind=..., ...)."
        )
    params.validate()
    return params


def _check_waveform(waveform: Any) -> np.ndarray:
    y = np.asarray(waveform)
    if y.ndim != 1:
        raise ValueError(
            f"waveform must be 1-D (n_samples,); got shape {y.shape}. Mix multi-channel "
            "sound down first (read_wav(..., mono=True))."
        )
    if y.dtype.kind not in "fiu":
        raise TypeError(f"waveform must hold real numbers; got dtype {y.dtype}.")
    y = y.astype(np.float32, copy=False)
    if not np.isfinite(y).all():
        raise ValueError("waveform holds NaN or inf samples; clean the sound first.")
    return y


def _resample(y: np.ndarray, rate: float, target_rate: float) -> np.ndarray:
    """librosa.resample(..., res_type="soxr_hq"), calling its soxr backend directly."""
    if rate == target_rate or y.size == 0:
        return y
    import soxr

    out = soxr.resample(y, rate, target_rate, quality="soxr_hq")
    n = int(np.ceil(y.size * target_rate / rate))  # librosa's fixed output length
    if out.size < n:
        out = np.pad(out, (0, n - out.size))
    return np.asarray(out[:n], dtype=np.float32)


def _analysis_rate(params: SpectrogramParams, sample_rate: float) -> tuple[float, int]:
    if params.sample_rate is not None:
        # validate() has checked that this is a whole number.
        return params.sample_rate, int(round(params.sample_rate * params.dt_ms / 1000.0))
    return grid_sample_rate(sample_rate, params.dt_ms)


def _band_limits(params: SpectrogramParams, rate: float) -> tuple[float, float]:
    nyquist = rate / 2.0
    f_min = params.effective_f_min
    f_max = nyquist if params.f_max is None else params.f_max
    if f_max > nyquist * (1 + 1e-12):
        raise ValueError(
            f"f_max={f_max:g} Hz is above the Nyquist frequency {nyquist:g} Hz of the "
            f"{rate:g} Hz rate the spectrogram is computed at; lower f_max or set "
            "SpectrogramParams.sample_rate higher."
        )
    if f_min >= f_max:
        raise ValueError(
            f"f_min={f_min:g} Hz must be below f_max={f_max:g} Hz at a {rate:g} Hz rate."
        )
    return f_min, min(f_max, nyquist)


def _window_length(window_ms: float, rate: float, hop: int) -> int:
    win = int(round(window_ms * rate / 1000.0))
    # Centring frame k on bin k's samples needs win and hop of opposite parity.
    if (win - hop + 1) % 2:
        win += 1
    if win < _MIN_WINDOW_SAMPLES:
        raise ValueError(
            f"window_ms={window_ms:g} ms is only {win} samples at {rate:g} Hz; the window "
            f"needs at least {_MIN_WINDOW_SAMPLES}. Raise window_ms."
        )
    return win


def _hz_to_mel(f: Any) -> Any:
    """HTK mel scale (librosa's ``htk=True``)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: Any) -> Any:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def _edges(kind: str, n_bands: int, f_min: float, f_max: float) -> np.ndarray:
    """The n_bands + 2 corner frequencies of the triangles (equally spaced in mel or log)."""
    if kind == "mel":
        return _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_bands + 2))
    return np.geomspace(f_min, f_max, n_bands + 2)


@functools.lru_cache(maxsize=64)
def _filterbank(kind: str, rate: float, n_fft: int, n_bands: int, f_min: float,
                f_max: float) -> np.ndarray:
    """(n_bands, 1 + n_fft // 2) float32 weights; read-only, cached (parent process).

    Triangles peaking at 1 between consecutive corner frequencies, one
    builder for both kinds: for ``"mel"`` the result is exactly
    ``librosa.filters.mel(htk=True, norm=None)`` (the tests compare them
    element for element). It is not computed by calling librosa, whose import
    (scipy.signal, numba; 1-4 s and 110 MB) doubled a cold CRCNS AA1 build,
    and ``"logfreq"``, which librosa lacks, needs the builder anyway.
    """
    fft_freqs = np.linspace(0.0, rate / 2.0, 1 + n_fft // 2)
    edges = _edges(kind, n_bands, f_min, f_max)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_freqs[None, :] - lower) / (centre - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    centres = _band_centres(kind, n_bands, f_min, f_max)
    empty = ~(weights > 0).any(axis=1)
    if empty.any():
        logger.debug("%d of %d %s bands narrower than the FFT resolution (n_fft=%d at %g Hz);"
                     " using the nearest FFT bin", int(empty.sum()), n_bands, kind, n_fft, rate)
        for band in np.flatnonzero(empty):
            weights[band, np.argmin(np.abs(fft_freqs - centres[band]))] = 1.0
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@dataclass(frozen=True)
class _Plan:
    """How one sound is analysed: rate, hop, window, FFT size and band limits."""

    rate: float
    hop: int
    win: int
    n_fft: int
    f_min: float
    f_max: float


def _plan(params: SpectrogramParams, sample_rate: float) -> _Plan:
    rate, hop = _analysis_rate(params, sample_rate)
    f_min, f_max = _band_limits(params, rate)
    win = _window_length(params.window_ms, rate, hop)
    return _Plan(rate=rate, hop=hop, win=win, n_fft=1 << (win - 1).bit_length(), f_min=f_min,
                 f_max=f_max)


@dataclass(frozen=True)
class PreparedFrontEnd:
    """A front end made ready in the parent process, to be pickled to workers.

    ``banks`` maps ``(analysis rate, n_fft)`` to the filter weights of a
    built-in kind; ``entry`` is the registry entry with its functions
    imported. Made by :func:`prepare_front_end`.
    """

    params: SpectrogramParams
    entry: FrontEnd
    banks: Mapping[tuple[float, int], np.ndarray] = field(default_factory=dict)

    def weights(self, plan: _Plan) -> np.ndarray:
        found = self.banks.get((plan.rate, plan.n_fft))
        if found is None:
            # a sound at a rate its source did not declare: correct, only slower here
            logger.info("no %s filter bank prepared for %g Hz / n_fft %d; computing it in "
                        "this process", self.params.kind, plan.rate, plan.n_fft)
            found = _filterbank(self.params.kind, plan.rate, plan.n_fft, self.params.n_bands,
                                plan.f_min, plan.f_max)
        return found

    def __call__(self, waveform: np.ndarray, sample_rate: float) -> np.ndarray:
        return compute_spectrogram(waveform, sample_rate, self.params, prepared=self)


def analysis_rate(params: SpectrogramParams, sample_rate: float) -> float:
    """Rate (Hz) a sound at ``sample_rate`` is analysed at by this front end."""
    return _analysis_rate(params, check_positive("sample_rate", sample_rate))[0]


def prepare_front_end(params: SpectrogramParams,
                      sample_rates: Iterable[float] = ()) -> PreparedFrontEnd:
    """Everything workers need to apply ``params`` to sounds at these rates.

    Parameters
    ----------
    params : SpectrogramParams
        The front end.
    sample_rates : iterable of float
        Native rates of the sounds the workers will analyse: the filter banks
        of the built-in kinds are computed for each, here in the parent.

    Returns
    -------
    PreparedFrontEnd
    """
    params = _check_params(params)
    entry = get_front_end(params.kind).resolved()
    banks: dict[tuple[float, int], np.ndarray] = {}
    if entry.filterbank:
        for sample_rate in sorted({float(r) for r in sample_rates}):
            plan = _plan(params, sample_rate)
            banks.setdefault((plan.rate, plan.n_fft),
                             _filterbank(params.kind, plan.rate, plan.n_fft, params.n_bands,
                                         plan.f_min, plan.f_max))
    return PreparedFrontEnd(params, entry, banks)


def _band_centres(kind: str, n_bands: int, f_min: float, f_max: float) -> np.ndarray:
    return _edges(kind, n_bands, f_min, f_max)[1:-1]


def band_frequencies(params: SpectrogramParams, sample_rate: float) -> np.ndarray:
    """Centre frequency (Hz) of each of the ``n_bands`` bands, low to high.

    Parameters
    ----------
    params : SpectrogramParams
        The front end.
    sample_rate : float
        Rate of the sound it will be applied to (fixes the Nyquist limit
        when ``params.f_max`` and ``params.sample_rate`` are None).

    Returns
    -------
    numpy.ndarray
        float64 ``(n_bands,)``: the peaks of the triangular filters.
    """
    params = _check_params(params)
    sample_rate = check_positive("sample_rate", sample_rate)
    entry = get_front_end(params.kind)
    if not entry.filterbank:
        if entry.band_frequencies is None:
            raise ValueError(f"the {params.kind!r} front end was registered without "
                             "band_frequencies; its band centres are unknown.")
        return np.asarray(_resolve(params.kind, entry.band_frequencies)(params, sample_rate),
                          dtype=np.float64)
    rate, _ = _analysis_rate(params, sample_rate)
    f_min, f_max = _band_limits(params, rate)
    return np.asarray(_band_centres(params.kind, params.n_bands, f_min, f_max), dtype=np.float64)


def _compress(power: np.ndarray, compression: str) -> np.ndarray:
    if compression == "cubic":
        return np.cbrt(power)
    if compression == "log1p":
        return np.log1p(power)
    if compression == "log":
        return np.log(power + np.float32(LOG_FLOOR))
    return power


@functools.lru_cache(maxsize=16)
def _padded_hann(win: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win`` samples centred in ``n_fft`` (librosa's layout)."""
    window = np.zeros(n_fft, dtype=np.float32)
    offset = (n_fft - win) // 2
    window[offset:offset + win] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
    window.setflags(write=False)
    return window


def _power_frames(padded: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """``|STFT|^2`` as ``(1 + n_fft // 2, n_frames)``: librosa.stft(center=False), squared."""
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spectrum = np.fft.rfft(frames * _padded_hann(win, n_fft), axis=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).T


#: Bytes of complex spectrum computed at once by :func:`_banded_power` (a block of frames):
#: a 70 s sound at 44.1 kHz would otherwise hold a 230 MB spectrum, several times its own size.
_FRAME_BLOCK_BYTES = 8 << 20


def _banded_power(padded: np.ndarray, n_fft: int, hop: int, win: int, n_frames: int,
                  weights: np.ndarray) -> np.ndarray:
    """``weights @ _power_frames(...)``, a block of frames at a time (peak memory: one block).

    Each frame's FFT and band sums depend on that frame only, and the block length is a
    constant, so the result does not depend on the sound's length or the machine's memory.
    """
    block = max(1, _FRAME_BLOCK_BYTES // (16 * (n_fft // 2 + 1)))
    if n_frames <= block:
        return weights @ _power_frames(padded, n_fft, hop, win)
    out = np.empty((weights.shape[0], n_frames), dtype=np.result_type(weights, np.float64))
    for start in range(0, n_frames, block):
        stop = min(n_frames, start + block)
        piece = padded[start * hop:(stop - 1) * hop + n_fft]
        out[:, start:stop] = weights @ _power_frames(piece, n_fft, hop, win)
    return out


def compute_spectrogram(waveform: np.ndarray, sample_rate: float,
                        params: SpectrogramParams, *,
                        prepared: PreparedFrontEnd | None = None) -> np.ndarray:
    """Spectrogram of a sound on the response time grid.

    Parameters
    ----------
    waveform : numpy.ndarray
        Mono sound, 1-D ``(n_samples,)``, finite.
    sample_rate : float
        Its rate, Hz, > 0.
    params : SpectrogramParams
        The front end.
    prepared : PreparedFrontEnd, optional
        Made by :func:`prepare_front_end` for ``params`` (how worker processes
        get the filter banks without importing librosa); by default made here.

    Returns
    -------
    numpy.ndarray
        float32 ``(params.n_bands, T)`` with
        ``T = n_bins_for_duration(len(waveform), sample_rate, params.dt_ms)``;
        frame ``k`` is centred on response bin ``k`` (module docstring).
        Never NaN.

    Raises
    ------
    TypeError, ValueError
        If the waveform is not a finite 1-D real array, ``params`` is not a
        :class:`SpectrogramParams`, or the band limits or window do not fit
        the rate (e.g. ``f_max`` above the Nyquist frequency).
    """
    params = _check_params(params)
    y = _check_waveform(waveform)
    sample_rate = check_positive("sample_rate", sample_rate)
    n_frames = n_bins_for_duration(y.size, sample_rate, params.dt_ms)
    if prepared is None:
        prepared = PreparedFrontEnd(params, get_front_end(params.kind).resolved())
    elif prepared.params != params:
        raise ValueError("prepared was made for other parameters than params; call "
                         "prepare_front_end(params, ...) again.")
    if not prepared.entry.filterbank:
        spec = np.asarray(_resolve(params.kind, prepared.entry.compute)(y, sample_rate, params),
                          dtype=np.float32)
        if spec.shape != (params.n_bands, n_frames):
            raise ValueError(f"the {params.kind!r} front end returned shape {spec.shape}; the "
                             f"grid needs ({params.n_bands}, {n_frames}) for this sound.")
        return np.ascontiguousarray(spec)
    plan = _plan(params, sample_rate)
    rate, hop, win, n_fft = plan.rate, plan.hop, plan.win, plan.n_fft
    if n_frames == 0:
        return np.zeros((params.n_bands, 0), dtype=np.float32)
    weights = prepared.weights(plan)
    y = _resample(y, sample_rate, rate)

    # Padded sample j holds sound sample j - lead. A window of win samples sits
    # at offset (n_fft - win) // 2 of each n_fft frame (as librosa pads it), so
    # its centre is at (n_fft - win) // 2 + win / 2; lead puts that point of
    # frame k on sample k*hop + (hop - 1) / 2, the middle of response bin k.
    lead = (n_fft - win) // 2 + (win - hop + 1) // 2
    padded = np.zeros((n_frames - 1) * hop + n_fft, dtype=np.float32)
    src, dst = max(0, -lead), max(0, lead)
    n_copy = min(y.size - src, padded.size - dst)
    if n_copy > 0:
        padded[dst:dst + n_copy] = y[src:src + n_copy]
    spec = _compress(_banded_power(padded, n_fft, hop, win, n_frames, weights),
                     params.compression)
    return np.ascontiguousarray(spec, dtype=np.float32)


def waveform_on_grid(waveform: np.ndarray, sample_rate: float, dt_ms: float,
                     target_rate: float) -> np.ndarray:
    """Resample a sound and fit it to the response grid ("grid lock").

    The result has exactly ``T * hop`` samples, with
    ``T = n_bins_for_duration(len(waveform), sample_rate, dt_ms)`` and
    ``hop = target_rate * dt_ms / 1000``, so sample block ``k`` (of ``hop``
    samples) is response bin ``k``: the tail of the last bin is zero-padded,
    and resampling overshoot is cropped.

    Parameters
    ----------
    waveform : numpy.ndarray
        Mono sound, 1-D, finite.
    sample_rate : float
        Its rate, Hz.
    dt_ms : float
        Response bin width, ms.
    target_rate : float
        Output rate, Hz; ``target_rate * dt_ms / 1000`` must be an integer
        (see :func:`grid_sample_rate`).

    Returns
    -------
    numpy.ndarray
        float32 ``(T * hop,)``.

    Raises
    ------
    ValueError
        If the hop at ``target_rate`` is not a whole number of samples, or
        the waveform is not a finite 1-D array.
    """
    y = _check_waveform(waveform)
    sample_rate = check_positive("sample_rate", sample_rate)
    dt_ms = check_positive("dt_ms", dt_ms)
    target_rate = check_positive("target_rate", target_rate)
    hop = _whole(target_rate * dt_ms / 1000.0)
    if hop is None or hop < 1:
        nearest, nearest_hop = grid_sample_rate(target_rate, dt_ms)
        raise ValueError(
            f"target_rate={target_rate:g} Hz makes dt_ms={dt_ms:g} ms "
            f"{target_rate * dt_ms / 1000.0:g} samples; the hop must be a whole number. "
            f"Use target_rate={nearest:g} (hop {nearest_hop})."
        )
    n_bins = n_bins_for_duration(y.size, sample_rate, dt_ms)
    y = _resample(y, sample_rate, target_rate)
    out = np.zeros(n_bins * hop, dtype=np.float32)
    n_copy = min(out.size, y.size)
    out[:n_copy] = y[:n_copy]
    return out

