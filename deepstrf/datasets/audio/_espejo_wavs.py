"""The NAT waveforms of Espejo 2019, fetched from the LBHB baphy mirror (not on Zenodo).

The sounds live in one of several folders of baphy's ``@NaturalSounds``
object; each is tried in the lab loader's order. A sound none of them holds
is left missing (reported when the dataset is built); only waveform mode
needs these files.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["MIRROR_BASE", "MIRROR_RECORD", "MIRROR_SUBDIRS", "WAV_DIR", "fetch_waveforms",
           "mirror_urls"]

logger = logging.getLogger(__name__)

#: Where the sound folders are (``%40`` is the ``@`` of ``@NaturalSounds``).
MIRROR_BASE = ("https://bitbucket.org/lbhb/baphy/raw/master/Config/lbhb/SoundObjects/"
               "%40NaturalSounds")
#: The folders tried, in order.
MIRROR_SUBDIRS = ("sounds_set3", "sounds_set4", "sounds_set2", "sounds_set6", "sounds_set7",
                  "sounds_set8", "sounds", "Sounds_set3")
#: The raw subfolder the wavs are saved in.
WAV_DIR = "nat_waveforms"
#: The record of the last fetch in it (release size, wavs fetched, wavs the mirror lacks).
MIRROR_RECORD = ".mirror.json"


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


def mirror_urls(wav: str, base: str | None = None) -> list[str]:
    """Every URL a wav may be at, in the order they are tried."""
    base = MIRROR_BASE if base is None else base
    return [f"{base}/{sub}/{quote(wav)}" for sub in MIRROR_SUBDIRS]


def _stim_names(container: Any) -> list[str]:
    from deepstrf.io.nems import iter_recordings

    names: dict[str, None] = {}
    for _, rec in iter_recordings(container, signals=["resp"], load_data=False):
        for name in rec.epochs["resp"].names("STIM_"):
            names.setdefault(name[len("STIM_"):])
    return list(names)


def fetch_waveforms(dataset: Any, path: Any, params: dict[str, Any], *,
                    progress: bool | None = None) -> dict[str, Any]:
    """Make the NAT release present, then fetch every wav its sites play that is absent.

    Returns ``{"fetched": [...], "missing": [...]}`` (names). A raw folder
    read in place is never written to: nothing is fetched there.
    """
    from deepstrf.errors import DownloadError
    from deepstrf.io.download import RemoteFile, fetch

    cls = type(dataset)
    owner = cls.__name__
    paths = cls.default_paths(path)
    if paths.in_place:
        logger.info("%s: %s is read in place, so no waveform is downloaded into it", owner,
                    paths.raw)
        return {"fetched": [], "missing": []}
    raw = cls.download_raw(path, stimuli=params["stimuli"], progress=progress)
    container = dataset.container(raw, params["stimuli"])
    # a record of the last pass, so that a warm load with download=True does not decompress
    # the whole release again to list its sounds
    record = raw / WAV_DIR / MIRROR_RECORD
    stamp = {"release": container.name, "size": _size(container)}
    if record.is_file():
        try:
            done = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            done = {}
        if isinstance(done, dict) and {k: done.get(k) for k in stamp} == stamp and all(
                (raw / WAV_DIR / w).is_file() for w in done.get("fetched", [])):
            return {"fetched": [], "missing": list(done.get("missing", []))}
    fetched, missing = [], []
    for wav in _stim_names(container):
        target = raw / WAV_DIR / wav
        if target.is_file():
            continue
        for url in mirror_urls(wav):
            try:
                fetch([RemoteFile(f"{WAV_DIR}/{wav}", url=url)], raw, download=True,
                      progress=progress, owner=owner)
            except DownloadError as err:
                if "HTTP 404" in str(err):
                    continue  # not in this folder: try the next
                raise
            fetched.append(wav)
            break
        else:
            missing.append(wav)
    (raw / WAV_DIR).mkdir(parents=True, exist_ok=True)
    have = sorted(p.name for p in (raw / WAV_DIR).iterdir() if p.suffix.lower() == ".wav")
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps({**stamp, "fetched": have, "missing": missing}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, record)
    if missing:
        logger.warning("%s: %d NAT waveforms are in none of the mirror folders (%s), e.g. %s",
                       owner, len(missing), ", ".join(MIRROR_SUBDIRS), missing[:3])
    return {"fetched": fetched, "missing": missing}
