"""Tests of deepstrf.io.download against the local test server (no internet)."""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepstrf._config import progress_disable
from deepstrf.errors import (
    AuthenticationError,
    ChecksumError,
    DownloadError,
    MissingRawDataError,
    OfflineError,
)
from deepstrf.io import download
from deepstrf.io.download import (
    CRCNS_REGISTER_URL,
    CRCNSCredentials,
    RemoteFile,
    crcns_file_list,
    fetch,
    missing_files,
    offline_mode,
)
from deepstrf.testing.http_server import LOGIN_PAGE, LocalHTTPServer

CHUNK = download._CHUNK_BYTES
PASSWORD = "Sup3r-s3cret-pw!"
LOGIN_FIELDS = {"form.submitted", "js_enabled", "pwd_empty", "__ac_name", "__ac_password",
                "submit"}


def _payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed * 7 + i // 251) % 256 for i in range(n))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No user environment leaks in; waits are recorded instead of slept."""
    for name in ("DEEPSTRF_OFFLINE", "DEEPSTRF_PROGRESS", "CRCNS_USERNAME", "CRCNS_PASSWORD",
                 "DEEPSTRF_CRCNS_LOGIN_URL", "DEEPSTRF_CRCNS_DOWNLOAD_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    waits: list[float] = []
    monkeypatch.setattr(download, "_sleep", waits.append)
    return waits


@pytest.fixture
def waits(_isolated):
    return _isolated


@pytest.fixture
def server():
    with LocalHTTPServer() as srv:
        yield srv


@pytest.fixture
def raw(tmp_path):
    return tmp_path / "raw"


@pytest.fixture
def crcns(server, monkeypatch):
    """A CRCNS-like site with user alice and dataset aa-1."""
    server.add_crcns_user("alice", PASSWORD)
    server.add_crcns_dataset("aa-1", {"crcns-aa1.zip": _payload(150_000, 1),
                                      "docs/readme.txt": b"read me\n"})
    monkeypatch.setenv("DEEPSTRF_CRCNS_LOGIN_URL", server.crcns_login_url)
    monkeypatch.setenv("DEEPSTRF_CRCNS_DOWNLOAD_URL", server.crcns_download_url)
    return server


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------ plain downloads


def test_download_verifies_sha256_and_is_not_repeated(server, raw):
    data = _payload(200_000)
    server.add_file("rec/a.bin", data)
    rf = RemoteFile("sub/a.bin", url=server.url_for("rec/a.bin"), sha256=_sha256(data))
    paths = fetch([rf], raw, progress=False)
    assert paths == {"sub/a.bin": (raw / "sub" / "a.bin").absolute()}
    assert paths["sub/a.bin"].read_bytes() == data
    assert _leftovers(raw / "sub") == [".a.bin.verified", "a.bin"]
    server.clear_log()
    assert fetch([rf], raw, progress=False) == paths
    assert server.requests == []


def test_verification_is_cached_until_the_file_changes(server, raw, monkeypatch):
    import pooch

    data = _payload(10_000)
    server.add_file("a.bin", data)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    fetch([rf], raw, progress=False)
    calls = []
    real_hash = pooch.file_hash
    monkeypatch.setattr(pooch, "file_hash", lambda *a, **k: calls.append(a) or real_hash(*a, **k))
    fetch([rf], raw, progress=False)
    assert calls == []  # the sidecar vouches for the file
    path = raw / "a.bin"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    fetch([rf], raw, progress=False)
    assert len(calls) == 1  # touched: hashed again, then cached again
    fetch([rf], raw, progress=False)
    assert len(calls) == 1
    assert server.requests_for("a.bin") and len(server.requests_for("a.bin")) == 1


def test_md5_is_verified(server, raw):
    data = _payload(5_000)
    server.add_file("b.bin", data)
    good = RemoteFile("b.bin", url=server.url_for("b.bin"), md5=hashlib.md5(data).hexdigest())
    assert fetch([good], raw, progress=False)["b.bin"].read_bytes() == data
    bad = RemoteFile("c.bin", url=server.url_for("b.bin"), md5="0" * 32)
    got = hashlib.md5(data).hexdigest()
    with pytest.raises(ChecksumError, match=f"expected md5 0{{32}}, got {got}"):
        fetch([bad], raw, progress=False)


def test_wrong_checksum_is_refused_and_nothing_left(server, raw):
    data = _payload(100_000)
    server.add_file("a.bin", data)
    url = server.url_for("a.bin")
    rf = RemoteFile("a.bin", url=url, sha256="f" * 64)
    with pytest.raises(ChecksumError) as info:
        fetch([rf], raw, progress=False, owner="TestDataset")
    message = str(info.value)
    assert message.startswith("TestDataset: checksum mismatch for a.bin")
    assert f"expected sha256 {'f' * 64}, got {_sha256(data)}" in message
    assert url in message and "deleted" in message
    assert _leftovers(raw) == []


def test_wrong_size_is_refused_and_nothing_left(server, raw):
    server.add_file("a.bin", _payload(1_000))
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), size=999)
    with pytest.raises(ChecksumError, match="expected 999 bytes, got 1000"):
        fetch([rf], raw, progress=False)
    assert _leftovers(raw) == []


