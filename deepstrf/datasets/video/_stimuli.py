"""Movie stimulus sources: where a movie comes from and how it lands on the response grid.

A visual dataset's parse hook describes each stimulus by one source; the
build renders it in the stimulus's worker task:

==========================  =================================================
:class:`MovieFileStim`      a video file (mp4, avi, mkv, ...), decoded by PyAV
:class:`ImageSequenceStim`  a folder of frame images (png, jpg, tif, ...)
:class:`MovieArrayStim`     frames in memory, or in a .npy, HDF5 or MATLAB file
==========================  =================================================

Every source knows its native ``frame_rate_hz`` (a video file's container
says it; images and arrays are told) and renders to float32 ``(C, H, W,
T * frames_per_bin)`` at the front end's frame rate: native frames are
averaged in blocks when the native rate is a whole multiple of it (a 120 Hz
movie on 10 ms bins at one frame per bin: blocks of 1.2 frames is an error
that says which ``dt_ms`` work). 8- and 16-bit unsigned frames are scaled
to ``[0, 1]``; other numeric frames are kept as they are.
``n_bins`` fixes T (``None``: the whole frames the movie covers;
``"response"``: the bins its binned responses cover); a grid longer than
the movie is an error, never silent padding. Colour is kept (``channels=
"keep"``), converted to BT.601 luma (``"gray"``) or required (``"rgb"``), and
frames are resized when the front end asks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_positive
from deepstrf.errors import RawDataError

__all__ = ["ImageSequenceStim", "MovieArrayStim", "MovieFileStim", "read_movie_file"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm")


def _check_common(source: Any) -> None:
    n = source.n_bins
    if not (n is None or n == "response" or (isinstance(n, int) and not isinstance(n, bool)
                                            and n >= 1)):
        raise ValueError(f"n_bins must be None, 'response' or an int >= 1; got {n!r}.")
    rate = getattr(source, "frame_rate_hz", None)
    if rate is not None:
        object.__setattr__(source, "frame_rate_hz", check_positive("frame_rate_hz", rate))


def frame_size(size: Any) -> tuple[int, int]:
    """``(H, W)`` from ``(H, W)`` or an int (square frames), each an int >= 1."""
    import numbers

    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
            for v in size)):
        raise ValueError(f"size must be (H, W) with ints >= 1, or an int for square frames; "
                         f"got {size!r}.")
    return int(size[0]), int(size[1])


def _to_float(frames: np.ndarray, where: str) -> np.ndarray:
    """``(T, H, W, C)`` of any numeric dtype to float32; 8/16-bit integers to [0, 1]."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / np.float32(255)
    if frames.dtype == np.uint16:
        return frames.astype(np.float32) / np.float32(65535)
    if frames.dtype.kind not in "fiu":
        raise RawDataError(f"{where}: frames must be numeric; got {frames.dtype}.")
    out = frames.astype(np.float32)
    if not np.isfinite(out).all():
        raise RawDataError(f"{where}: the frames hold NaN or infinite values; movies must be "
                           "finite.")
    return out


