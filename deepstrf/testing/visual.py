"""Simulated movies and visual neurons with known spatio-temporal receptive fields.

The visual counterpart of :mod:`deepstrf.testing.simulate`: responses follow
a linear-nonlinear-Poisson model of the movie, so a fitted spatio-temporal
filter can be compared with the true one, and a miniature release written on
disk (:func:`write_visual_release`) runs the real visual build pipeline
(movie sources, spike-train responses, the cache) through
:class:`SimulatedVisualDataset`.

Movies
------
:func:`make_movies` draws grayscale float32 movies ``(H, W, T)`` with values
in ``[0, 1]``, deterministically from a seed (movie ``i`` depends only on
the seed and ``i``):

``"grating"``
    a drifting sinusoidal grating: random orientation, spatial frequency
    0.05-0.25 cycles/pixel, temporal frequency 1-8 Hz, contrast 0.3-0.5;
``"blobs"``
    3-6 Gaussian blobs (bright or dark, 1.5-4 px wide) moving on straight
    paths that bounce off the borders;
``"noise"``
    spatio-temporal 1/f noise: white noise filtered so its amplitude
    spectrum falls as ``1 / f_space^alpha`` and ``1 / f_time^alpha`` (alpha
    1: the statistics of natural movies), scaled to standard deviation 0.15
    about 0.5.

Neurons
-------
:func:`make_visual_neurons` draws a :class:`VisualPopulation`: per neuron a
separable receptive field ``(H, W, L)``, a Gabor patch in space (random
position, orientation, spatial frequency, phase, size) times a biphasic
temporal kernel over ``L`` lags of ``dt_ms`` (an excitatory lobe at a 1-3
bin latency followed by a weaker opposite one), scaled to unit norm; and a
softplus output nonlinearity with a gain that sets how strongly the movie
drives it (the first ``n_weak`` neurons barely follow it, so selections by
SNR have something to reject). The model, for a movie ``M`` ``(H, W, T)``:

1. ``z = (M - mean) / std``, the statistics of the movie set the population
   was calibrated on;
2. drive ``g(t) = sum_{y, x, l} rf[y, x, l] z[y, x, t - l]`` (zero before onset),
   divided by its standard deviation over the calibration set;
3. rate in spikes per bin ``r(t) = base * softplus(gain * g(t) + bias) /
   softplus(bias)`` (``base`` the spontaneous count per bin);
4. counts per repeat Poisson(``r(t)``); spike times uniform within their bin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive
from deepstrf.datasets._source import DatasetInfo
from deepstrf.datasets.video._build import (
    MovieRecording,
    VideoSourceDataset,
    make_video_front_end,
)

__all__ = ["MOVIE_KINDS", "SimulatedVisualDataset", "VisualPopulation", "VisualRelease",
           "make_movies", "make_visual_neurons", "write_visual_release"]

#: The kinds of movie :func:`make_movies` draws.
MOVIE_KINDS = ("grating", "blobs", "noise")
#: The formats :func:`write_visual_release` stores movies in, in turn.
MOVIE_FORMATS = ("npy", "h5", "png", "mat", "mp4")


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(s) for s in salt]])


def _grating(rng: np.random.Generator, H: int, W: int, T: int, dt_ms: float) -> np.ndarray:
    theta = rng.uniform(0, np.pi)
    sf = rng.uniform(0.05, 0.25)
    tf = rng.uniform(1.0, 8.0) * rng.choice([-1, 1])
    contrast = rng.uniform(0.3, 0.5)
    y, x = np.mgrid[0:H, 0:W]
    u = np.cos(theta) * x + np.sin(theta) * y
    t = np.arange(T) * dt_ms / 1000.0
    phase = 2 * np.pi * (sf * u[..., None] - tf * t[None, None, :]) + rng.uniform(0, 2 * np.pi)
    return 0.5 + contrast * np.sin(phase)


def _blobs(rng: np.random.Generator, H: int, W: int, T: int, dt_ms: float) -> np.ndarray:
    movie = np.full((H, W, T), 0.5)
    y, x = np.mgrid[0:H, 0:W]
    for _ in range(int(rng.integers(3, 7))):
        pos = np.array([rng.uniform(0, H), rng.uniform(0, W)])
        speed = rng.uniform(20, 80) * dt_ms / 1000.0          # px per bin
        angle = rng.uniform(0, 2 * np.pi)
        vel = speed * np.array([np.sin(angle), np.cos(angle)])
        width = rng.uniform(1.5, 4.0)
        amp = rng.uniform(0.2, 0.4) * rng.choice([-1, 1])
        for t in range(T):
            movie[..., t] += amp * np.exp(-((y - pos[0]) ** 2 + (x - pos[1]) ** 2)
                                          / (2 * width ** 2))
            pos = pos + vel
            for d, size in enumerate((H, W)):
                if not 0 <= pos[d] < size:
                    vel[d] = -vel[d]
                    pos[d] = min(max(pos[d], 0), size - 1e-6)
    return movie


def _pink(rng: np.random.Generator, H: int, W: int, T: int, alpha: float,
          alpha_time: float) -> np.ndarray:
    noise = rng.standard_normal((H, W, T))
    spec = np.fft.rfftn(noise)
    fy = np.fft.fftfreq(H)[:, None, None]
    fx = np.fft.fftfreq(W)[None, :, None]
    ft = np.fft.rfftfreq(T)[None, None, :]
    f_space = np.sqrt(fy ** 2 + fx ** 2)
    f_space[0, 0] = 1.0 / max(H, W)
    f_time = np.maximum(np.abs(ft), 1.0 / T)
    movie = np.fft.irfftn(spec / (f_space ** alpha * f_time ** alpha_time), s=(H, W, T),
                          axes=(0, 1, 2))
    movie = (movie - movie.mean()) / (movie.std() + 1e-12)
    return 0.5 + 0.15 * movie


def make_movies(kinds: str | Sequence[str], n_frames: Sequence[int] | int, H: int = 16,
                W: int = 16, *, dt_ms: float = 10.0, n_movies: int | None = None,
                alpha: float = 1.0, alpha_time: float | None = None,
                seed: int = 0) -> list[np.ndarray]:
    """Simulated grayscale movies, float32 ``(H, W, T)`` in ``[0, 1]`` (see the module docstring).

    Parameters
    ----------
    kinds : str or sequence of str
        One of ``'grating'``, ``'blobs'``, ``'noise'`` for all movies, or one
        per movie (cycled when shorter than ``n_movies``).
    n_frames : int or sequence of int
        Frames per movie (an int for all).
    H, W : int
        Frame size.
    dt_ms : float
        Frame duration (sets the speeds and temporal frequencies).
    n_movies : int, optional
        Default: ``len(n_frames)``, or ``len(kinds)``.
    alpha : float
        Spatial exponent of the 1/f noise (amplitude ``1 / f^alpha``; 1 for
        natural images).
    alpha_time : float, optional
        Its temporal exponent (default: ``alpha``).
    seed : int
    """
    H, W = check_int("H", H, minimum=2), check_int("W", W, minimum=2)
    dt_ms = check_positive("dt_ms", dt_ms)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for k in kinds:
        check_choice("kind", k, MOVIE_KINDS)
    if n_movies is None:
        n_movies = len(n_frames) if not isinstance(n_frames, int) else len(kinds)
    frames = [n_frames] * n_movies if isinstance(n_frames, int) else list(n_frames)
    if len(frames) != n_movies:
        raise ValueError(f"n_frames has {len(frames)} entries for {n_movies} movies.")
    out = []
    for i in range(n_movies):
        kind = kinds[i % len(kinds)]
        rng = _rng(seed, i)
        T = check_int("n_frames", frames[i], minimum=1)
        if kind == "grating":
            movie = _grating(rng, H, W, T, dt_ms)
        elif kind == "blobs":
            movie = _blobs(rng, H, W, T, dt_ms)
        else:
            movie = _pink(rng, H, W, T, alpha, alpha if alpha_time is None else alpha_time)
        out.append(np.clip(movie, 0.0, 1.0).astype(np.float32))
    return out


@dataclass
class VisualPopulation:
    """Simulated visual neurons: receptive fields, nonlinearity, calibration.

    Attributes
    ----------
    rfs : numpy.ndarray
        ``(N, H, W, L)`` receptive fields (unit norm), lag ``l`` weighting
        the frame ``l`` bins back.
    gain, bias, base : numpy.ndarray
        ``(N,)`` output nonlinearity parameters (``base``: spikes per bin at
        zero drive).
    center : numpy.ndarray
        ``(N, 2)`` receptive-field centres ``(y, x)`` in pixels.
    mean, std : float
        Pixel statistics of the calibration movies (set by :meth:`calibrate`).
    drive_std : numpy.ndarray
        ``(N,)`` standard deviation of each neuron's drive on them.
    """

    rfs: np.ndarray
    gain: np.ndarray
    bias: np.ndarray
    base: np.ndarray
    center: np.ndarray
    mean: float = 0.5
    std: float = 0.15
    drive_std: np.ndarray | None = None

    @property
    def n_neurons(self) -> int:
        return int(self.rfs.shape[0])

    @property
    def n_lags(self) -> int:
        return int(self.rfs.shape[-1])

    def drive(self, movie: np.ndarray) -> np.ndarray:
        """``(N, T)`` linear drive of a ``(H, W, T)`` movie (unscaled)."""
        H, W, T = movie.shape
        if (H, W) != self.rfs.shape[1:3]:
            raise ValueError(f"the movie is {H}x{W} but the receptive fields are "
                             f"{self.rfs.shape[1]}x{self.rfs.shape[2]}.")
        z = ((movie - self.mean) / self.std).reshape(H * W, T)
        out = np.zeros((self.n_neurons, T))
        flat = self.rfs.reshape(self.n_neurons, H * W, self.n_lags)
        for lag in range(self.n_lags):
            proj = flat[:, :, lag] @ z                   # (N, T)
            out[:, lag:] += proj[:, :T - lag]
        return out

    def calibrate(self, movies: Sequence[np.ndarray]) -> VisualPopulation:
        """Set the pixel statistics and drive scale from ``movies``; returns self."""
        pixels = np.concatenate([m.reshape(-1) for m in movies])
        self.mean, self.std = float(pixels.mean()), float(pixels.std() + 1e-12)
        drives = np.concatenate([self.drive(m) for m in movies], axis=1)
        self.drive_std = drives.std(axis=1) + 1e-12
        return self

    def rates(self, movie: np.ndarray) -> np.ndarray:
        """``(N, T)`` expected spikes per bin."""
        if self.drive_std is None:
            raise RuntimeError("calibrate the population on the movie set first.")
        g = self.drive(movie) / self.drive_std[:, None]
        x = self.gain[:, None] * g + self.bias[:, None]
        soft = np.logaddexp(0.0, x)
        return self.base[:, None] * soft / np.logaddexp(0.0, self.bias)[:, None]

    def spike_counts(self, movie: np.ndarray, n_repeats: int, rng: np.random.Generator
                     ) -> np.ndarray:
        """``(N, R, T)`` Poisson counts."""
        lam = self.rates(movie)
        return rng.poisson(np.broadcast_to(lam[:, None, :], (lam.shape[0], n_repeats,
                                                             lam.shape[1])))


def make_visual_neurons(n_neurons: int, H: int = 16, W: int = 16, n_lags: int = 5, *,
                        n_weak: int = 0, base_rate_hz: float = 10.0, dt_ms: float = 10.0,
                        seed: int = 0) -> VisualPopulation:
    """Draw a :class:`VisualPopulation` (see the module docstring).

    It is not calibrated yet: call :meth:`VisualPopulation.calibrate` on the
    movies it will see. ``n_weak``: the first neurons get a gain of 0.05-0.15
    (barely driven); the others 1.5-2.5. ``base_rate_hz``: the rate at zero drive.
    """
    N = check_int("n_neurons", n_neurons, minimum=1)
    L = check_int("n_lags", n_lags, minimum=2)
    rng = _rng(seed, 10_000)
    y, x = np.mgrid[0:H, 0:W]
    rfs = np.zeros((N, H, W, L))
    centers = np.zeros((N, 2))
    lags = np.arange(L)
    for n in range(N):
        cy, cx = rng.uniform(0.3 * H, 0.7 * H), rng.uniform(0.3 * W, 0.7 * W)
        sigma = rng.uniform(1.5, 0.18 * min(H, W) + 1.5)
        theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        sf = rng.uniform(0.08, 0.2)
        u = np.cos(theta) * (x - cx) + np.sin(theta) * (y - cy)
        space = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2)) \
            * np.cos(2 * np.pi * sf * u + phase)
        latency = rng.uniform(1.0, min(3.0, L - 1.5))
        width = rng.uniform(0.6, 1.0)
        time = np.exp(-(lags - latency) ** 2 / (2 * width ** 2)) \
            - 0.5 * np.exp(-(lags - latency - 1.8 * width) ** 2 / (2 * (1.5 * width) ** 2))
        rf = space[..., None] * time[None, None, :]
        rfs[n] = rf / np.linalg.norm(rf)
        centers[n] = (cy, cx)
    gain = rng.uniform(1.5, 2.5, N)
    gain[:n_weak] = rng.uniform(0.05, 0.15, min(n_weak, N))
    bias = rng.uniform(-1.0, 0.0, N)
    base = np.full(N, base_rate_hz * dt_ms / 1000.0)
    return VisualPopulation(rfs=rfs, gain=gain, bias=bias, base=base, center=centers)


# ---------------------------------------------------------------------- the release on disk
@dataclass
class VisualRelease:
    """What :func:`write_visual_release` wrote: the files and the ground truth."""

    root: Path
    movies: list[np.ndarray]                 #: the float movies (H, W, T) before 8-bit storage
    stored: list[np.ndarray]                 #: the movies as stored, float32 in [0, 1]
    names: list[str]
    formats: list[str]
    population: VisualPopulation
    #: counts[(stim, neuron)] = (R, T) spike counts as written
    counts: dict[tuple[int, int], np.ndarray]
    dt_ms: float
    cells: list[dict[str, Any]]


def _write_png_folder(folder: Path, frames: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames.shape[-1]):
        Image.fromarray(frames[..., t]).save(folder / f"frame{t}.png")


def _write_mp4(path: Path, frames: np.ndarray, rate: float) -> bool:
    """Losslessly encoded (ffv1 in .mkv-compatible container) when PyAV is present."""
    try:
        import av
    except ImportError:
        return False
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=Fraction(rate).limit_denominator(1000))
        stream.width, stream.height = frames.shape[1], frames.shape[0]
        stream.pix_fmt = "gray"
        for t in range(frames.shape[-1]):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[..., t]),
                                               format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return True


def write_visual_release(root: Any, *, n_neurons: int = 8, n_movies: int = 6,
                         n_frames: int | Sequence[int] = 60, H: int = 16, W: int = 16,
                         n_lags: int = 5, n_repeats: int = 5, dt_ms: float = 10.0,
                         kinds: Sequence[str] = MOVIE_KINDS,
                         formats: Sequence[str] = ("npy", "h5", "png", "mat"),
                         n_weak: int = 0, base_rate_hz: float = 20.0, alpha: float = 1.0,
                         alpha_time: float | None = None, ragged: bool = True,
                         seed: int = 0) -> VisualRelease:
    """Write a miniature simulated visual release and return its ground truth.

    Layout (a made-up but complete format)::

        root/stimuli.json        [{"name", "kind", "file", "format", "frame_rate_hz",
                                   "n_frames", "layout", "key"}, ...]
        root/movies/<name>.npy   uint8 (T, H, W)          format 'npy'
        root/movies/<name>.h5    uint8 'frames' (H, W, T) format 'h5'
        root/movies/<name>/frameK.png                      format 'png'
        root/movies/<name>.mat   uint8 'movie' (H, W, T)  format 'mat' (MATLAB v5)
        root/movies/<name>.mkv   lossless ffv1, gray      format 'mp4' (needs PyAV)
        root/units/<cell>.json   {"cell_id", "area", "trials": {name: [[t_ms, ...], ...]}}

    Movies are stored as 8-bit frames at ``dt_ms`` per frame; the neurons
    respond to the stored (quantised) movies. With ``ragged=True`` every
    third neuron did not see the last movie, so the loader's sentinels are
    exercised. ``alpha`` and ``alpha_time`` shape the 1/f noise movies (see
    :func:`make_movies`), ``base_rate_hz`` the neurons' spontaneous rate.
    """
    import h5py

    from deepstrf.testing.matfiles import write_mat

    root = Path(root)
    frames_list = [n_frames] * n_movies if isinstance(n_frames, int) else list(n_frames)
    kinds_all = [kinds[i % len(kinds)] for i in range(n_movies)]
    movies = make_movies(kinds_all, frames_list, H, W, dt_ms=dt_ms, n_movies=n_movies,
                         alpha=alpha, alpha_time=alpha_time, seed=seed)
    stored8 = [np.round(m * 255).astype(np.uint8) for m in movies]
    stored = [m.astype(np.float32) / np.float32(255) for m in stored8]
    pop = make_visual_neurons(n_neurons, H, W, n_lags, n_weak=n_weak, dt_ms=dt_ms,
                              base_rate_hz=base_rate_hz, seed=seed).calibrate(stored)
    names = [f"movie{i:03d}" for i in range(n_movies)]
    (root / "movies").mkdir(parents=True, exist_ok=True)
    entries, used_formats = [], []
    rate = 1000.0 / dt_ms
    for i, (name, m8) in enumerate(zip(names, stored8)):
        fmt = formats[i % len(formats)]
        entry: dict[str, Any] = {"name": name, "kind": kinds_all[i], "format": fmt,
                                 "frame_rate_hz": rate, "n_frames": int(m8.shape[-1])}
        if fmt == "npy":
            np.save(root / "movies" / f"{name}.npy", np.ascontiguousarray(np.moveaxis(m8, -1, 0)))
            entry.update(file=f"movies/{name}.npy", layout="THW")
        elif fmt == "h5":
            with h5py.File(root / "movies" / f"{name}.h5", "w") as f:
                f.create_dataset("frames", data=m8)
            entry.update(file=f"movies/{name}.h5", layout="HWT", key="frames")
        elif fmt == "png":
            _write_png_folder(root / "movies" / name, m8)
            entry.update(file=f"movies/{name}")
        elif fmt == "mat":
            write_mat(root / "movies" / f"{name}.mat", {"movie": m8})
            entry.update(file=f"movies/{name}.mat", layout="HWT", key="movie")
        elif fmt == "mp4":
            if not _write_mp4(root / "movies" / f"{name}.mkv", m8, rate):
                raise ImportError("format 'mp4' needs PyAV: pip install 'deepstrf-datasets[video]'.")
            entry.update(file=f"movies/{name}.mkv")
        else:
            raise ValueError(f"unknown movie format {fmt!r}; choose among {MOVIE_FORMATS}.")
        entries.append(entry)
        used_formats.append(fmt)
    (root / "stimuli.json").write_text(json.dumps(entries, indent=1))
    rng = _rng(seed, 20_000)
    counts: dict[tuple[int, int], np.ndarray] = {}
    cells = []
    (root / "units").mkdir(exist_ok=True)
    per_stim = [pop.spike_counts(m, n_repeats, rng) for m in stored]   # (N, R, T) each
    for n in range(n_neurons):
        seen = range(n_movies - 1) if ragged and n % 3 == 2 and n_movies > 1 else range(n_movies)
        trials = {}
        for s in seen:
            c = per_stim[s][n]
            counts[(s, n)] = c
            reps = []
            for r in range(n_repeats):
                bins = np.repeat(np.arange(c.shape[1]), c[r])
                times = (bins + rng.uniform(0.0, 1.0, len(bins))) * dt_ms
                reps.append(np.round(np.sort(times), 3).tolist())
            trials[names[s]] = reps
        cell = {"cell_id": f"cell{n:03d}", "area": ("V1", "LM")[n % 2]}
        cells.append(cell)
        (root / "units" / f"{cell['cell_id']}.json").write_text(
            json.dumps({**cell, "trials": trials}))
    return VisualRelease(root=root, movies=movies, stored=stored, names=names,
                         formats=used_formats, population=pop, counts=counts, dt_ms=dt_ms,
                         cells=cells)


# ---------------------------------------------------------------------- its loader


class SimulatedVisualDataset(VideoSourceDataset):
    """The release :func:`write_visual_release` writes, through the real visual pipeline.

    Parameters
    ----------
    path : path-like
        The release folder (read in place).
    dt_ms : float, default 10
        Response bin width; a whole multiple of the movies' frame duration.
    frames_per_bin : int, default 1
    channels : {'keep', 'gray', 'rgb'}
    size : (H, W), optional
        Resize the frames.
    smooth : bool or float, default False
    areas : sequence of str, optional
    n_jobs, cache, progress
        As for every dataset.
    """

    info = DatasetInfo(
        name="simulated-visual", title="Simulated visual neurons (deepstrf.testing)",
        species="simulated", area="V1, LM", signal="simulated spike times",
        n_neurons=None, n_stims=None, repeats="any", download_size="0",
        access="local", citation="deepstrf.testing.visual", doi="", url="")
    folder = "SimulatedVisual"
    raw_markers = ("stimuli.json", "movies", "units")
    cache_version = 1

    def __init__(self, path: Any, dt_ms: float = 10.0, frames_per_bin: int = 1,
                 channels: str = "keep", size: Any = None, smooth: Any = False,
                 areas: Sequence[str] | None = None, *, n_jobs: int | None = 1,
                 cache: str = "use", progress: bool | None = None):
        front = make_video_front_end(dt_ms=dt_ms, frames_per_bin=frames_per_bin,
                                     channels=channels, size=size, smooth=smooth)
        params = {"areas": None if areas is None else sorted(str(a) for a in areas)}
        self._init_source(path, params, front, download=False, n_jobs=n_jobs,
                          cache=cache, progress=progress)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> MovieRecording:
        from deepstrf.datasets._responses import SpikeTrains
        from deepstrf.datasets.video._stimuli import (
            ImageSequenceStim,
            MovieArrayStim,
            MovieFileStim,
        )
        from deepstrf.errors import RawDataError

        try:
            entries = json.loads((raw_dir / "stimuli.json").read_text())
        except (OSError, ValueError) as err:
            raise RawDataError(f"{raw_dir / 'stimuli.json'}: not a stimulus list "
                               f"({err}).") from err
        stims, index = [], {}
        for e in entries:
            meta = {"name": e["name"], "kind": e["kind"], "format": e["format"]}
            file = raw_dir / e["file"]
            rate = float(e["frame_rate_hz"])
            if e["format"] == "png":
                source: Any = ImageSequenceStim(file, rate, meta, pattern="frame*.png")
            elif e["format"] == "mp4":
                source = MovieFileStim(file, meta, expected_rate_hz=rate)
            else:
                source = MovieArrayStim(rate, meta, path=file, key=e.get("key"),
                                        layout=e["layout"])
            index[e["name"]] = len(stims)
            stims.append(source)
        neurons, trials = [], {}
        for unit_file in sorted((raw_dir / "units").glob("*.json")):
            unit = json.loads(unit_file.read_text())
            if params["areas"] is not None and unit["area"] not in params["areas"]:
                continue
            n = len(neurons)
            neurons.append({"cell_id": unit["cell_id"], "area": unit["area"]})
            for name, reps in unit["trials"].items():
                if name not in index:
                    raise RawDataError(f"{unit_file}: names the movie {name!r}, which "
                                       "stimuli.json does not list.")
                trials[(index[name], n)] = SpikeTrains.from_trials(reps)
        return MovieRecording(stims=stims, neurons=neurons, trials=trials)
