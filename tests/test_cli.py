"""The deepstrf command: catalogue, info, download, cache management, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepstrf.cli import main
from deepstrf.testing.fixtures import write_crcns_aa1


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "species", "area", "signal"]
    for name in ("aa1", "aa2", "aa4"):
        assert any(line.startswith(name) and "CRCNS login" in line for line in lines)


def test_info(capsys, tmp_path):
    code, out, _ = run(capsys, "info", "aa1")
    assert code == 0
    assert "doi:10.6080/K0F769GP" in out and "crcns-aa1.zip" in out
    assert str(tmp_path / "home" / "AA1" / "raw") in out and "(absent)" in out
    code, out, _ = run(capsys, "info", "CRCNSAA2Dataset")
    assert code == 0 and "md5 known" in out


def test_errors_without_tracebacks(capsys):
    code, out, err = run(capsys, "info", "nope")
    assert code == 1 and "deepstrf: error: unknown dataset 'nope'" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "download" in capsys.readouterr().out


def test_download_offline_lists_the_missing_files(capsys, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    code, _, err = run(capsys, "download", "aa1")
    assert code == 1 and "crcns-aa1.zip" in err and "offline" in err


def test_download_through_the_crcns_login(capsys, tmp_path, monkeypatch):
    import deepstrf.io.download as dl
    from deepstrf.testing.http_server import LocalHTTPServer

    info = write_crcns_aa1(tmp_path / "src", n_cells=2, n_conspecific=1, n_flatrip=1, seed=1,
                           archive_dir=tmp_path / "arch")
    with LocalHTTPServer() as server:
        server.add_crcns_user("ada", "pw")
        server.add_crcns_dataset("aa-1", info.archive_payloads())
        monkeypatch.setattr(dl, "CRCNS_LOGIN_URL", server.crcns_login_url)
        monkeypatch.setattr(dl, "CRCNS_DOWNLOAD_URL", server.crcns_download_url)
        monkeypatch.setenv("CRCNS_PASSWORD", "pw")
        code, out, err = run(capsys, "download", "aa1", "--path", str(tmp_path / "AA1"),
                             "--username", "ada", "--quiet")
    assert code == 0, err
    assert "raw files ready" in out and (tmp_path / "AA1" / "raw" / "all_stims").is_dir()
    assert "pw" not in out + err


def test_cache_ls_size_verify_clear(capsys, tmp_path, monkeypatch):
    from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset

    root = tmp_path / "AA1"
    write_crcns_aa1(root / "raw", n_cells=2, n_conspecific=1, n_flatrip=1, seed=2)
    ds = CRCNSAA1Dataset(root, dt_ms=5.0)
    key = ds.provenance["manifest"]["key"]
    code, out, _ = run(capsys, "cache", "ls", "aa1", "--path", str(root))
    assert code == 0 and key in out and "N=2 S=2" in out and "dt_ms=5.0" in out
    code, out, _ = run(capsys, "cache", "size", "aa1", "--path", str(root))
    assert code == 0 and "CRCNSAA1Dataset" in out and "KB" in out
    code, out, _ = run(capsys, "cache", "verify", "aa1", "--path", str(root))
    assert code == 0 and f"{key}: OK" in out
    data = root / "processed" / key / "stims.npy"
    blob = bytearray(data.read_bytes())
    blob[-1] ^= 1
    data.write_bytes(bytes(blob))
    code, out, err = run(capsys, "cache", "verify", "aa1", "--path", str(root))
    assert code == 1 and "DAMAGED" in out and "stims.npy" in out and "cache clear" in err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = run(capsys, "cache", "clear", "aa1", "--path", str(root))
    assert code == 1 and "--yes" in err and (root / "processed" / key).exists()
    code, out, _ = run(capsys, "cache", "clear", "aa1", "--path", str(root), "--yes")
    assert code == 0 and f"removed CRCNSAA1Dataset {key}" in out
    assert not (root / "processed" / key).exists()
    code, out, _ = run(capsys, "cache", "ls")
    assert code == 0 and "no processed cache entries" in out
    code, _, err = run(capsys, "cache", "ls", "--path", str(root))
    assert code == 1 and "--path needs a dataset NAME" in err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "deepstrf", "list"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "aa1" in proc.stdout


def test_unexpected_error_is_one_line_without_traceback(capsys, monkeypatch):
    import zipfile

    import deepstrf.cli as cli

    def boom(args):
        raise zipfile.BadZipFile("File is not a zip file")

    monkeypatch.setattr(cli, "cmd_list", boom)
    code, out, err = run(capsys, "list")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("deepstrf: error: BadZipFile: File is not a zip file")
    assert "--debug" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(zipfile.BadZipFile):
        main(["--debug", "list"])


HOLD_LOCK = """
import sys
from pathlib import Path
from deepstrf.io.cache import _lock
with _lock(Path(sys.argv[1]), None, "a test build"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_cache_clear_removes_leftovers_of_killed_builds_unless_locked(capsys, tmp_path,
                                                                     monkeypatch):
    from deepstrf.datasets.audio.crcns_aa1 import CRCNSAA1Dataset

    root = tmp_path / "AA1"
    write_crcns_aa1(root / "raw", n_cells=2, n_conspecific=1, n_flatrip=1, seed=2)
    processed = root / "processed"
    key = CRCNSAA1Dataset(root, dt_ms=5.0).provenance["manifest"]["key"]
    other = CRCNSAA1Dataset(root, dt_ms=10.0).provenance["manifest"]["key"]
    leftovers = [processed / f".tmp-{key}-17-0a0a0a0a", processed / f".old-{key}-1b1b1b1b",
                 processed / f".tmp-{other}-18-2c2c2c2c"]
    for path in leftovers:
        path.mkdir()
        (path / "stims.npy").write_bytes(b"\0" * 2000)
    code, out, _ = run(capsys, "cache", "ls", "aa1", "--path", str(root))
    assert code == 0 and key in out and other in out
    assert "  3 leftover folders of interrupted builds (.tmp-*/.old-*, 6.0 KB): removed by " \
           "`deepstrf cache clear`" in out.splitlines()
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = run(capsys, "cache", "clear", "aa1", "--path", str(root))
    assert code == 1 and "this would delete 2 cache entries and 3 leftover folders of " \
                         "interrupted builds; add --yes" in err

    # a build of `key` is under way in another process: its entry and folders are kept
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(processed / f".{key}.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = run(capsys, "cache", "clear", "aa1", "--path", str(root), "--yes")
    finally:
        holder.communicate("", timeout=60)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert f"removed CRCNSAA1Dataset {other}" in lines
    assert f"removed CRCNSAA1Dataset leftover .tmp-{other}-18-2c2c2c2c" in lines
    for name in (key, f".old-{key}-1b1b1b1b", f".tmp-{key}-17-0a0a0a0a"):
        assert any(line.startswith(f"kept CRCNSAA1Dataset {'leftover ' * (name != key)}{name}: "
                                   f"a build of {key if name != key else 'it'} is running")
                   for line in lines), name
    assert [p.exists() for p in leftovers] == [True, True, False]
    assert (processed / key).is_dir() and not (processed / other).exists()

    # the build is over: everything goes, lock files too
    code, out, _ = run(capsys, "cache", "ls", "aa1", "--path", str(root))
    assert "2 leftover folders" in out and key in out
    code, out, _ = run(capsys, "cache", "clear", "aa1", "--path", str(root), "--yes")
    assert code == 0 and "kept" not in out
    assert sorted(out.splitlines()) == sorted([
        f"removed CRCNSAA1Dataset {key}", f"removed CRCNSAA1Dataset leftover .old-{key}-1b1b1b1b",
        f"removed CRCNSAA1Dataset leftover .tmp-{key}-17-0a0a0a0a"])
    assert sorted(p.name for p in processed.iterdir()) == []
    code, out, _ = run(capsys, "cache", "ls", "aa1", "--path", str(root))
    assert out == "no processed cache entries\n"
