"""Safe, restartable extraction of zip and tar archives (no network).

:func:`extract_archive` unpacks a zip or a (compressed) tar into a folder:

* members that would land outside the folder are refused with
  :class:`~deepstrf.errors.UnsafeArchiveError` before anything reaches the
  folder: absolute paths, ``..`` components, symbolic and hard links, device
  files and FIFOs;
* ``strip_components`` drops leading path components as GNU tar does (the
  CRCNS AA2 archives wrap everything in ``crcns/aa2/``), and ``members``
  keeps only the members under given prefixes;
* members are written into a hidden temporary folder inside the target
  (``.extracting-<archive name>-<random>``), moved into place once all are
  written, and only then is the completion marker
  ``.extracted-<archive name>.json`` written. A run that was interrupted
  leaves no marker, so the next call cleans up and extracts again instead of
  trusting a half-written tree.

Several archives may be extracted into the same folder (their trees are
merged); each has its own marker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

from deepstrf._validation import check_int
from deepstrf.errors import MissingRawDataError, RawDataError, UnsafeArchiveError

__all__ = ["extract_archive", "is_extracted"]

logger = logging.getLogger(__name__)

_TMP_PREFIX = ".extracting-"
_MARKER_PREFIX = ".extracted-"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _marker_path(dest: Path, archive_name: str) -> Path:
    return dest / f"{_MARKER_PREFIX}{archive_name}.json"


def _check_path_arg(name: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like; got {value!r} "
                        f"({type(value).__name__}).")
    return Path(value).expanduser().absolute()


def _check_members(members: Any) -> tuple[tuple[str, ...], ...] | None:
    """Normalise member prefixes to tuples of path components."""
    if members is None:
        return None
    if isinstance(members, str):
        members = [members]
    try:
        items = list(members)
    except TypeError:
        raise TypeError(
            f"members must be None, a string or a sequence of strings; got {members!r}."
        ) from None
    if not items:
        raise ValueError("members must name at least one prefix (or be None for all members); "
                         "got an empty sequence.")
    prefixes = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"members entries must be strings; got {item!r}.")
        parts = tuple(p for p in item.replace("\\", "/").split("/") if p not in ("", "."))
        if not parts or item.startswith("/") or ".." in parts:
            raise ValueError(
                f"members entries must be relative paths inside the archive (after "
                f"strip_components), without '..'; got {item!r}."
            )
        prefixes.append(parts)
    return tuple(dict.fromkeys(prefixes))


def _archive_identity(archive: Path) -> dict[str, int]:
    st = archive.stat()
    return {"archive_size": st.st_size, "archive_mtime_ns": st.st_mtime_ns}


def _read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_extracted(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                 strip_components: int = 0, members: Sequence[str] | str | None = None) -> bool:
    """Tell whether ``archive`` was fully extracted into ``dest`` with these options.

    Parameters
    ----------
    archive : str or path-like
        The archive. It may have been deleted since: then the completion
        marker alone is trusted.
    dest : str or path-like
        The folder it was extracted into.
    strip_components, members
        As for :func:`extract_archive`; a marker written with other options
        does not count.

    Returns
    -------
    bool
        True if the completion marker exists, matches the archive's size and
        modification time (when the archive is still there) and the options,
        and the top-level entries it lists still exist.
    """
    archive_path = _check_path_arg("archive", archive)
    dest_path = _check_path_arg("dest", dest)
    strip = check_int("strip_components", strip_components, minimum=0)
    prefixes = _check_members(members)
    return _marker_matches(archive_path, dest_path, strip, prefixes)


def _marker_matches(archive: Path, dest: Path, strip: int,
                    prefixes: tuple[tuple[str, ...], ...] | None) -> bool:
    record = _read_marker(_marker_path(dest, archive.name))
    if record is None:
        return False
    wanted = {"strip_components": strip,
              "members": None if prefixes is None else sorted("/".join(p) for p in prefixes)}
    if any(record.get(key) != value for key, value in wanted.items()):
        return False
    if archive.is_file():
        identity = _archive_identity(archive)
        if any(record.get(key) != value for key, value in identity.items()):
            return False
    entries = record.get("entries")
    if not isinstance(entries, list):
        return False
    return all((dest / str(entry)).exists() for entry in entries)


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                    strip_components: int = 0,
                    members: Sequence[str] | str | None = None) -> Path:
    """Extract a zip or tar archive into ``dest`` safely, once.

    Parameters
    ----------
    archive : str or path-like
        A ``.zip`` or a tar file (plain, gzip, bzip2 or xz); the format is
        read from the content, not the name.
    dest : str or path-like
        Target folder, created if needed. Existing files of the same names
        are replaced; other content is left alone.
    strip_components : int
        Leading path components dropped from every member, as
        ``tar --strip-components``; members with no component left are
        skipped.
    members : str or sequence of str or None
        Extract only members under these prefixes (whole path components,
        after stripping), e.g. ``["all_stims", "cell_regions.csv"]``.

    Returns
    -------
    Path
        ``dest`` (absolute).

    Raises
    ------
    UnsafeArchiveError
        A member has an absolute path or ``..``, or is a link, device or FIFO.
        Nothing is written to ``dest``.
    RawDataError
        The archive is unreadable or corrupt, or a prefix of ``members``
        matches nothing (the message lists the top-level entries).
    MissingRawDataError
        The archive does not exist (and was not extracted before).
    """
    archive_path = _check_path_arg("archive", archive)
    dest_path = _check_path_arg("dest", dest)
    strip = check_int("strip_components", strip_components, minimum=0)
    prefixes = _check_members(members)
    if _marker_matches(archive_path, dest_path, strip, prefixes):
        logger.debug("%s already extracted into %s", archive_path.name, dest_path)
        return dest_path
    if not archive_path.is_file():
        raise MissingRawDataError(
            f"archive {archive_path} does not exist (and {dest_path} holds no completed "
            f"extraction of it). Download it first (e.g. with download=True)."
        )
    dest_path.mkdir(parents=True, exist_ok=True)
    marker = _marker_path(dest_path, archive_path.name)
    marker.unlink(missing_ok=True)
    _remove_leftovers(dest_path, archive_path.name)

    logger.info("extracting %s into %s", archive_path.name, dest_path)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{archive_path.name}-", dir=dest_path))
    try:
        n_files = _extract_to(archive_path, tmp, strip, prefixes)
        entries = sorted(os.listdir(tmp))
        _merge_into(tmp, dest_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {
        "archive": archive_path.name,
        **_archive_identity(archive_path),
        "strip_components": strip,
        "members": None if prefixes is None else sorted("/".join(p) for p in prefixes),
        "entries": entries,
        "n_files": n_files,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp_marker = marker.with_name(marker.name + ".tmp")
    tmp_marker.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp_marker, marker)
    return dest_path


def _remove_leftovers(dest: Path, archive_name: str) -> None:
    prefix = f"{_TMP_PREFIX}{archive_name}-"
    for entry in dest.iterdir():
        if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink():
            logger.info("removing %s, left by an interrupted extraction", entry)
            shutil.rmtree(entry)


# --------------------------------------------------------------------------------------
# Member checks


def _relative_target(name: str, archive: Path, strip: int) -> PurePosixPath | None:
    """Member path after stripping, or None when nothing is left; refuses unsafe names."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise UnsafeArchiveError(
            f"{archive.name}: member {name!r} has an absolute path; refusing to extract an "
            f"archive that writes outside its folder. Nothing was extracted."
        )
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive.name}: member {name!r} contains '..'; refusing to extract an archive "
            f"that writes outside its folder. Nothing was extracted."
        )
    if len(parts) <= strip:
        return None
    return PurePosixPath(*parts[strip:])


