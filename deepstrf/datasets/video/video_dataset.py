"""``VideoNeuralDataset``: neural responses to movies, stims ``(C, H, W, T_s)``."""

from __future__ import annotations

from deepstrf.datasets.neural_dataset import NeuralDataset

__all__ = ["VideoNeuralDataset"]


class VideoNeuralDataset(NeuralDataset):
    """Base class of datasets whose stimuli are movies.

    ``stims[s]`` is ``(C, H, W, T_s)`` (C = 1 for grey-level movies) with one
    frame per response bin, so ``T_s`` equals the responses' time axis.

    Attributes
    ----------
    H, W : int
        Frame height and width in pixels.
    """

    def _init_attributes(self) -> None:
        super()._init_attributes()
        self.H = -1
        self.W = -1

    def _infer_attributes(self) -> None:
        super()._infer_attributes()
        if self.H == -1 and self.stims and self.stims[0].dim() == 4:
            self.H, self.W = int(self.stims[0].shape[1]), int(self.stims[0].shape[2])

    def _validate_stim(self, s: int, stim) -> None:
        if stim.dim() != 4 or stim.shape[-1] == 0:
            raise ValueError(f"{type(self).__name__}.stims[{s}] must be (C, H, W, T); got shape "
                             f"{tuple(stim.shape)}.")
        if (stim.shape[1], stim.shape[2]) != (self.H, self.W):
            raise ValueError(f"{type(self).__name__}.stims[{s}] frames are "
                             f"{stim.shape[1]}x{stim.shape[2]} but H x W = {self.H}x{self.W}.")

    def _validate_modality(self) -> None:
        if self.H <= 0 or self.W <= 0:
            raise ValueError(f"{type(self).__name__}.H and .W must be positive; got "
                             f"H={self.H}, W={self.W}.")

    def _concat_check_compat(self, other: NeuralDataset) -> None:
        super()._concat_check_compat(other)
        if not isinstance(other, VideoNeuralDataset):
            raise TypeError(f"cannot concatenate {type(self).__name__} (movies) with "
                            f"{type(other).__name__}, which is not a VideoNeuralDataset.")
        if (self.H, self.W) != (other.H, other.W):
            raise ValueError(f"cannot concatenate movies of different frame sizes: "
                             f"{self.H}x{self.W} vs {other.H}x{other.W}.")

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        super()._concat_copy_attrs(source)
        self.H, self.W = source.H, source.W  # type: ignore[attr-defined]
