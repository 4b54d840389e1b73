"""Verified, resumable downloads of raw dataset files, and the CRCNS login.

This is the only module of deepstrf that opens network connections. Dataset
modules declare their raw files as :class:`RemoteFile` records and call
:func:`fetch`, which:

* returns at once for files that are already present and verified (the result
  of a checksum is cached in a small ``.<name>.verified`` JSON sidecar keyed by
  the file's size and modification time, so a 29 GB archive is hashed once,
  not at every construction);
* in offline mode (``download=False`` or ``DEEPSTRF_OFFLINE=1``) never touches
  the network and raises :class:`~deepstrf.errors.MissingRawDataError` listing
  every missing file, where it is expected and how to get it;
* otherwise downloads what is missing through :mod:`pooch` with a custom
  downloader that adds what pooch lacks: true resume of a partial transfer
  from a stable ``<name>.part`` file with HTTP ``Range`` requests, retries
  with exponential backoff that honour ``Retry-After``, refusal of HTML/XML
  pages served in place of data, and the CRCNS session login;
* verifies the sha256 or md5 checksum when one is known (pooch does this on
  its temporary file before moving it into place), the size otherwise, and
  deletes a file that fails, saying what was expected and what came.

CRCNS data sets (AA1, AA2, AA4, AC1) need a free account. Credentials are
taken from the ``username``/``password`` arguments, then the environment
variables ``CRCNS_USERNAME``/``CRCNS_PASSWORD``, then the ``machine crcns.org``
entry of ``~/.netrc`` (or the file named by ``$NETRC``). The password never
appears in logs, error messages or reprs.

Files on Zenodo, figshare and OSF are declared with :meth:`RemoteFile.zenodo`,
:meth:`RemoteFile.figshare` and :meth:`RemoteFile.osf`. When such a file
declares no checksum, the one its host publishes through its API (Zenodo
record ``files[].checksum``, figshare article ``files[].computed_md5``, OSF
file ``attributes.extra.hashes``) is read at download time, before any byte
of the file is fetched, and the download is verified against it. The
checksum used and where it came from are kept in the file's ``.verified``
sidecar, from which :func:`source_record` reports them (the processed cache's
manifest lists them under ``sources``).

The CRCNS endpoints are read at call time from the environment variables
``DEEPSTRF_CRCNS_LOGIN_URL`` and ``DEEPSTRF_CRCNS_DOWNLOAD_URL`` when set, else
from the module constants :data:`CRCNS_LOGIN_URL` and
:data:`CRCNS_DOWNLOAD_URL`, so tests can point them at a local server. The
same holds for the open hosts: ``DEEPSTRF_ZENODO_URL``,
``DEEPSTRF_FIGSHARE_API_URL``, ``DEEPSTRF_FIGSHARE_DOWNLOAD_URL``,
``DEEPSTRF_OSF_URL`` and ``DEEPSTRF_OSF_API_URL`` (see :data:`HOST_URLS`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import json
import logging
import math
import netrc
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from deepstrf._config import offline_mode, progress_disable
from deepstrf._validation import check_int, check_positive
from deepstrf.errors import (
    AuthenticationError,
    ChecksumError,
    DownloadError,
    MissingRawDataError,
    OfflineError,
)

if TYPE_CHECKING:
    import requests

__all__ = [
    "CRCNS_DOWNLOAD_URL",
    "CRCNS_LOGIN_URL",
    "CRCNS_REGISTER_URL",
    "CRCNSCredentials",
    "HOST_URLS",
    "RemoteFile",
    "crcns_file_list",
    "fetch",
    "human_size",
    "missing_files",
    "offline_mode",
    "source_record",
]

logger = logging.getLogger(__name__)

#: Login form of the CRCNS site (overridden by ``$DEEPSTRF_CRCNS_LOGIN_URL``).
CRCNS_LOGIN_URL = "https://crcns.org/login_form"
#: Root of the CRCNS file host (overridden by ``$DEEPSTRF_CRCNS_DOWNLOAD_URL``).
CRCNS_DOWNLOAD_URL = "https://download.crcns.org"
#: Where to open a free CRCNS account.
CRCNS_REGISTER_URL = "https://crcns.org/register"
#: ``machine`` name looked up in the netrc file.
CRCNS_NETRC_MACHINE = "crcns.org"

#: First retry waits this long (seconds); each further retry doubles it.
BACKOFF_BASE_S = 2.0
#: No single wait is longer than this, whatever the server's ``Retry-After`` says.
BACKOFF_MAX_S = 120.0

# Small enough that a dropped connection loses little of what was in flight.
_CHUNK_BYTES = 1 << 16
_SNIFF_BYTES = 4096
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Files whose expected content is itself markup: the HTML guard must let them through.
_MARKUP_SUFFIXES = (".html", ".htm", ".xhtml", ".xml", ".svg")
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")
# A file-list data line: path, size in bytes, then an optional human-readable size.
_FILE_LIST_LINE = re.compile(r"(?P<path>\S(?:.*?\S)?)[\s,]+(?P<size>\d+)(?:[\s,].*)?")

_CREDENTIALS_HELP = (
    "CRCNS data need a free account: register at " + CRCNS_REGISTER_URL + ". Then pass "
    "username= and password=, or set the environment variables CRCNS_USERNAME and "
    "CRCNS_PASSWORD, or add the line 'machine crcns.org login <user> password <password>' "
    "to ~/.netrc (or to the file named by $NETRC)."
)

#: Base URLs of the open hosts: environment variable -> default. Read at call time.
HOST_URLS: dict[str, str] = {
    "DEEPSTRF_ZENODO_URL": "https://zenodo.org",
    "DEEPSTRF_FIGSHARE_API_URL": "https://api.figshare.com/v2",
    "DEEPSTRF_FIGSHARE_DOWNLOAD_URL": "https://ndownloader.figshare.com",
    "DEEPSTRF_OSF_URL": "https://osf.io",
    "DEEPSTRF_OSF_API_URL": "https://api.osf.io/v2",
}
_HOST_NAMES = {"zenodo": "Zenodo", "figshare": "figshare", "osf": "OSF"}

# Indirection so tests can record the waits instead of sleeping.
_sleep = time.sleep

#: Called with the username found so far (or None); returns ``(username, password)``.
CredentialsPrompt = Callable[[str | None], tuple[str, str]]


def _crcns_login_url() -> str:
    return os.environ.get("DEEPSTRF_CRCNS_LOGIN_URL") or CRCNS_LOGIN_URL


def _crcns_download_url() -> str:
    return (os.environ.get("DEEPSTRF_CRCNS_DOWNLOAD_URL") or CRCNS_DOWNLOAD_URL).rstrip("/")


def _host_url(variable: str) -> str:
    return (os.environ.get(variable) or HOST_URLS[variable]).rstrip("/")


# --------------------------------------------------------------------------------------
# Declarations


def _check_relative_path(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string; got {value!r} ({type(value).__name__}).")
    posix = value.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if not value or posix.startswith("/") or re.match(r"[A-Za-z]:", posix) or ".." in parts:
        raise ValueError(
            f"{what} must be a relative path without '..' (e.g. 'all_cells.tar.gz'); got {value!r}."
        )
    return "/".join(p for p in parts if p != ".")


def _check_when(name: str, when: Any) -> tuple[tuple[str, Any], ...]:
    """Normalise ``when=`` to sorted ``(parameter, value)`` pairs of hashable values."""
    if isinstance(when, Mapping):
        pairs = list(when.items())
    else:
        try:
            pairs = [tuple(p) for p in when]
        except TypeError:
            raise TypeError(f"RemoteFile {name!r}: when must be a mapping of parameter name to "
                            f"value; got {when!r}.") from None
    out = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
            raise ValueError(f"RemoteFile {name!r}: when must map parameter names (non-empty "
                             f"strings) to values; got {when!r}.")
        key, value = pair
        if not isinstance(value, (str, bool, int, float)) or value is None:
            raise TypeError(f"RemoteFile {name!r}: when[{key!r}] must be a str, bool or number "
                            f"(the parameter value that needs the file); got {value!r}.")
        out.append((key, value))
    return tuple(sorted(out))


def _param_value(params: Mapping[str, Any], key: str) -> Any:
    """``params[key]``; a dotted key reaches into nested mappings (``front_end.x``)."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