def test_size_only_file_is_accepted(server, raw):
    data = _payload(3_000)
    server.add_file("a.bin", data)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), size=len(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert missing_files([rf], raw) == []


# ------------------------------------------------------------------ resume


def test_dropped_transfer_resumes_with_range(server, raw, waits):
    data = _payload(300_000)
    server.add_file("big.bin", data)
    cut = 2 * CHUNK
    server.drop_after("big.bin", cut)
    rf = RemoteFile("big.bin", url=server.url_for("big.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False)["big.bin"].read_bytes() == data
    gets = server.requests_for("big.bin", "GET")
    assert [r.header("Range") for r in gets] == [None, f"bytes={cut}-"]
    assert waits == [download.BACKOFF_BASE_S]
    assert _leftovers(raw) == [".big.bin.verified", "big.bin"]


def test_partial_file_survives_a_failed_call_and_is_resumed(server, raw):
    data = _payload(250_000)
    server.add_file("big.bin", data)
    cut = 3 * CHUNK
    server.drop_after("big.bin", cut)
    rf = RemoteFile("big.bin", url=server.url_for("big.bin"), sha256=_sha256(data))
    with pytest.raises(DownloadError, match="giving up .* after 1 attempt"):
        fetch([rf], raw, progress=False, retries=0)
    part = raw / "big.bin.part"
    assert part.stat().st_size == cut and not (raw / "big.bin").exists()
    server.clear_log()
    assert fetch([rf], raw, progress=False)["big.bin"].read_bytes() == data
    assert [r.header("Range") for r in server.requests] == [f"bytes={cut}-"]
    assert not part.exists()


def test_repeated_drops_each_resume(server, raw, waits):
    data = _payload(400_000)
    server.add_file("big.bin", data)
    server.drop_after("big.bin", CHUNK, times=4)
    rf = RemoteFile("big.bin", url=server.url_for("big.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False, retries=1)["big.bin"].read_bytes() == data
    ranges = [r.header("Range") for r in server.requests]
    assert ranges == [None] + [f"bytes={k * CHUNK}-" for k in range(1, 5)]
    # progress at every drop: the single allowed retry is never used up
    assert waits == [download.BACKOFF_BASE_S] * 4


def test_server_ignoring_range_restarts_cleanly(server, raw):
    data = _payload(120_000)
    server.add_file("a.bin", data)
    server.ignore_range("a.bin")
    (raw).mkdir()
    (raw / "a.bin.part").write_bytes(b"garbage" * 1000)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert [r.header("Range") for r in server.requests] == ["bytes=7000-"]


def test_416_on_a_complete_part_finishes_without_transfer(server, raw):
    data = _payload(70_000)
    server.add_file("a.bin", data)
    raw.mkdir()
    (raw / "a.bin.part").write_bytes(data)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert [r.header("Range") for r in server.requests] == [f"bytes={len(data)}-"]


def test_416_on_an_oversized_part_restarts_from_zero(server, raw):
    data = _payload(70_000)
    server.add_file("a.bin", data)
    raw.mkdir()
    (raw / "a.bin.part").write_bytes(data + b"extra")
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert [r.header("Range") for r in server.requests] == [f"bytes={len(data) + 5}-", None]


def test_part_larger_than_declared_size_is_discarded_without_asking(server, raw):
    data = _payload(10_000)
    server.add_file("a.bin", data)
    raw.mkdir()
    (raw / "a.bin.part").write_bytes(b"x" * 20_000)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), size=len(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert [r.header("Range") for r in server.requests] == [None]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=199_999))
def test_resume_from_any_cut_gives_the_exact_file(cut, server):
    data = _payload(200_000, seed=cut % 5)
    path = f"cut-{cut}.bin"
    server.add_file(path, data)
    server.drop_after(path, cut)
    rf = RemoteFile("f.bin", url=server.url_for(path), sha256=_sha256(data), size=len(data))
    with tempfile.TemporaryDirectory() as folder:
        assert fetch([rf], folder, progress=False)["f.bin"].read_bytes() == data
    ranges = [r.header("Range") for r in server.requests_for(path)]
    resumed_at = cut - cut % CHUNK
    assert ranges == [None, f"bytes={resumed_at}-"] if resumed_at else ranges == [None, None]


# ------------------------------------------------------------------ web pages instead of data


def test_html_page_with_status_200_is_refused(server, raw):
    server.add_file("a.zip", _payload(1000))
    server.serve_html("a.zip")
    rf = RemoteFile("a.zip", url=server.url_for("a.zip"))
    with pytest.raises(DownloadError, match=r"returned an HTML page \(Content-Type text/html"):
        fetch([rf], raw, progress=False, owner="X")
    assert _leftovers(raw) == []
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize(("body", "kind"), [
    (b"\n  <!DOCTYPE html><html><body>Rate limited</body></html>", "an HTML page"),
    (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "an XML document"),
    (b"<html><form action=x><input type=password></form></html>", "a login page"),
])
def test_markup_is_sniffed_even_with_a_binary_content_type(server, raw, body, kind):
    server.add_file("a.bin", body, content_type="application/octet-stream")
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"))
    with pytest.raises(DownloadError, match=f"returned {kind}"):
        fetch([rf], raw, progress=False)
    assert _leftovers(raw) == []


def test_xml_content_type_is_refused(server, raw):
    server.add_file("a.bin", b"not really xml", content_type="application/xml")
    with pytest.raises(DownloadError, match="an XML document"):
        fetch([RemoteFile("a.bin", url=server.url_for("a.bin"))], raw, progress=False)


def test_expected_html_file_is_kept(server, raw):
    page = b"<!DOCTYPE html><html><body>docs</body></html>"
    server.add_file("index.html", page)
    rf = RemoteFile("docs/index.html", url=server.url_for("index.html"))
    assert fetch([rf], raw, progress=False)["docs/index.html"].read_bytes() == page


def test_html_during_resume_keeps_the_partial_file(server, raw):
    data = _payload(100_000)
    server.add_file("a.bin", data)
    raw.mkdir()
    (raw / "a.bin.part").write_bytes(data[:CHUNK])
    server.serve_html("a.bin", times=1)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    with pytest.raises(DownloadError, match="HTML page"):
        fetch([rf], raw, progress=False)
    assert (raw / "a.bin.part").read_bytes() == data[:CHUNK]
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data


# ------------------------------------------------------------------ retries


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(server, raw, waits, status):
    data = _payload(2_000)
    server.add_file("a.bin", data)
    server.fail("a.bin", status, times=2, retry_after=7)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert waits == [7.0, 7.0]
    assert len(server.requests) == 3


def test_retry_after_http_date_and_cap(server, raw, waits, monkeypatch):
    data = _payload(2_000)
    server.add_file("a.bin", data)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    server.fail("a.bin", 503, times=1,
                retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))
    fetch([rf], raw, progress=False)
    assert 25 <= waits[0] <= 31
    (raw / "a.bin").unlink()
    monkeypatch.setattr(download, "BACKOFF_MAX_S", 5.0)
    server.fail("a.bin", 503, times=1, retry_after=3600)
    fetch([rf], raw, progress=False)
    assert waits[1] == 5.0


def test_backoff_doubles_and_gives_up(server, raw, waits):
    server.add_file("a.bin", b"data")
    server.fail("a.bin", 503, times=10)
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"))
    with pytest.raises(DownloadError, match=r"after 3 attempt\(s\); last problem: HTTP 503"):
        fetch([rf], raw, progress=False, retries=2)
    base = download.BACKOFF_BASE_S
    assert waits == [base, 2 * base]
    assert len(server.requests) == 3
    assert _leftovers(raw) == []


def test_connection_refused_is_retried_then_reported(raw, waits):
    with LocalHTTPServer() as srv:
        url = srv.url_for("gone.bin")
    rf = RemoteFile("gone.bin", url=url)
    with pytest.raises(DownloadError, match="connection failed"):
        fetch([rf], raw, progress=False, retries=1, timeout=5)
    assert len(waits) == 1


def test_404_is_not_retried(server, raw, waits):
    rf = RemoteFile("a.bin", url=server.url_for("missing.bin"))
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch([rf], raw, progress=False)
    assert waits == [] and len(server.requests) == 1


def test_other_http_error_is_reported(server, raw):
    server.add_file("a.bin", b"data")
    server.fail("a.bin", 403, times=1)
    with pytest.raises(DownloadError, match="answered HTTP 403"):
        fetch([RemoteFile("a.bin", url=server.url_for("a.bin"))], raw, progress=False)


# ------------------------------------------------------------------ offline mode


def test_offline_mode_lists_missing_files_without_connecting(server, raw, monkeypatch):
    present = _payload(100)
    raw.mkdir()
    (raw / "here.bin").write_bytes(present)
    (raw / "b.bin.part").write_bytes(b"12345")
    files = [
        RemoteFile("here.bin", url=server.url_for("here.bin"), size=100),
        RemoteFile("a.bin", url=server.url_for("a.bin"), size=2_500_000),
        RemoteFile("b.bin", url=server.url_for("b.bin")),
    ]
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    assert offline_mode()
    with pytest.raises(MissingRawDataError) as info:
        fetch(files, raw, owner="NS1Dataset")
    message = str(info.value)
    assert message.startswith(f"NS1Dataset: 2 raw file(s) missing under {raw.absolute()}:")
    assert f"  - {raw.absolute() / 'a.bin'}  (2.5 MB; from {server.url_for('a.bin')})" in message
    assert f"  - {raw.absolute() / 'b.bin'}  (size unknown" in message
    assert "partial download of 5 bytes" in message
    assert "here.bin" not in message
    assert "unset DEEPSTRF_OFFLINE" in message and "download=True" in message
    assert server.requests == []
    assert missing_files(files, raw) == files[1:]


def test_download_false_makes_no_connection(server, raw):
    rf = RemoteFile("crcns-aa1.zip", crcns=("aa-1", "crcns-aa1.zip"))
    with pytest.raises(MissingRawDataError) as info:
        fetch([rf], raw, download=False, owner="CRCNSAA1Dataset")
    message = str(info.value)
    assert "because download=False" in message and CRCNS_REGISTER_URL in message
    assert "CRCNS aa-1, file crcns-aa1.zip" in message
    assert server.requests == []
    assert not raw.exists()


def test_offline_with_files_present_returns_paths(server, raw, monkeypatch):
    data = _payload(50)
    raw.mkdir()
    (raw / "a.bin").write_bytes(data)
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "yes")
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    assert fetch([rf], raw)["a.bin"] == (raw / "a.bin").absolute()
    assert server.requests == []


def test_corrupt_present_file_offline_raises_and_is_kept(server, raw, monkeypatch):
    raw.mkdir()
    (raw / "a.bin").write_bytes(b"corrupt")
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256="a" * 64)
    with pytest.raises(ChecksumError, match=f"present but its sha256 is {_sha256(b'corrupt')}, "
                                            f"expected {'a' * 64}"):
        fetch([rf], raw)
    assert (raw / "a.bin").read_bytes() == b"corrupt"
    assert server.requests == []


