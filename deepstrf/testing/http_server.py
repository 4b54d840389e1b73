"""A local HTTP server for testing downloads without the internet.

:class:`LocalHTTPServer` listens on ``127.0.0.1`` at a free port, in a
background thread, and serves files from a dict or a folder. It can play the
failures real hosts produce, so download code can be tested against them:

* ``Range`` requests (``206`` with ``Content-Range``, ``416`` past the end),
  or a host that ignores them (:meth:`~LocalHTTPServer.ignore_range`);
* a connection cut after N bytes for the first K requests
  (:meth:`~LocalHTTPServer.drop_after`);
* ``503``/``429`` answers with ``Retry-After`` for the first K requests
  (:meth:`~LocalHTTPServer.fail`);
* an HTML page with status 200 in place of a file
  (:meth:`~LocalHTTPServer.serve_html`);
* the CRCNS site: a login form at ``/login_form`` taking the documented
  fields, a session cookie, a dataset page ``/<dataset>`` that says
  "logged in as <user>" only to a logged-in session, ``/<dataset>/filelist.txt``,
  and files that are replaced by the HTML login page for anonymous sessions
  (:meth:`~LocalHTTPServer.add_crcns_dataset`);
* the open hosts' APIs that publish checksums, with the JSON shapes the real
  APIs answer: a Zenodo record (:meth:`~LocalHTTPServer.add_zenodo_record`),
  a figshare article (:meth:`~LocalHTTPServer.add_figshare_article`) and an
  OSF file (:meth:`~LocalHTTPServer.add_osf_file`), each with its files;
  :meth:`~LocalHTTPServer.host_env` gives the environment variables that
  point :mod:`deepstrf.io.download` at them.

Every request is logged (method, path, headers, and for form posts the field
names, never their values) so tests can assert on what was asked.

Examples
--------
>>> import urllib.request
>>> with LocalHTTPServer({"data/a.bin": b"0123456789"}) as server:
...     with urllib.request.urlopen(server.url_for("data/a.bin")) as resp:
...         body = resp.read()
...     n_requests = len(server.requests)
>>> body, n_requests
(b'0123456789', 1)

To test the CRCNS flow of :mod:`deepstrf.io.download`, point it at the server::

    server.add_crcns_user("alice", "secret")
    server.add_crcns_dataset("aa-1", {"crcns-aa1.zip": payload})
    monkeypatch.setenv("DEEPSTRF_CRCNS_LOGIN_URL", server.crcns_login_url)
    monkeypatch.setenv("DEEPSTRF_CRCNS_DOWNLOAD_URL", server.crcns_download_url)
"""

from __future__ import annotations

import hashlib
import html
import http.cookies
import json
import logging
import mimetypes
import os
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["LOGIN_PAGE", "LocalHTTPServer", "RecordedRequest"]

logger = logging.getLogger(__name__)

#: The HTML login page served to anonymous requests for CRCNS files.
LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Log in - CRCNS.org</title></head><body>
<h1>Log in</h1>
<form action="/login_form" method="post">
  <input type="hidden" name="form.submitted" value="1">
  <input type="hidden" name="js_enabled" value="0">
  <input type="hidden" name="pwd_empty" value="0">
  <label>Login name <input type="text" name="__ac_name"></label>
  <label>Password <input type="password" name="__ac_password"></label>
  <input type="submit" name="submit" value="Log in">
