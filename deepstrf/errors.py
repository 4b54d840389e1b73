"""Exceptions and warnings raised by deepstrf.

Every exception subclasses a builtin, so ``except ValueError`` or
``except OSError`` in user code catches ours without importing this module.
Where deepSTRF 0.1.0 checked the data contract with ``assert``,
:class:`ContractError` (also an ``AssertionError``) is raised, so a ported
``except AssertionError`` still catches it.
"""

from __future__ import annotations

__all__ = [
    "DeepSTRFWarning",
    "DataQuirkWarning",
    "RawDataError",
    "MissingRawDataError",
    "DownloadError",
    "ChecksumError",
    "AuthenticationError",
    "OfflineError",
    "UnsafeArchiveError",
    "CacheError",
    "CacheMissError",
    "ContractError",
    "ContractTypeError",
    "ContractIndexError",
]


class DeepSTRFWarning(UserWarning):
    """Base class of the warnings deepstrf emits."""


class DataQuirkWarning(DeepSTRFWarning):
    """A raw file departs from its dataset's documented format but can still be read.

    Examples: a ``stimN`` file with no matching ``spikeN``, a duplicate
    stimulus, spikes after the end of the stimulus.
    """


class RawDataError(ValueError):
    """A raw data file is malformed; the message names the file and the fault."""


class MissingRawDataError(FileNotFoundError):
    """Raw files a dataset needs are absent; the message lists them and the remedy."""


class DownloadError(OSError):
    """A download failed after its retries; the message says which URL and why."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum or size differs from the expected one."""


class AuthenticationError(PermissionError):
    """A login was refused (wrong or missing credentials)."""


class OfflineError(ConnectionError):
    """Network access was needed while offline mode is on."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside its target folder, or is a link."""


class CacheError(RuntimeError):
    """The processed cache is unusable (corrupt entry, lock timeout, bad mode)."""


class CacheMissError(CacheError, FileNotFoundError):
    """Read-only cache mode was asked for an entry that does not exist."""


class ContractError(ValueError, AssertionError):
    """A dataset breaks the data contract, or datasets cannot be combined.

    Raised by :meth:`~deepstrf.datasets.neural_dataset.NeuralDataset.validate`,
    by concatenation (different ``dt``, number of frequency bands, sample rate
    or mode; a ``names`` list of the wrong length) and by the selection
    methods for an index out of range. deepSTRF 0.1.0 used ``assert`` for these
    checks; subclassing ``AssertionError`` as well as ``ValueError`` (as
    numpy's ``AxisError`` subclasses ``ValueError`` and ``IndexError``) keeps a
    ported ``except AssertionError`` working. Unlike an ``assert``, the check
    also runs under ``python -O``.
    """


class ContractTypeError(ContractError, TypeError):
    """A contract violation about a type (e.g. ``N_neurons`` not an int).

    Also a ``TypeError``, as before, and an ``AssertionError`` (see
    :class:`ContractError`).
    """


class ContractIndexError(ContractError, IndexError):
    """A contract violation about an index out of range (e.g. ``select_neuron(999)``).

    Also an ``IndexError``, as before, and an ``AssertionError`` (see
    :class:`ContractError`).
    """
