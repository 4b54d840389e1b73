"""``NeuralDataset``: stimuli plus trial-resolved responses, ragged three ways.

The data paradigm (the contract every dataset and user script relies on):

* S stimuli, N neurons. ``stims[s]`` is a float32 tensor whose last axis is
  time (audio: ``(1, F, T_s)`` spectrogram or ``(1, T_audio)`` waveform).
  Stims never contain NaN.
* ``responses[s][n]`` is a float32 ``(R_sn, T_s)`` tensor of spike counts (or
  a continuous signal) per repeat and time bin of ``dt_ms``, or the ``(1, 1)``
  all-NaN sentinel when neuron n never heard stimulus s.
* ``stim_meta`` (S dicts) and ``nrn_meta`` (N dicts) describe them;
  ``nrn_masks`` is the ``(S, N)`` bool matrix of pairs that have data.
* Selection is bidirectional: with a stim selection, neurons with no data on
  the selected stims are hidden; ``len(ds)`` counts the stims with data for at
  least one selected neuron; ``ds[i]`` indexes that iterable set.

Behind ``responses`` sits packed storage (one block per stimulus, see
:mod:`deepstrf.datasets._storage`), so indexing and batching cost a few
tensor copies rather than a Python loop over (stim, neuron) pairs. A subclass
may still fill ``self.responses`` as a list of lists and call
:meth:`NeuralDataset.validate`, which packs it.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import time
from abc import ABC
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from deepstrf._validation import check_index, check_positive, normalize_index
from deepstrf.datasets._query import Query, compile_query
from deepstrf.datasets._storage import ResponseStore, ResponsesView
from deepstrf.errors import ContractError, ContractIndexError, ContractTypeError

__all__ = ["NeuralDataset"]

logger = logging.getLogger(__name__)

_MISSING = object()


def check_finite_stim(owner: str, s: int, stim: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``stim`` holds NaN or an infinity.

    One pass without a temporary the size of the stim: a sum is finite when
    every value is (NaN and infinities propagate), and only a non-finite sum
    (possibly an overflow) pays for the exact element test.
    """
    if stim.numel() == 0:
        return
    if stim.device.type == "cpu" and not stim.requires_grad and stim.dtype in (
            torch.float32, torch.float64):
        total = float(np.add.reduce(stim.detach().numpy(), axis=None, dtype=np.float64))
        if math.isfinite(total):
            return
    if not bool(torch.isfinite(stim).all()):
        raise ValueError(f"{owner}.stims[{s}] contains NaN or infinite values; stims must "
                         "be finite (NaN marks missing data in responses only).")