</form></body></html>
"""

_SESSION_COOKIE = "__ac"
_LOGIN_PATH = "/login_form"
# Each emulated host lives under its own prefix so their paths cannot collide.
_ZENODO_PREFIX = "/zenodo"
_FIGSHARE_API_PREFIX = "/figshare-api/v2"
_FIGSHARE_DOWNLOAD_PREFIX = "/figshare-files"
_OSF_PREFIX = "/osf"
_OSF_API_PREFIX = "/osf-api/v2"


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if not isinstance(data, bytes):
        raise TypeError(f"file content must be bytes or str; got {type(data).__name__}.")
    return data


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by :class:`LocalHTTPServer`.

    Attributes
    ----------
    method : str
        ``"GET"``, ``"HEAD"`` or ``"POST"``.
    path : str
        URL path, percent-decoded, starting with ``/``, without the query.
    query : str
        The raw query string (may be empty).
    headers : dict of str to str
        Request headers as sent.
    form_fields : tuple of str
        Names of the fields of a url-encoded form body (values are not kept,
        so passwords never reach the log).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    form_fields: tuple[str, ...] = ()

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return a header by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


@dataclass
class _Counter:
    remaining: int | None  # None: forever
    params: dict[str, Any] = field(default_factory=dict)

    def take(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


def _norm(path: str) -> str:
    return "/" + path.strip().lstrip("/")


class LocalHTTPServer:
    """An HTTP server on 127.0.0.1 serving test files, with scripted failures.

    Parameters
    ----------
    files : mapping of str to bytes or str, or str or path-like, or None
        Either a mapping from URL path (``"dir/file.bin"``; a leading ``/`` is
        optional) to content (str is encoded as UTF-8), or a folder whose
        files are served under their relative paths.

    Notes
    -----
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    Fault settings apply per URL path and may be changed while it runs.
    Responses use HTTP/1.0, so each request has its own connection.
    """

    def __init__(self, files: Mapping[str, bytes | str] | str | os.PathLike[str] | None = None,
                 ) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[bytes, str]] = {}
        self._root: Path | None = None
        if isinstance(files, (str, os.PathLike)):
            root = Path(files).resolve()
            if not root.is_dir():
                raise NotADirectoryError(f"files must be a mapping or an existing folder; "
                                         f"{root} is not a folder.")
            self._root = root
        elif files is not None:
            if not isinstance(files, Mapping):
                raise TypeError(f"files must be a mapping, a folder path or None; got "
                                f"{type(files).__name__}.")
            for path, data in files.items():
                self.add_file(path, data)
        self._drops: dict[str, _Counter] = {}
        self._failures: dict[str, _Counter] = {}
        self._pages: dict[str, _Counter] = {}
        self._ignore_range: set[str] = set()
        self._users: dict[str, str] = {}
        self._sessions: dict[str, str] = {}
        self._crcns: dict[str, dict[str, bytes]] = {}
        self._file_lists: dict[str, str] = {}
        self._log: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalHTTPServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A short poll keeps stop() quick: shutdown waits for the next poll.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name="deepstrf-test-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self._httpd is not None else "stopped"
        return f"LocalHTTPServer({state}, {len(self._files)} file(s))"

    @property
    def port(self) -> int:
        """The port the server listens on (after :meth:`start`)."""
        if self._httpd is None:
            raise RuntimeError("LocalHTTPServer is not running; call start() or use `with`.")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        """Full URL of a served path."""
        return self.url + quote(_norm(path))

    @property
    def crcns_login_url(self) -> str:
        """URL of the emulated CRCNS login form."""
        return self.url + _LOGIN_PATH

    @property
    def crcns_download_url(self) -> str:
        """Root URL of the emulated CRCNS file host."""
        return self.url

    # ---------------------------------------------------------------- content

    def add_file(self, path: str, data: bytes | str, *, content_type: str | None = None) -> None:
        """Serve ``data`` at ``path`` (content type guessed from the name if not given)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError(f"file content must be bytes or str; got {type(data).__name__}.")
        key = _norm(path)
        ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        with self._lock:
            self._files[key] = (data, ctype)

    def add_crcns_user(self, username: str, password: str) -> None:
        """Accept this username/password pair at the login form."""
        with self._lock:
            self._users[username] = password

    def add_crcns_dataset(self, dataset: str, files: Mapping[str, bytes | str], *,
                          file_list: str | None = None) -> None:
        """Serve a login-protected CRCNS dataset.

        Parameters
        ----------
        dataset : str
            Dataset id, e.g. ``"aa-1"``; files are served at ``/<dataset>/<path>``.
        files : mapping of str to bytes or str
            Path inside the dataset -> content.
        file_list : str or None
            Text of ``/<dataset>/filelist.txt``; by default one line per file
            (``path size human-size``) after two comment lines.
        """
        content = {path.strip("/"): (data.encode("utf-8") if isinstance(data, str) else data)
                   for path, data in files.items()}
        if file_list is None:
            lines = [f"# files of CRCNS dataset {dataset}", "# path size_bytes size"]
            lines += [f"{path} {len(data)} {len(data) / 1e6:.1f} MB"
                      for path, data in sorted(content.items())]
            file_list = "\n".join(lines) + "\n"
        with self._lock:
            self._crcns[dataset.strip("/")] = content
            self._file_lists[dataset.strip("/")] = file_list

    # ---------------------------------------------------------------- open hosts

    @property
    def zenodo_url(self) -> str:
        """Root of the emulated Zenodo (``/api/records/<id>`` below it)."""
        return self.url + _ZENODO_PREFIX

    @property
    def figshare_api_url(self) -> str:
        """Root of the emulated figshare API v2 (``/articles/<id>`` below it)."""
        return self.url + _FIGSHARE_API_PREFIX

    @property
    def figshare_download_url(self) -> str:
        """Root of the emulated figshare file host (``/files/<file id>`` below it)."""
        return self.url + _FIGSHARE_DOWNLOAD_PREFIX

    @property
    def osf_url(self) -> str:
        """Root of the emulated OSF site (``/download/<guid>/`` below it)."""
        return self.url + _OSF_PREFIX

    @property
    def osf_api_url(self) -> str:
        """Root of the emulated OSF API v2 (``/files/<guid>/`` below it)."""
        return self.url + _OSF_API_PREFIX

    def host_env(self) -> dict[str, str]:
        """The environment variables that point :mod:`deepstrf.io.download` at this server."""
        return {"DEEPSTRF_ZENODO_URL": self.zenodo_url,
                "DEEPSTRF_FIGSHARE_API_URL": self.figshare_api_url,
                "DEEPSTRF_FIGSHARE_DOWNLOAD_URL": self.figshare_download_url,
                "DEEPSTRF_OSF_URL": self.osf_url,
                "DEEPSTRF_OSF_API_URL": self.osf_api_url,
                "DEEPSTRF_CRCNS_LOGIN_URL": self.crcns_login_url,
                "DEEPSTRF_CRCNS_DOWNLOAD_URL": self.crcns_download_url}

    def add_zenodo_record(self, record: int | str, files: Mapping[str, bytes | str], *,
                          checksums: Mapping[str, str | None] | None = None,
                          title: str = "A test record") -> dict[str, Any]:
        """Serve a Zenodo record: its API page and its files.

        ``GET /api/records/<record>`` answers the JSON of Zenodo's records API
        (InvenioRDM): ``files`` is a list of ``{"id", "key", "size",
        "checksum": "md5:<hex>", "links": {"self": <content URL>}}``; each file
        is served at ``/api/records/<record>/files/<key>/content``.

        Parameters
        ----------
        checksums : mapping of str to str or None, optional
            Per key, the ``checksum`` value to publish instead of the true
            ``md5:<hex>`` (a wrong one, or None for an entry without a checksum).

        Returns
        -------
        dict
            The record JSON served.
        """
        record = str(record)
        base = f"{self.zenodo_url}/api/records/{quote(record)}"
        entries = []
        for key, data in files.items():
            data = _as_bytes(data)
            self.add_file(f"{_ZENODO_PREFIX}/api/records/{record}/files/{key}/content", data)
            checksum = f"md5:{hashlib.md5(data).hexdigest()}"
            if checksums is not None and key in checksums:
                checksum = checksums[key]
            entry: dict[str, Any] = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, base + key)),
                                     "key": key, "size": len(data),
                                     "links": {"self": f"{base}/files/{quote(key)}/content"}}
            if checksum is not None:
                entry["checksum"] = checksum
            entries.append(entry)
        page = {
            "created": "2023-06-15T12:00:00.000000+00:00",
            "modified": "2023-06-15T12:00:00.000000+00:00",
            "id": int(record) if record.isdigit() else record,
            "conceptrecid": record, "doi": f"10.5281/zenodo.{record}",
            "doi_url": f"https://doi.org/10.5281/zenodo.{record}",
            "title": title, "recid": record, "status": "published",
            "metadata": {"title": title, "publication_date": "2023-06-15",
                         "resource_type": {"title": "Dataset", "type": "dataset"}},
            "files": entries,
            "links": {"self": base, "files": f"{base}/files"},
        }
        self.add_file(f"{_ZENODO_PREFIX}/api/records/{record}", json.dumps(page),
                      content_type="application/json")
        return page

    def add_figshare_article(self, article: int | str,
                             files: Mapping[int | str, tuple[str, bytes | str]], *,
                             checksums: Mapping[int | str, str | None] | None = None,
                             title: str = "A test article") -> dict[str, Any]:
        """Serve a figshare article: its API page and its files.

        ``GET /articles/<article>`` (under :attr:`figshare_api_url`) answers the
        JSON of figshare's API v2, whose ``files`` entries are PublicFile
        objects ``{"id", "name", "size", "is_link_only", "download_url",
        "supplied_md5", "computed_md5", "mimetype"}``; each file is served at
        ``/files/<file id>`` under :attr:`figshare_download_url`.

        Parameters
        ----------
        files : mapping of file id to (name, content)
        checksums : mapping of file id to str or None, optional
            ``computed_md5`` to publish instead of the true one ('' or None: empty).
        """
        article = str(article)
        entries = []
        for file_id, (name, data) in files.items():
            data = _as_bytes(data)
            self.add_file(f"{_FIGSHARE_DOWNLOAD_PREFIX}/files/{file_id}", data,
                          content_type="application/octet-stream")
            md5 = hashlib.md5(data).hexdigest()
            if checksums is not None and file_id in checksums:
                md5 = checksums[file_id] or ""
            entries.append({"id": int(file_id) if str(file_id).isdigit() else file_id,
                            "name": name, "size": len(data), "is_link_only": False,
                            "download_url": f"{self.figshare_download_url}/files/{file_id}",
                            "supplied_md5": md5, "computed_md5": md5,
                            "mimetype": mimetypes.guess_type(name)[0] or ""})
        page = {
            "id": int(article) if article.isdigit() else article, "title": title,
            "doi": f"10.6084/m9.figshare.{article}.v1",
            "url": f"{self.figshare_api_url}/articles/{article}",
            "url_public_html": f"https://figshare.com/articles/dataset/test/{article}",
            "published_date": "2025-06-01T00:00:00Z", "defined_type": 3,
            "defined_type_name": "dataset", "version": 1, "is_public": True,
            "files": entries,
        }
        self.add_file(f"{_FIGSHARE_API_PREFIX}/articles/{article}", json.dumps(page),
                      content_type="application/json")
        return page

    def add_osf_file(self, guid: str, name: str, data: bytes | str, *,
                     md5: str | None | bool = True, sha256: str | None | bool = True,
                     ) -> dict[str, Any]:
        """Serve an OSF file: ``/files/<guid>/`` of the API and ``/download/<guid>/``.

        The API answer is the JSON:API document of OSF's API v2, ``{"data":
        {"id", "type": "files", "attributes": {..., "size", "extra": {"hashes":
        {"md5", "sha256"}, "downloads"}}, "links": {"download", ...}}, "meta"}``.

        Parameters
        ----------
        md5, sha256 : True, str or None
            True publishes the true digest, a string publishes that value,
            None publishes null (OSF does for some storage providers).
        """
        data = _as_bytes(data)
        self.add_file(f"{_OSF_PREFIX}/download/{guid}/", data,
                      content_type="application/octet-stream")
        hashes = {"md5": hashlib.md5(data).hexdigest() if md5 is True else md5 or None,
                  "sha256": hashlib.sha256(data).hexdigest() if sha256 is True
                  else sha256 or None}
        internal = hashlib.sha1(guid.encode()).hexdigest()[:24]
        api = f"{self.osf_api_url}/files/{guid}/"
        page = {
            "data": {
                "id": internal, "type": "files",
                "attributes": {
                    "guid": guid, "checkout": None, "name": name, "kind": "file",
                    "path": f"/{internal}", "size": len(data), "provider": "osfstorage",
                    "materialized_path": f"/{name}", "last_touched": None,
                    "date_modified": "2019-03-01T10:00:00.000000Z",
                    "date_created": "2019-03-01T10:00:00.000000Z",
                    "extra": {"hashes": hashes, "downloads": 0},
                    "tags": [], "current_user_can_comment": False, "current_version": 1,
                },
                "links": {"info": api, "move": api, "upload": api, "delete": api,
                          "download": f"{self.osf_url}/download/{guid}/",
                          "html": f"https://osf.io/{guid}/",
                          "render": f"https://mfr.osf.io/render?url={self.osf_url}/{guid}/"},
            },
            "meta": {"version": "2.0"},
        }
        self.add_file(f"{_OSF_API_PREFIX}/files/{guid}/", json.dumps(page),
                      content_type="application/vnd.api+json")
        return page

    # ---------------------------------------------------------------- faults

    def drop_after(self, path: str, n_bytes: int, *, times: int = 1) -> None:
        """Cut the connection after ``n_bytes`` of the body, for the next ``times`` requests.

        The headers still announce the full ``Content-Length``, as a real
        dropped transfer would.
        """
        with self._lock:
            self._drops[_norm(path)] = _Counter(times, {"n_bytes": int(n_bytes)})

    def fail(self, path: str, status: int = 503, *, times: int = 1,
             retry_after: float | str | None = None) -> None:
        """Answer ``status`` (e.g. 503 or 429) to the next ``times`` requests for ``path``.

        ``retry_after`` is sent as the ``Retry-After`` header (seconds or an HTTP date).
        """
        with self._lock:
            self._failures[_norm(path)] = _Counter(
                times, {"status": int(status), "retry_after": retry_after})

    def serve_html(self, path: str, page: str | None = None, *, status: int = 200,
                   times: int | None = None, content_type: str = "text/html; charset=utf-8",
                   ) -> None:
        """Answer requests for ``path`` with an HTML page instead of the file.

        Parameters
        ----------
        page : str or None
            The page; a generic rate-limit page by default (:data:`LOGIN_PAGE`
            is available for a login page).
        status : int
            Status code sent with it (200 by default, as misbehaving hosts do).
        times : int or None
            For the next ``times`` requests only; None for all.
        content_type : str
            Content-Type header sent with the page.
        """
        if page is None:
            page = ("<!DOCTYPE html>\n<html><head><title>Too many requests</title></head>"
                    "<body><p>Please slow down and try again later.</p></body></html>\n")
        with self._lock:
            self._pages[_norm(path)] = _Counter(
                times, {"page": page, "status": int(status), "content_type": content_type})

    def ignore_range(self, path: str, ignore: bool = True) -> None:
        """Make ``path`` answer ``200`` with the whole file even to ``Range`` requests."""
        with self._lock:
            if ignore:
                self._ignore_range.add(_norm(path))
            else:
                self._ignore_range.discard(_norm(path))

    # ---------------------------------------------------------------- log

    @property
    def requests(self) -> list[RecordedRequest]:
        """All requests received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def requests_for(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Requests for one path, optionally of one method."""
        key = _norm(path)
        return [r for r in self.requests
                if r.path == key and (method is None or r.method == method)]

    def clear_log(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._log.clear()

    # ---------------------------------------------------------------- handling

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def _session_user(self, cookie_header: str | None) -> str | None:
        if not cookie_header:
            return None
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(cookie_header)
        except http.cookies.CookieError:
            return None
        morsel = jar.get(_SESSION_COOKIE)
        if morsel is None:
            return None
        with self._lock:
            return self._sessions.get(morsel.value)

    def _lookup(self, path: str) -> tuple[bytes, str, str | None] | None:
        """Return ``(content, content type, CRCNS dataset or None)`` for a path."""
        with self._lock:
            if path in self._files:
                data, ctype = self._files[path]
                return data, ctype, None
            dataset, _, inner = path.lstrip("/").partition("/")
            if dataset in self._crcns and inner:
                if inner == "filelist.txt":
                    return self._file_lists[dataset].encode("utf-8"), "text/plain", dataset
                if inner in self._crcns[dataset]:
                    ctype = mimetypes.guess_type(inner)[0] or "application/octet-stream"
                    return self._crcns[dataset][inner], ctype, dataset
                return None
        if self._root is not None:
            candidate = (self._root / path.lstrip("/")).resolve()
            if candidate.is_file() and candidate.is_relative_to(self._root):
                ctype = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
                return candidate.read_bytes(), ctype, None
        return None

    def _take(self, table: dict[str, _Counter], path: str) -> dict[str, Any] | None:
        with self._lock:
            counter = table.get(path)
            if counter is None or not counter.take():
                return None
            return dict(counter.params)

    def _handle(self, handler: _Handler, method: str) -> None:
        raw_path, _, query = handler.path.partition("?")
        path = _norm(unquote(raw_path))
        headers = dict(handler.headers.items())
        body = b""
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True) \
            if body and "x-www-form-urlencoded" in (handler.headers.get("Content-Type") or "") \
            else []
        self._record(RecordedRequest(method, path, query, headers,
                                     tuple(name for name, _ in form)))

        failure = self._take(self._failures, path)
        if failure is not None:
            extra = {}
            if failure["retry_after"] is not None:
                extra["Retry-After"] = str(failure["retry_after"])
            _send(handler, method, failure["status"], b"temporarily unavailable\n",
                  "text/plain", extra)
            return
        if method == "POST":
            if path == _LOGIN_PATH:
                self._login(handler, dict(form))
            else:
                _send(handler, method, 405, b"method not allowed\n", "text/plain")
            return
        dataset_name = path.strip("/")
        with self._lock:
            is_dataset_page = dataset_name in self._crcns
        if is_dataset_page:
            user = self._session_user(handler.headers.get("Cookie"))
            if user is None:
                text = ("<!DOCTYPE html><html><body><p>You are not logged in. "
                        f"<a href=\"{_LOGIN_PATH}\">Log in</a></p></body></html>")
            else:
                text = (f"<!DOCTYPE html><html><body><p>Dataset {html.escape(dataset_name)}: "
                        f"logged in as {html.escape(user)}.</p>"
                        "<a href=\"filelist.txt\">file list</a></body></html>")
            _send(handler, method, 200, text.encode(), "text/html; charset=utf-8")
            return
        page = self._take(self._pages, path)
        if page is not None:
            _send(handler, method, page["status"], page["page"].encode("utf-8"),
                  page["content_type"])
            return
        found = self._lookup(path)
        if found is None:
            _send(handler, method, 404, b"not found\n", "text/plain")
            return
        data, ctype, dataset = found
        if dataset is not None and self._session_user(handler.headers.get("Cookie")) is None:
            _send(handler, method, 200, LOGIN_PAGE.encode("utf-8"), "text/html; charset=utf-8")
            return
        self._serve_bytes(handler, method, path, data, ctype)

    def _login(self, handler: _Handler, form: dict[str, str]) -> None:
        required = {"form.submitted": "1", "submit": "Log in"}
        well_formed = (all(form.get(k) == v for k, v in required.items())
                       and all(k in form for k in ("js_enabled", "pwd_empty", "__ac_name",
                                                   "__ac_password")))
        user = form.get("__ac_name", "")
        with self._lock:
            accepted = well_formed and user in self._users \
                and self._users[user] == form.get("__ac_password")
            token = secrets.token_hex(16) if accepted else None
            if token is not None:
                self._sessions[token] = user
        if token is None:
            page = LOGIN_PAGE.replace("<h1>Log in</h1>",
                                      "<h1>Log in</h1><p>Login failed.</p>")
            _send(handler, "POST", 200, page.encode("utf-8"), "text/html; charset=utf-8")
            return
        text = "<!DOCTYPE html><html><body><p>You are now logged in.</p></body></html>"
        _send(handler, "POST", 200, text.encode(), "text/html; charset=utf-8",
              {"Set-Cookie": f"{_SESSION_COOKIE}={token}; Path=/"})

    def _serve_bytes(self, handler: _Handler, method: str, path: str, data: bytes,
                     ctype: str) -> None:
        size = len(data)
        status, start, end = 200, 0, size
        extra: dict[str, str] = {"Accept-Ranges": "bytes"}
        with self._lock:
            honour_range = path not in self._ignore_range
        range_header = handler.headers.get("Range")
        if range_header and honour_range:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
            if match and (match.group(1) or match.group(2)):
                first, last = match.group(1), match.group(2)
                if first:
                    start = int(first)
                    end = min(int(last) + 1, size) if last else size
                else:  # suffix range: the last N bytes
                    start, end = max(size - int(last), 0), size
                if start >= size or start >= end:
                    _send(handler, method, 416, b"", ctype,
                          {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
                extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        body = data[start:end]
        drop = self._take(self._drops, path) if method == "GET" else None
        if drop is None:
            _send(handler, method, status, body, ctype, extra)
            return
        _send_headers(handler, status, len(body), ctype, extra)
        try:
            handler.wfile.write(body[:drop["n_bytes"]])
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        handler.close_connection = True


class _Handler(BaseHTTPRequestHandler):
    owner: LocalHTTPServer
    server_version = "deepstrf-test"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            self.owner._handle(self, method)
        except (BrokenPipeError, ConnectionResetError):
            # The client hung up (e.g. after refusing an HTML page): nothing to do.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s - %s", self.address_string(), format % args)


def _send_headers(handler: _Handler, status: int, length: int, ctype: str,
                  extra: Mapping[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(length))
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()


def _send(handler: _Handler, method: str, status: int, body: bytes, ctype: str,
          extra: Mapping[str, str] | None = None) -> None:
    _send_headers(handler, status, len(body), ctype, extra)
    if method != "HEAD" and body:
        handler.wfile.write(body)