def _refuse_type(archive: Path, name: str, kind: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive.name}: member {name!r} is {kind}; deepstrf extracts only regular files "
        f"and folders, since links and special files can point outside the target folder. "
        f"Nothing was extracted."
    )


def _selected(rel: PurePosixPath, prefixes: tuple[tuple[str, ...], ...] | None,
              matched: set[tuple[str, ...]]) -> bool:
    if prefixes is None:
        return True
    for prefix in prefixes:
        if rel.parts[:len(prefix)] == prefix:
            matched.add(prefix)
            return True
    return False


class _Writer:
    """Writes members below ``root`` and checks every path stays inside it."""

    def __init__(self, root: Path, archive: Path) -> None:
        self.root = root
        self.archive = archive
        self.n_files = 0
        self.top_level: set[str] = set()

    def _target(self, rel: PurePosixPath) -> Path:
        target = self.root.joinpath(*rel.parts)
        if os.path.commonpath([self.root, os.path.abspath(target)]) != str(self.root):
            raise UnsafeArchiveError(
                f"{self.archive.name}: member {str(rel)!r} resolves outside the target folder. "
                f"Nothing was extracted."
            )
        self.top_level.add(rel.parts[0])
        return target

    def directory(self, rel: PurePosixPath) -> None:
        self._target(rel).mkdir(parents=True, exist_ok=True)

    def file(self, rel: PurePosixPath, source: IO[bytes], mtime: float | None) -> None:
        target = self._target(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            shutil.copyfileobj(source, fh, 1 << 20)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        self.n_files += 1


def _extract_to(archive: Path, root: Path, strip: int,
                prefixes: tuple[tuple[str, ...], ...] | None) -> int:
    writer = _Writer(root, archive)
    matched: set[tuple[str, ...]] = set()
    with _readable(archive):
        if _is_zip(archive):
            _extract_zip(archive, writer, strip, prefixes, matched)
        else:
            _extract_tar(archive, writer, strip, prefixes, matched)
    if prefixes is not None:
        unmatched = [p for p in prefixes if p not in matched]
        if unmatched:
            raise RawDataError(
                f"{archive.name}: no member under {', '.join(repr('/'.join(p)) for p in unmatched)}"
                f" (after stripping {strip} leading component(s)); the extracted top-level "
                f"entries would be: {', '.join(sorted(writer.top_level)) or 'none'}."
            )
    if writer.n_files == 0:
        raise RawDataError(
            f"{archive.name} holds no file to extract (strip_components={strip}"
            f"{', members=' + repr(['/'.join(p) for p in prefixes]) if prefixes else ''})."
        )
    return writer.n_files


def top_level_names(archive: str | os.PathLike[str]) -> set[str]:
    """The first path components of an archive's members (``.`` parts ignored).

    Lets a caller tell a flat archive from one that wraps everything in a
    single folder, whose layout some releases do not document.
    """
    path = _check_path_arg("archive", archive)
    with _readable(path):
        if _is_zip(path):
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        else:
            with tarfile.open(path, "r:*") as tf:
                names = tf.getnames()
    tops = set()
    for name in names:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if parts:
            tops.add(parts[0])
    return tops


@contextlib.contextmanager
def _readable(archive: Path) -> Iterator[None]:
    """Turn the archive libraries' errors into a RawDataError naming the file and the remedy."""
    try:
        yield
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        head = _sniff(archive)
        raise RawDataError(
            f"{archive} is not a readable zip or tar archive ({err}){head}. It may be a "
            "truncated download or a page served in place of the file. Delete it and download "
            "it again."
        ) from err
    except RuntimeError as err:  # zipfile: encrypted member or unsupported compression
        raise RawDataError(f"{archive}: cannot extract ({err}).") from err


def _sniff(archive: Path) -> str:
    """', it starts like an HTML page' when it does (a login page saved as the archive)."""
    try:
        with open(archive, "rb") as f:
            start = f.read(512).lstrip().lower()
    except OSError:
        return ""
    if start.startswith((b"<!doctype html", b"<html")) or b"<form" in start:
        return "; it starts like an HTML page, e.g. a login page"
    return ""


def _is_zip(archive: Path) -> bool:
    # The name decides when it is explicit: an uncompressed tar whose last
    # member is a zip would otherwise pass the zip sniff.
    name = archive.name.lower()
    if name.endswith(".zip"):
        return True
    if name.endswith(_TAR_SUFFIXES):
        return False
    return zipfile.is_zipfile(archive)


def _extract_zip(archive: Path, writer: _Writer, strip: int,
                 prefixes: tuple[tuple[str, ...], ...] | None,
                 matched: set[tuple[str, ...]]) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                label = "a symbolic link" if kind == stat.S_IFLNK else "a special file"
                raise _refuse_type(archive, info.filename, label)
            rel = _relative_target(info.filename, archive, strip)
            if rel is None or not _selected(rel, prefixes, matched):
                continue
            if info.is_dir():
                writer.directory(rel)
                continue
            mtime = time.mktime((*info.date_time, 0, 0, -1))
            with zf.open(info) as source:
                writer.file(rel, source, mtime)


def _extract_tar(archive: Path, writer: _Writer, strip: int,
                 prefixes: tuple[tuple[str, ...], ...] | None,
                 matched: set[tuple[str, ...]]) -> None:
    # One sequential pass: members are checked as they come and written to the
    # temporary folder, which is discarded if a later member is refused.
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            if member.issym() or member.islnk():
                raise _refuse_type(archive, member.name,
                                   "a symbolic link" if member.issym() else "a hard link")
            if not (member.isreg() or member.isdir()):
                raise _refuse_type(archive, member.name, "a device file, FIFO or special entry")
            rel = _relative_target(member.name, archive, strip)
            if rel is None or not _selected(rel, prefixes, matched):
                continue
            if member.isdir():
                writer.directory(rel)
                continue
            source = tf.extractfile(member)
            if source is None:
                raise RawDataError(f"{archive.name}: cannot read member {member.name!r}.")
            with source:
                writer.file(rel, source, float(member.mtime))


def _merge_into(src: Path, dst: Path) -> None:
    """Move the tree under ``src`` into ``dst``, merging folders, replacing files."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            if target.is_dir():
                _merge_into(Path(entry.path), target)
                continue
            if target.is_symlink() or target.exists():
                target.unlink()
        elif target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry.path, target)