def test_corrupt_present_file_online_is_replaced(server, raw):
    data = _payload(1_000)
    server.add_file("a.bin", data)
    raw.mkdir()
    (raw / "a.bin").write_bytes(b"corrupt")
    rf = RemoteFile("a.bin", url=server.url_for("a.bin"), sha256=_sha256(data))
    assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert len(server.requests) == 1


def test_bad_environment_values_are_rejected(monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="DEEPSTRF_OFFLINE must be one of .* got 'maybe'"):
        offline_mode()
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="DEEPSTRF_PROGRESS"):
        progress_disable()


def test_progress_switches(monkeypatch, server, raw, capsys):
    monkeypatch.delenv("DEEPSTRF_PROGRESS", raising=False)
    assert progress_disable() is None  # tqdm decides: bars on a terminal only
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")
    assert progress_disable() is True
    assert progress_disable(True) is False
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        progress_disable("yes")
    server.add_file("a.bin", _payload(1000))
    fetch([RemoteFile("shown.bin", url=server.url_for("a.bin"))], raw, progress=True)
    assert "shown.bin" in capsys.readouterr().err
    fetch([RemoteFile("hidden.bin", url=server.url_for("a.bin"))], raw)
    assert "hidden.bin" not in capsys.readouterr().err


# ------------------------------------------------------------------ argument checks


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": "/abs.zip", "url": "https://x/a"}, ValueError, "relative path"),
    ({"name": "../up.zip", "url": "https://x/a"}, ValueError, "without '..'"),
    ({"name": "", "url": "https://x/a"}, ValueError, "relative path"),
    ({"name": 3, "url": "https://x/a"}, TypeError, "must be a string"),
    ({"name": "a.zip"}, ValueError, "exactly one of url="),
    ({"name": "a.zip", "url": "https://x/a", "crcns": ("aa-1", "a.zip")}, ValueError,
     "exactly one"),
    ({"name": "a.zip", "url": "ftp://x/a"}, ValueError, "http:// or https://"),
    ({"name": "a.zip", "crcns": ("aa-1",)}, ValueError, r"\(dataset, path\) tuple"),
    ({"name": "a.zip", "crcns": ("aa-1", "../a.zip")}, ValueError, "without '..'"),
    ({"name": "a.zip", "url": "https://x/a", "size": -1}, ValueError, "size must be >= 0"),
    ({"name": "a.zip", "url": "https://x/a", "size": 1.5}, TypeError, "must be an integer"),
    ({"name": "a.zip", "url": "https://x/a", "sha256": "abc"}, ValueError, "64 characters"),
    ({"name": "a.zip", "url": "https://x/a", "md5": "z" * 32}, ValueError, "32 characters"),
])
def test_remote_file_rejects_bad_declarations(kwargs, error, match):
    with pytest.raises(error, match=match):
        RemoteFile(**kwargs)


