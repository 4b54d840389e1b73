"""Exceptions and warnings raised by deepstrf.

Every exception subclasses a builtin, so ``except ValueError`` or
``except OSError`` in user code catches ours without importing this module.
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
