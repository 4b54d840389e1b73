"""Tests of deepstrf.io.archive: safe, restartable extraction of zip and tar archives."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepstrf.errors import MissingRawDataError, RawDataError, UnsafeArchiveError
from deepstrf.io import archive as archive_mod
from deepstrf.io.archive import extract_archive, is_extracted

TREE = {
    "crcns/aa2/all_stims/A1.wav": b"wave-1",
    "crcns/aa2/all_stims/B2.wav": b"wave-2" * 100,
    "crcns/aa2/all_cells/c1/conspecific/stim1": b"A1.wav\n",
    "crcns/aa2/all_cells/c1/conspecific/spike1": b"1.000 2.000 \n\n",
    "crcns/aa2/cell_regions.csv": b"c1,L2a\n",
}
MTIME = 1_300_000_000


def _write_zip(path: Path, members: dict[str, bytes], *, dirs: bool = True) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if dirs:
            seen = set()
            for name in members:
                for parent in list(PurePosixPath(name).parents)[:-1][::-1]:
                    if parent not in seen:
                        seen.add(parent)
                        zf.writestr(zipfile.ZipInfo(f"{parent}/"), b"")
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2011, 2, 3, 4, 5, 6)), data)
    return path


def _tar_info(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _write_tar(path: Path, members: dict[str, bytes], *, extra: list[tarfile.TarInfo] = ()
               ) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            tf.addfile(_tar_info(name, data), io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def _files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _stripped(tree: dict[str, bytes], n: int) -> dict[str, bytes]:
    return {"/".join(k.split("/")[n:]): v for k, v in tree.items()}


@pytest.fixture(params=["zip", "tar.gz"])
def fmt(request):
    return request.param


def _write(fmt: str, folder: Path, members: dict[str, bytes], stem: str = "data") -> Path:
    path = folder / f"{stem}.{fmt}"
    return _write_zip(path, members) if fmt == "zip" else _write_tar(path, members)


# ------------------------------------------------------------------ extraction


def test_extracts_everything_and_writes_a_marker(tmp_path, fmt):
    arc = _write(fmt, tmp_path, TREE)
    dest = tmp_path / "out"
    assert extract_archive(arc, dest) == dest.absolute()
    files = _files_under(dest)
    marker_name = f".extracted-{arc.name}.json"
    assert files.pop(marker_name) and files == TREE
    marker = json.loads((dest / marker_name).read_text())
    assert marker["archive_size"] == arc.stat().st_size
    assert marker["entries"] == ["crcns"] and marker["n_files"] == len(TREE)
    assert is_extracted(arc, dest)
    assert not any(p.name.startswith(".extracting-") for p in dest.iterdir())


def test_strip_components(tmp_path, fmt):
    arc = _write(fmt, tmp_path, {**TREE, "crcns/README": b"shallow"})
    dest = tmp_path / "out"
    extract_archive(arc, dest, strip_components=2)
    files = _files_under(dest)
    files.pop(f".extracted-{arc.name}.json")
    # 'crcns/README' has nothing left after stripping two components: skipped, as tar does.
    assert files == _stripped(TREE, 2)
    assert is_extracted(arc, dest, strip_components=2)
    assert not is_extracted(arc, dest)


def test_member_prefixes(tmp_path, fmt):
    arc = _write(fmt, tmp_path, TREE)
    dest = tmp_path / "out"
    extract_archive(arc, dest, strip_components=2, members=["all_stims", "cell_regions.csv"])
    files = _files_under(dest)
    files.pop(f".extracted-{arc.name}.json")
    assert files == {"all_stims/A1.wav": b"wave-1", "all_stims/B2.wav": b"wave-2" * 100,
                     "cell_regions.csv": b"c1,L2a\n"}
    # whole components only: 'all_stims/A' does not match 'all_stims/A1.wav'
    with pytest.raises(RawDataError, match="no member under 'all_stims/A'.*entries would be: "
                                           "all_stims"):
        extract_archive(arc, tmp_path / "other", strip_components=2,
                        members=["all_stims/A", "all_stims/B2.wav"])


def test_single_string_prefix(tmp_path):
    arc = _write("zip", tmp_path, TREE)
    dest = extract_archive(arc, tmp_path / "out", members="crcns/aa2/cell_regions.csv")
    assert (dest / "crcns/aa2/cell_regions.csv").read_bytes() == b"c1,L2a\n"
    assert not (dest / "crcns/aa2/all_stims").exists()


def test_mtimes_are_kept(tmp_path):
    arc = _write("tar.gz", tmp_path, TREE)
    dest = extract_archive(arc, tmp_path / "out")
    assert (dest / "crcns/aa2/cell_regions.csv").stat().st_mtime == MTIME


def test_zip_without_directory_entries(tmp_path):
    arc = _write_zip(tmp_path / "flat.zip", TREE, dirs=False)
    dest = extract_archive(arc, tmp_path / "out", strip_components=2)
    assert (dest / "all_cells/c1/conspecific/spike1").read_bytes() == b"1.000 2.000 \n\n"


def test_two_archives_merge_into_one_folder(tmp_path, fmt):
    first = _write(fmt, tmp_path, {"root/a/x.txt": b"x", "root/shared.txt": b"old"}, "one")
    second = _write(fmt, tmp_path, {"root/b/y.txt": b"y", "root/shared.txt": b"new"}, "two")
    dest = tmp_path / "out"
    extract_archive(first, dest)
    extract_archive(second, dest)
    files = _files_under(dest)
    assert {k: v for k, v in files.items() if not k.startswith(".")} == {
        "root/a/x.txt": b"x", "root/b/y.txt": b"y", "root/shared.txt": b"new"}
    assert is_extracted(first, dest) and is_extracted(second, dest)


# ------------------------------------------------------------------ restartability


def test_not_extracted_again_while_the_marker_holds(tmp_path, fmt, monkeypatch):
    arc = _write(fmt, tmp_path, TREE)
    dest = extract_archive(arc, tmp_path / "out")
    calls = []
    monkeypatch.setattr(archive_mod, "_extract_to", lambda *a: calls.append(a))
    extract_archive(arc, dest)
    assert calls == []


def test_changed_archive_is_extracted_again(tmp_path, fmt):
    arc = _write(fmt, tmp_path, TREE)
    dest = extract_archive(arc, tmp_path / "out")
    target = dest / "crcns/aa2/cell_regions.csv"
    target.write_bytes(b"edited")
    os.utime(arc, ns=(arc.stat().st_atime_ns, arc.stat().st_mtime_ns + 10**9))
    assert not is_extracted(arc, dest)
    extract_archive(arc, dest)
    assert target.read_bytes() == b"c1,L2a\n"


def test_interrupted_extraction_is_redone(tmp_path, fmt):
    arc = _write(fmt, tmp_path, TREE)
    dest = tmp_path / "out"
    # What a killed run leaves: its temporary folder, some files moved into
    # place (one of them half written), and no completion marker.
    leftover = dest / f".extracting-{arc.name}-k1ll3d"
    (leftover / "crcns").mkdir(parents=True)
    (leftover / "crcns/partial.bin").write_bytes(b"half")
    (dest / "crcns/aa2/all_stims").mkdir(parents=True)
    (dest / "crcns/aa2/all_stims/B2.wav").write_bytes(b"wav")
    assert not is_extracted(arc, dest)
    extract_archive(arc, dest)
    assert not leftover.exists()
    files = _files_under(dest)
    files.pop(f".extracted-{arc.name}.json")
    assert files == TREE
    assert is_extracted(arc, dest)


def test_missing_entry_invalidates_the_marker(tmp_path):
    arc = _write("zip", tmp_path, TREE)
    dest = extract_archive(arc, tmp_path / "out")
    import shutil

    shutil.rmtree(dest / "crcns")
    assert not is_extracted(arc, dest)
    extract_archive(arc, dest)
    assert (dest / "crcns/aa2/all_stims/A1.wav").read_bytes() == b"wave-1"


def test_marker_is_trusted_after_the_archive_is_deleted(tmp_path):
    arc = _write("tar.gz", tmp_path, TREE)
    dest = extract_archive(arc, tmp_path / "out")
    arc.unlink()
    assert is_extracted(arc, dest)
    assert extract_archive(arc, dest) == dest


def test_failed_extraction_leaves_no_marker_and_no_temp(tmp_path, monkeypatch):
    arc = _write("zip", tmp_path, TREE)
    dest = tmp_path / "out"

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(archive_mod, "_merge_into", boom)
    with pytest.raises(OSError, match="disk full"):
        extract_archive(arc, dest)
    assert list(dest.iterdir()) == []


# ------------------------------------------------------------------ unsafe archives


def _zip_with(tmp_path: Path, info: zipfile.ZipInfo, data: bytes = b"evil") -> Path:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/fine.txt", b"fine")
        zf.writestr(info, data)
    return path


def _zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _tar_link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = _tar_info(name, kind=kind)
    info.linkname = target
    return info


@pytest.mark.parametrize(("case", "match"), [
    ("zip-dotdot", "contains '..'"),
    ("zip-absolute", "absolute path"),
    ("zip-backslash", "contains '..'"),
    ("zip-drive", "absolute path"),
    ("zip-symlink", "a symbolic link"),
    ("tar-dotdot", "contains '..'"),
    ("tar-absolute", "absolute path"),
    ("tar-symlink", "a symbolic link"),
    ("tar-hardlink", "a hard link"),
    ("tar-device", "a device file"),
    ("tar-fifo", "a device file, FIFO"),
])
def test_unsafe_members_are_refused(tmp_path, case, match):
    if case.startswith("zip"):
        info = {"zip-dotdot": zipfile.ZipInfo("ok/../../evil.txt"),
                "zip-absolute": zipfile.ZipInfo("/tmp/evil.txt"),
                "zip-backslash": zipfile.ZipInfo("..\\..\\evil.txt"),
                "zip-drive": zipfile.ZipInfo("C:/evil.txt"),
                "zip-symlink": _zip_symlink("ok/link")}[case]
        arc = _zip_with(tmp_path, info)
    else:
        extra = {"tar-dotdot": _tar_info("../evil.txt"),
                 "tar-absolute": _tar_info("/tmp/evil.txt"),
                 "tar-symlink": _tar_link("ok/link", tarfile.SYMTYPE),
                 "tar-hardlink": _tar_link("ok/hard", tarfile.LNKTYPE, "ok/fine.txt"),
                 "tar-device": _tar_info("ok/dev", kind=tarfile.CHRTYPE),
                 "tar-fifo": _tar_info("ok/fifo", kind=tarfile.FIFOTYPE)}[case]
        arc = _write_tar(tmp_path / "evil.tar.gz", {"ok/fine.txt": b"fine"}, extra=[extra])
    dest = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_archive(arc, dest)
    assert list(dest.iterdir()) == []  # not even the safe member, nor the temp folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", arc.name]
    assert not is_extracted(arc, dest)


def test_dotdot_cannot_hide_behind_strip_components(tmp_path):
    arc = _write_tar(tmp_path / "a.tar.gz", {"../wrap/x.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        extract_archive(arc, tmp_path / "out", strip_components=1)


@given(parts=st.lists(st.sampled_from(["a", "b.txt", "..", ".", "c d"]), min_size=1,
                      max_size=6),
       strip=st.integers(0, 3))
def test_member_paths_never_escape(parts, strip):
    name = "/".join(parts)
    root = Path("/root/dest")
    try:
        rel = archive_mod._relative_target(name, Path("x.zip"), strip)
    except UnsafeArchiveError:
        assert ".." in parts
        return
    assert ".." not in parts
    if rel is not None:
        target = os.path.normpath(root.joinpath(*rel.parts))
        assert target.startswith(str(root) + os.sep)


# ------------------------------------------------------------------ bad input


def test_missing_archive(tmp_path):
    with pytest.raises(MissingRawDataError, match="does not exist .*download=True"):
        extract_archive(tmp_path / "nope.zip", tmp_path / "out")


def test_corrupt_archives(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(RawDataError, match="not a readable zip or tar archive"):
        extract_archive(junk, tmp_path / "out")
    good = _write("tar.gz", tmp_path, TREE)
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(RawDataError, match="Delete it and download it again"):
        extract_archive(truncated, tmp_path / "out2")
    assert not is_extracted(truncated, tmp_path / "out2")
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RawDataError):
        extract_archive(bad_zip, tmp_path / "out3")


def test_nothing_left_after_stripping(tmp_path):
    arc = _write("zip", tmp_path, {"a/b.txt": b"b"})
    with pytest.raises(RawDataError, match="holds no file to extract"):
        extract_archive(arc, tmp_path / "out", strip_components=2)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"strip_components": -1}, ValueError, "strip_components must be >= 0"),
    ({"strip_components": 1.0}, TypeError, "strip_components must be an integer"),
    ({"members": []}, ValueError, "at least one prefix"),
    ({"members": ["../x"]}, ValueError, "without '..'"),
    ({"members": ["/abs"]}, ValueError, "relative paths"),
    ({"members": [3]}, TypeError, "entries must be strings"),
    ({"members": 3}, TypeError, "members must be None, a string or a sequence"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    arc = _write("zip", tmp_path, TREE)
    with pytest.raises(error, match=match):
        extract_archive(arc, tmp_path / "out", **kwargs)


def test_bad_path_types(tmp_path):
    with pytest.raises(TypeError, match="archive must be a str or path-like"):
        extract_archive(1, tmp_path)
    with pytest.raises(TypeError, match="dest must be a str or path-like"):
        is_extracted(tmp_path / "a.zip", None)