def test_remote_file_normalises():
    rf = RemoteFile("./a//b.zip", url="https://x/a", sha256="A" * 64, md5="B" * 32)
    assert rf.name == "a/b.zip" and rf.sha256 == "a" * 64
    assert rf.checksum == ("sha256", "a" * 64)
    assert RemoteFile("c", url="https://x/c", md5="b" * 32).checksum == ("md5", "b" * 32)
    assert RemoteFile("c", url="https://x/c").checksum is None


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"files": "a.bin"}, TypeError, "sequence of RemoteFile"),
    ({"files": ["a.bin"]}, TypeError, "RemoteFile records"),
    ({"retries": -1}, ValueError, "retries must be >= 0"),
    ({"timeout": 0}, ValueError, "timeout must be"),
    ({"download": "yes"}, TypeError, "download must be True or False"),
    ({"raw_dir": 5}, TypeError, "raw_dir must be a str or path-like"),
    ({"owner": 1}, TypeError, "owner must be a string"),
])
def test_fetch_rejects_bad_arguments(tmp_path, kwargs, error, match):
    args = {"files": [RemoteFile("a.bin", url="https://example.org/a.bin")],
            "raw_dir": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        fetch(args.pop("files"), args.pop("raw_dir"), **args)


def test_fetch_rejects_duplicate_names(tmp_path):
    rf = RemoteFile("a.bin", url="https://example.org/a.bin")
    with pytest.raises(ValueError, match="lists 'a.bin' twice"):
        fetch([rf, rf], tmp_path)


# ------------------------------------------------------------------ CRCNS


def _crcns_file(path: str = "crcns-aa1.zip", **kwargs) -> RemoteFile:
    return RemoteFile(path, crcns=("aa-1", path), **kwargs)


def test_crcns_login_and_download(crcns, raw):
    files = [_crcns_file(), _crcns_file("docs/readme.txt")]
    paths = fetch(files, raw, username="alice", password=PASSWORD, progress=False)
    assert paths["crcns-aa1.zip"].read_bytes() == _payload(150_000, 1)
    assert paths["docs/readme.txt"].read_bytes() == b"read me\n"
    log = [(r.method, r.path) for r in crcns.requests]
    assert log == [("POST", "/login_form"), ("GET", "/aa-1"), ("GET", "/aa-1/filelist.txt"),
                   ("GET", "/aa-1/crcns-aa1.zip"), ("GET", "/aa-1/docs/readme.txt")]
    assert set(crcns.requests[0].form_fields) == LOGIN_FIELDS
    assert all("__ac=" in (r.header("Cookie") or "") for r in crcns.requests[1:])


def test_crcns_urls_from_module_constants(crcns, raw, monkeypatch):
    monkeypatch.delenv("DEEPSTRF_CRCNS_LOGIN_URL")
    monkeypatch.delenv("DEEPSTRF_CRCNS_DOWNLOAD_URL")
    monkeypatch.setattr(download, "CRCNS_LOGIN_URL", crcns.crcns_login_url)
    monkeypatch.setattr(download, "CRCNS_DOWNLOAD_URL", crcns.crcns_download_url + "/")
    rf = _crcns_file()
    assert rf.source_url == f"{crcns.url}/aa-1/crcns-aa1.zip"
    fetch([rf], raw, username="alice", password=PASSWORD, progress=False)
    assert (raw / "crcns-aa1.zip").stat().st_size == 150_000


def test_crcns_rejected_login(crcns, raw):
    with pytest.raises(AuthenticationError) as info:
        fetch([_crcns_file()], raw, username="alice", password="wrong", progress=False,
              owner="CRCNSAA1Dataset")
    message = str(info.value)
    assert message.startswith("CRCNSAA1Dataset: CRCNS did not accept the login of user 'alice'")
    assert CRCNS_REGISTER_URL in message and "CRCNS_USERNAME" in message
    assert "credentials from arguments" in message
    assert [r.path for r in crcns.requests] == ["/login_form", "/aa-1"]
    assert _leftovers(raw) == []


def test_crcns_missing_credentials_fail_before_connecting(crcns, raw):
    with pytest.raises(AuthenticationError, match="no CRCNS username and password found") as info:
        fetch([_crcns_file()], raw, progress=False)
    assert CRCNS_REGISTER_URL in str(info.value) and "netrc" in str(info.value)
    assert crcns.requests == []


def test_crcns_credentials_from_environment(crcns, raw, monkeypatch):
    monkeypatch.setenv("CRCNS_USERNAME", "alice")
    monkeypatch.setenv("CRCNS_PASSWORD", PASSWORD)
    assert fetch([_crcns_file()], raw, progress=False)["crcns-aa1.zip"].is_file()


def test_crcns_credentials_from_netrc(crcns, raw, monkeypatch, tmp_path):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"machine other.org login bob password nope\n"
                          f"machine crcns.org login alice password {PASSWORD}\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert fetch([_crcns_file()], raw, progress=False)["crcns-aa1.zip"].is_file()


def test_crcns_login_page_instead_of_file(crcns, raw):
    crcns.serve_html("/aa-1/crcns-aa1.zip", LOGIN_PAGE)
    with pytest.raises(AuthenticationError, match="a login page .* instead of the file "
                                                  "crcns-aa1.zip") as info:
        fetch([_crcns_file()], raw, username="alice", password=PASSWORD, progress=False)
    assert CRCNS_REGISTER_URL in str(info.value)
    assert _leftovers(raw) == []


def test_crcns_unknown_file_is_404(crcns, raw, caplog):
    with caplog.at_level(logging.WARNING, logger="deepstrf.io.download"), \
            pytest.raises(DownloadError, match="CRCNS has no file aa-1/nope.zip \\(HTTP 404"):
        fetch([_crcns_file("nope.zip")], raw, username="alice", password=PASSWORD,
              progress=False)
    assert "nope.zip is not in the CRCNS file list of aa-1" in caplog.text


def test_crcns_sizes_from_the_file_list_are_checked(crcns, raw):
    crcns.add_crcns_dataset("aa-2", {"x.tar.gz": _payload(1_000)},
                            file_list="# list\nx.tar.gz 1234 1.2 KB\n")
    rf = RemoteFile("x.tar.gz", crcns=("aa-2", "x.tar.gz"))
    with pytest.raises(ChecksumError, match="expected 1234 bytes, got 1000"):
        fetch([rf], raw, username="alice", password=PASSWORD, progress=False)
    assert _leftovers(raw) == []


def test_crcns_download_resumes_in_the_session(crcns, raw):
    crcns.drop_after("/aa-1/crcns-aa1.zip", CHUNK)
    rf = _crcns_file(sha256=_sha256(_payload(150_000, 1)))
    fetch([rf], raw, username="alice", password=PASSWORD, progress=False)
    gets = crcns.requests_for("/aa-1/crcns-aa1.zip")
    assert [r.header("Range") for r in gets] == [None, f"bytes={CHUNK}-"]
    assert all("__ac=" in (r.header("Cookie") or "") for r in gets)
    assert (raw / "crcns-aa1.zip").read_bytes() == _payload(150_000, 1)


def test_crcns_file_list(crcns):
    listing = crcns_file_list("aa-1", username="alice", password=PASSWORD)
    assert listing == {"crcns-aa1.zip": 150_000, "docs/readme.txt": 8}


def test_crcns_file_list_offline(crcns, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(OfflineError, match="DEEPSTRF_OFFLINE"):
        crcns_file_list("aa-1", username="alice", password=PASSWORD)
    assert crcns.requests == []


def test_parse_file_list_formats():
    text = ("# CRCNS aa-4 file list\n\n"
            "BlaBro09xxF.tar.gz 734003200 700 MB\n"
            "aa-4/CRCNSCode.tar.gz\t1048576\t1.0 MB\n"
            "docs/with space.pdf 2048\n"
            "csv.zip,99,99 B\n"
            "no size here\n")
    assert download._parse_file_list(text, "aa-4") == {
        "BlaBro09xxF.tar.gz": 734003200, "CRCNSCode.tar.gz": 1048576,
        "docs/with space.pdf": 2048, "csv.zip": 99}


# ------------------------------------------------------------------ credentials


def test_credentials_resolution_order(monkeypatch, tmp_path):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine crcns.org login carol password netrc-pw\n")
    monkeypatch.setenv("NETRC", str(netrc_file))
    creds = CRCNSCredentials.resolve()
    assert (creds.username, creds.password) == ("carol", "netrc-pw")
    assert creds.origin == f"netrc file {netrc_file}"
    monkeypatch.setenv("CRCNS_USERNAME", "dave")
    monkeypatch.setenv("CRCNS_PASSWORD", "env-pw")
    creds = CRCNSCredentials.resolve()
    assert (creds.username, creds.password) == ("dave", "env-pw")
    creds = CRCNSCredentials.resolve("erin", "arg-pw")
    assert (creds.username, creds.password, creds.origin) == ("erin", "arg-pw", "arguments")
    creds = CRCNSCredentials.resolve(password="arg-pw")
    assert (creds.username, creds.origin) == ("dave", "arguments, $CRCNS_USERNAME")


def test_netrc_password_of_another_login_is_not_used(monkeypatch, tmp_path):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine crcns.org login carol password netrc-pw\n")
    monkeypatch.setenv("NETRC", str(netrc_file))
    with pytest.raises(AuthenticationError, match="no CRCNS password found"):
        CRCNSCredentials.resolve("someone-else")


def test_malformed_netrc_does_not_leak(monkeypatch, tmp_path):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"{PASSWORD} machine crcns.org login alice password x\n")
    monkeypatch.setenv("NETRC", str(netrc_file))
    with pytest.raises(AuthenticationError, match="could not parse the netrc file") as info:
        CRCNSCredentials.resolve()
    assert PASSWORD not in _everything_said(info.value)


def test_credentials_validation_never_echoes_the_password():
    with pytest.raises(TypeError, match="password must be a string; got a bytes"):
        CRCNSCredentials("alice", PASSWORD.encode())
    with pytest.raises(ValueError, match="empty password"):
        CRCNSCredentials("alice", "")
    with pytest.raises(TypeError, match="CRCNS password must be a string or None; got int"):
        CRCNSCredentials.resolve("alice", 1234)


def _everything_said(err: BaseException) -> str:
    """str and repr of an exception and of every exception it chains to."""
    texts = []
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        texts += [str(err), repr(err), *map(repr, err.args)]
        err = err.__cause__ or err.__context__
    return "\n".join(texts)


def test_password_never_appears_in_logs_errors_or_reprs(crcns, raw, caplog):
    creds = CRCNSCredentials("alice", PASSWORD)
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    assert repr(creds) == "CRCNSCredentials(username='alice', password='***', origin='arguments')"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as rejected:
        fetch([_crcns_file()], raw, username="alice", password=PASSWORD + "x", progress=False)
    assert PASSWORD not in _everything_said(rejected.value)
    crcns.serve_html("/aa-1/crcns-aa1.zip", LOGIN_PAGE, times=1)
    with pytest.raises(AuthenticationError) as page:
        fetch([_crcns_file()], raw, username="alice", password=PASSWORD, progress=False)
    assert PASSWORD not in _everything_said(page.value)
    fetch([_crcns_file()], raw, username="alice", password=PASSWORD, progress=False)
    assert "logging in to CRCNS as 'alice'" in caplog.text
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in repr(r) for r in crcns.requests)