def _as_index_array(name: str, values: Any, size: int) -> np.ndarray:
    """Validate a sequence of indices into ``[0, size)`` and return it as int64 (order kept)."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of integer indices; got "
                        f"{type(values).__name__}.")
    out = [_contract_index(f"{name} entry", v, size) for v in values]
    if len(set(out)) != len(out):
        dup = sorted({v for v in out if out.count(v) > 1})
        raise ContractError(f"{name} lists some indices more than once: {dup}; give each index "
                            "once.")
    return np.asarray(out, dtype=np.int64)


def _contract_index(name: str, value: Any, size: int) -> int:
    """:func:`check_index`, raising errors that are also ``AssertionError`` (deepSTRF asserted)."""
    try:
        return check_index(name, value, size)
    except IndexError as err:
        raise ContractIndexError(str(err)) from err
    except TypeError as err:
        raise ContractTypeError(str(err)) from err


def _matches_attr(meta: Any, key: str, value: Any) -> bool:
    if not isinstance(meta, Mapping):  # metadata may be any object; filters skip non-mappings
        return False
    found = meta.get(key, _MISSING)
    if found is _MISSING:
        return False
    try:
        return bool(found == value)
    except (TypeError, ValueError):
        return False


def _matches_predicate(predicate: Callable[[Any], Any], meta: Any) -> bool:
    # the predicate sees every entry as it is (a tuple too, as in deepSTRF); one written for
    # dicts that fails on a non-mapping entry (``m.get`` on a tuple) skips that entry
    skipped: tuple[type[BaseException], ...] = (KeyError, TypeError)
    if not isinstance(meta, Mapping):
        skipped += (AttributeError, IndexError)
    try:
        return bool(predicate(meta))
    except skipped:
        return False


class NeuralDataset(Dataset, ABC):
    """Base class of every dataset of sensory neural responses.

    A subclass fills ``stims``, ``responses``, ``stim_meta``, ``nrn_meta`` and
    ``N_neurons`` in its constructor and calls :meth:`validate` last. To build
    a dataset from tensors you already have, use :meth:`from_data`.

    Parameters
    ----------
    path : str or path-like or None
        Where the dataset's files live (informational for in-memory datasets).
    dt_ms : float
        Width of a response time bin, in milliseconds (> 0).

    Attributes
    ----------
    path : str or None
    dt : float
        The bin width in ms (``dt_ms``).
    stims : list of torch.Tensor
        ``S`` stimulus tensors, time on the last axis.
    responses : sequence of sequences of torch.Tensor
        ``responses[s][n]``: ``(R_sn, T_s)`` float32, or the ``(1, 1)`` NaN sentinel.
    stim_meta, nrn_meta : list of dict
        Per-stimulus and per-neuron metadata.
    N_neurons : int
    I : list of int
        The neuron selection (all neurons when nothing is selected).
    S_sel : list of int or None
        The stimulus selection (None: no restriction).
    """

    def __init__(self, path: Any, dt_ms: float):
        super().__init__()
        self.path = None if path is None else str(path)
        self.dt = check_positive("dt_ms", dt_ms)
        self.stims: list[torch.Tensor] = []
        self._store: ResponseStore | None = None
        self._pending: list | None = []
        self.stim_meta: list[dict] = []
        self.nrn_meta: list[dict] = []
        self.N_neurons = 0
        self._nrn_sel: np.ndarray | None = None
        self._stim_sel: np.ndarray | None = None
        self._sel_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._sel_cache_version = -1
        self.response_normalization: dict | None = None
        self.stim_normalization: dict | None = None
        self._operations: list[dict] = []
        self._manifest: dict | None = None
        self._concat_sources: list[str] | None = None
        self._cache_hit = False
        self._init_attributes()

    def _init_attributes(self) -> None:
        """Set modality attributes to their defaults (hook for subclasses)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_data(cls, stims: Sequence[torch.Tensor],
                  responses: Sequence[Sequence[torch.Tensor]] | ResponseStore, *,
                  dt_ms: float, stim_meta: Sequence[Mapping] | None = None,
                  nrn_meta: Sequence[Mapping] | None = None, path: Any = None,
                  **attributes: Any) -> NeuralDataset:
        """Build a validated dataset from tensors already in memory.

        Parameters
        ----------
        stims : sequence of torch.Tensor
            One tensor per stimulus, time on the last axis.
        responses : list of S lists of N tensors, or ResponseStore
            The contract's nested form (``(1, 1)`` NaN sentinels for missing
            pairs) or packed storage built with
            :meth:`~deepstrf.datasets._storage.ResponseStore.from_blocks`.
        dt_ms : float
            Response bin width in ms.
        stim_meta, nrn_meta : sequence of dict, optional
            Default: ``{}`` for each stimulus / neuron.
        path : optional
            Recorded as ``ds.path``.
        **attributes
            Modality attributes, e.g. ``F`` and ``audio_fs`` for
            :class:`~deepstrf.datasets.audio.audio_dataset.AudioNeuralDataset`.

        Returns
        -------
        NeuralDataset
            An instance of ``cls``; its constructor is not called.
        """
        self = cls.__new__(cls)
        NeuralDataset.__init__(self, path, dt_ms)
        self.stims = list(stims)
        if isinstance(responses, ResponseStore):
            n_neurons = responses.n_neurons
        else:
            responses = list(responses)
            n_neurons = len(responses[0]) if responses else 0
        if nrn_meta is None:
            nrn_meta = [{} for _ in range(n_neurons)]
        self.nrn_meta = [dict(m) if isinstance(m, Mapping) else m for m in nrn_meta]
        self.N_neurons = len(self.nrn_meta)
        self.stim_meta = ([dict(m) if isinstance(m, Mapping) else m for m in stim_meta]
                          if stim_meta is not None else [{} for _ in self.stims])
        if isinstance(responses, ResponseStore):
            self._set_store(responses)
        else:
            self.responses = responses
        for key, value in attributes.items():
            setattr(self, key, value)
        self._infer_attributes()
        self.validate()
        return self

    def _infer_attributes(self) -> None:
        """Fill modality attributes that :meth:`from_data` was not given (hook)."""

    # ------------------------------------------------------------------ responses
    @property
    def responses(self) -> Any:
        """``responses[s][n]``: ``(R, T)`` float32 view, or the ``(1, 1)`` NaN sentinel.

        Backed by packed storage once the dataset is validated; assigning a
        list of lists replaces it (packed again at the next :meth:`validate`
        or first use). ``responses[s][n] = tensor`` edits one pair in place.
        """
        if self._pending is not None:
            return self._pending
        return ResponsesView(self._require_store())

    @responses.setter
    def responses(self, value: Any) -> None:
        if isinstance(value, ResponseStore):
            self._set_store(value)
            return
        if isinstance(value, ResponsesView):
            self._set_store(value._store)
            return
        if not isinstance(value, list):
            value = list(value)
        self._pending = value
        self._store = None
        self._changed()

    def _set_store(self, store: ResponseStore) -> None:
        self._store = store
        self._pending = None
        self._changed()

    def _require_store(self) -> ResponseStore:
        """The packed storage, packing a pending list of lists first."""
        if self._pending is not None:
            stim_T = None
            if len(self.stims) == len(self._pending):
                stim_T = [self._response_length_hint(s) for s in range(len(self.stims))]
            store = ResponseStore.from_nested(self._pending, self.N_neurons, stim_T=stim_T,
                                              release=True)
            self._store = store
            self._pending = None
            self._changed()
        if self._store is None:
            raise RuntimeError(f"{type(self).__name__} has no responses yet; fill "
                               "self.responses and call validate().")
        return self._store

    def _response_length_hint(self, s: int) -> int:
        """Response length implied by stim s (its last axis), for stims nobody heard."""
        stim = self.stims[s]
        return int(stim.shape[-1]) if isinstance(stim, torch.Tensor) and stim.dim() else 0

    @property
    def response_store(self) -> ResponseStore:
        """The packed storage behind ``responses`` (advanced use)."""
        return self._require_store()

    def _changed(self) -> None:
        """Structure changed: drop the masks and the selection cache."""
        if self._store is not None:
            self._store.invalidate()
        self._sel_cache = None

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check the whole data contract; pack list-of-lists responses.

        ``stim_meta`` and ``nrn_meta`` entries may be any objects (dicts as a
        rule; deepSTRF's examples use tuples); the metadata filters skip the
        entries that are not mappings.

        Raises
        ------
        ContractError, ContractTypeError
            (subclasses of ``ValueError`` / ``TypeError`` and of
            ``AssertionError``, which deepSTRF raised here), naming the
            stimulus / neuron at fault: empty data, wrong ranks, NaN or
            infinite values in a stim, a response row of the wrong length, a
            response whose time axis differs from its stim's,
            ``N_neurons != len(nrn_meta)``, ``dt <= 0``.
        """
        self._validate(stim_values=True)

    def _validate(self, *, stim_values: bool) -> None:
        """:meth:`validate`; ``stim_values=False`` skips the per-value scan of the stims.

        Used on a warm open, whose stims were scanned before the cache entry
        was written (see ``SourceDataset._load``): the scan reads every stim
        value, which for a large release is most of the open time.
        """
        try:
            self._check_contract(stim_values=stim_values)
        except ContractError:
            raise
        except TypeError as err:
            raise ContractTypeError(str(err)) from err
        except (ValueError, RuntimeError) as err:
            raise ContractError(str(err)) from err

    def _check_contract(self, *, stim_values: bool = True) -> None:
        """The checks of :meth:`validate`, raising plain ``TypeError`` / ``ValueError``."""
        name = type(self).__name__
        if self.path is not None and not isinstance(self.path, str):
            raise TypeError(f"{name}.path must be a str or None; got {type(self.path).__name__}.")
        check_positive(f"{name}.dt", self.dt)
        if isinstance(self.N_neurons, bool) or not isinstance(self.N_neurons, numbers.Integral):
            raise TypeError(f"{name}.N_neurons must be an int; got {self.N_neurons!r}.")
        self.N_neurons = int(self.N_neurons)
        if self.N_neurons <= 0:
            raise ValueError(f"{name} has no neurons (N_neurons={self.N_neurons}); a dataset "
                             "needs at least one neuron. Check the loader's area/animal filters.")
        if len(self.nrn_meta) != self.N_neurons:
            raise ValueError(f"{name}: N_neurons={self.N_neurons} but nrn_meta has "
                             f"{len(self.nrn_meta)} entries; they must match.")
        S = len(self.stim_meta)
        if S == 0:
            raise ValueError(f"{name} has no stimuli (stim_meta is empty); a dataset needs at "
                             "least one stimulus. Check the loader's stimulus filters.")
        if len(self.stims) != S:
            raise ValueError(f"{name}: {len(self.stims)} stims but {S} stim_meta entries; they "
                             "must match.")
        for s, stim in enumerate(self.stims):
            if not isinstance(stim, torch.Tensor):
                raise TypeError(f"{name}.stims[{s}] must be a torch.Tensor; got "
                                f"{type(stim).__name__}.")
            if not stim.is_floating_point():
                raise TypeError(f"{name}.stims[{s}] must be a floating-point tensor; got "
                                f"{stim.dtype}.")
            self._validate_stim(s, stim)
            if stim_values:
                check_finite_stim(name, s, stim)
        if self._pending is not None and len(self._pending) != S:
            raise ValueError(f"{name}: responses has {len(self._pending)} rows but there are {S} "
                             "stims; give one row per stimulus.")
        store = self._require_store()
        if store.n_stims != S:
            raise ValueError(f"{name}: responses covers {store.n_stims} stims but there are {S}.")
        if store.n_neurons != self.N_neurons:
            raise ValueError(f"{name}: responses covers {store.n_neurons} neurons but "
                             f"N_neurons={self.N_neurons}.")
        for s in range(S):
            # shapes only: a block's values are not read (a joined block would assemble them)
            neurons, T = store.block_neurons(s), store.T(s)
            if len(neurons) == 0:
                continue
            expected = self._expected_response_T(s)
            if expected is not None and T != expected:
                raise ValueError(f"{name}: responses to stim {s} (e.g. neuron {int(neurons[0])}) "
                                 f"have T={T} bins but stims[{s}] has T={expected}; "
                                 "in spectrogram mode they must be equal (crop or pad the "
                                 "responses to the stimulus length).")
        self._validate_modality()

    def _validate_stim(self, s: int, stim: torch.Tensor) -> None:
        """Check one stim's shape (hook; the base accepts any rank >= 1)."""
        if stim.dim() < 1 or stim.shape[-1] == 0:
            raise ValueError(f"{type(self).__name__}.stims[{s}] must have a non-empty time axis "
                             f"(last); got shape {tuple(stim.shape)}.")

    def _stim_band_axis(self, stim: torch.Tensor) -> int | None:
        """Axis of ``stim`` that :meth:`standardize_stims` keeps with ``per_band`` (hook).

        Spectrograms ``(1, F, T)`` have their bands on axis ``-2``; a ``(1, T)``
        waveform has none (None).
        """
        return stim.dim() - 2 if stim.dim() >= 3 else None

    def _expected_response_T(self, s: int) -> int | None:
        """Response length stim s requires (its last axis), or None for no check (hook)."""
        return int(self.stims[s].shape[-1])

    def _validate_modality(self) -> None:
        """Extra checks of a modality subclass (hook), run after the common ones."""

    # ------------------------------------------------------------------ basic accessors
    def get_N(self) -> int:
        """Total number of neurons (not the selection)."""
        return self.N_neurons

    def get_S(self) -> int:
        """Total number of stimuli (not the selection)."""
        return len(self.stim_meta)

    def get_nrn_meta(self) -> list[dict]:
        """Metadata of the selected neurons, in the order they appear in batches."""
        return [self.nrn_meta[n] for n in self._selection()[0]]

    @property
    def nrn_masks(self) -> torch.Tensor:
        """``(S, N)`` bool: True where neuron n has data for stim s. Computed once, cached."""
        return self._require_store().masks()

    def invalidate_nrn_masks(self) -> None:
        """Forget the cached ``nrn_masks`` and selection after a structural edit.

        Edits made through ``responses[s][n] = ...`` or by assigning
        ``responses`` invalidate automatically; call this after changing the
        storage by other means.
        """
        self._changed()

    def _invalidate_nrn_masks(self) -> None:
        """Alias of :meth:`invalidate_nrn_masks` kept from deepSTRF."""
        self.invalidate_nrn_masks()

    # ------------------------------------------------------------------ selection state
    @property
    def I(self) -> list[int]:  # noqa: E743 (public name kept from deepSTRF)
        """Selected neuron indices (every neuron when there is no neuron selection).

        Assigning a list is the same as :meth:`select_population`. Unlike
        deepSTRF 0.1.0, an empty selection means *no* neurons, not all.
        """
        if self._nrn_sel is None:
            return list(range(self.N_neurons))
        return self._nrn_sel.tolist()

    @I.setter
    def I(self, value: Sequence[int] | None) -> None:  # noqa: E743
        if value is None:
            self.reset_pop_selection()
        else:
            self.select_population(value)

    @property
    def S_sel(self) -> list[int] | None:
        """Selected stimulus indices, or None when every stimulus is eligible."""
        return None if self._stim_sel is None else self._stim_sel.tolist()

    @S_sel.setter
    def S_sel(self, value: Sequence[int] | None) -> None:
        if value is None:
            self.reset_stim_selection()
        else:
            self.select_stims(value)

    def _set_nrn_selection(self, indices: np.ndarray | None) -> list[int]:
        self._nrn_sel = indices
        self._sel_cache = None
        return self.I

    def _set_stim_selection(self, indices: np.ndarray | None) -> list[int] | None:
        self._stim_sel = None if indices is None else np.unique(indices).astype(np.int64)
        self._sel_cache = None
        return self.S_sel

    def _selection(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(selected neurons, position of each neuron or -1, iterable stims)``, cached."""
        store = self._require_store()
        if self._sel_cache is None or self._sel_cache_version != store.version:
            masks = store.masks().numpy()
            N = self.N_neurons
            base = self._nrn_sel if self._nrn_sel is not None else np.arange(N, dtype=np.int64)
            stim_sel = self._stim_sel
            if stim_sel is not None:
                heard = masks[stim_sel].any(axis=0) if len(stim_sel) else np.zeros(N, bool)
                neurons = base[heard[base]]
            else:
                neurons = base
            if len(neurons):
                has_data = masks[:, neurons].any(axis=1)
                if stim_sel is not None:
                    allowed = np.zeros(len(has_data), bool)
                    allowed[stim_sel] = True
                    has_data &= allowed
                iterable = np.flatnonzero(has_data).astype(np.int64)
            else:
                iterable = np.zeros(0, dtype=np.int64)
            pos = np.full(N, -1, dtype=np.int64)
            pos[neurons] = np.arange(len(neurons), dtype=np.int64)
            # read-only: the store caches gather plans per pos array, by identity
            for arr in (neurons, pos, iterable):
                arr.setflags(write=False)
            self._sel_cache = (neurons, pos, iterable)
            self._sel_cache_version = store.version
        return self._sel_cache

    @property
    def selected_neurons(self) -> list[int]:
        """Neurons that appear in items, after the bidirectional rule, in batch order."""
        return self._selection()[0].tolist()

    @property
    def iterable_stims(self) -> list[int]:
        """Stimulus index behind each item ``ds[i]``, in order."""
        return self._selection()[2].tolist()

    # ------------------------------------------------------------------ neuron selection
    def select_neuron(self, neuron_index: int) -> list[int]:
        """Select a single neuron.

        Parameters
        ----------
        neuron_index : int
            Index into the whole population, in ``[0, N_neurons)``.

        Returns
        -------
        list of int
            The selection (also ``self.I``).
        """
        n = _contract_index("neuron_index", neuron_index, self.N_neurons)
        return self._set_nrn_selection(np.array([n], dtype=np.int64))

    def select_population(self, neuron_indices: Sequence[int]) -> list[int]:
        """Select the listed neurons; items list their responses in this order.

        Raises ``IndexError`` (with the valid range) for an index out of range
        and ``ValueError`` for a repeated index.
        """
        return self._set_nrn_selection(
            _as_index_array("neuron_indices", neuron_indices, self.N_neurons))

    def select_pop_by_nrn_attr(self, attribute_name: str, value: Any) -> list[int]:
        """Select the neurons whose ``nrn_meta[attribute_name] == value``.

        Neurons whose metadata lacks the key are skipped, so one call works on
        a concatenation of datasets with different metadata schemas.
        """
        chosen = [n for n, m in enumerate(self.nrn_meta) if _matches_attr(m, attribute_name, value)]
        return self._set_nrn_selection(np.asarray(chosen, dtype=np.int64))

    def select_pop_by_nrn_predicate(self, predicate: Callable[[Mapping], Any]) -> list[int]:
        """Select the neurons whose metadata dict satisfies ``predicate``.

        Neurons for which the predicate raises ``KeyError`` or ``TypeError``
        (a missing key, an incomparable value) are skipped.

        Examples
        --------
        >>> ds.select_pop_by_nrn_predicate(lambda n: n["area"] == "Field_L" and n["snr"] > 0.5)
        """
        self._check_callable(predicate)
        chosen = [n for n, m in enumerate(self.nrn_meta) if _matches_predicate(predicate, m)]
        return self._set_nrn_selection(np.asarray(chosen, dtype=np.int64))

    def select_pop_by_nrn_query(self, query: str | Query) -> list[int]:
        """Select neurons with a string query over ``nrn_meta``.

        Examples
        --------
        >>> ds.select_pop_by_nrn_query("area == 'Field_L' and snr > 0.5")

        See :mod:`deepstrf.datasets._query` for the language; a malformed
        query raises ``ValueError`` pointing at the bad part.
        """
        return self.select_pop_by_nrn_predicate(compile_query(query))

    def _neurons_hearing(self, stim_indices: Sequence[int]) -> np.ndarray:
        if not len(stim_indices):
            return np.zeros(0, dtype=np.int64)
        masks = self.nrn_masks.numpy()
        return np.flatnonzero(masks[np.asarray(stim_indices)].any(axis=0)).astype(np.int64)

    def select_pop_by_stim_attr(self, attribute_name: str, value: Any) -> list[int]:
        """Select the neurons with data for at least one stim whose ``stim_meta[key] == value``."""
        stims = [s for s, m in enumerate(self.stim_meta) if _matches_attr(m, attribute_name, value)]
        return self._set_nrn_selection(self._neurons_hearing(stims))

    def select_pop_by_stim_predicate(self, predicate: Callable[[Mapping], Any]) -> list[int]:
        """Select the neurons with data for at least one stim whose metadata satisfies ``predicate``."""
        self._check_callable(predicate)
        stims = [s for s, m in enumerate(self.stim_meta) if _matches_predicate(predicate, m)]
        return self._set_nrn_selection(self._neurons_hearing(stims))

    def select_pop_by_stim_query(self, query: str | Query) -> list[int]:
        """Select the neurons with data for at least one stim matching a string query."""
        return self.select_pop_by_stim_predicate(compile_query(query))

    def reset_pop_selection(self) -> None:
        """Make every neuron eligible again."""
        self._set_nrn_selection(None)

    # ------------------------------------------------------------------ stim selection
    def select_stim(self, stim_index: int) -> list[int]:
        """Restrict iteration to one stimulus (neurons that did not hear it are hidden)."""
        s = _contract_index("stim_index", stim_index, self.get_S())
        return self._set_stim_selection(np.array([s], dtype=np.int64))

    def select_stims(self, stim_indices: Sequence[int]) -> list[int]:
        """Restrict iteration to the listed stimuli (iterated in increasing index order)."""
        return self._set_stim_selection(
            _as_index_array("stim_indices", stim_indices, self.get_S()))

    def select_stims_by_attr(self, attribute_name: str, value: Any) -> list[int]:
        """Restrict iteration to stims whose ``stim_meta[attribute_name] == value`` (others skipped)."""
        chosen = [s for s, m in enumerate(self.stim_meta) if _matches_attr(m, attribute_name, value)]
        return self._set_stim_selection(np.asarray(chosen, dtype=np.int64))

    def select_stims_by_predicate(self, predicate: Callable[[Mapping], Any]) -> list[int]:
        """Restrict iteration to stims whose metadata satisfies ``predicate``.

        Stims for which the predicate raises ``KeyError`` or ``TypeError`` are skipped.
        """
        self._check_callable(predicate)
        chosen = [s for s, m in enumerate(self.stim_meta) if _matches_predicate(predicate, m)]
        return self._set_stim_selection(np.asarray(chosen, dtype=np.int64))

    def select_stims_by_query(self, query: str | Query) -> list[int]:
        """Restrict iteration to stims matching a string query over ``stim_meta``.

        Examples
        --------
        >>> ds.select_stims_by_query("type in ('song', 'call') and duration_s > 1")
        """
        return self.select_stims_by_predicate(compile_query(query))

    def reset_stim_selection(self) -> None:
        """Make every stimulus eligible again."""
        self._set_stim_selection(None)

    @staticmethod
    def _check_callable(predicate: Any) -> None:
        if not callable(predicate):
            raise TypeError(f"predicate must be callable (a function of one metadata dict); got "
                            f"{type(predicate).__name__}. For a string, use the *_query methods.")

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        """Number of stimuli with data for at least one selected neuron (within S_sel)."""
        return len(self._selection()[2])

    def _item(self, i: int) -> dict[str, Any]:
        neurons, pos, iterable = self._selection()
        s = int(iterable[i])
        store = self._store
        responses, valid = store.gather_plan(store.cached_plan(s, pos), len(neurons))
        return {"stims": self.stims[s], "responses": responses, "valid_mask": valid,
                "stim_meta": self.stim_meta[s]}

    def _resolve(self, idx: Any) -> int:
        n = len(self)
        if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
            raise TypeError(f"dataset index must be an int, slice or list of ints; got "
                            f"{type(idx).__name__}.")
        i = int(idx)
        if i < 0:
            i += n
        if not 0 <= i < n:
            valid = f"[{-n}, {n - 1}]" if n else "empty (nothing is selected)"
            raise IndexError(f"dataset index {int(idx)} is out of range; len={n} under the "
                             f"current selection, valid indices are {valid}.")
        return i

    def __getitem__(self, idx: Any) -> dict[str, Any]:
        """Item(s) of the iterable stim set, restricted to the selected neurons.

        Parameters
        ----------
        idx : int, slice, or sequence of int
            Position(s) in ``range(len(self))``; negative ints count from the end.

        Returns
        -------
        dict
            For an int: ``stims`` (the stim tensor), ``responses`` (float32
            ``(N_sel, R, T_s)``, NaN where a neuron has no data or fewer
            repeats), ``valid_mask`` (bool, same shape, ``~isnan``) and
            ``stim_meta`` (dict). For a slice or sequence: the same keys, each
            holding a list with one entry per item.
        """
        idx = normalize_index(idx)  # 0-d integer tensors and numpy integers index like ints
        if isinstance(idx, slice):
            positions = list(range(*idx.indices(len(self))))
        elif isinstance(idx, (list, tuple, np.ndarray, torch.Tensor)):
            positions = [self._resolve(i) for i in (idx.tolist() if hasattr(idx, "tolist")
                                                     else idx)]
        else:
            return self._item(self._resolve(idx))
        items = [self._item(p) for p in positions]
        keys = ("stims", "responses", "valid_mask", "stim_meta")
        return {k: [it[k] for it in items] for k in keys}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Items for a batch of positions: the DataLoader's batched-fetch hook.

        The padded batch is assembled once, straight from the packed storage,
        and each item is a view into it (equal to ``self[i]``), so
        :func:`~deepstrf.utils.data.neural_collate` hands the batch over
        without copying. Any other ``collate_fn`` sees ordinary items.
        """
        from deepstrf.utils.data import assemble_batch
        indices = normalize_index(list(indices))  # e.g. Subset(ds, torch.randperm(n)) gives tensors
        return assemble_batch(self, [self._resolve(i) for i in indices])

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        parts = [f"S={self.get_S()} stims", f"N={self.N_neurons} neurons", f"dt={self.dt:g} ms"]
        try:
            neurons, _, iterable = self._selection()
            sel = []
            if self._nrn_sel is not None:
                sel.append(f"{len(self._nrn_sel)} neurons chosen")
            if self._stim_sel is not None:
                sel.append(f"{len(self._stim_sel)} stims chosen")
            state = ", ".join(sel) if sel else "no selection"
            parts.append(f"{state}: {len(neurons)} neurons and {len(iterable)} stims in use")
        except (RuntimeError, ValueError, TypeError):
            parts.append("not validated")
        return f"{type(self).__name__}({'; '.join(parts)})"

    def __str__(self) -> str:
        return self.__repr__()

    # ------------------------------------------------------------------ preprocessing
    def smooth_responses(self, window_ms: float = 21.0) -> None:
        """Smooth every response in time with a Hanning window of unit sum.

        Each repeat is convolved ("same" length, zero-padded at the ends) with
        the kernel of :func:`~deepstrf.preprocessing.spikes.hanning_kernel`:
        ``K = floor(window_ms / dt)`` bins raised to the next odd number,
        the taps of MATLAB's ``hanning(K)`` divided by their sum. This follows
        Hsu, Borst & Theunissen (2004), who smooth PSTHs with a ~21 ms Hanning
        window to reduce the variance of the estimate.

        Because the kernel sums to 1, smoothed values remain spike counts per
        bin. deepSTRF 0.1.0 uses the un-normalised ``numpy.hanning(K)``, whose
        end taps are zero: its smoothed responses are scaled by about ``K/2``
        (x2 at 5 ms, x10 at 1 ms) and at ``dt = 10`` ms its kernel is the
        identity. The ``(1, 1)`` sentinels and NaN values are kept.

        Parameters
        ----------
        window_ms : float, default 21.0
            Window width in ms.
        """
        from deepstrf.datasets._preprocess import smooth_responses

        kernel = smooth_responses(self, window_ms)
        self._record("smooth_responses", window_ms=float(window_ms), n_taps=len(kernel))

    def normalize_responses(self, method: str = "max", stim_indices: Sequence[int] | None = None,
                            eps: float = 1e-8) -> dict[str, Any]:
        """Normalise each neuron's responses with statistics from some stimuli.

        Statistics are taken over every valid value (all repeats and bins) of
        the neuron's responses to ``stim_indices`` (typically training plus
        validation stimuli) and applied to all stimuli, so test stimuli are
        transformed without their statistics leaking in.

        Parameters
        ----------
        method : {'max', 'zscore'}
            ``'max'``: divide by the largest absolute value (keeps 0 at 0, for
            spike counts). ``'zscore'``: subtract the mean and divide by the
            standard deviation (n - 1), for continuous signals.
        stim_indices : sequence of int, optional
            Stimuli to take the statistics from (default: all).
        eps : float
            Floor of the divisor.

        Returns
        -------
        dict
            ``method``, ``scale`` and ``offset`` (``(N,)`` tensors, so that
            ``normalised = (x - offset) / scale``), ``stim_indices``, ``eps``
            and ``neurons_without_statistics`` (neurons with no data among the
            chosen stimuli, left unchanged). Also stored as
            ``self.response_normalization``.

        Notes
        -----
        Calling it again first undoes the previous normalisation, so the new
        statistics come from the original responses (never normalised twice).
        :meth:`denormalize_responses` undoes it.
        """
        from deepstrf.datasets._preprocess import normalize_responses

        replaced = self.response_normalization is not None
        record = normalize_responses(self, method, stim_indices, eps)
        self._record("normalize_responses", method=method, stim_indices=record["stim_indices"],
                     eps=float(eps), replaced_previous=replaced)
        return record

    def denormalize_responses(self) -> None:
        """Undo :meth:`normalize_responses` (``x * scale + offset``, to float32 rounding)."""
        from deepstrf.datasets._preprocess import denormalize_responses

        denormalize_responses(self)
        self._record("denormalize_responses")

    def standardize_stims(self, stim_indices: Sequence[int] | None = None, per_band: bool = True,
                          eps: float = 1e-8) -> dict[str, Any]:
        """Standardise the stimuli, ``(x - mean) / std``, with statistics from some stimuli.

        Parameters
        ----------
        stim_indices : sequence of int, optional
            Stimuli to take the statistics from (typically training plus
            validation); they are applied to all. Default: all stimuli.
        per_band : bool, default True
            One mean and std per frequency band (axis ``-2``; for movies, per
            colour channel, axis 0); False: one scalar pair (required for
            waveforms).
        eps : float
            Floor of the standard deviation.

        Returns
        -------
        dict
            ``mean`` and ``std`` (broadcastable to a stim, e.g. ``(1, F, 1)``),
            ``per_band``, ``stim_indices``, ``eps``; also stored as
            ``self.stim_normalization`` so it can be undone
            (:meth:`destandardize_stims`) or folded into a model's weights.
            Calling it again first undoes the previous standardisation.
        """
        from deepstrf.datasets._preprocess import standardize_stims

        replaced = self.stim_normalization is not None
        record = standardize_stims(self, stim_indices, per_band, eps)
        self._record("standardize_stims", stim_indices=record["stim_indices"],
                     per_band=per_band, eps=float(eps), replaced_previous=replaced)
        return record

    def destandardize_stims(self) -> None:
        """Undo :meth:`standardize_stims` (``x * std + mean``)."""
        from deepstrf.datasets._preprocess import destandardize_stims

        destandardize_stims(self)
        self._record("destandardize_stims")

    @torch.no_grad()
    def compute_neuron_quality(self, max_ccmax_iters: int = 126, seed: int = 0
                               ) -> dict[str, torch.Tensor]:
        """Add each neuron's ``snr`` and ``ccmax`` to its ``nrn_meta`` entry.

        ``snr`` is the signal-to-noise ratio of Sahani & Linden (2003) and
        ``ccmax`` the noise ceiling of Hsu, Borst & Theunissen (2004), computed
        from the responses as they are now (after any smoothing), over all of
        the neuron's stimuli; see :mod:`deepstrf.metrics` for the formulas and
        the degenerate cases (NaN when no stimulus has two repeats). Both are
        written as plain floats, so they can be used in predicates and queries
        (``"snr > 0.5"``). The stimuli are streamed block by block through
        :meth:`~deepstrf.metrics.NeuronQualityAccumulator.add_rows`, which
        reads each packed block once in cache-sized chunks without padding
        it, so memory stays bounded by one block.

        Parameters
        ----------
        max_ccmax_iters : int, default 126
            Half-splits per (stimulus, neuron): all of them when there are at
            most this many (126 for 10 repeats), else this many random ones.
        seed : int, default 0
            Seed of the random half-splits; the result is reproducible.

        Returns
        -------
        dict
            ``snr``, ``ccmax``, ``signal_power``, ``noise_power``: float64
            tensors of shape ``(N,)``.
        """
        from deepstrf.metrics.quality import NeuronQualityAccumulator

        for n, meta in enumerate(self.nrn_meta):
            if not isinstance(meta, MutableMapping):
                raise TypeError(f"compute_neuron_quality writes 'snr' and 'ccmax' into each "
                                f"nrn_meta entry, but nrn_meta[{n}] is a {type(meta).__name__}. "
                                "Make the entries dicts, or compute the values without storing "
                                "them with deepstrf.metrics.NeuronQualityAccumulator.")
        acc = NeuronQualityAccumulator(self.N_neurons, max_ccmax_iters=max_ccmax_iters, seed=seed)
        store = self._require_store()
        # each stimulus's packed rows in one streaming pass (pairs that need the
        # exact centred path are reduced that way inside add_rows)
        for s in range(store.n_stims):
            neurons, reps, rows = store.block(s)
            if len(neurons):
                acc.add_rows(neurons, reps, rows)
            del rows
        snr, ccmax, sp, np_ = acc.result()
        for meta, a, b in zip(self.nrn_meta, snr.tolist(), ccmax.tolist()):
            meta["snr"] = float(a)
            meta["ccmax"] = float(b)
        self._record("compute_neuron_quality", max_ccmax_iters=int(max_ccmax_iters),
                     seed=int(seed))
        return {"snr": snr, "ccmax": ccmax, "signal_power": sp, "noise_power": np_}

    # ------------------------------------------------------------------ provenance
    def _record(self, operation: str, **parameters: Any) -> None:
        self._operations.append({"operation": operation, "parameters": parameters,
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    @property
    def provenance(self) -> dict[str, Any]:
        """Where the numbers came from.

        ``manifest``: the processed cache entry's record (parameters, raw
        sources, library versions, build time), None for data built in memory;
        ``cache_hit``: whether this instance was read from the cache rather
        than built; ``operations``: what was applied since (smoothing,
        normalisation, ...) with its parameters.
        """
        return {
            "class": type(self).__name__,
            "path": self.path,
            "dt_ms": self.dt,
            "n_stims": self.get_S(),
            "n_neurons": self.N_neurons,
            "manifest": copy.deepcopy(self._manifest),
            "cache_hit": self._cache_hit,
            "operations": copy.deepcopy(self._operations),
        }

    # ------------------------------------------------------------------ concatenation
    def __add__(self, other: Any) -> NeuralDataset:
        """``ds_a + ds_b``: block-diagonal concatenation, see :func:`concat_neural_datasets`."""
        if not isinstance(other, NeuralDataset):
            return NotImplemented
        from deepstrf.utils.data import concat_neural_datasets
        return concat_neural_datasets([self, other])

    def _concat_check_compat(self, other: NeuralDataset) -> None:
        """Raise if ``other`` cannot be concatenated with this dataset (hook)."""
        if abs(self.dt - other.dt) > 1e-9 * max(self.dt, other.dt):
            raise ValueError(f"cannot concatenate datasets with different bin widths: "
                             f"{type(self).__name__} has dt={self.dt:g} ms, "
                             f"{type(other).__name__} has dt={other.dt:g} ms. Rebuild one with a "
                             "matching dt_ms.")

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        """Copy modality attributes from ``source`` onto a concatenation result (hook)."""