@dataclass(frozen=True)
class RemoteFile:
    """One raw file of a dataset: where it is saved and where it comes from.

    Parameters
    ----------
    name : str
        Path relative to the dataset's raw folder where the file is saved
        (``/``-separated, no ``..``).
    url : str or None
        Plain HTTP(S) URL (GitHub raw, DRUM, ...). None for CRCNS files and
        for files declared with :meth:`zenodo`, :meth:`figshare` or :meth:`osf`.
    size : int or None
        Size in bytes, checked when no checksum is known (and cheaply before
        hashing when one is).
    sha256, md5 : str or None
        Hex digests. When both are given, sha256 is the one checked. When
        neither is and the file has a ``host``, the host's published
        checksum is fetched and checked at download time.
    crcns : tuple of (str, str) or None
        ``(dataset, path)`` on the CRCNS file host, e.g. ``("aa-1", "crcns-aa1.zip")``.
    host : tuple of str or None
        ``("zenodo", record, key)``, ``("figshare", article, file id)`` or
        ``("osf", guid)``; set by the constructors of the same names.
        Exactly one of ``url``, ``crcns`` and ``host`` must be given.
    when : mapping of str to value, optional
        The dataset parameters that need this file: it is fetched only when,
        for every entry, the parameter equals the value or (for a sequence
        parameter such as ``animals``) contains it. A dotted name reaches
        into a nested parameter (``"front_end.return_waveform"``). Empty (the
        default): always needed. See :meth:`needed`.

    Examples
    --------
    >>> RemoteFile("crcns-aa1.zip", crcns=("aa-1", "crcns-aa1.zip"))  # doctest: +ELLIPSIS
    RemoteFile(name='crcns-aa1.zip', url=None, ...)
    >>> f = RemoteFile.zenodo("wav.zip", record=8044773, when={"return_waveform": True})
    >>> f.needed({"return_waveform": False}), f.needed({"return_waveform": True})
    (False, True)
    """

    name: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    crcns: tuple[str, str] | None = None
    host: tuple[str, ...] | None = None
    when: Any = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _check_relative_path("RemoteFile.name", self.name))
        given = [k for k in ("url", "crcns", "host") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"RemoteFile {self.name!r}: give exactly one of url= (plain HTTPS), "
                f"crcns=(dataset, path) and host= (use RemoteFile.zenodo/figshare/osf); got "
                f"url={self.url!r}, crcns={self.crcns!r}, host={self.host!r}."
            )
        if self.url is not None and (
            not isinstance(self.url, str) or not re.match(r"https?://", self.url)
        ):
            raise ValueError(
                f"RemoteFile {self.name!r}: url must start with http:// or https://; "
                f"got {self.url!r}."
            )
        if self.crcns is not None:
            if not (isinstance(self.crcns, tuple) and len(self.crcns) == 2
                    and all(isinstance(p, str) and p for p in self.crcns)):
                raise ValueError(
                    f"RemoteFile {self.name!r}: crcns must be a (dataset, path) tuple of "
                    f"non-empty strings such as ('aa-1', 'crcns-aa1.zip'); got {self.crcns!r}."
                )
            dataset = _check_relative_path("RemoteFile.crcns dataset", self.crcns[0])
            path = _check_relative_path("RemoteFile.crcns path", self.crcns[1])
            object.__setattr__(self, "crcns", (dataset, path))
        if self.host is not None:
            arity = {"zenodo": 3, "figshare": 3, "osf": 2}
            host = tuple(self.host) if isinstance(self.host, (tuple, list)) else ()
            if (not host or host[0] not in arity or len(host) != arity[host[0]]
                    or not all(isinstance(p, str) and p for p in host)):
                raise ValueError(
                    f"RemoteFile {self.name!r}: host must be ('zenodo', record, key), "
                    f"('figshare', article, file id) or ('osf', guid) with non-empty strings; "
                    f"got {self.host!r}. Use RemoteFile.zenodo/figshare/osf."
                )
            object.__setattr__(self, "host", host)
        if self.size is not None:
            object.__setattr__(self, "size", check_int("RemoteFile.size", self.size, minimum=0))
        for algo, pattern in (("sha256", _SHA256), ("md5", _MD5)):
            value = getattr(self, algo)
            if value is None:
                continue
            if not isinstance(value, str) or not pattern.fullmatch(value.lower()):
                n_hex = 64 if algo == "sha256" else 32
                raise ValueError(
                    f"RemoteFile {self.name!r}: {algo} must be a hex digest of {n_hex} "
                    f"characters; got {value!r}."
                )
            object.__setattr__(self, algo, value.lower())
        object.__setattr__(self, "when", _check_when(self.name, self.when))

    # ------------------------------------------------------------ constructors
    @classmethod
    def zenodo(cls, name: str, *, record: int | str, key: str | None = None,
               **kwargs: Any) -> RemoteFile:
        """A file of a Zenodo record (``key`` defaults to ``name``'s last component)."""
        key = key if key is not None else name.replace("\\", "/").rsplit("/", 1)[-1]
        return cls(name, host=("zenodo", str(record), key), **kwargs)

    @classmethod
    def figshare(cls, name: str, *, article: int | str, file_id: int | str,
                 **kwargs: Any) -> RemoteFile:
        """A file of a figshare article, by the article id and the file id."""
        return cls(name, host=("figshare", str(article), str(file_id)), **kwargs)

    @classmethod
    def osf(cls, name: str, *, guid: str, **kwargs: Any) -> RemoteFile:
        """An OSF file, by its guid (the ``abcde`` of ``https://osf.io/abcde/``)."""
        return cls(name, host=("osf", guid), **kwargs)

    # ------------------------------------------------------------ facts
    def needed(self, params: Mapping[str, Any]) -> bool:
        """Whether a dataset built with ``params`` needs this file (see ``when``).

        Raises
        ------
        KeyError
            If ``when`` names a parameter that ``params`` lacks (a declaration error).
        """
        for key, wanted in self.when:
            try:
                value = _param_value(params, key)
            except KeyError:
                raise KeyError(
                    f"RemoteFile {self.name!r} is needed when {key}={wanted!r}, but the "
                    f"dataset's parameters have no {key!r} (they have: "
                    f"{', '.join(sorted(params))}). Fix the declaration."
                ) from None
            if isinstance(value, (list, tuple, set, frozenset)):
                if wanted not in value:
                    return False
            elif value != wanted:
                return False
        return True

    @property
    def checksum(self) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` that is verified, or None."""
        if self.sha256 is not None:
            return ("sha256", self.sha256)
        if self.md5 is not None:
            return ("md5", self.md5)
        return None

    @property
    def source_url(self) -> str:
        """The URL the file is fetched from (host URLs use the current base URLs)."""
        if self.crcns is not None:
            dataset, path = self.crcns
            return f"{_crcns_download_url()}/{quote(dataset)}/{quote(path)}"
        if self.host is not None:
            kind = self.host[0]
            if kind == "zenodo":
                return (f"{_host_url('DEEPSTRF_ZENODO_URL')}/api/records/{quote(self.host[1])}"
                        f"/files/{quote(self.host[2])}/content")
            if kind == "figshare":
                return f"{_host_url('DEEPSTRF_FIGSHARE_DOWNLOAD_URL')}/files/{quote(self.host[2])}"
            return f"{_host_url('DEEPSTRF_OSF_URL')}/download/{quote(self.host[1])}/"
        return str(self.url)

    @property
    def api_url(self) -> str | None:
        """The host API page that publishes this file's checksum (None without a host)."""
        if self.host is None:
            return None
        kind = self.host[0]
        if kind == "zenodo":
            return f"{_host_url('DEEPSTRF_ZENODO_URL')}/api/records/{quote(self.host[1])}"
        if kind == "figshare":
            return f"{_host_url('DEEPSTRF_FIGSHARE_API_URL')}/articles/{quote(self.host[1])}"
        return f"{_host_url('DEEPSTRF_OSF_API_URL')}/files/{quote(self.host[1])}/"

    def describe_source(self) -> str:
        """Human-readable origin used in messages."""
        if self.crcns is not None:
            return f"CRCNS {self.crcns[0]}, file {self.crcns[1]} ({self.source_url})"
        if self.host is not None:
            where = {"zenodo": f"record {self.host[1]}", "figshare": f"article {self.host[1]}",
                     "osf": f"file {self.host[1]}"}[self.host[0]]
            return f"{_HOST_NAMES[self.host[0]]} {where} ({self.source_url})"
        return self.source_url


# --------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True, repr=False)
class CRCNSCredentials:
    """A CRCNS username and password whose password never shows in reprs.

    Parameters
    ----------
    username, password : str
        Non-empty strings.
    origin : str
        Where they came from (for messages), e.g. ``"arguments"``.

    Notes
    -----
    Build one with :meth:`resolve`, which looks in the arguments, the
    environment and the netrc file in that order.
    """

    username: str
    password: str
    origin: str = "arguments"

    def __post_init__(self) -> None:
        if not isinstance(self.username, str):
            raise TypeError(f"CRCNS username must be a string; got {self.username!r}.")
        if not isinstance(self.password, str):
            # Never echo the value: it may be a real password of the wrong type.
            raise TypeError(
                f"CRCNS password must be a string; got a {type(self.password).__name__}."
            )
        if not self.username or not self.password:
            raise ValueError("CRCNS username and password must be non-empty strings; got an "
                             f"empty {'username' if not self.username else 'password'}.")

    def __repr__(self) -> str:
        return (f"CRCNSCredentials(username={self.username!r}, password='***', "
                f"origin={self.origin!r})")

    __str__ = __repr__

    @classmethod
    def resolve(cls, username: str | None = None, password: str | None = None, *,
                owner: str = "", prompt: CredentialsPrompt | None = None) -> CRCNSCredentials:
        """Find CRCNS credentials: arguments, then environment, then netrc, then ``prompt``.

        Each of username and password is taken from the first source that
        has it; a netrc password is used only if the netrc login matches the
        username found so far (or supplies it).

        Parameters
        ----------
        username, password : str or None
            Explicit values; None looks further.
        owner : str
            Name of the caller (e.g. ``"CRCNSAA1Dataset"``) for the error message.
        prompt : callable or None
            Asked, with the username found so far (or None), for
            ``(username, password)`` when no complete pair is configured; the
            command line passes one that asks on the terminal. It may raise
            :class:`~deepstrf.errors.AuthenticationError` itself.

        Returns
        -------
        CRCNSCredentials

        Raises
        ------
        AuthenticationError
            If no complete pair is found; the message says how to provide one.
        """
        for label, value in (("username", username), ("password", password)):
            if value is not None and not isinstance(value, str):
                raise TypeError(
                    f"CRCNS {label} must be a string or None; got {type(value).__name__}."
                )
        origins: list[str] = []
        user = username or None
        secret = password or None
        if user or secret:
            origins.append("arguments")
        env_user = os.environ.get("CRCNS_USERNAME") or None
        env_secret = os.environ.get("CRCNS_PASSWORD") or None
        if user is None and env_user:
            user = env_user
            origins.append("$CRCNS_USERNAME")
        if secret is None and env_secret:
            secret = env_secret
            origins.append("$CRCNS_PASSWORD")
        if user is None or secret is None:
            entry = _netrc_entry()
            if entry is not None:
                login, netrc_secret, netrc_path = entry
                if user is None and login:
                    user = login
                    origins.append(f"netrc file {netrc_path}")
                if secret is None and netrc_secret and (not login or login == user):
                    secret = netrc_secret
                    origins.append(f"netrc file {netrc_path}")
        if (not user or not secret) and prompt is not None:
            asked_user, asked_secret = prompt(user)
            for label, value in (("username", asked_user), ("password", asked_secret)):
                if not isinstance(value, str):
                    raise TypeError(f"the CRCNS {label} prompt must return a string; got a "
                                    f"{type(value).__name__}.")
            if asked_user and asked_user != user:
                user = asked_user
                origins.append("prompt")
            if asked_secret:
                secret = asked_secret
                origins.append("prompt")
        if not user or not secret:
            lacking = " and ".join(
                label for label, value in (("username", user), ("password", secret)) if not value
            )
            raise AuthenticationError(f"{_prefix(owner)}no CRCNS {lacking} found. "
                                      + _CREDENTIALS_HELP)
        return cls(user, secret, ", ".join(dict.fromkeys(origins)))


def _netrc_entry() -> tuple[str | None, str | None, Path] | None:
    """Return ``(login, password, file)`` for the CRCNS machine, or None."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    if not path.is_file():
        return None
    bad_line: int | None = None
    try:
        entry = netrc.netrc(str(path)).authenticators(CRCNS_NETRC_MACHINE)
    except netrc.NetrcParseError as err:
        bad_line = err.lineno
    except OSError as err:
        raise AuthenticationError(f"could not read the netrc file {path}: {err.strerror}.") from err
    if bad_line is not None:
        # Raised outside the handler so the parser's error, which can quote a
        # token of the file (possibly a password), is neither chained nor kept
        # as __context__.
        raise AuthenticationError(
            f"could not parse the netrc file {path} (line {bad_line}). Fix its syntax "
            f"('machine crcns.org login <user> password <password>') or remove it."
        )
    if entry is None:
        return None
    login, _account, secret = entry
    return login or None, secret or None, path


# --------------------------------------------------------------------------------------
# Local verification (no network)


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def human_size(n_bytes: float | None) -> str:
    """``1234567`` -> ``'1.2 MB'`` (decimal units); None -> ``'size unknown'``."""
    if n_bytes is None:
        return "size unknown"
    size = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n_bytes} B"


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _sidecar_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_sidecar(path: Path, algo: str, digest: str, **extra: Any) -> None:
    stat = path.stat()
    previous = _read_sidecar(path)
    record = {
        "file": path.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        algo: digest,
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # where the file and its checksum came from survives a later re-verification
    for key in ("url", "checksum_origin"):
        if key in previous and previous.get(algo) == digest:
            record[key] = previous[key]
    record.update(extra)
    sidecar = _sidecar_path(path)
    tmp = sidecar.with_name(sidecar.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(tmp, sidecar)
    except OSError as err:
        # A read-only raw folder is fine: the file is simply re-hashed next time.
        logger.debug("could not write %s: %s", sidecar, err)
        tmp.unlink(missing_ok=True)


def _local_problem(path: Path, rf: RemoteFile) -> str | None:
    """Why the present file at ``path`` is not ``rf`` (None if it is)."""
    stat = path.stat()
    if rf.size is not None and stat.st_size != rf.size:
        return f"its size is {stat.st_size} bytes, expected {rf.size}"
    if rf.checksum is None:
        return None
    algo, expected = rf.checksum
    record = _read_sidecar(path)
    if (record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns
            and record.get(algo) == expected):
        return None
    import pooch

    logger.info("verifying the %s checksum of %s (%s)", algo, path, human_size(stat.st_size))
    got = pooch.file_hash(str(path), alg=algo)
    if got != expected:
        return f"its {algo} is {got}, expected {expected}"
    _write_sidecar(path, algo, expected)
    return None


def source_record(rf: RemoteFile, raw_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What is known of one remote source, for a manifest (no network, no hashing).

    Parameters
    ----------
    rf : RemoteFile
    raw_dir : str or path-like
        The dataset's raw folder.

    Returns
    -------
    dict
        ``name``, ``url``, ``size`` (bytes: of the file present, else the
        declared one), ``checksum`` (``"<algo>:<hex>"``: the declared one,
        else the one verified at download time, e.g. from the host's API;
        None when neither is known), ``checksum_origin`` (``"declared"``,
        ``"Zenodo API <url>"``, ...), ``present`` (the file itself is in the
        raw folder; False once only its unpacked contents are there) and
        ``verified_at`` (when the checksum was last verified, if ever).
    """
    path = _check_raw_dir(raw_dir) / rf.name
    record: dict[str, Any] = {"name": rf.name, "url": rf.source_url, "size": rf.size,
                              "checksum": None, "checksum_origin": None,
                              "present": path.is_file(), "verified_at": None}
    if rf.checksum is not None:
        record["checksum"] = f"{rf.checksum[0]}:{rf.checksum[1]}"
        record["checksum_origin"] = "declared"
    if record["present"]:
        stat = path.stat()
        record["size"] = stat.st_size
        side = _read_sidecar(path)
        if side.get("size") == stat.st_size and side.get("mtime_ns") == stat.st_mtime_ns:
            for algo in ("sha256", "md5"):
                if side.get(algo) and record["checksum"] in (None, f"{algo}:{side[algo]}"):
                    record["checksum"] = f"{algo}:{side[algo]}"
                    record["checksum_origin"] = record["checksum_origin"] or side.get(
                        "checksum_origin", "verified")
                    record["verified_at"] = side.get("verified_at")
                    break
    return record


def _check_files(files: Any) -> list[RemoteFile]:
    if isinstance(files, RemoteFile):
        files = [files]
    if isinstance(files, (str, bytes)) or not isinstance(files, Iterable):
        raise TypeError(f"files must be a sequence of RemoteFile; got {type(files).__name__}.")
    files = list(files)
    seen: set[str] = set()
    for rf in files:
        if not isinstance(rf, RemoteFile):
            raise TypeError(
                f"files must contain RemoteFile records; got {rf!r} ({type(rf).__name__})."
            )
        if rf.name in seen:
            raise ValueError(f"files lists {rf.name!r} twice; each name must be unique.")
        seen.add(rf.name)
    return files


def _check_raw_dir(raw_dir: Any) -> Path:
    if not isinstance(raw_dir, (str, os.PathLike)):
        raise TypeError(
            f"raw_dir must be a str or path-like; got {raw_dir!r} ({type(raw_dir).__name__})."
        )
    return Path(raw_dir).expanduser().absolute()


def missing_files(files: Sequence[RemoteFile], raw_dir: str | os.PathLike[str]) -> list[RemoteFile]:
    """List the files that are not present under ``raw_dir`` (no network, no hashing).

    A file counts as missing when it does not exist, or when its size is
    declared and differs (a truncated copy). Checksums are verified by
    :func:`fetch`, not here, so this stays cheap.

    Parameters
    ----------
    files : sequence of RemoteFile
    raw_dir : str or path-like
        The dataset's raw folder.

    Returns
    -------
    list of RemoteFile
        In the order given.
    """
    checked = _check_files(files)
    root = _check_raw_dir(raw_dir)
    out = []
    for rf in checked:
        path = root / rf.name
        if not path.is_file() or (rf.size is not None and path.stat().st_size != rf.size):
            out.append(rf)
    return out


def _missing_message(files: Sequence[RemoteFile], root: Path, owner: str, reason: str) -> str:
    lines = [f"{_prefix(owner)}{len(files)} raw file(s) missing under {root}:"]
    for rf in files:
        path = root / rf.name
        line = f"  - {path}  ({human_size(rf.size)}; from {rf.describe_source()})"
        part = _part_path(path)
        if part.is_file():
            line += f" [a partial download of {part.stat().st_size} bytes is kept in {part.name}]"
        lines.append(line)
    lines.append(f"Nothing was downloaded because {reason}.")
    remedy = "To get them, pass download=True"
    if reason.startswith("offline"):
        remedy += " and unset DEEPSTRF_OFFLINE"
    remedy += ", or download them yourself and put them at the paths above."
    lines.append(remedy)
    if any(rf.crcns is not None for rf in files):
        lines.append(_CREDENTIALS_HELP)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# HTTP helpers


class _Backoff:
    """Counts failures of one transfer and sleeps between attempts."""

    def __init__(self, retries: int, what: str, url: str) -> None:
        self.retries = retries
        self.what = what
        self.url = url
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def wait(self, reason: str, retry_after: float | None = None,
             cause: BaseException | None = None) -> None:
        self.failures += 1
        if self.failures > self.retries:
            raise DownloadError(
                f"{self.what}: giving up on {self.url} after {self.retries + 1} attempt(s); "
                f"last problem: {reason}. Check your connection and try again later "
                f"(a partial download, if any, is kept and will be resumed)."
            ) from cause
        if retry_after is not None:
            delay = min(max(retry_after, 0.0), BACKOFF_MAX_S)
        else:
            delay = min(BACKOFF_BASE_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)
        logger.warning("%s: %s; retry %d of %d in %.1f s", self.what, reason, self.failures,
                       self.retries, delay)
        _sleep(delay)


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return seconds if math.isfinite(seconds) else None


def _request(session: requests.Session, method: str, url: str, backoff: _Backoff,
             timeout: float, **kwargs: Any) -> requests.Response:
    """Send one request, retrying connection failures and transient statuses."""
    import requests

    while True:
        try:
            resp = session.request(method, url, timeout=timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as err:
            backoff.wait(f"connection failed ({type(err).__name__})", cause=err)
            continue
        if resp.status_code not in _RETRY_STATUSES:
            return resp
        wait = _retry_after(resp)
        resp.close()
        backoff.wait(f"HTTP {resp.status_code} {resp.reason or ''}".rstrip(), wait)


def _new_session() -> requests.Session:
    import requests

    from deepstrf import __version__

    session = requests.Session()
    # identity: byte offsets of Range requests must refer to the stored bytes,
    # and a .gz must not be silently decompressed on the way.
    session.headers.update({"User-Agent": f"deepstrf/{__version__}",
                            "Accept-Encoding": "identity"})
    return session


def _markup_kind(content_type: str | None, head: bytes) -> str | None:
    """Name the kind of web page ``head`` is ("login page", ...), or None for data."""
    media = (content_type or "").split(";")[0].strip().lower()
    sniff = head[:_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<form" in sniff and b"password" in sniff:
        return "a login page"
    if media in _HTML_TYPES or sniff.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if media in _XML_TYPES or sniff.startswith(b"<?xml"):
        return "an XML document"
    return None


def _refuse_page(kind: str, rf: RemoteFile, url: str, content_type: str | None,
                 owner: str) -> None:
    ctype = content_type or "none"
    if rf.crcns is not None:
        raise AuthenticationError(
            f"{_prefix(owner)}CRCNS answered {url} with {kind} (Content-Type {ctype}) instead "
            f"of the file {rf.crcns[1]}: the login was not accepted for this download. "
            f"Nothing was saved. Check your credentials. " + _CREDENTIALS_HELP
        )
    raise DownloadError(
        f"{_prefix(owner)}{url} returned {kind} (Content-Type {ctype}) instead of the file "
        f"{rf.name}; nothing was saved. This is usually a rate limit, a login wall or a moved "
        f"file: open the URL in a browser to see the page, and try again later."
    )


def _content_range(resp: requests.Response) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a Content-Range header (None where absent)."""
    match = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)",
                     resp.headers.get("Content-Range", ""))
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


class _Truncated(Exception):
    """The server closed the stream before sending all announced bytes."""


def _stream_to_part(session: requests.Session, rf: RemoteFile, url: str, part: Path, *,
                    expected_size: int | None, backoff: _Backoff, timeout: float,
                    progress_off: bool | None, owner: str) -> None:
    """Bring ``part`` to the complete file, resuming from its current size."""
    import requests
    from tqdm.auto import tqdm

    allow_markup = rf.name.lower().endswith(_MARKUP_SUFFIXES)
    high_water = part.stat().st_size if part.exists() else 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            logger.info("%s is larger than the expected %d bytes; restarting from zero",
                        part, expected_size)
            part.unlink()
            offset = 0
        if expected_size is not None and offset == expected_size and offset > 0:
            return
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = _request(session, "GET", url, backoff, timeout, headers=headers,
                            stream=True)
            with resp:
                status = resp.status_code
                if status == 416:
                    _start, total = _content_range(resp)
                    if offset and (total == offset or (total is None
                                                       and expected_size == offset)):
                        return  # the part already holds the whole file
                    if not offset:
                        raise DownloadError(
                            f"{_prefix(owner)}{url} answered 416 (range not satisfiable) to a "
                            f"request without Range; the server is misbehaving. Try later."
                        )
                    logger.info("server refused to resume %s at byte %d (416); restarting",
                                rf.name, offset)
                    part.unlink()
                    continue
                if status == 404:
                    where = (f"CRCNS has no file {rf.crcns[0]}/{rf.crcns[1]}"
                             if rf.crcns is not None else "the server has no such file")
                    raise DownloadError(
                        f"{_prefix(owner)}{where} (HTTP 404 at {url}). The host's layout may "
                        f"have changed; please report it to the deepstrf maintainers."
                    )
                if rf.crcns is not None and status in (401, 403):
                    raise AuthenticationError(
                        f"{_prefix(owner)}CRCNS refused {url} (HTTP {status}). "
                        + _CREDENTIALS_HELP
                    )
                if status >= 400:
                    raise DownloadError(
                        f"{_prefix(owner)}{url} answered HTTP {status} {resp.reason or ''} "
                        f"while downloading {rf.name}. Check the URL, or try again later."
                    )
                mode = "wb"
                if status == 206:
                    start, _total = _content_range(resp)
                    if start != offset:
                        if not offset:
                            raise DownloadError(
                                f"{_prefix(owner)}{url} sent bytes from {start} when the whole "
                                f"file was asked for; the server is misbehaving. Try later."
                            )
                        logger.info("server resumed %s at %s instead of %d; restarting",
                                    rf.name, start, offset)
                        part.unlink()
                        continue
                    mode = "ab"
                elif offset:
                    logger.info("server ignored the Range request for %s; restarting from zero",
                                rf.name)
                    offset = 0
                length_header = resp.headers.get("Content-Length")
                length = int(length_header) if length_header and length_header.isdigit() else None
                total = offset + length if length is not None else expected_size
                chunks = resp.iter_content(_CHUNK_BYTES)
                head = _read_head(chunks)
                if not allow_markup:
                    kind = _markup_kind(resp.headers.get("Content-Type"), head)
                    if kind is not None:
                        _refuse_page(kind, rf, url, resp.headers.get("Content-Type"), owner)
                received = 0
                with open(part, mode) as fh, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=rf.name, disable=progress_off, leave=False,
                ) as bar:
                    for chunk in _chain_head(head, chunks):
                        fh.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if length is not None and received < length:
                    raise _Truncated(f"the server sent {received} of {length} bytes")
            return
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError, _Truncated) as err:
            size_now = part.stat().st_size if part.exists() else 0
            if size_now > high_water:
                # Progress was made: the retry budget guards against stalls, not
                # against a long transfer that drops now and then.
                high_water = size_now
                backoff.reset()
            reason = str(err) if isinstance(err, _Truncated) else (
                f"the transfer broke ({type(err).__name__})")
            backoff.wait(f"{reason} at byte {size_now}", cause=err)


def _read_head(chunks: Iterator[bytes]) -> bytes:
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    return head


def _chain_head(head: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    for chunk in chunks:
        if chunk:
            yield chunk


class _ResumableDownloader:
    """pooch downloader: fills a stable ``.part`` file, then hands it to pooch.

    pooch gives a fresh temporary path at every call and deletes it on
    failure; the ``.part`` file next to the target survives interruptions so
    the next call resumes where the last one stopped.
    """

    def __init__(self, session: requests.Session, rf: RemoteFile, target: Path, *,
                 expected_size: int | None, retries: int, timeout: float,
                 progress_off: bool | None, owner: str) -> None:
        self.session = session
        self.rf = rf
        self.target = target
        self.expected_size = expected_size
        self.retries = retries
        self.timeout = timeout
        self.progress_off = progress_off
        self.owner = owner

    def __call__(self, url: str, output_file: str, pooch: Any) -> None:
        part = _part_path(self.target)
        backoff = _Backoff(self.retries, f"{_prefix(self.owner)}downloading {self.rf.name}", url)
        _stream_to_part(self.session, self.rf, url, part, expected_size=self.expected_size,
                        backoff=backoff, timeout=self.timeout,
                        progress_off=self.progress_off, owner=self.owner)
        got = part.stat().st_size
        if self.expected_size is not None and got != self.expected_size:
            part.unlink()
            raise ChecksumError(
                f"{_prefix(self.owner)}size mismatch for {self.rf.name} downloaded from {url}: "
                f"expected {self.expected_size} bytes, got {got}. The download was deleted. "
                f"Try again; if it happens again the file on the server has changed: please "
                f"report it to the deepstrf maintainers."
            )
        os.replace(part, output_file)


# --------------------------------------------------------------------------------------
# CRCNS


def _crcns_login(session: requests.Session, credentials: CRCNSCredentials,
                 datasets: Iterable[str], *, retries: int, timeout: float, owner: str) -> None:
    """Log the session in and check, per dataset, that the site says so."""
    login_url = _crcns_login_url()
    form = {
        "form.submitted": "1",
        "js_enabled": "0",
        "pwd_empty": "0",
        "__ac_name": credentials.username,
        "__ac_password": credentials.password,
        "submit": "Log in",
    }
    logger.info("logging in to CRCNS as %r", credentials.username)
    failure = None
    try:
        resp = _request(session, "POST", login_url, _Backoff(retries, "CRCNS login", login_url),
                        timeout, data=form)
    except DownloadError as err:
        failure = str(err)
    if failure is not None:
        # Re-raised outside the handler: the requests exception in the chain
        # carries the prepared request, whose body holds the password.
        raise DownloadError(failure)
    with resp:
        if resp.status_code in (401, 403):
            raise AuthenticationError(
                f"{_prefix(owner)}CRCNS refused the login of user {credentials.username!r} "
                f"(HTTP {resp.status_code}; credentials from {credentials.origin}). "
                + _CREDENTIALS_HELP
            )
        if resp.status_code >= 400:
            raise DownloadError(
                f"{_prefix(owner)}the CRCNS login form {login_url} answered HTTP "
                f"{resp.status_code}; try again later."
            )
    for dataset in datasets:
        page_url = f"{_crcns_download_url()}/{quote(dataset)}"
        resp = _request(session, "GET", page_url, _Backoff(retries, "CRCNS login check",
                                                          page_url), timeout)
        with resp:
            if resp.status_code == 404:
                raise DownloadError(
                    f"{_prefix(owner)}CRCNS has no dataset {dataset!r} (HTTP 404 at {page_url})."
                )
            if resp.status_code >= 400 or "logged in as" not in resp.text.lower():
                raise AuthenticationError(
                    f"{_prefix(owner)}CRCNS did not accept the login of user "
                    f"{credentials.username!r} (credentials from {credentials.origin}): "
                    f"{page_url} does not say 'logged in as'. Check the username and password. "
                    + _CREDENTIALS_HELP
                )
        logger.debug("CRCNS login checked for dataset %s", dataset)


def _parse_file_list(text: str, dataset: str) -> dict[str, int]:
    """Map path -> size in bytes from a CRCNS ``filelist.txt``."""
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _FILE_LIST_LINE.fullmatch(line)
        if match is None:
            logger.debug("skipping unparsable file-list line %r", line)
            continue
        path = match.group("path").strip().lstrip("./").lstrip("/")
        if path.startswith(f"{dataset}/"):
            path = path[len(dataset) + 1:]
        sizes[path] = int(match.group("size"))
    return sizes


def _crcns_sizes(session: requests.Session, dataset: str, *, retries: int, timeout: float,
                 owner: str) -> dict[str, int]:
    url = f"{_crcns_download_url()}/{quote(dataset)}/filelist.txt"
    resp = _request(session, "GET", url, _Backoff(retries, "CRCNS file list", url), timeout)
    with resp:
        if resp.status_code == 404:
            logger.warning("%sCRCNS has no file list at %s; sizes will not be checked",
                           _prefix(owner), url)
            return {}
        if resp.status_code >= 400:
            raise DownloadError(
                f"{_prefix(owner)}{url} answered HTTP {resp.status_code}; try again later."
            )
        text = resp.text
        if _markup_kind(resp.headers.get("Content-Type"), text[:_SNIFF_BYTES].encode()):
            raise AuthenticationError(
                f"{_prefix(owner)}CRCNS answered {url} with a web page instead of the file "
                f"list: the login was not accepted. " + _CREDENTIALS_HELP
            )
    return _parse_file_list(text, dataset)


def crcns_file_list(dataset: str, *, username: str | None = None, password: str | None = None,
                    retries: int = 5, timeout: float = 60.0) -> dict[str, int]:
    """Log in to CRCNS and return a dataset's file list.

    Parameters
    ----------
    dataset : str
        CRCNS dataset id as used in download paths, e.g. ``"aa-4"``.
    username, password : str or None
        CRCNS credentials; see :meth:`CRCNSCredentials.resolve` for the fallbacks.
    retries : int
        Retries of each request after a connection failure or a 429/5xx answer.
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    dict of str to int
        Path inside the dataset -> size in bytes, from ``<dataset>/filelist.txt``.

    Raises
    ------
    AuthenticationError
        Missing or rejected credentials.
    OfflineError
        Offline mode is on.
    DownloadError
        The server failed after the retries.
    """
    dataset = _check_relative_path("dataset", dataset)
    retries = check_int("retries", retries, minimum=0)
    timeout = check_positive("timeout", timeout)
    if offline_mode():
        raise OfflineError(
            f"listing CRCNS dataset {dataset!r} needs the network, but DEEPSTRF_OFFLINE is on; "
            f"unset it to go online."
        )
    credentials = CRCNSCredentials.resolve(username, password)
    with _new_session() as session:
        _crcns_login(session, credentials, [dataset], retries=retries, timeout=timeout,
                     owner="")
        return _crcns_sizes(session, dataset, retries=retries, timeout=timeout, owner="")


def _crcns_listed_size(sizes: Mapping[str, int], dataset: str, path: str,
                       declared: int | None, owner: str) -> int | None:
    """Size to check for a CRCNS file: the declared one, else the file list's."""
    listed = sizes.get(path)
    if sizes and listed is None:
        logger.warning("%s%s is not in the CRCNS file list of %s", _prefix(owner), path, dataset)
    if listed is not None and declared is not None and listed != declared:
        logger.warning("%sCRCNS lists %s with %d bytes but %d are expected; the expected size "
                       "is checked", _prefix(owner), path, listed, declared)
    return declared if declared is not None else listed


# --------------------------------------------------------------------------------------
# Checksums published by the open hosts


def _published_entry(rf: RemoteFile, data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The API's record of ``rf`` in the parsed JSON ``data``, and the names it lists."""
    assert rf.host is not None
    kind = rf.host[0]
    if kind == "osf":
        entry = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("attributes"), dict):
            return None, []
        return entry["attributes"], [str(entry["attributes"].get("name"))]
    files = data.get("files") if isinstance(data, dict) else None
    if isinstance(files, dict):  # older Zenodo answers: {"entries": [...]} (or a mapping)
        files = files.get("entries", list(files.values()))
    if not isinstance(files, list):
        return None, []
    entries = [f for f in files if isinstance(f, dict)]
    if kind == "zenodo":
        names = [str(f.get("key", f.get("filename"))) for f in entries]
        found = [f for f in entries if f.get("key", f.get("filename")) == rf.host[2]]
    else:
        names = [f"{f.get('name')} (id {f.get('id')})" for f in entries]
        found = [f for f in entries if str(f.get("id")) == rf.host[2]]
    return (found[0] if found else None), names


def _published_checksum(rf: RemoteFile, entry: Mapping[str, Any]
                        ) -> tuple[tuple[str, str] | None, int | None]:
    """``((algo, hex) or None, size or None)`` from a host's record of one file."""
    assert rf.host is not None
    kind = rf.host[0]
    size = entry.get("size")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    candidates: list[tuple[str, Any]] = []
    if kind == "zenodo":
        value = entry.get("checksum")
        if isinstance(value, str):
            algo, _, digest = value.rpartition(":")
            candidates.append((algo.lower() or "md5", digest))
    elif kind == "figshare":
        candidates += [("md5", entry.get("computed_md5")), ("md5", entry.get("supplied_md5"))]
    else:
        hashes = (entry.get("extra") or {}).get("hashes") or {}
        candidates += [("sha256", hashes.get("sha256")), ("md5", hashes.get("md5"))]
    for algo, digest in candidates:
        if not isinstance(digest, str) or not digest:
            continue
        pattern = {"sha256": _SHA256, "md5": _MD5}.get(algo)
        if pattern is not None and pattern.fullmatch(digest.lower()):
            return (algo, digest.lower()), size
        logger.warning("%s publishes an unusable %s checksum %r for %s; it is not checked",
                       _HOST_NAMES[kind], algo, digest, rf.name)
    return None, size


def _with_published_checksums(session: requests.Session, todo: Sequence[RemoteFile], *,
                              retries: int, timeout: float, owner: str
                              ) -> tuple[list[RemoteFile], dict[str, str]]:
    """``todo`` with the hosts' checksums filled in where none is declared.

    Returns the files and, per file name, where its checksum came from. One
    API request per record or article (or per OSF file). Any failure raises
    before a byte of the files is downloaded.
    """
    pages: dict[str, Any] = {}
    out: list[RemoteFile] = []
    origins: dict[str, str] = {}
    for rf in todo:
        if rf.checksum is not None:
            origins[rf.name] = "declared"
        if rf.checksum is not None or rf.host is None:
            out.append(rf)
            continue
        host = _HOST_NAMES[rf.host[0]]
        url = str(rf.api_url)
        if url not in pages:
            pages[url] = _read_api(session, rf, url, host, retries=retries, timeout=timeout,
                                   owner=owner)
        entry, names = _published_entry(rf, pages[url])
        if entry is None:
            listed = ", ".join(names[:10]) if names else "no files"
            raise DownloadError(
                f"{_prefix(owner)}the {host} API page {url} does not list {rf.name} "
                f"({rf.describe_source()}); it lists {listed}. The release may have "
                f"changed; nothing was downloaded. Please report it to the deepstrf maintainers."
            )
        checksum, size = _published_checksum(rf, entry)
        if checksum is None:
            logger.warning("%s%s publishes no checksum for %s; only its size is checked",
                           _prefix(owner), host, rf.name)
        changes: dict[str, Any] = {}
        if checksum is not None:
            changes[checksum[0]] = checksum[1]
            origins[rf.name] = f"{host} API {url}"
        if rf.size is None and size is not None:
            changes["size"] = size
        out.append(dataclasses.replace(rf, **changes) if changes else rf)
    return out, origins


def _read_api(session: requests.Session, rf: RemoteFile, url: str, host: str, *,
              retries: int, timeout: float, owner: str) -> Any:
    what = f"{_prefix(owner)}reading the {host} checksum of {rf.name}"
    failure = None
    try:
        resp = _request(session, "GET", url, _Backoff(retries, what, url), timeout,
                        headers={"Accept": "application/json"})
    except DownloadError as err:
        failure = err
    if failure is not None:
        raise DownloadError(
            f"{_prefix(owner)}could not reach the {host} API at {url} to read the published "
            f"checksum of {rf.name} ({failure}). Nothing was downloaded; try again later."
        ) from failure
    with resp:
        if resp.status_code >= 400:
            raise DownloadError(
                f"{_prefix(owner)}the {host} API answered HTTP {resp.status_code} at {url} when "
                f"asked for the checksum of {rf.name}. Nothing was downloaded. "
                + ("The record may have been moved or withdrawn: please report it to the "
                   "deepstrf maintainers." if resp.status_code == 404 else "Try again later.")
            )
        try:
            return json.loads(resp.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise DownloadError(
                f"{_prefix(owner)}the {host} API at {url} did not answer with JSON (Content-Type "
                f"{resp.headers.get('Content-Type', 'none')}), so the checksum of {rf.name} "
                f"could not be read. Nothing was downloaded; try again later."
            ) from err


# --------------------------------------------------------------------------------------
# Public entry point


def fetch(files: Sequence[RemoteFile], raw_dir: str | os.PathLike[str], *,
          download: bool = True, username: str | None = None, password: str | None = None,
          progress: bool | None = None, retries: int = 5, timeout: float = 60.0,
          owner: str = "", prompt: CredentialsPrompt | None = None) -> dict[str, Path]:
    """Make sure every file is present and verified under ``raw_dir``; download what is not.

    Parameters
    ----------
    files : sequence of RemoteFile
        The files to provide. Names must be unique.
    raw_dir : str or path-like
        The dataset's raw folder; created if a download is needed.
    download : bool
        False never touches the network (nor does ``DEEPSTRF_OFFLINE=1``).
    username, password : str or None
        CRCNS credentials, only used (and only looked up, in the environment
        and netrc, see :meth:`CRCNSCredentials.resolve`) when a CRCNS file has
        to be downloaded.
    progress : bool or None
        Show tqdm progress bars; None defers to ``$DEEPSTRF_PROGRESS`` (unset: bars
        only on a terminal).
    retries : int
        Retries per file after a connection failure, a dropped transfer or a
        429/5xx answer; a retry after a transfer that made progress does not
        count. Waits double from :data:`BACKOFF_BASE_S`, honour ``Retry-After``
        and are capped at :data:`BACKOFF_MAX_S`.
    timeout : float
        Seconds to wait for the server to connect or to send the next bytes.
    owner : str
        Name of the caller (e.g. ``"CRCNSAA1Dataset"``) used to word messages.
    prompt : callable or None
        Asked for CRCNS credentials when a CRCNS file must be downloaded and
        none are configured (see :meth:`CRCNSCredentials.resolve`).

    Returns
    -------
    dict of str to Path
        ``RemoteFile.name`` -> absolute path of the verified file.

    Raises
    ------
    MissingRawDataError
        Offline and some files are missing (the message lists them all).
    ChecksumError
        A download, or a file already present while offline, does not match
        its checksum or size; a failed download is deleted.
    AuthenticationError
        CRCNS credentials are missing or rejected.
    DownloadError
        The server failed after the retries, answered 404, or served a web
        page instead of the file.
    """
    checked = _check_files(files)
    root = _check_raw_dir(raw_dir)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False; got {download!r}.")
    progress_off = progress_disable(progress)
    retries = check_int("retries", retries, minimum=0)
    timeout = check_positive("timeout", timeout)
    if not isinstance(owner, str):
        raise TypeError(f"owner must be a string; got {type(owner).__name__}.")
    offline = offline_mode()
    online = download and not offline

    paths = {rf.name: root / rf.name for rf in checked}
    todo: list[RemoteFile] = []
    for rf in checked:
        path = paths[rf.name]
        if not path.is_file():
            todo.append(rf)
            continue
        problem = _local_problem(path, rf)
        if problem is None:
            continue
        if not online:
            raise ChecksumError(
                f"{_prefix(owner)}{path} is present but {problem}. Delete it and call again with "
                f"download=True{' and DEEPSTRF_OFFLINE unset' if offline else ''} to fetch a "
                f"fresh copy from {rf.describe_source()}."
            )
        logger.warning("%s%s is present but %s; downloading it again", _prefix(owner), path,
                       problem)
        path.unlink()
        _sidecar_path(path).unlink(missing_ok=True)
        todo.append(rf)
    if not todo:
        return paths
    if not online:
        reason = ("offline mode is on (DEEPSTRF_OFFLINE)" if offline
                  else "download=False")
        raise MissingRawDataError(_missing_message(todo, root, owner, reason))

    crcns_todo = [rf for rf in todo if rf.crcns is not None]
    # Credentials are resolved before any connection, so a missing password
    # fails fast, without a half-finished batch.
    credentials = (CRCNSCredentials.resolve(username, password, owner=owner, prompt=prompt)
                   if crcns_todo else None)
    _download_all(todo, root, credentials, progress_off=progress_off, retries=retries,
                  timeout=timeout, owner=owner)
    return paths


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Silence pooch's INFO lines, which go straight to stderr and repeat ours."""
    import pooch

    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


def _download_all(todo: Sequence[RemoteFile], root: Path,
                  credentials: CRCNSCredentials | None, *, progress_off: bool | None, retries: int,
                  timeout: float, owner: str) -> None:
    import pooch

    root.mkdir(parents=True, exist_ok=True)
    with _new_session() as session:
        sizes: dict[str, dict[str, int]] = {}
        datasets = list(dict.fromkeys(rf.crcns[0] for rf in todo if rf.crcns is not None))
        if datasets:
            if credentials is None:
                credentials = CRCNSCredentials.resolve(owner=owner)
            _crcns_login(session, credentials, datasets, retries=retries, timeout=timeout,
                         owner=owner)
            for dataset in datasets:
                sizes[dataset] = _crcns_sizes(session, dataset, retries=retries,
                                              timeout=timeout, owner=owner)
        todo, origins = _with_published_checksums(session, todo, retries=retries,
                                                  timeout=timeout, owner=owner)
        store = pooch.create(
            path=root, base_url="",
            registry={rf.name: (f"{rf.checksum[0]}:{rf.checksum[1]}" if rf.checksum else None)
                      for rf in todo},
            urls={rf.name: rf.source_url for rf in todo},
        )
        for rf in todo:
            target = root / rf.name
            expected_size = rf.size
            if rf.crcns is not None:
                dataset, path = rf.crcns
                expected_size = _crcns_listed_size(sizes.get(dataset, {}), dataset, path,
                                                   rf.size, owner)
            downloader = _ResumableDownloader(
                session, rf, target, expected_size=expected_size, retries=retries,
                timeout=timeout, progress_off=progress_off, owner=owner)
            logger.info("%sdownloading %s from %s", _prefix(owner), rf.name, rf.source_url)
            try:
                with _quiet_pooch():
                    store.fetch(rf.name, downloader=downloader)
            except ValueError as err:
                # pooch checked the hash of the finished file and deleted it.
                if rf.checksum is None:
                    raise
                algo, expected = rf.checksum
                match = re.search(r"but got (\w+)", str(err))
                got = match.group(1) if match else "a different value"
                origin = origins.get(rf.name, "declared")
                published = "" if origin == "declared" else f" (published by the {origin})"
                raise ChecksumError(
                    f"{_prefix(owner)}checksum mismatch for {rf.name} downloaded from "
                    f"{rf.source_url}: expected {algo} {expected}{published}, got {got}. The "
                    f"download was deleted. Try again; if it happens again the file on the "
                    f"server has changed: please report it to the deepstrf maintainers."
                ) from err
            if rf.checksum is not None:
                _write_sidecar(target, *rf.checksum, url=rf.source_url,
                               checksum_origin=origins.get(rf.name, "declared"))