def test_failed_login_request_keeps_no_request_body_in_the_chain(raw, monkeypatch, waits):
    with LocalHTTPServer() as srv:
        dead = srv.url
    monkeypatch.setenv("DEEPSTRF_CRCNS_LOGIN_URL", dead + "/login_form")
    monkeypatch.setenv("DEEPSTRF_CRCNS_DOWNLOAD_URL", dead)
    with pytest.raises(DownloadError, match="CRCNS login: giving up") as info:
        fetch([_crcns_file()], raw, username="alice", password=PASSWORD, progress=False,
              retries=1, timeout=5)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert PASSWORD not in _everything_said(info.value)


# ------------------------------------------------------------------ declared needs (when=)


def test_when_selects_by_value_or_membership():
    bird = RemoteFile("B.tar.gz", url="https://example.org/B.tar.gz", when={"animals": "B"})
    wav = RemoteFile.zenodo("wav.zip", record=1, when={"front_end.return_waveform": True,
                                                       "area": "A1"})
    assert bird.when == (("animals", "B"),)
    assert [bird.needed({"animals": a}) for a in (("A", "B"), ("A",), "B", "A")] == \
        [True, False, True, False]
    assert wav.needed({"area": "A1", "front_end": {"return_waveform": True}})
    assert not wav.needed({"area": "PEG", "front_end": {"return_waveform": True}})
    assert not wav.needed({"area": "A1", "front_end": {"return_waveform": False}})
    assert RemoteFile("x", url="https://e.org/x").needed({})  # no when: always
    with pytest.raises(KeyError, match="no 'animals'.*they have: area"):
        bird.needed({"area": "A1"})
    with pytest.raises(TypeError, match=r"when\['animals'\] must be a str, bool or number"):
        RemoteFile("x", url="https://e.org/x", when={"animals": ["A"]})


