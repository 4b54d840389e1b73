"""``VideoNeuralDataset``: neural responses to movies, stims ``(C, H, W, T_s)``.

The movie contract (on top of :class:`~deepstrf.datasets.neural_dataset.NeuralDataset`'s):

* ``stims[s]`` is a float32 ``(C, H, W, T_frames)`` tensor: ``C`` colour
  channels (1 grayscale, 3 RGB), frames of ``H x W`` pixels, never NaN;
  every stimulus has the same ``C``, ``H`` and ``W``;
* ``frame_rate_hz`` is the movie's frame rate. The frames are locked to the
  response grid: ``frames_per_bin = frame_rate_hz * dt_ms / 1000`` is a
  positive integer (1 by default: one frame per response bin), and every
  stimulus with responses has ``T_frames == T_bins * frames_per_bin``, so
  frame ``j`` falls in response bin ``j // frames_per_bin``;
* ``validate()`` names the stimulus at fault (wrong rank, a channel count
  other than 1 or 3, a frame size that differs, a frame count off the lock).

The movie operations of the published deepSTRF are methods here, applied in
place to the ragged storage one stimulus (one packed block) at a time, never
to a dense ``(S, C, H, W, T)`` tensor; missing pairs stay missing, NaN stays
NaN, and each call is recorded in :attr:`~NeuralDataset.provenance`. The
same operations on plain tensors are in :mod:`deepstrf.preprocessing.video`.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deepstrf.datasets.neural_dataset import NeuralDataset
from deepstrf.errors import DataQuirkWarning

__all__ = ["VideoNeuralDataset"]

_TENSOR_STYLE = ("{cls}.{method} works on the dataset's own {what} in place (the ragged "
                 "storage), so it takes no tensor; deepSTRF's form that takes a dense tensor "
                 "is deepstrf.preprocessing.video.{function}(tensor, ...).")


def _refuse_tensor(ds: Any, method: str, value: Any, what: str, function: str) -> None:
    # dense data (a movie batch, an (N, S, R, T) response tensor), not an index tensor
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim >= 3:
        raise TypeError(_TENSOR_STYLE.format(cls=type(ds).__name__, method=method, what=what,
                                             function=function))


def _in_place(what: str, function: str):
    """Refuse deepSTRF's calling style (a dense tensor among the arguments) with a pointer."""

    def wrap(method):
        @functools.wraps(method)
        def inner(self, *args, **kwargs):
            for value in (*args, *kwargs.values()):
                _refuse_tensor(self, method.__name__, value, what, function)
            return method(self, *args, **kwargs)

        return inner

    return wrap


