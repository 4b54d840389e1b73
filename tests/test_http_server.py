"""Tests of the local test HTTP server in deepstrf.testing.http_server."""

from __future__ import annotations

import pytest
import requests

from deepstrf.testing.http_server import LOGIN_PAGE, LocalHTTPServer

BODY = bytes(range(100))


@pytest.fixture
def server():
    with LocalHTTPServer({"/d/f.bin": BODY, "page.txt": "hello"}) as srv:
        yield srv


def test_serves_files_and_logs_requests(server):
    resp = requests.get(server.url_for("d/f.bin"), headers={"X-Test": "1"}, timeout=5)
    assert resp.status_code == 200 and resp.content == BODY
    assert resp.headers["Content-Type"] == "application/octet-stream"
    text = requests.get(server.url_for("page.txt") + "?q=1", timeout=5)
    assert text.text == "hello" and text.headers["Content-Type"] == "text/plain"
    assert requests.get(server.url_for("nope"), timeout=5).status_code == 404
    log = server.requests
    assert [(r.method, r.path, r.query) for r in log] == [
        ("GET", "/d/f.bin", ""), ("GET", "/page.txt", "q=1"), ("GET", "/nope", "")]
    assert log[0].header("x-test") == "1" and log[0].header("missing", "-") == "-"
    assert len(server.requests_for("d/f.bin", "GET")) == 1
    server.clear_log()
    assert server.requests == []
    assert repr(server).startswith("LocalHTTPServer(http://127.0.0.1:")


@pytest.mark.parametrize(("header", "status", "body", "content_range"), [
    ("bytes=10-19", 206, BODY[10:20], "bytes 10-19/100"),
    ("bytes=90-", 206, BODY[90:], "bytes 90-99/100"),
    ("bytes=-5", 206, BODY[95:], "bytes 95-99/100"),
    ("bytes=95-200", 206, BODY[95:], "bytes 95-99/100"),
    ("bytes=100-", 416, b"", "bytes */100"),
    ("items=1-2", 200, BODY, None),
])
def test_range_requests(server, header, status, body, content_range):
    resp = requests.get(server.url_for("d/f.bin"), headers={"Range": header}, timeout=5)
    assert resp.status_code == status and resp.content == body
    assert resp.headers.get("Content-Range") == content_range


def test_ignore_range_and_head(server):
    server.ignore_range("d/f.bin")
    resp = requests.get(server.url_for("d/f.bin"), headers={"Range": "bytes=10-"}, timeout=5)
    assert resp.status_code == 200 and resp.content == BODY
    server.ignore_range("d/f.bin", False)
    resp = requests.get(server.url_for("d/f.bin"), headers={"Range": "bytes=10-"}, timeout=5)
    assert resp.status_code == 206
    head = requests.head(server.url_for("d/f.bin"), timeout=5)
    assert head.status_code == 200 and head.headers["Content-Length"] == "100"


def test_scripted_failures_run_out(server):
    server.fail("d/f.bin", 429, times=1, retry_after=3)
    first = requests.get(server.url_for("d/f.bin"), timeout=5)
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert requests.get(server.url_for("d/f.bin"), timeout=5).status_code == 200
    server.serve_html("d/f.bin", times=2)
    pages = [requests.get(server.url_for("d/f.bin"), timeout=5) for _ in range(3)]
    assert [p.headers["Content-Type"].split(";")[0] for p in pages] == [
        "text/html", "text/html", "application/octet-stream"]
    assert pages[0].status_code == 200 and b"try again later" in pages[0].content


def test_drop_after_cuts_the_body(server):
    server.drop_after("d/f.bin", 30)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.url_for("d/f.bin"), timeout=5)
    assert requests.get(server.url_for("d/f.bin"), timeout=5).content == BODY


def test_serves_a_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.csv").write_text("a,b\n")
    (tmp_path.parent / "secret.txt").write_text("no")
    with LocalHTTPServer(tmp_path) as srv:
        resp = requests.get(srv.url_for("sub/x.csv"), timeout=5)
        assert resp.text == "a,b\n" and resp.headers["Content-Type"] == "text/csv"
        escape = requests.get(srv.url + "/sub/..%2F..%2Fsecret.txt", timeout=5)
        assert escape.status_code == 404