def test_host_constructors_and_urls(monkeypatch):
    for name in download.HOST_URLS:
        monkeypatch.delenv(name, raising=False)
    z = RemoteFile.zenodo("sub/A1 pop.tgz", record=8044773)
    f = RemoteFile.figshare("z.zip", article=29203457, file_id=55083911)
    o = RemoteFile.osf("n.mat", guid="ayw2p")
    assert z.host == ("zenodo", "8044773", "A1 pop.tgz")
    assert z.source_url == "https://zenodo.org/api/records/8044773/files/A1%20pop.tgz/content"
    assert z.api_url == "https://zenodo.org/api/records/8044773"
    assert f.source_url == "https://ndownloader.figshare.com/files/55083911"
    assert f.api_url == "https://api.figshare.com/v2/articles/29203457"
    assert o.source_url == "https://osf.io/download/ayw2p/"
    assert o.api_url == "https://api.osf.io/v2/files/ayw2p/"
    assert RemoteFile("x", url="https://e.org/x").api_url is None
    with pytest.raises(ValueError, match="exactly one of url="):
        RemoteFile("x", url="https://e.org/x", host=("osf", "abc"))
    with pytest.raises(ValueError, match="host must be"):
        RemoteFile("x", host=("dropbox", "abc"))


# ------------------------------------------------------------------ host checksums


@pytest.fixture
def hosts(server, monkeypatch):
    for name, value in server.host_env().items():
        monkeypatch.setenv(name, value)
    return server


def _host_files(server, data):
    server.add_zenodo_record(8044773, {"A1.tgz": data[0], "PEG.tgz": data[3]})
    server.add_figshare_article(29203457, {55083911: ("le.zip", data[1])})
    server.add_osf_file("ayw2p", "ns1.mat", data[2])
    return [RemoteFile.zenodo("A1.tgz", record=8044773),
            RemoteFile.zenodo("PEG.tgz", record=8044773),
            RemoteFile.figshare("le.zip", article=29203457, file_id=55083911),
            RemoteFile.osf("ns1.mat", guid="ayw2p")]


def test_published_checksums_are_fetched_verified_and_recorded(hosts, raw):
    data = [_payload(20_000 + 1000 * k, k) for k in range(4)]
    files = _host_files(hosts, data)
    paths = fetch(files, raw, progress=False)
    assert [paths[f.name].read_bytes() for f in files] == [data[0], data[3], data[1], data[2]]
    # one API request per record (the two Zenodo files share theirs), before any file
    assert [r.path for r in hosts.requests] == [
        "/zenodo/api/records/8044773", "/figshare-api/v2/articles/29203457",
        "/osf-api/v2/files/ayw2p/", "/zenodo/api/records/8044773/files/A1.tgz/content",
        "/zenodo/api/records/8044773/files/PEG.tgz/content", "/figshare-files/files/55083911",
        "/osf/download/ayw2p/"]
    assert all(r.header("Accept") == "application/json" for r in hosts.requests[:3])
    records = {f.name: download.source_record(f, raw) for f in files}
    assert records["A1.tgz"]["checksum"] == f"md5:{hashlib.md5(data[0]).hexdigest()}"
    assert records["A1.tgz"]["checksum_origin"] == \
        f"Zenodo API {hosts.zenodo_url}/api/records/8044773"
    assert records["le.zip"]["checksum"] == f"md5:{hashlib.md5(data[1]).hexdigest()}"
    assert records["le.zip"]["checksum_origin"].startswith("figshare API ")
    # OSF publishes both: the stronger one is used
    assert records["ns1.mat"]["checksum"] == f"sha256:{_sha256(data[2])}"
    assert records["ns1.mat"]["checksum_origin"].startswith("OSF API ")
    assert records["ns1.mat"]["url"] == f"{hosts.osf_url}/download/ayw2p/"
    assert records["ns1.mat"]["size"] == len(data[2]) and records["ns1.mat"]["present"]
    hosts.clear_log()
    fetch(files, raw, progress=False)  # present: no API call, no download
    assert hosts.requests == []


def test_declared_checksum_skips_the_api(hosts, raw):
    data = _payload(5_000)
    hosts.add_zenodo_record(1, {"a.bin": data})
    rf = RemoteFile.zenodo("a.bin", record=1, sha256=_sha256(data))
    fetch([rf], raw, progress=False)
    assert [r.path for r in hosts.requests] == ["/zenodo/api/records/1/files/a.bin/content"]
    assert download.source_record(rf, raw)["checksum_origin"] == "declared"


@pytest.mark.parametrize("host", ["zenodo", "figshare", "osf"])
def test_published_checksum_mismatch_is_refused_and_nothing_left(hosts, raw, host):
    data = _payload(30_000)
    wrong = "0" * 32
    if host == "zenodo":
        hosts.add_zenodo_record(7, {"a.bin": data}, checksums={"a.bin": f"md5:{wrong}"})
        rf = RemoteFile.zenodo("a.bin", record=7)
    elif host == "figshare":
        hosts.add_figshare_article(8, {99: ("a.bin", data)}, checksums={99: wrong})
        rf = RemoteFile.figshare("a.bin", article=8, file_id=99)
    else:
        hosts.add_osf_file("abcde", "a.bin", data, sha256=None, md5=wrong)
        rf = RemoteFile.osf("a.bin", guid="abcde")
    with pytest.raises(ChecksumError) as info:
        fetch([rf], raw, progress=False, owner="TestDataset")
    message = str(info.value)
    name = {"zenodo": "Zenodo", "figshare": "figshare", "osf": "OSF"}[host]
    assert f"expected md5 {wrong} (published by the {name} API" in message
    assert f"got {hashlib.md5(data).hexdigest()}" in message and "deleted" in message
    assert _leftovers(raw) == []


def test_unreachable_api_is_a_clear_error_and_nothing_is_downloaded(hosts, raw, monkeypatch,
                                                                   waits):
    data = _payload(1_000)
    hosts.add_zenodo_record(5, {"a.bin": data})
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("DEEPSTRF_ZENODO_URL", dead)
    rf = RemoteFile.zenodo("a.bin", record=5)
    with pytest.raises(DownloadError, match=r"could not reach the Zenodo API at "
                       rf"{dead}/api/records/5 .*Nothing was downloaded"):
        fetch([rf], raw, progress=False, retries=2)
    assert len(waits) == 2 and _leftovers(raw) == []


