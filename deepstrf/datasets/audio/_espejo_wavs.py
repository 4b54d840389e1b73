"""The NAT waveforms of Espejo 2019, fetched from the LBHB baphy mirror (not on Zenodo).

The sounds live in one of several folders of baphy's ``@NaturalSounds``
object; each is tried in the lab loader's order. A sound none of them holds
is left missing (reported when the dataset is built); only waveform mode
needs these files.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

__all__ = ["MIRROR_BASE", "MIRROR_SUBDIRS", "WAV_DIR", "fetch_waveforms", "mirror_urls"]

logger = logging.getLogger(__name__)

#: Where the sound folders are (``%40`` is the ``@`` of ``@NaturalSounds``).
MIRROR_BASE = ("https://bitbucket.org/lbhb/baphy/raw/master/Config/lbhb/SoundObjects/"
               "%40NaturalSounds")
#: The folders tried, in order.
MIRROR_SUBDIRS = ("sounds_set3", "sounds_set4", "sounds_set2", "sounds_set6", "sounds_set7",
                  "sounds_set8", "sounds", "Sounds_set3")
#: The raw subfolder the wavs are saved in.
WAV_DIR = "nat_waveforms"


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
    if missing:
        logger.warning("%s: %d NAT waveforms are in none of the mirror folders (%s), e.g. %s",
                       owner, len(missing), ", ".join(MIRROR_SUBDIRS), missing[:3])
    return {"fetched": fetched, "missing": missing}
