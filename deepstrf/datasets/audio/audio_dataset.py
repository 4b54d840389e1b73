"""``AudioNeuralDataset``: neural responses to sounds.

Two stimulus representations share one class:

* **spectrogram mode** (default): ``stims[s]`` is ``(1, F, T_s)`` with ``F``
  frequency bands and one frame per response bin, so ``T_s`` equals the
  responses' time axis;
* **waveform mode** (``audio_fs`` set): ``stims[s]`` is ``(1, T_audio)`` mono
  audio at ``audio_fs`` Hz, locked to the response grid: ``hop = audio_fs *
  dt_ms / 1000`` must be an integer and every stim with responses has
  ``T_audio == T_resp * hop``, so audio sample j falls in response bin
  ``j // hop``. ``F`` then gives the width of the spectrogram a model's front
  end should produce.
"""

from __future__ import annotations

import math
import numbers

from deepstrf.datasets.neural_dataset import NeuralDataset

__all__ = ["AudioNeuralDataset"]


class AudioNeuralDataset(NeuralDataset):
    """Base class of datasets whose stimuli are sounds.

    Attributes
    ----------
    F : int
        Number of frequency bands of the (target) spectrogram.
    audio_fs : int or None
        Sample rate of waveform stims in waveform mode; None in spectrogram mode.
    hearing_range_hz : tuple of float or None
        Informational ``(low, high)`` hearing range of the species.
    """

    def _init_attributes(self) -> None:
        super()._init_attributes()
        self.F = -1
        self.audio_fs: int | None = None
        self.hearing_range_hz: tuple[float, float] | None = None

    def _infer_attributes(self) -> None:
        super()._infer_attributes()
        if self.F == -1 and self.audio_fs is None and self.stims and self.stims[0].dim() == 3:
            self.F = int(self.stims[0].shape[1])

    def get_F(self) -> int:
        """Number of frequency bands."""
        return self.F

    @property
    def is_waveform(self) -> bool:
        """True in waveform mode (stims are audio at ``audio_fs``)."""
        return self.audio_fs is not None

    @property
    def hop(self) -> int | None:
        """Audio samples per response bin in waveform mode (None in spectrogram mode)."""
        if self.audio_fs is None:
            return None
        return int(round(self.audio_fs * self.dt / 1000.0))

    # ------------------------------------------------------------------ validation hooks
    def _validate_stim(self, s: int, stim) -> None:
        name = type(self).__name__
        if self.is_waveform:
            if stim.dim() != 2 or stim.shape[0] != 1 or stim.shape[1] == 0:
                raise ValueError(f"{name}.stims[{s}] must be (1, T_audio) in waveform mode; got "
                                 f"shape {tuple(stim.shape)}.")
            return
        if stim.dim() != 3 or stim.shape[0] != 1 or stim.shape[2] == 0:
            raise ValueError(f"{name}.stims[{s}] must be a (1, F, T) spectrogram; got shape "
                             f"{tuple(stim.shape)}.")
        if stim.shape[1] != self.F:
            raise ValueError(f"{name}.stims[{s}] has {stim.shape[1]} frequency bands but "
                             f"F={self.F}; every spectrogram needs F bands.")

    def _expected_response_T(self, s: int) -> int | None:
        if self.is_waveform:
            return None
        return int(self.stims[s].shape[-1])

    def _response_length_hint(self, s: int) -> int:
        if self.is_waveform and self.hop:
            return int(self.stims[s].shape[-1]) // self.hop
        return super()._response_length_hint(s)

    def _validate_modality(self) -> None:
        name = type(self).__name__
        if isinstance(self.F, bool) or not isinstance(self.F, numbers.Integral) or self.F <= 0:
            raise ValueError(f"{name}.F must be a positive int (number of frequency bands); got "
                             f"{self.F!r}.")
        if self.hearing_range_hz is not None:
            hr = self.hearing_range_hz
            if not (isinstance(hr, (tuple, list)) and len(hr) == 2 and 0 < hr[0] < hr[1]):
                raise ValueError(f"{name}.hearing_range_hz must be None or (low, high) with "
                                 f"0 < low < high; got {hr!r}.")
        if self.audio_fs is None:
            return
        if isinstance(self.audio_fs, bool) or not isinstance(self.audio_fs, numbers.Real) \
                or not self.audio_fs > 0:
            raise ValueError(f"{name}.audio_fs must be a positive sample rate or None; got "
                             f"{self.audio_fs!r}.")
        ratio = self.audio_fs * self.dt / 1000.0
        hop = round(ratio)
        if hop < 1 or not math.isclose(ratio, hop, rel_tol=0, abs_tol=1e-6):
            raise ValueError(f"{name}: waveform mode needs an integer number of audio samples "
                             f"per response bin, but audio_fs * dt_ms / 1000 = {self.audio_fs:g} "
                             f"* {self.dt:g} / 1000 = {ratio:g}. Choose audio_fs or dt_ms so it "
                             f"is an integer (e.g. audio_fs={round(ratio) * 1000 / self.dt:g}).")
        store = self._require_store()
        for s, stim in enumerate(self.stims):
            neurons, _, rows = store.block(s)
            if len(neurons) == 0:
                continue
            T_resp = int(rows.shape[1])
            if stim.shape[1] != T_resp * hop:
                raise ValueError(f"{name}: waveform stim {s} has {stim.shape[1]} samples but its "
                                 f"responses have {T_resp} bins of {hop} samples; the grid lock "
                                 f"needs T_audio == T_resp * hop = {T_resp * hop} (crop or pad "
                                 "the waveform).")

    # ------------------------------------------------------------------ concatenation hooks
    def _concat_check_compat(self, other: NeuralDataset) -> None:
        super()._concat_check_compat(other)
        if not isinstance(other, AudioNeuralDataset):
            raise TypeError(f"cannot concatenate {type(self).__name__} (sounds) with "
                            f"{type(other).__name__}, which is not an AudioNeuralDataset.")
        if self.is_waveform != other.is_waveform:
            modes = {True: "waveform", False: "spectrogram"}
            raise ValueError(f"cannot concatenate a {modes[self.is_waveform]}-mode dataset with a "
                             f"{modes[other.is_waveform]}-mode one; build both with the same "
                             "return_waveform setting.")
        if self.F != other.F:
            raise ValueError(f"cannot concatenate datasets with different numbers of frequency "
                             f"bands: {type(self).__name__} has F={self.F}, "
                             f"{type(other).__name__} has F={other.F}. Rebuild one with a "
                             "matching number of bands (n_mels / n_bands).")
        if self.audio_fs != other.audio_fs:
            raise ValueError(f"cannot concatenate waveform datasets with different sample rates: "
                             f"{self.audio_fs} Hz vs {other.audio_fs} Hz; rebuild one with a "
                             "matching audio_fs.")

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        super()._concat_copy_attrs(source)
        # source passed _concat_check_compat, so it is an AudioNeuralDataset
        self.F = source.F  # type: ignore[attr-defined]
        self.audio_fs = source.audio_fs  # type: ignore[attr-defined]
        self.hearing_range_hz = source.hearing_range_hz  # type: ignore[attr-defined]