def test_api_errors_are_clear(hosts, raw):
    hosts.add_zenodo_record(5, {"other.bin": b"x"})
    with pytest.raises(DownloadError, match="does not list a.bin .*it lists other.bin"):
        fetch([RemoteFile.zenodo("a.bin", record=5)], raw, progress=False)
    with pytest.raises(DownloadError, match="answered HTTP 404 .*moved or withdrawn"):
        fetch([RemoteFile.zenodo("a.bin", record=6)], raw, progress=False)
    hosts.add_file("/osf-api/v2/files/zzzzz/", "<html>maintenance</html>",
                   content_type="text/html")
    with pytest.raises(DownloadError, match="did not answer with JSON"):
        fetch([RemoteFile.osf("a.bin", guid="zzzzz")], raw, progress=False)
    assert _leftovers(raw) == []


def test_host_without_a_checksum_falls_back_to_its_size(hosts, raw, caplog):
    data = _payload(2_000)
    hosts.add_osf_file("nohsh", "a.bin", data, md5=None, sha256=None)
    rf = RemoteFile.osf("a.bin", guid="nohsh")
    with caplog.at_level(logging.WARNING, logger="deepstrf.io.download"):
        assert fetch([rf], raw, progress=False)["a.bin"].read_bytes() == data
    assert "publishes no checksum for a.bin" in caplog.text
    record = download.source_record(rf, raw)
    assert record["checksum"] is None and record["size"] == len(data)


def test_prompt_is_asked_only_when_credentials_are_missing(crcns, raw):
    asked = []

    def prompt(user):
        asked.append(user)
        return "alice", PASSWORD

    rf = RemoteFile("crcns-aa1.zip", crcns=("aa-1", "crcns-aa1.zip"))
    fetch([rf], raw, progress=False, prompt=prompt)
    assert asked == [None] and (raw / "crcns-aa1.zip").is_file()
    fetch([rf], raw, progress=False, prompt=prompt)  # present: nothing asked
    assert asked == [None]
    creds = CRCNSCredentials.resolve("bob", "pw", prompt=prompt)
    assert creds.origin == "arguments" and asked == [None]
    creds = CRCNSCredentials.resolve("alice", prompt=prompt)
    assert creds.password == PASSWORD and creds.origin == "arguments, prompt"
    assert asked == [None, "alice"]


# ------------------------------------------------------------------ datasets: only what is needed


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")
    return tmp_path / "home"


@pytest.fixture
def aa4_site(crcns, tmp_path):
    """CRCNS aa-4 with three birds' archives (each wrapping <bird>/)."""
    from deepstrf.testing.fixtures import write_crcns_aa4

    birds = ("GreBlu9508M", "WhiBlu5396M", "YelBlu6903F")
    info = write_crcns_aa4(tmp_path / "src4", animals=birds, n_units=1, seed=3,
                           archive_dir=tmp_path / "arch4")
    crcns.add_crcns_dataset("aa-4", info.archive_payloads())
    return crcns, info


def _bird_downloads(server):
    return sorted(r.path.rsplit("/", 1)[1] for r in server.requests
                  if r.method == "GET" and r.path.endswith(".tar.gz"))


def test_aa4_download_raw_fetches_only_the_selected_birds(aa4_site, tmp_path, home):
    from deepstrf.datasets.audio import CRCNSAA4Dataset

    server, _ = aa4_site
    raw = CRCNSAA4Dataset.download_raw(tmp_path / "AA4", animals=["YelBlu6903F", "GreBlu9508M"],
                                       username="alice", password=PASSWORD, progress=False)
    assert raw == tmp_path / "AA4" / "raw"
    assert _bird_downloads(server) == ["GreBlu9508M.tar.gz", "YelBlu6903F.tar.gz"]
    assert sorted(p.name for p in raw.iterdir() if p.is_dir()) == ["GreBlu9508M", "YelBlu6903F"]
    assert list((raw / "GreBlu9508M").glob("*.h5"))
    # the constructor's own checks apply, before any I/O
    with pytest.raises(ValueError, match="animals"):
        CRCNSAA4Dataset.download_raw(tmp_path / "x", animals=["NoSuchBird"])
    assert not (tmp_path / "x").exists()
    # a load of one of them needs nothing more; asking for a third fetches only that one
    server.clear_log()
    ds = CRCNSAA4Dataset(tmp_path / "AA4", animals="GreBlu9508M", dt_ms=5.0)
    assert {m["animal_id"] for m in ds.nrn_meta} == {"GreBlu9508M"}
    ds = CRCNSAA4Dataset(tmp_path / "AA4", animals=["GreBlu9508M", "WhiBlu5396M"], dt_ms=5.0,
                         download=True, username="alice", password=PASSWORD)
    assert _bird_downloads(server) == ["WhiBlu5396M.tar.gz"]
    assert {m["animal_id"] for m in ds.nrn_meta} == {"GreBlu9508M", "WhiBlu5396M"}
    # the manifest lists the sources this build read, with the sizes the host served
    sources = ds.provenance["manifest"]["sources"]
    assert [s["name"] for s in sources] == ["GreBlu9508M.tar.gz", "WhiBlu5396M.tar.gz"]
    payloads = aa4_site[1].archive_payloads()
    for s in sources:
        assert s["url"] == f"{server.crcns_download_url}/aa-4/{s['name']}"
        assert s["size"] == len(payloads[s["name"]]) and s["present"]
        assert s["checksum"] is None  # CRCNS publishes sizes only