def _render_frames(frames: np.ndarray, native_rate: float, front: Any, n_bins: int | None,
                   where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Native ``(T, H, W, C)`` float32 frames to ``(C, H', W', T_bins * fpb)`` on the grid."""
    target_rate = front.frames_per_bin * 1000.0 / front.dt_ms
    ratio = native_rate / target_rate
    m = round(ratio)
    if m < 1 or not math.isclose(ratio, m, rel_tol=0, abs_tol=1e-6):
        native_ms = 1000.0 / native_rate
        raise ValueError(f"{where}: frames of {native_ms:g} ms ({native_rate:g} Hz) cannot be "
                         f"pooled into {front.frames_per_bin} frame(s) per {front.dt_ms:g} ms bin "
                         f"(a ratio of {ratio:g} native frames per frame); choose dt_ms as a "
                         f"multiple of {native_ms:g} ms (e.g. {native_ms * front.frames_per_bin:g}"
                         f" or {2 * native_ms * front.frames_per_bin:g}).")
    n_native = frames.shape[0]
    available = (n_native // m) // front.frames_per_bin
    T = available if n_bins is None else int(n_bins)
    if T > available or T == 0:
        raise RawDataError(f"{where}: the grid needs {T} bins of {front.dt_ms:g} ms "
                           f"({T * front.frames_per_bin * m} frames at {native_rate:g} Hz) but "
                           f"the movie has {n_native} frames ({available} whole bins).")
    used = frames[:T * front.frames_per_bin * m]
    if m > 1:
        used = used.reshape(T * front.frames_per_bin, m, *used.shape[1:]).mean(axis=1,
                                                                                dtype=np.float64)
    movie = np.ascontiguousarray(np.moveaxis(np.asarray(used, dtype=np.float32), 0, -1))
    movie = np.moveaxis(movie, 2, 0)  # (T, H, W, C) -> (H, W, C, T) -> (C, H, W, T)
    C = movie.shape[0]
    if front.channels == "gray" and C == 3:
        from deepstrf.preprocessing._color import BT601_WEIGHTS

        w = np.asarray(BT601_WEIGHTS, dtype=np.float32)[:, None, None, None]
        movie = (movie * w).sum(axis=0, keepdims=True, dtype=np.float32)
    elif front.channels == "rgb" and C != 3:
        raise RawDataError(f"{where}: channels='rgb' was asked for but the movie has {C} "
                           "channel(s).")
    if C not in (1, 3):
        raise RawDataError(f"{where}: a movie has 1 or 3 channels; got {C}.")
    if front.size is not None and tuple(movie.shape[1:3]) != tuple(front.size):
        import torch

        from deepstrf.preprocessing.video import resize_movie

        movie = resize_movie(torch.from_numpy(np.ascontiguousarray(movie)), front.size).numpy()
    facts = {"n_bins": int(T), "native_frame_rate_hz": float(native_rate),
             "n_native_frames": int(n_native), "duration_s": n_native / float(native_rate)}
    return np.ascontiguousarray(movie, dtype=np.float32), facts


def read_movie_file(path: Path) -> tuple[np.ndarray, float]:
    """``(frames (T, H, W, 3) uint8, frame rate)`` of a video file, decoded with PyAV."""
    try:
        import av
    except ImportError as err:
        raise ImportError("reading video files needs PyAV: pip install 'deepstrf-datasets[video]' "
                          "(or pip install av).") from err
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise RawDataError(f"{path}: holds no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except RawDataError:
        raise
    except (OSError, ValueError, av.error.FFmpegError) as err:  # type: ignore[attr-defined]
        raise RawDataError(f"{path}: cannot decode as a video file ({err}).") from err
    if not frames:
        raise RawDataError(f"{path}: the video stream has no frames.")
    if rate is None:
        raise RawDataError(f"{path}: the container does not give a frame rate; read it with "
                           "MovieFileStim(..., frame_rate_hz=...).")
    return np.stack(frames), float(rate)


@dataclass(frozen=True)
class MovieFileStim:
    """A video file, decoded with PyAV (the optional ``video`` extra).

    Parameters
    ----------
    path : Path
    meta : dict
    frame_rate_hz : float, optional
        Replaces the container's rate (for files whose header rounds it).
    expected_rate_hz : float, optional
        The documented rate; a file at another rate raises.
    n_bins : None, int or 'response'
    """

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    frame_rate_hz: float | None = None
    expected_rate_hz: float | None = None
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)

    def render(self, front: Any, n_bins: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        frames, rate = read_movie_file(Path(self.path))
        if self.expected_rate_hz is not None and not math.isclose(rate, self.expected_rate_hz,
                                                                  rel_tol=1e-4):
            raise RawDataError(f"{self.path}: {rate:g} frames/s, but the dataset documents "
                               f"{self.expected_rate_hz:g}.")
        rate = float(self.frame_rate_hz) if self.frame_rate_hz is not None else rate
        if front.channels != "rgb" and (frames[..., 0] == frames[..., 1]).all() \
                and (frames[..., 1] == frames[..., 2]).all():
            frames = frames[..., :1]  # a gray movie stored as RGB: one channel
        return _render_frames(_to_float(frames, str(self.path)), rate, front, n_bins,
                              str(self.path))

    def natural_bins(self, dt_ms: float) -> int | None:
        return None


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


@dataclass(frozen=True)
class ImageSequenceStim:
    """A folder of frame images, in natural order of their names (frame2 before frame10).

    Parameters
    ----------
    folder : Path
    frame_rate_hz : float
        Frames per second.
    meta : dict
    pattern : str, default '*'
        Glob of the frame files; files with other image suffixes are ignored.
    n_bins : None, int or 'response'
    """

    folder: Path
    frame_rate_hz: float
    meta: dict[str, Any] = field(default_factory=dict)
    pattern: str = "*"
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)

    def frame_paths(self) -> list[Path]:
        folder = Path(self.folder)
        if not folder.is_dir():
            raise RawDataError(f"{folder}: not a folder of frame images.")
        paths = sorted((p for p in folder.glob(self.pattern)
                        if p.suffix.lower() in _IMAGE_SUFFIXES), key=_natural_key)
        if not paths:
            raise RawDataError(f"{folder}: no image files match {self.pattern!r} "
                               f"(suffixes {', '.join(_IMAGE_SUFFIXES)}).")
        return paths

    def render(self, front: Any, n_bins: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        from PIL import Image

        frames = []
        for p in self.frame_paths():
            try:
                with Image.open(p) as img:
                    if img.mode in ("L", "I;16", "I", "F"):  # grayscale as stored
                        arr = np.asarray(img)
                    elif img.mode == "1":
                        arr = np.asarray(img.convert("L"))
                    else:  # RGB, RGBA (alpha dropped), palette, CMYK ...
                        arr = np.asarray(img.convert("RGB"))
            except OSError as err:
                raise RawDataError(f"{p}: cannot read as an image ({err}).") from err
            arr = arr[..., None] if arr.ndim == 2 else arr
            if frames and arr.shape != frames[0].shape:
                raise RawDataError(f"{p}: frame of shape {arr.shape[:2]} (channels "
                                   f"{arr.shape[2]}) but the first frame of {self.folder} is "
                                   f"{frames[0].shape[:2]} (channels {frames[0].shape[2]}); "
                                   "every frame needs the same size and mode.")
            frames.append(arr)
        return _render_frames(_to_float(np.stack(frames), str(self.folder)),
                              float(self.frame_rate_hz), front, n_bins, str(self.folder))

    def natural_bins(self, dt_ms: float) -> int | None:
        return None


_LAYOUTS = ("THW", "HWT", "THWC", "TCHW", "CHWT", "HWCT")


def _read_array(path: Path, key: Any) -> np.ndarray:
    from deepstrf.io.readers import read_array

    return np.asarray(read_array(path, key))


@dataclass(frozen=True)
class MovieArrayStim:
    """Frames given in memory (``movie``) or read from a .npy / .npz / HDF5 / MATLAB file.

    Parameters
    ----------
    frame_rate_hz : float
    meta : dict
    movie : numpy.ndarray, optional
    path : Path, optional
    key : str or tuple, optional
        The HDF5 dataset or MATLAB variable (a tuple walks into a struct);
        not needed for .npy.
    layout : str, default 'THW'
        The array's axes: one of ``THW, HWT, THWC, TCHW, CHWT, HWCT``
        (T frames, H rows, W columns, C channels). MATLAB movies are often
        ``HWT``.
    n_bins : None, int or 'response'
    """

    frame_rate_hz: float
    meta: dict[str, Any] = field(default_factory=dict)
    movie: np.ndarray | None = None
    path: Path | None = None
    key: str | tuple[Any, ...] | None = None
    layout: str = "THW"
    n_bins: int | str | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        if (self.movie is None) == (self.path is None):
            raise ValueError("give MovieArrayStim either movie or path (with key for HDF5 / "
                             "MATLAB files).")
        if self.layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(_LAYOUTS)}; got "
                             f"{self.layout!r}.")

    def frames(self) -> tuple[np.ndarray, str]:
        """``(frames (T, H, W, C), where)`` in the array's own dtype."""
        where = "movie array" if self.path is None else (
            str(self.path) + (f" at {self.key}" if self.key is not None else ""))
        value = np.asarray(self.movie if self.movie is not None
                           else _read_array(Path(self.path), self.key))
        if value.ndim != len(self.layout):
            raise RawDataError(f"{where}: layout {self.layout!r} needs a {len(self.layout)}-D "
                               f"array; got shape {value.shape}.")
        order = self.layout if "C" in self.layout else self.layout + "C"
        if "C" not in self.layout:
            value = value[..., None]
        return np.transpose(value, [order.index(a) for a in "THWC"]), where

    def render(self, front: Any, n_bins: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        frames, where = self.frames()
        return _render_frames(_to_float(frames, where), float(self.frame_rate_hz), front,
                              n_bins, where)

    def natural_bins(self, dt_ms: float) -> int | None:
        return None