class VideoNeuralDataset(NeuralDataset):
    """Base class of datasets whose stimuli are movies.

    Build one from tensors with :meth:`from_data` (``C``, ``H``, ``W`` are
    read from the first stim; ``frame_rate_hz`` defaults to one frame per
    bin), or subclass it and fill the contract's lists, as for audio.

    Attributes
    ----------
    C : int
        Colour channels (1 or 3).
    H, W : int
        Frame height and width in pixels.
    frame_rate_hz : float
        Frames per second of the stims; ``frame_rate_hz * dt_ms / 1000``
        frames per response bin (an integer).
    video_normalization : dict or None
        Record of :meth:`normalize_videos` (undone by :meth:`denormalize_videos`).
    """

    def _init_attributes(self) -> None:
        super()._init_attributes()
        self.C = -1
        self.H = -1
        self.W = -1
        self.frame_rate_hz: float | None = None
        self.video_normalization: dict[str, Any] | None = None

    def _infer_attributes(self) -> None:
        super()._infer_attributes()
        first = self.stims[0] if self.stims else None
        if isinstance(first, torch.Tensor) and first.dim() == 4:
            if self.C == -1:
                self.C = int(first.shape[0])
            if self.H == -1 and self.W == -1:
                self.H, self.W = int(first.shape[1]), int(first.shape[2])
        if self.frame_rate_hz is None:
            self.frame_rate_hz = 1000.0 / self.dt

    @classmethod
    def from_data(cls, stims: Sequence[Any], responses: Any, *, dt_ms: float,
                  stim_meta: Sequence[Any] | None = None, nrn_meta: Sequence[Any] | None = None,
                  path: Any = None, frames_per_bin: int | None = None,
                  channels: str = "keep", size: Any = None,
                  **attributes: Any) -> VideoNeuralDataset:
        """Build a validated movie dataset from tensors, arrays or movie sources.

        Parameters
        ----------
        stims : sequence
            One per stimulus: a float32 tensor ``(C, H, W, T)``, a numpy array
            of that layout, or a movie source
            (:class:`~deepstrf.datasets.video._stimuli.MovieFileStim`,
            :class:`~deepstrf.datasets.video._stimuli.ImageSequenceStim`,
            :class:`~deepstrf.datasets.video._stimuli.MovieArrayStim`), which
            is rendered here onto the grid: its native frames pooled to
            ``frames_per_bin`` per bin, converted to ``channels``, resized to
            ``size``, and cut to the responses' bins (the first recorded
            neuron's) or to the whole bins it covers.
        responses, dt_ms, stim_meta, nrn_meta, path
            As for :meth:`NeuralDataset.from_data`.
        frames_per_bin : int, optional
            Sets ``frame_rate_hz = frames_per_bin * 1000 / dt_ms`` (default 1,
            or ``frame_rate_hz=`` given directly).
        channels : {'keep', 'gray', 'rgb'}
            Colour of the rendered sources (BT.601 luma for ``'gray'``).
        size : (int, int), optional
            Frame size the sources are resized to.
        **attributes
            ``C``, ``H``, ``W``, ``frame_rate_hz`` (read from the first stim
            when left out).
        """
        from deepstrf.datasets._storage import ResponseStore, is_sentinel
        from deepstrf.datasets.video._build import make_video_front_end

        if frames_per_bin is not None:
            if "frame_rate_hz" in attributes:
                raise TypeError("give frames_per_bin or frame_rate_hz, not both.")
            attributes["frame_rate_hz"] = int(frames_per_bin) * 1000.0 / float(dt_ms)
        stims = list(stims)
        metas = [dict(m) for m in stim_meta] if stim_meta is not None else [{} for _ in stims]
        if any(hasattr(x, "render") for x in stims):
            rate = attributes.get("frame_rate_hz", 1000.0 / float(dt_ms))
            fpb = max(1, int(round(float(rate) * float(dt_ms) / 1000.0)))
            front = make_video_front_end(dt_ms=dt_ms, frames_per_bin=fpb, channels=channels,
                                         size=size)
            for s, x in enumerate(stims):
                if not hasattr(x, "render"):
                    continue
                T = None
                if isinstance(responses, ResponseStore):
                    if len(responses.block(s)[0]):
                        T = responses.T(s)
                else:
                    real = [r for r in responses[s] if isinstance(r, torch.Tensor)
                            and not is_sentinel(r)]
                    T = int(real[0].shape[-1]) if real else None
                movie, facts = x.render(front, T)
                stims[s] = torch.from_numpy(movie)
                if s < len(metas):
                    metas[s] = {**dict(getattr(x, "meta", {})), **metas[s]}
                    for key, value in facts.items():
                        metas[s].setdefault(key, value)
        stims = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
                 if isinstance(x, np.ndarray) else x for x in stims]
        return super().from_data(stims, responses, dt_ms=dt_ms, stim_meta=metas,
                                 nrn_meta=nrn_meta, path=path, **attributes)  # type: ignore

    # ------------------------------------------------------------------ contract
    def _check_contract(self, *, stim_values: bool = True) -> None:
        # a subclass that filled the lists without C, H, W or frame_rate_hz gets them from
        # its first movie (and one frame per bin), as from_data does
        self._infer_attributes()
        super()._check_contract(stim_values=stim_values)

    @property
    def frames_per_bin(self) -> int:
        """Movie frames per response bin (``frame_rate_hz * dt_ms / 1000``, an integer)."""
        rate = self.frame_rate_hz if self.frame_rate_hz is not None else 1000.0 / self.dt
        return max(1, int(round(rate * self.dt / 1000.0)))

    def get_dt(self) -> float:
        """The response bin width in ms (deepSTRF's accessor)."""
        return self.dt

    def _stim_band_axis(self, stim: torch.Tensor) -> int | None:
        # standardize_stims(per_band=True): one mean and std per colour channel
        return 0

    def _validate_stim(self, s: int, stim: torch.Tensor) -> None:
        name = type(self).__name__
        if stim.dim() != 4 or stim.shape[-1] == 0:
            raise ValueError(f"{name}.stims[{s}] must be a movie (C, H, W, T) with at least one "
                             f"frame; got shape {tuple(stim.shape)}. A grayscale (H, W, T) "
                             "array is stim[None].")
        if stim.dtype != torch.float32:
            raise TypeError(f"{name}.stims[{s}] must be float32; got {stim.dtype}. Convert it "
                            "with .float() (8-bit frames: .float() / 255).")
        C, H, W = (int(v) for v in stim.shape[:3])
        if C not in (1, 3):
            raise ValueError(f"{name}.stims[{s}] has {C} channels on axis 0; a movie has 1 "
                             f"(grayscale) or 3 (RGB). Shape {tuple(stim.shape)}: is the "
                             "channel axis first and time last?")
        if C != self.C:
            raise ValueError(f"{name}.stims[{s}] has C={C} channels but the dataset's C is "
                             f"{self.C}; every movie needs the same channels (convert with "
                             "from_rgb_to_grayscale).")
        if (H, W) != (self.H, self.W):
            raise ValueError(f"{name}.stims[{s}] frames are {H}x{W} pixels but the dataset's "
                             f"H x W is {self.H}x{self.W}; every movie needs the same frame "
                             "size (resize with change_spatial_resolution).")

    def _expected_response_T(self, s: int) -> int | None:
        return None  # the frame/bin lock is checked in _validate_modality, with its own message

    def _response_length_hint(self, s: int) -> int:
        stim = self.stims[s]
        if isinstance(stim, torch.Tensor) and stim.dim():
            return int(stim.shape[-1]) // self.frames_per_bin
        return 0

    def _validate_modality(self) -> None:
        name = type(self).__name__
        for attr in ("C", "H", "W"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"{name}.{attr} must be a positive int; got {value!r}.")
        rate = self.frame_rate_hz
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not rate > 0 \
                or not math.isfinite(rate):
            raise ValueError(f"{name}.frame_rate_hz must be a positive frame rate; got {rate!r}.")
        ratio = rate * self.dt / 1000.0
        k = round(ratio)
        if k < 1 or not math.isclose(ratio, k, rel_tol=0, abs_tol=1e-6):
            raise ValueError(f"{name}: the frames must lock to the response bins, but "
                             f"frame_rate_hz * dt_ms / 1000 = {rate:g} * {self.dt:g} / 1000 = "
                             f"{ratio:g} frames per bin is not a whole number >= 1. Choose "
                             f"dt_ms as a multiple of the {1000.0 / rate:g} ms frame, or "
                             "resample the movie (change_video_temporal_resolution).")
        store = self._require_store()
        for s, stim in enumerate(self.stims):
            neurons, _, rows = store.block(s)
            if len(neurons) == 0:
                continue
            T_bins, T_frames = int(rows.shape[1]), int(stim.shape[-1])
            if T_frames != T_bins * k:
                per = "one frame per bin" if k == 1 else f"{k} frames per bin"
                raise ValueError(f"{name}: movie stims[{s}] has {T_frames} frames but its "
                                 f"responses (e.g. neuron {int(neurons[0])}) have {T_bins} bins "
                                 f"of {self.dt:g} ms; at {per} the lock needs {T_bins * k} "
                                 f"frames ({T_frames - T_bins * k:+d} off). Crop or pad the "
                                 "movie or the responses so they cover the same time.")

    # ------------------------------------------------------------------ concatenation
    def _concat_check_compat(self, other: NeuralDataset) -> None:
        super()._concat_check_compat(other)
        if not isinstance(other, VideoNeuralDataset):
            raise TypeError(f"cannot concatenate {type(self).__name__} (movies) with "
                            f"{type(other).__name__}, which is not a VideoNeuralDataset.")
        if (self.H, self.W) != (other.H, other.W):
            raise ValueError(f"cannot concatenate movies of different frame sizes: "
                             f"{type(self).__name__} has {self.H}x{self.W}, "
                             f"{type(other).__name__} has {other.H}x{other.W}. Resize one with "
                             "change_spatial_resolution first.")
        if self.C != other.C:
            raise ValueError(f"cannot concatenate movies with {self.C} and {other.C} channels; "
                             "convert the RGB one with from_rgb_to_grayscale first.")
        if self.frames_per_bin != other.frames_per_bin:
            raise ValueError(f"cannot concatenate movies at {self.frames_per_bin} and "
                             f"{other.frames_per_bin} frames per bin; bring one to the other's "
                             "frame rate with change_video_temporal_resolution first.")

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        super()._concat_copy_attrs(source)
        for attr in ("C", "H", "W", "frame_rate_hz"):
            setattr(self, attr, getattr(source, attr))

    # ------------------------------------------------------------------ helpers
    def _stims_as_movies(self) -> None:
        if not self.stims:
            raise RuntimeError(f"{type(self).__name__} has no stims yet.")

    def _rebuild(self, stims: list[torch.Tensor], blocks: list[tuple], *,
                 stim_meta: list | None = None, **attributes: Any) -> None:
        """Swap in new stims and response blocks (shapes changed), then validate."""
        from deepstrf.datasets._storage import ResponseStore

        store = ResponseStore.from_blocks(self.N_neurons, blocks)
        self.stims = stims
        if stim_meta is not None:
            self.stim_meta = stim_meta
        for key, value in attributes.items():
            setattr(self, key, value)
        self._set_store(store)
        self.validate()

    def _blocks(self) -> list[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
        store = self._require_store()
        return [store.block(s) for s in range(store.n_stims)]

    # ------------------------------------------------------------------ movie methods
    @_in_place("movies", "rgb_to_grayscale")
    def from_rgb_to_grayscale(self) -> None:
        """Convert RGB movies to grayscale in place (ITU-R BT.601 luma).

        ``Y = 0.299 R + 0.587 G + 0.114 B`` per pixel; ``C`` becomes 1.
        deepSTRF used 0.2989 for red (MATLAB ``rgb2gray``'s rounded value), so
        its weights sum to 0.9999 and white came out slightly grey.

        Raises
        ------
        ValueError
            When the movies are already grayscale, or while a per-channel
            normalisation is active (its per-channel offsets would not fold
            into one channel; undo it first).
        """
        from deepstrf.preprocessing.video import rgb_to_grayscale

        name = type(self).__name__
        if self.C != 3:
            raise ValueError(f"{name}.from_rgb_to_grayscale needs RGB movies (C=3); these have "
                             f"C={self.C} and are already grayscale.")
        for record, undo in ((self.stim_normalization, "destandardize_stims"),
                             (self.video_normalization, "denormalize_videos")):
            if record is not None and record.get("per_band", record.get("per_channel")):
                raise ValueError(f"{name}: a per-channel normalisation is active; call "
                                 f"{undo}() before converting to grayscale.")
        for s, x in enumerate(self.stims):
            self.stims[s] = rgb_to_grayscale(x)
        self.C = 1
        self.validate()
        self._record("from_rgb_to_grayscale", weights=[0.299, 0.587, 0.114])

    @_in_place("movies", "resize_movie")
    def change_spatial_resolution(self, spatial_resol: Any, *, antialias: bool = True) -> None:
        """Resize every frame to ``spatial_resol = (H, W)`` (or an int for square frames).

        Bilinear interpolation, antialiased when shrinking (PyTorch's
        ``interpolate(..., antialias=True)``), one stimulus at a time.
        """
        from deepstrf.preprocessing.video import _size, resize_movie

        h, w = _size(spatial_resol)
        before = (self.H, self.W)
        for s, x in enumerate(self.stims):
            self.stims[s] = resize_movie(x, (h, w), antialias=antialias)
        self.H, self.W = h, w
        self.validate()
        self._record("change_spatial_resolution", size=[h, w], previous=list(before),
                     antialias=bool(antialias))

    @_in_place("movies", "downsample_time / upsample_time")
    def change_video_temporal_resolution(self, native_dt: float | None = None,
                                         target_dt: float | None = None) -> None:
        """Change the movies' frame duration, keeping the responses and their bins.

        Parameters
        ----------
        native_dt : float, optional
            The current frame duration in ms (checked; default: the dataset's,
            ``1000 / frame_rate_hz``).
        target_dt : float
            The new frame duration in ms. It must divide ``dt_ms`` (a whole
            number of frames per response bin) and be a whole multiple or
            divisor of the current one: frames are averaged in blocks when
            they get longer, repeated when they get shorter.

        Notes
        -----
        deepSTRF kept one frame out of every ``ratio`` (``video[..., ::ratio]``),
        which aliases fast motion and throws the other frames away; block means
        are the box-filtered frames the neuron integrated over.
        """
        from deepstrf.preprocessing.video import downsample_time, time_factor, upsample_time

        name = type(self).__name__
        current = 1000.0 / float(self.frame_rate_hz)
        if target_dt is None:
            raise TypeError(f"{name}.change_video_temporal_resolution needs target_dt (the new "
                            "frame duration in ms).")
        if native_dt is not None and not math.isclose(float(native_dt), current, rel_tol=1e-6):
            raise ValueError(f"{name}: native_dt={native_dt:g} ms but the movies' frames last "
                             f"{current:g} ms (frame_rate_hz={self.frame_rate_hz:g}).")
        direction, k = time_factor(current, float(target_dt), "the movie frames")
        per_bin = self.dt / float(target_dt)
        if abs(per_bin - round(per_bin)) > 1e-6 or round(per_bin) < 1:
            raise ValueError(f"{name}: frames of {target_dt:g} ms do not divide the {self.dt:g} ms "
                             "response bins, so frames and bins would lose their lock; choose "
                             f"target_dt among {self.dt:g}, {self.dt / 2:g}, {self.dt / 3:g}, ... "
                             "ms (or change both with change_temporal_resolution).")
        if direction == "down":
            for s, x in enumerate(self.stims):
                self.stims[s] = downsample_time(x, k, reduce="mean")
        elif direction == "up":
            for s, x in enumerate(self.stims):
                self.stims[s] = upsample_time(x, k)
        self.frame_rate_hz = 1000.0 / float(target_dt)
        self.validate()
        self._record("change_video_temporal_resolution", native_dt=current,
                     target_dt=float(target_dt), direction=direction, factor=k)

    @_in_place("movies and responses", "downsample_time / upsample_time")
    def change_temporal_resolution(self, new_dt: float) -> dict[str, Any]:
        """Change the response bin width to ``new_dt`` ms, movies and responses together.

        Coarser bins (``new_dt = k * dt``): responses are summed over blocks
        of ``k`` bins (spike counts per new bin; a block with a NaN is NaN) and
        frames averaged over the same span, so frames per bin stay the same.
        Finer bins (``dt = k * new_dt``): each count is spread evenly over
        its ``k`` new bins (``x / k``; deepSTRF repeated it, which multiplies
        the spike count by ``k``) and each frame repeated. A ratio that is not
        a whole number raises. When a stimulus's bins are not a multiple of
        ``k``, its trailing partial block is dropped (it would count fewer
        spikes than the others): reported as a ``DataQuirkWarning`` and in
        the returned record.

        Returns
        -------
        dict
            ``direction``, ``factor``, ``previous_dt``, ``new_dt`` and
            ``dropped_bins`` (``{stim index: bins dropped}``).
        """
        from deepstrf.preprocessing.video import downsample_time, time_factor, upsample_time

        name = type(self).__name__
        if self.response_normalization is not None:
            raise ValueError(f"{name}: the responses are normalised; sums of normalised values "
                             "are not normalised values. Call denormalize_responses() first.")
        direction, k = time_factor(self.dt, new_dt, "the response bins")
        fpb = self.frames_per_bin
        stims, blocks, dropped = [], [], {}
        for s, (neurons, reps, rows) in enumerate(self._blocks()):
            movie = self.stims[s]
            T = int(movie.shape[-1]) // fpb
            if direction == "down":
                keep = (T // k) * k
                if keep < T:
                    dropped[s] = T - keep
                if keep == 0:
                    raise ValueError(f"{name}: stim {s} has {T} bins of {self.dt:g} ms, fewer "
                                     f"than one bin of {new_dt:g} ms.")
                movie = downsample_time(movie[..., :keep * fpb], k, reduce="mean")
                rows = downsample_time(rows[:, :keep], k, reduce="sum")
            elif direction == "up":
                movie = upsample_time(movie, k)
                rows = upsample_time(rows, k, spread=True)
            stims.append(movie.contiguous())
            blocks.append((neurons, reps, rows.contiguous()))
        if dropped:
            warnings.warn(f"{name}.change_temporal_resolution: {len(dropped)} stimulus/stimuli "
                          f"had bins beyond the last whole {new_dt:g} ms bin, dropped "
                          f"(stim: bins) {dropped}.", DataQuirkWarning, stacklevel=2)
        previous = self.dt
        rate = float(self.frame_rate_hz) * (k if direction == "up" else 1.0 / k)
        self._rebuild(stims, blocks, dt=float(new_dt), frame_rate_hz=rate)
        record = {"direction": direction, "factor": k, "previous_dt": previous,
                  "new_dt": float(new_dt), "dropped_bins": dropped}
        self._record("change_temporal_resolution", **record)
        return record

    @_in_place("movies", "normalize_movie")
    def normalize_videos(self, scope: str = "global", stim_indices: Sequence[int] | None = None,
                         per_channel: bool = False, eps: float = 1e-8) -> dict[str, Any]:
        """Normalise the movies in place, ``(x - mean) / std``.

        Parameters
        ----------
        scope : {'global', 'stimulus'}
            ``'global'``: one mean and std from the movies of
            ``stim_indices`` (e.g. training plus validation), applied to all,
            so test movies do not leak into the statistics.
            ``'stimulus'``: each movie with its own mean and std.
        stim_indices : sequence of int, optional
            For ``'global'``: the movies to take the statistics from (default all).
        per_channel : bool, default False
            One pair per colour channel instead of one scalar pair.
        eps : float
            Floor of the standard deviation.

        Returns
        -------
        dict
            ``scope``, ``per_channel``, ``mean`` and ``std`` (one tensor per
            stimulus, broadcastable to it), ``stim_indices``, ``eps``; also
            ``self.video_normalization``. Calling again first undoes the
            previous normalisation; :meth:`denormalize_videos` undoes it.

        Notes
        -----
        deepSTRF normalised each pixel over time; that gives every pixel unit
        variance, which erases the spatial contrast receptive fields are
        fitted to and amplifies the noise of pixels that barely change.
        """
        from deepstrf._validation import check_choice, check_positive
        from deepstrf.datasets._preprocess import _stim_list

        check_choice("scope", scope, ("global", "stimulus"))
        if not isinstance(per_channel, bool):
            raise TypeError(f"per_channel must be True or False; got {per_channel!r}.")
        eps = check_positive("eps", eps)
        chosen = _stim_list(self, stim_indices, "normalize_videos")
        replaced = self.video_normalization is not None
        if replaced:
            self.denormalize_videos(_record=False)
        shape = (-1, 1, 1, 1)

        def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
            # float64 sums of one stimulus at a time (memory stays at one movie); the sum
            # of squares as a dot product, the fastest exact-enough reduction
            rows = x.to(torch.float64).reshape(x.shape[0] if per_channel else 1, -1)
            squares = torch.stack([torch.dot(r, r) for r in rows])
            return (rows.sum(1).reshape(shape), squares.reshape(shape), rows.shape[1])

        def finish(total, squares, count):
            mean = total / count
            var = (squares - total * mean).clamp(min=0) / max(count - 1, 1)
            return mean.to(torch.float32), var.sqrt().to(torch.float32).clamp(min=eps)

        if scope == "global":
            total = squares = 0.0
            count = 0
            for s in chosen:
                a, b, n = moments(self.stims[s])
                total, squares, count = total + a, squares + b, count + n
            stats = [finish(total, squares, count)] * len(self.stims)
        else:
            stats = [finish(*moments(x)) for x in self.stims]
        out_m, out_s = [], []
        for s, (m32, s32) in enumerate(stats):
            # replaced one by one, so each old movie is freed as soon as its successor exists
            self.stims[s] = (self.stims[s] - m32) / s32
            out_m.append(m32)
            out_s.append(s32)
        self.video_normalization = {"scope": scope, "per_channel": per_channel, "mean": out_m,
                                    "std": out_s, "eps": eps,
                                    "stim_indices": None if stim_indices is None else chosen}
        self._record("normalize_videos", scope=scope, per_channel=per_channel, eps=eps,
                     stim_indices=self.video_normalization["stim_indices"],
                     replaced_previous=replaced)
        return self.video_normalization

    def denormalize_videos(self, _record: bool = True) -> None:
        """Undo :meth:`normalize_videos` (``x * std + mean``, to float32 rounding)."""
        record = self.video_normalization
        if record is None:
            raise RuntimeError(f"{type(self).__name__}: the movies are not normalised; there is "
                               "nothing to undo.")
        for s, (m, sd) in enumerate(zip(record["mean"], record["std"])):
            self.stims[s] = self.stims[s] * sd + m
        self.video_normalization = None
        if _record:
            self._record("denormalize_videos")

    @_in_place("movies", "add_noise")
    def add_noise_to_videos(self, noise_level: float = 0.1, seed: int = 0) -> None:
        """Add Gaussian noise of standard deviation ``noise_level`` to every movie, in place.

        One generator seeded with ``seed`` draws the noise of the stimuli in
        order, so the result is reproducible (deepSTRF's was unseeded). The
        noise is drawn in float32 in the movies' current units (after any
        normalisation).
        """
        from deepstrf.preprocessing.video import add_noise

        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int; got {seed!r}.")
        generator = torch.Generator()
        generator.manual_seed(int(seed))
        for s, x in enumerate(self.stims):
            self.stims[s] = add_noise(x, noise_level, generator=generator)
        self._record("add_noise_to_videos", noise_level=float(noise_level), seed=int(seed))

    @_in_place("movies and responses", "split_into_clips")
    def split_into_clips(self, clip_length_frames: int) -> list[dict[str, Any]]:
        """Cut every stimulus into clips of ``clip_length_frames`` frames, in place.

        Each clip becomes a stimulus: its movie (the last clip zero-padded),
        its responses (the same span; the last clip NaN-padded, so the padded
        bins are masked out rather than read as zero spikes, as deepSTRF's
        zero padding would) and its metadata, the source's plus
        ``clip_source_stim``, ``clip_index``, ``clip_onset_bin``,
        ``clip_onset_ms`` and ``clip_valid_bins``. Stimuli nobody heard stay
        unheard. A stimulus selection must be reset first (its indices would
        no longer mean the same stimuli).

        Parameters
        ----------
        clip_length_frames : int
            Clip length in frames; a multiple of ``frames_per_bin``.

        Returns
        -------
        list of dict
            The new ``stim_meta``.
        """
        from deepstrf.preprocessing.video import split_into_clips

        name = type(self).__name__
        if isinstance(clip_length_frames, bool) or not isinstance(clip_length_frames,
                                                                  numbers.Integral) \
                or clip_length_frames < 1:
            raise ValueError(f"clip_length_frames must be an int >= 1; got "
                             f"{clip_length_frames!r}.")
        fpb = self.frames_per_bin
        if clip_length_frames % fpb:
            raise ValueError(f"{name}: clip_length_frames={clip_length_frames} is not a whole "
                             f"number of response bins ({fpb} frames per bin).")
        if self._stim_sel is not None:
            raise ValueError(f"{name}: a stimulus selection is active; call "
                             "reset_stim_selection() before splitting into clips.")
        L = clip_length_frames // fpb
        stims, blocks, meta = [], [], []
        norm = self.video_normalization
        new_means, new_stds = [], []
        for s, (neurons, reps, rows) in enumerate(self._blocks()):
            movie_clips = split_into_clips(self.stims[s], clip_length_frames, pad_value=0.0)
            T = int(self.stims[s].shape[-1]) // fpb
            if len(neurons):
                resp_clips = split_into_clips(rows, L, pad_value=float("nan"))
            else:
                resp_clips = [(rows.new_zeros((0, L)), j * L, 0) for j in range(len(movie_clips))]
            for j, ((clip, _, _), (rclip, onset, _)) in enumerate(zip(movie_clips, resp_clips)):
                stims.append(clip)
                blocks.append((neurons, reps, rclip))
                base = dict(self.stim_meta[s]) if isinstance(self.stim_meta[s], dict) else {}
                base.update({"clip_source_stim": s, "clip_index": j, "clip_onset_bin": onset,
                             "clip_onset_ms": onset * self.dt,
                             "clip_valid_bins": min(L, T - onset)})
                meta.append(base)
                if norm is not None:
                    new_means.append(norm["mean"][s])
                    new_stds.append(norm["std"][s])
        if norm is not None:
            norm["mean"], norm["std"] = new_means, new_stds
        previous = len(self.stims)
        self._rebuild(stims, blocks, stim_meta=meta)
        self._record("split_into_clips", clip_length_frames=int(clip_length_frames),
                     n_source_stims=previous, n_clips=len(stims))
        return self.stim_meta

    def merge_clips(self) -> None:
        """Undo :meth:`split_into_clips`: join each source stimulus's clips again, in place.

        The clips of each ``clip_source_stim`` are put back in ``clip_index``
        order and the padding is cut (``clip_valid_bins``), so the stimuli
        regain their lengths; their metadata loses the ``clip_*`` keys. What
        was done to the clips in between (smoothing, normalisation) is kept.
        """
        name = type(self).__name__
        keys = ("clip_source_stim", "clip_index", "clip_onset_bin", "clip_onset_ms",
                "clip_valid_bins")
        if not all(isinstance(m, dict) and "clip_source_stim" in m for m in self.stim_meta):
            raise ValueError(f"{name}.merge_clips: the stimuli are not clips of "
                             "split_into_clips (their stim_meta lacks 'clip_source_stim').")
        if self._stim_sel is not None:
            raise ValueError(f"{name}: a stimulus selection is active; call "
                             "reset_stim_selection() before merging clips.")
        groups: dict[int, list[int]] = {}
        for s, m in enumerate(self.stim_meta):
            groups.setdefault(int(m["clip_source_stim"]), []).append(s)
        fpb = self.frames_per_bin
        stims, blocks, meta = [], [], []
        norm = self.video_normalization
        new_means, new_stds = [], []
        store = self._require_store()
        for source in sorted(groups):
            clips = sorted(groups[source], key=lambda s: self.stim_meta[s]["clip_index"])
            valid = [int(self.stim_meta[s]["clip_valid_bins"]) for s in clips]
            stims.append(torch.cat([self.stims[s][..., :v * fpb] for s, v in zip(clips, valid)],
                                   dim=-1))
            neurons, reps, _ = store.block(clips[0])
            rows = torch.cat([store.block(s)[2][:, :v] for s, v in zip(clips, valid)], dim=1)
            blocks.append((neurons, reps, rows))
            meta.append({k: v for k, v in self.stim_meta[clips[0]].items() if k not in keys})
            if norm is not None:
                new_means.append(norm["mean"][clips[0]])
                new_stds.append(norm["std"][clips[0]])
        if norm is not None:
            norm["mean"], norm["std"] = new_means, new_stds
        n_clips = len(self.stims)
        self._rebuild(stims, blocks, stim_meta=meta)
        self._record("merge_clips", n_clips=n_clips, n_stims=len(stims))

    # ------------------------------------------------------------------ response methods
    @_in_place("responses", "smooth_gaussian")
    def smooth_responses(self, window_ms: float = 21.0, *, sigma_time_step: float | None = None,
                         kernel_size: int | None = None, padding: int | None = None) -> None:
        """Smooth every response in time, in place (NaN and missing pairs kept).

        With the base signature (``window_ms``): the unit-sum Hanning window of
        :meth:`NeuralDataset.smooth_responses`. With deepSTRF's video keywords
        (``sigma_time_step`` in bins, ``kernel_size`` taps, ``padding``): a
        unit-sum Gaussian (:func:`deepstrf.preprocessing.video.gaussian_kernel`,
        centred, unlike deepSTRF's). ``padding`` is accepted only as
        ``kernel_size // 2``, the value that keeps every response its length.
        """
        if sigma_time_step is None:
            if kernel_size is not None or padding is not None:
                raise TypeError("kernel_size and padding go with sigma_time_step (the Gaussian "
                                "smoothing of deepSTRF's video datasets); give it too.")
            return super().smooth_responses(window_ms)
        from deepstrf.preprocessing.spikes import RowSmoother
        from deepstrf.preprocessing.video import gaussian_kernel

        kernel = gaussian_kernel(sigma_time_step, kernel_size)
        if padding is not None and padding != len(kernel) // 2:
            raise ValueError(f"padding={padding} would change the responses' length; with "
                             f"kernel_size={len(kernel)} only padding={len(kernel) // 2} keeps "
                             "them on the grid (or leave padding out).")

        smoother = RowSmoother(kernel)          # smooth_rows' arithmetic, into each chunk

        def smooth(s: int, rows: slice, src: np.ndarray, dst: np.ndarray) -> None:
            smoother(src, dst)

        self._require_store().transform_rows_(smooth)
        self._record("smooth_responses", kind="gaussian", sigma_time_step=float(sigma_time_step),
                     kernel_size=len(kernel))

    @_in_place("responses", "zscore_time")
    def normalize_responses(self, method: str = "max", stim_indices: Sequence[int] | None = None,
                            eps: float = 1e-8) -> dict[str, Any]:
        """:meth:`NeuralDataset.normalize_responses` (per neuron, from ``stim_indices``).

        deepSTRF's video form took a dense response tensor and z-scored every
        repeat over time; passing a tensor here raises a ``TypeError`` naming
        its replacement (:func:`deepstrf.preprocessing.video.zscore_time`, the same
        operation on a tensor). Per-repeat z-scoring is not offered on the dataset: it
        removes each neuron's differences in firing between stimuli, which is
        part of what an encoding model has to predict.
        """
        return super().normalize_responses(method, stim_indices, eps)

    @_in_place("responses", "responses_signal_power")
    def get_responses_signal_power(self, per_stimulus: bool = False) -> torch.Tensor:
        """Signal power of each neuron (Sahani & Linden 2003), from the ragged storage.

        Parameters
        ----------
        per_stimulus : bool, default False
            False: ``(N,)``, pooled over each neuron's stimuli exactly as
            :func:`deepstrf.metrics.signal_power` pools them (the value
            ``compute_neuron_quality`` also returns). True: ``(N, S)``, the
            signal power of each stimulus alone (deepSTRF's layout), NaN for
            pairs not recorded or with fewer than two repeats.

        Returns
        -------
        Tensor
            float64.
        """
        from deepstrf.metrics import signal_power
        from deepstrf.metrics.quality import NeuronQualityAccumulator

        store = self._require_store()
        if not per_stimulus:
            acc = NeuronQualityAccumulator(self.N_neurons)  # SP does not depend on the splits
            for s in range(store.n_stims):
                neurons, reps, rows = store.block(s)
                if len(neurons):
                    acc.add_rows(neurons, reps, rows)
            return acc.result()[2]
        out = torch.full((self.N_neurons, store.n_stims), float("nan"), dtype=torch.float64)
        for s in range(store.n_stims):
            neurons, block = store.padded_block(s)
            if len(neurons) == 0:
                continue
            out[torch.from_numpy(neurons), s] = signal_power(
                block.unsqueeze(0).to(torch.float64), reduction="none")
        return out