def test_cli_download_takes_the_parameters(aa4_site, tmp_path, home, capsys, monkeypatch):
    from deepstrf.cli import main

    server, _ = aa4_site
    monkeypatch.setenv("CRCNS_PASSWORD", PASSWORD)
    code = main(["download", "aa4", "--path", str(tmp_path / "AA4"), "--username", "alice",
                 "-p", "animals=WhiBlu5396M", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert _bird_downloads(server) == ["WhiBlu5396M.tar.gz"] and "raw files ready" in out
    code = main(["download", "aa4", "-p", "animals"])
    assert code == 1 and "NAME=VALUE" in capsys.readouterr().err
    code = main(["download", "aa4", "-p", "no_such=1"])
    assert code == 1 and "no_such" in capsys.readouterr().err


def test_manifest_records_the_host_checksum_of_a_download(hosts, tmp_path, home, monkeypatch):
    """A build after a download lists its source with the checksum the host published."""
    from deepstrf.datasets.audio import CRCNSAA1Dataset
    from deepstrf.testing.fixtures import write_crcns_aa1

    info = write_crcns_aa1(tmp_path / "src", n_cells=2, n_conspecific=1, n_flatrip=1, seed=1,
                           archive_dir=tmp_path / "arch")
    payload = info.archive_payloads()["crcns-aa1.zip"]
    hosts.add_zenodo_record(424242, {"crcns-aa1.zip": payload})
    # the same release, as if it were hosted on Zenodo
    monkeypatch.setattr(CRCNSAA1Dataset, "remote_files",
                        (RemoteFile.zenodo("crcns-aa1.zip", record=424242),))
    ds = CRCNSAA1Dataset(tmp_path / "AA1", dt_ms=5.0, download=True)
    (source,) = ds.provenance["manifest"]["sources"]
    assert source == {
        "name": "crcns-aa1.zip",
        "url": f"{hosts.zenodo_url}/api/records/424242/files/crcns-aa1.zip/content",
        "size": len(payload), "checksum": f"md5:{hashlib.md5(payload).hexdigest()}",
        "checksum_origin": f"Zenodo API {hosts.zenodo_url}/api/records/424242",
        "present": True, "verified_at": source["verified_at"]}
    assert source["verified_at"]


# ------------------------------------------------------------------ folders read in place


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def _read_only(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def _writable(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_read_only_given_folder_with_all_files_loads(tmp_path, home):
    from deepstrf.datasets.audio import CRCNSAA1Dataset
    from deepstrf.testing.fixtures import write_crcns_aa1

    given = tmp_path / "mine"
    write_crcns_aa1(given, n_cells=2, n_conspecific=1, n_flatrip=1, seed=2)
    _read_only(given)
    try:
        ds = CRCNSAA1Dataset(given, dt_ms=5.0, download=True)
    finally:
        _writable(given)
    assert ds.get_N() == 2 and ds.provenance["manifest"]["raw_dir"] == str(given)


def test_given_folder_with_all_files_is_only_read(tmp_path, home):
    """Same as above without relying on permissions (they mean nothing to root)."""
    from deepstrf.datasets.audio import CRCNSAA1Dataset
    from deepstrf.testing.fixtures import write_crcns_aa1

    given = tmp_path / "mine"
    write_crcns_aa1(given, n_cells=2, n_conspecific=1, n_flatrip=1, seed=2)
    before = _tree(given)
    paths = CRCNSAA1Dataset.default_paths(given)
    assert paths.in_place and paths.raw == given and paths.processed.is_relative_to(home)
    ds = CRCNSAA1Dataset(given, dt_ms=5.0, download=True)
    CRCNSAA1Dataset.download_raw(given)  # complete: nothing to do, nothing written
    assert ds.get_N() == 2 and _tree(given) == before
    (source,) = ds.provenance["manifest"]["sources"]
    assert source["name"] == "crcns-aa1.zip" and not source["present"]


def test_given_folder_missing_files_raises_naming_them_and_writes_nothing(aa4_site, tmp_path,
                                                                          home):
    from deepstrf.datasets.audio import CRCNSAA4Dataset
    from deepstrf.testing.fixtures import write_crcns_aa4

    server, _ = aa4_site
    given = tmp_path / "mine"
    write_crcns_aa4(given, animals=("GreBlu9508M",), n_units=1, seed=4)
    before = _tree(given)
    server.clear_log()
    for call in (lambda: CRCNSAA4Dataset(given, animals=["GreBlu9508M", "YelBlu6903F"],
                                         dt_ms=5.0, download=True, username="alice",
                                         password=PASSWORD),
                 lambda: CRCNSAA4Dataset.download_raw(given, username="alice",
                                                      password=PASSWORD)):
        with pytest.raises(MissingRawDataError) as err:
            call()
        text = str(err.value)
        assert "read in place and never written to" in text
        assert f"{given / 'YelBlu6903F'}" in text and "YelBlu6903F.tar.gz" in text
        assert f"{given / 'GreBlu9508M'}" not in text
    assert "WhiBlu5396M" in text  # download_raw: all six birds by default
    assert _tree(given) == before and server.requests == []
    assert not (home / "AA4" / "processed").exists() or \
        not any((home / "AA4" / "processed").iterdir())
    # what is there still loads
    ds = CRCNSAA4Dataset(given, animals="GreBlu9508M", dt_ms=5.0)
    assert ds.get_N() >= 1 and _tree(given) == before


# ------------------------------------------------------------------ the password prompt


class _Stdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def readline(self) -> str:
        return "alice\n"


def test_cli_asks_for_the_password_on_a_terminal(aa4_site, tmp_path, home, capsys,
                                                 monkeypatch):
    import getpass
    import sys

    from deepstrf.cli import main

    server, _ = aa4_site
    asked = []
    monkeypatch.setattr(sys, "stdin", _Stdin(True))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": asked.append(prompt) or PASSWORD)
    code = main(["download", "aa4", "--path", str(tmp_path / "AA4"), "--username", "alice",
                 "-p", "animals=GreBlu9508M", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert asked == ["CRCNS password for alice: "] and PASSWORD not in out + err
    assert _bird_downloads(server) == ["GreBlu9508M.tar.gz"]
    # everything present: no password needed, none asked
    assert main(["download", "aa4", "--path", str(tmp_path / "AA4"),
                 "-p", "animals=GreBlu9508M", "--quiet"]) == 0
    assert len(asked) == 1
    # no username either: asked on the terminal too (input reads our stdin)
    code = main(["download", "aa4", "--path", str(tmp_path / "AA4b"),
                 "-p", "animals=GreBlu9508M", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert asked[-1] == "CRCNS password for alice: "


def test_cli_never_asks_without_a_terminal(aa4_site, tmp_path, home, capsys, monkeypatch):
    import getpass
    import sys

    from deepstrf.cli import main

    server, _ = aa4_site
    monkeypatch.setattr(sys, "stdin", _Stdin(False))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": pytest.fail("getpass called"))
    code = main(["download", "aa4", "--path", str(tmp_path / "AA4"), "--username", "alice",
                 "-p", "animals=GreBlu9508M", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no CRCNS password is configured and the input is not a terminal" in err
    assert "CRCNS_PASSWORD" in err and _bird_downloads(server) == []
    assert not (tmp_path / "AA4" / "raw" / "GreBlu9508M").exists()