def test_crcns_emulation(server):
    server.add_crcns_user("alice", "Xyzzy-42")
    server.add_crcns_dataset("aa-9", {"a.zip": b"zipdata", "doc/r.txt": "read"})
    session = requests.Session()
    anonymous = session.get(server.crcns_download_url + "/aa-9", timeout=5)
    assert "logged in as" not in anonymous.text
    assert session.get(server.url_for("aa-9/a.zip"), timeout=5).text == LOGIN_PAGE
    form = {"form.submitted": "1", "js_enabled": "0", "pwd_empty": "0", "__ac_name": "alice",
            "__ac_password": "Wr0ng-77", "submit": "Log in"}
    rejected = session.post(server.crcns_login_url, data=form, timeout=5)
    assert "Login failed" in rejected.text and not session.cookies
    incomplete = {k: v for k, v in form.items() if k != "js_enabled"}
    incomplete["__ac_password"] = "Xyzzy-42"
    session.post(server.crcns_login_url, data=incomplete, timeout=5)
    assert not session.cookies
    session.post(server.crcns_login_url, data=form | {"__ac_password": "Xyzzy-42"}, timeout=5)
    assert "__ac" in session.cookies
    assert "logged in as alice" in session.get(server.crcns_download_url + "/aa-9/",
                                               timeout=5).text
    assert session.get(server.url_for("aa-9/a.zip"), timeout=5).content == b"zipdata"
    listing = session.get(server.url_for("aa-9/filelist.txt"), timeout=5).text
    assert listing.splitlines()[2:] == ["a.zip 7 0.0 MB", "doc/r.txt 4 0.0 MB"]
    assert session.get(server.url_for("aa-9/none.zip"), timeout=5).status_code == 404
    posts = server.requests_for("/login_form", "POST")
    assert posts[0].form_fields == tuple(form)
    assert all("Xyzzy-42" not in repr(r) and "Wr0ng-77" not in repr(r) for r in posts)
    assert requests.post(server.url_for("page.txt"), timeout=5).status_code == 405


def test_lifecycle_and_bad_input(tmp_path):
    srv = LocalHTTPServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.url
    assert repr(srv) == "LocalHTTPServer(stopped, 0 file(s))"
    srv.start()
    assert srv.start() is srv and srv.port > 0
    srv.stop()
    srv.stop()
    with pytest.raises(NotADirectoryError):
        LocalHTTPServer(tmp_path / "missing")
    with pytest.raises(TypeError, match="mapping, a folder path or None"):
        LocalHTTPServer(42)
    with pytest.raises(TypeError, match="bytes or str"):
        LocalHTTPServer({"a": 1})


def _get_json(url):
    import json
    import urllib.request

    with urllib.request.urlopen(url) as resp:
        return resp.headers.get("Content-Type"), json.loads(resp.read())


def _get(url):
    import urllib.request

    with urllib.request.urlopen(url) as resp:
        return resp.read()


def test_zenodo_record_emulation(server):
    import hashlib

    server.add_zenodo_record(8044773, {"A1.tgz": b"abc", "PEG.tgz": b"de"},
                             checksums={"PEG.tgz": None})
    ctype, page = _get_json(f"{server.zenodo_url}/api/records/8044773")
    assert ctype == "application/json" and page["id"] == 8044773
    assert page["doi"] == "10.5281/zenodo.8044773"
    a1, peg = page["files"]
    assert (a1["key"], a1["size"], a1["checksum"]) == \
        ("A1.tgz", 3, "md5:" + hashlib.md5(b"abc").hexdigest())
    assert a1["links"]["self"] == f"{server.zenodo_url}/api/records/8044773/files/A1.tgz/content"
    assert "checksum" not in peg and peg["size"] == 2
    assert _get(a1["links"]["self"]) == b"abc"


def test_figshare_article_emulation(server):
    import hashlib

    server.add_figshare_article(29203457, {55083911: ("z.zip", b"zipdata")})
    _, page = _get_json(f"{server.figshare_api_url}/articles/29203457")
    (entry,) = page["files"]
    md5 = hashlib.md5(b"zipdata").hexdigest()
    assert entry == {"id": 55083911, "name": "z.zip", "size": 7, "is_link_only": False,
                     "download_url": f"{server.figshare_download_url}/files/55083911",
                     "supplied_md5": md5, "computed_md5": md5, "mimetype": "application/zip"}
    assert _get(entry["download_url"]) == b"zipdata"


def test_osf_file_emulation(server):
    import hashlib

    server.add_osf_file("ayw2p", "n.mat", b"matlab", md5=None)
    ctype, page = _get_json(f"{server.osf_api_url}/files/ayw2p/")
    assert ctype == "application/vnd.api+json" and page["meta"] == {"version": "2.0"}
    data = page["data"]
    assert data["type"] == "files" and data["attributes"]["kind"] == "file"
    assert data["attributes"]["name"] == "n.mat" and data["attributes"]["size"] == 6
    assert data["attributes"]["extra"]["hashes"] == {
        "md5": None, "sha256": hashlib.sha256(b"matlab").hexdigest()}
    assert data["links"]["download"] == f"{server.osf_url}/download/ayw2p/"
    assert _get(data["links"]["download"]) == b"matlab"
    env = server.host_env()
    assert env["DEEPSTRF_OSF_API_URL"] == server.osf_api_url
    assert set(env) >= {"DEEPSTRF_ZENODO_URL", "DEEPSTRF_FIGSHARE_API_URL",
                        "DEEPSTRF_FIGSHARE_DOWNLOAD_URL", "DEEPSTRF_OSF_URL"}
