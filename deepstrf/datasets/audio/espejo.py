"""Espejo 2019: ferret A1 units to natural sounds (NAT) or vocalization-modulated noise (VMN).

=========  ===========================================================
species    ferret (*Mustela putorius furo*), awake, passive
areas      A1
signal     extracellular single units (spike times; three VMN sites binned)
N          about 540 (NAT, 35 sites) / about 200 (VMN, 103 sites)
S          about 686 (NAT) / 75 (VMN) distinct stimulus names
R          10-30 (test sounds), 1-5 (estimation sounds)
access     open, Zenodo record 3445557: ``A1_natural_sounds.tgz`` (638 MB)
           or ``A1_voc_mod_noise.tgz`` (25 MB), each a tar of per-site
           NEMS0 recordings; NAT waveforms from the LBHB baphy mirror
=========  ===========================================================

Preprocessing
-------------
* The site archives are read inside the outer ``.tgz`` (or an extracted
  ``A1_natural_sounds/`` / ``A1_voc_mod_noise/`` folder), never unpacked.
* Grid: each ``STIM_`` epoch (0.5 s silence, the sound, 0.5 s silence) in bins
  of 10 ms, as long as that stimulus' cochleagram (NAT mostly 500 bins, VMN
  400); ``dt_ms`` a multiple of 10 pools them.
* Stimuli: the published cochleagrams (``stim`` TiledSignal, or a
  RasterizedSignal sliced at the first occurrence), already logarithmic, kept
  as they are: 18 bands (NAT), 2 envelopes (VMN). The first site that plays a
  name gives its cochleagram. Waveform mode (NAT only): the 44.1 kHz wav in
  ``nat_waveforms/``, inset at the epoch's pre-stimulus silence.
* Responses: spike times rasterised with NEMS's ``floor(t * fs)`` rule per
  occurrence (see :mod:`deepstrf.io.nems`); the CSV-raster sites' rows as
  published, NaN kept. A cell recorded in several sessions (archives) gets
  the repeats of every session, one after the other.
* Split: per site, the names played as often as that site's most repeated
  one (if more than once) are ``'test'``, the rest ``'estimation'``; a name
  is test if any site says so. ``n_repeats`` is the most over sites.
* ``stim_meta``: ``name``, ``type`` (``'nat'``/``'vmn'``), ``split``,
  ``n_repeats``, ``duration_s`` and ``n_samples`` (the epoch: bins of 10 ms),
  ``wav`` (NAT). ``nrn_meta``: ``cell_id``, ``experiment_set``, ``site``,
  ``animal_id``, ``channel`` (str), ``unit`` (str or None), ``sessions``
  (the archives it was recorded in).

Parameters
----------
%(path)s
stimuli : {'nat', 'vmn'}, default 'nat'
    The stimulus set (two disjoint releases).
%(dt_ms)s
    Default 10.0; must be a multiple of 10 ms (the release's bin).
subset : {'all', 'estimation', 'test'}, default 'all'
    Every sound, or only those of that ``split``.
cells : 'all' or sequence of str, optional
    Cell ids to keep (None or 'all': every cell); an unknown id is an error.
%(smooth)s
    Default False (as deepSTRF).
%(return_waveform)s
    NAT only. Sounds missing from ``nat_waveforms/`` are reported and left out.
%(audio_fs)s
    Default 44100 (the wavs' rate; 441 samples per 10 ms bin).
%(download)s
    With ``return_waveform``, also fetches the NAT wavs from the baphy mirror.
%(n_jobs)s
%(cache)s
%(progress)s

References
----------
Lopez Espejo M., Schwartz Z.P. & David S.V. (2019). Spectral tuning of
adaptation supports coding of sensory context in auditory cortex. PLoS Comput
Biol 15:e1007430. doi:10.1371/journal.pcbi.1007430
Dataset: doi:10.5281/zenodo.3445557
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_names
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._quirks import count_quirks, warn_quirk
from deepstrf.datasets._source import DatasetInfo
from deepstrf.datasets.audio._espejo_sites import BANDS, NATIVE_MS, cell_parts, joined, \
    read_site, summarise_site
from deepstrf.datasets.audio._espejo_wavs import MIRROR_SUBDIRS, WAV_DIR, fetch_waveforms
from deepstrf.datasets.audio._spikes_audio import AudioSourceDataset, BinnedRows, Recording, \
    SpectrogramArrayStim, SpikeTrains, WavStim, ten_ms_front_end
from deepstrf.errors import RawDataError
from deepstrf.io.download import RemoteFile

__doc__ = fill_doc(__doc__)
__all__ = ["EspejoDataset", "MIRROR_SUBDIRS"]

SOUND_RATE = 44100
_RECORD = 3445557  # zenodo.org/records/3445557
#: stimulus set -> (archive on Zenodo, the folder it unpacks to, the sites' subfolder)
RELEASES = {"nat": ("A1_natural_sounds.tgz", "A1_natural_sounds", "NAT"),
            "vmn": ("A1_voc_mod_noise.tgz", "A1_voc_mod_noise", "VMN")}


class EspejoDataset(AudioSourceDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="espejo", title="Espejo 2019: ferret A1 units to natural sounds and VMN",
        species="ferret", area="A1", signal="single units (spike times; three VMN sites binned)",
        n_neurons=None, n_stims=None, repeats="10-30 (test), 1-5 (estimation)",
        download_size="638 MB (NAT), 25 MB (VMN)", access="open",
        citation="Lopez Espejo M., Schwartz Z.P. & David S.V. (2019). Spectral tuning of "
                 "adaptation supports coding of sensory context in auditory cortex. PLoS Comput "
                 "Biol 15:e1007430.",
        doi="10.5281/zenodo.3445557", url="https://zenodo.org/records/3445557",
        papers=("Lopez Espejo, Schwartz & David (2019) PLoS Comput Biol 15:e1007430, "
                "doi:10.1371/journal.pcbi.1007430",))
    folder = "Espejo"
    # Zenodo publishes each file's MD5 through its records API: fetched and checked on download
    remote_files = tuple(RemoteFile.zenodo(archive, record=_RECORD, when={"stimuli": kind})
                         for kind, (archive, _, _) in RELEASES.items())
    raw_markers = tuple(r[0] for r in RELEASES.values())
    cache_version = 1

    def __init__(self, path: Any = None, stimuli: str = "nat", dt_ms: float = 10.0,
                 subset: str = "all", cells: Any = None, smooth: bool | float = False,
                 return_waveform: bool = False, audio_fs: float = 44100,
                 download: bool = False, *, n_jobs: int | None = 1, cache: str = "use",
                 progress: bool | None = None):
        stimuli = check_choice("stimuli", stimuli, tuple(RELEASES))
        front = ten_ms_front_end("EspejoDataset", dt_ms=dt_ms, smooth=smooth,
                                 n_bands=BANDS[stimuli], return_waveform=return_waveform,
                                 audio_fs=audio_fs)
        if return_waveform and stimuli == "vmn":
            raise ValueError("EspejoDataset: return_waveform=True needs stimuli='nat'; the VMN "
                             "release has no audio (only its 2-band envelopes).")
        params = {"stimuli": stimuli,
                  "subset": check_choice("subset", subset, ("all", "estimation", "test")),
                  "cells": "all" if cells is None else check_names("cells", cells)}
        if return_waveform and download is True:
            fetch_waveforms(self, path, params, progress=progress)
        self._init_source(path, params, front, download=download, n_jobs=n_jobs, cache=cache,
                          progress=progress, expect_full=False)

    @classmethod
    def default_paths(cls, path: Any = None):
        from deepstrf.io.paths import dataset_paths

        # an extracted release folder marks a raw folder too
        return dataset_paths(cls.folder, path, cls.raw_markers + tuple(
            r[1] for r in RELEASES.values()))

    def container(self, raw_dir: Path, stimuli: str) -> Path:
        """The outer archive, or the folder it was extracted to (read in place either way)."""
        archive, folder, _ = RELEASES[stimuli]
        return raw_dir / (folder if (raw_dir / folder).is_dir() and
                          not (raw_dir / archive).exists() else archive)

    def _needs(self, params: Mapping[str, Any]):
        raw = self.default_paths(getattr(self, "_path_arg", None)).raw
        have = self.container(raw, params["stimuli"]).name
        archive = RELEASES[params["stimuli"]][0]
        files = tuple(f for f in self.remote_files if f.name == archive)
        fingerprint = (have, WAV_DIR) if self._front_end.return_waveform else (have,)
        return files, (), (have,), fingerprint

    def _init_source(self, path: Any, *args: Any, **kwargs: Any) -> None:
        self._path_arg = path
        super()._init_source(path, *args, **kwargs)

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> Recording:
        from deepstrf.io.nems import iter_recordings, list_recordings
        from deepstrf.preprocessing.parallel import parallel_map

        owner, stimuli, quirks = type(self).__name__, params["stimuli"], {}
        container = self.container(raw_dir, stimuli)
        members = list_recordings(container)
        if not members:
            raise RawDataError(f"{owner}: {container} holds no site recording (.tgz); expected "
                               f"{RELEASES[stimuli][1]}/{RELEASES[stimuli][2]}/<site>_<hash>.tgz."
                               f" Download it again (download=True).")
        if container.is_dir():  # each member is a file: read them in parallel
            sites = parallel_map(read_site, [(str(container), m, stimuli) for m in members],
                                 n_jobs=n_jobs, progress=progress, desc=f"{owner}: sites")
        else:  # a tar reaches a member only through the ones before it: one pass
            sites = [summarise_site(rec, stimuli, m) for m, rec in
                     iter_recordings(container, signals=["resp", "stim"])]
        for site in sites:
            count_quirks(quirks, site["quirks"])
            for category, message in site.get("warnings", ()):  # given in a worker
                warnings.warn(message, category, stacklevel=2)
        off = quirks.get("occurrence_length_differs_from_cochleagram", 0)
        if off:  # the reader's own quirks were warned as it read them; this one is ours
            quirks.pop("occurrence_length_differs_from_cochleagram")
            warn_quirk(quirks, owner, "occurrence_length_differs_from_cochleagram", off,
                       "stimulus occurrences last longer or shorter than their cochleagram; "
                       "their responses are cut on the cochleagram's bins from the "
                       "occurrence's start")
        return self._assemble(sites, params, quirks, raw_dir)

    def _assemble(self, sites: list[dict[str, Any]], params: Mapping[str, Any],
                  quirks: dict[str, int], raw_dir: Path) -> Recording:
        owner, stimuli = type(self).__name__, params["stimuli"]
        tiles: dict[str, np.ndarray] = {}
        first_pre: dict[str, float] = {}
        repeats: dict[str, int] = {}
        test: set[str] = set()
        sessions: dict[str, list[str]] = {}
        pairs: dict[tuple[str, str], Any] = {}
        dropped = differ = 0
        for site in sites:
            top = max(site["counts"].values())
            for name, tile in site["tiles"].items():
                count = site["counts"][name]
                repeats[name] = max(repeats.get(name, 0), count)
                test.update([name] if top > 1 and count == top else [])
                if name not in tiles:
                    tiles[name], first_pre[name] = tile, site["pre_ms"][name]
                elif tiles[name].shape != tile.shape:
                    dropped += len(site["chans"])
                    continue
                elif not np.allclose(tiles[name], tile, rtol=1e-4, atol=1e-5):
                    differ += 1
                for cell in site["chans"]:
                    got = site["responses"][cell][name]
                    new = SpikeTrains(*got) if site["kind"] == "spikes" else \
                        BinnedRows(got, NATIVE_MS)
                    pairs[(name, cell)] = joined(pairs.get((name, cell)), new, owner, cell, name)
            for cell in site["chans"]:
                sessions.setdefault(cell, []).append(Path(site["archive"].split(" > ")[-1]).name)
        several = sum(len(v) > 1 for v in sessions.values())
        for kind, count, text in (
                ("cells_in_several_sessions", several, "cells were recorded in several "
                 "sessions (archives); their repeats are joined"),
                ("stim_length_differs_between_sites", dropped, "(cell, stimulus) pairs come "
                 "from a site whose cochleagram of that stimulus has another length than the "
                 "first site's; they are left out"),
                ("stim_values_differ_between_sites", differ, "site cochleagrams differ from "
                 "the first site's of the same name; the first one is kept")):
            if count:
                warn_quirk(quirks, owner, kind, count, text)
        wanted = params["cells"]
        cells = [c for c in sessions if wanted == "all" or c in wanted]  # release order
        unknown = [] if wanted == "all" else sorted(set(wanted) - set(sessions))
        if unknown:
            raise ValueError(f"{owner}: cells {unknown[:5]} are not in the {stimuli.upper()} "
                             f"release ({len(sessions)} cells, e.g. {list(sessions)[:3]}).")
        split = {n: "test" if n in test else "estimation" for n in tiles}
        names = [n for n in tiles if params["subset"] in ("all", split[n])]
        metas = [{"name": n, "type": stimuli, "split": split[n], "n_repeats": repeats[n],
                  "duration_s": round(tiles[n].shape[1] * NATIVE_MS / 1000.0, 6),
                  "n_samples": int(tiles[n].shape[1]),
                  **({"wav": n[len("STIM_"):]} if stimuli == "nat" else {})} for n in names]
        k = int(round(self._front_end.dt_ms / NATIVE_MS))
        if self._front_end.return_waveform:
            keep, stims = self._wavs(raw_dir, metas, first_pre, k, quirks)
        else:
            keep = list(range(len(metas)))
            stims = [SpectrogramArrayStim(tiles[m["name"]], NATIVE_MS, m) for m in metas]
        shift = {m["name"]: first_pre[m["name"]] if self._front_end.return_waveform else 0.0
                 for m in metas}
        index = {c: n for n, c in enumerate(cells)}
        trials = {}
        for s, i in enumerate(keep):
            name = metas[i]["name"]
            for cell in cells:
                got = pairs.get((name, cell))
                if got is not None:
                    trials[(s, index[cell])] = SpikeTrains(got.times - shift[name], got.lengths) \
                        if isinstance(got, SpikeTrains) else got
        neurons = [{"cell_id": c, "experiment_set": stimuli.upper(), **cell_parts(c),
                    "sessions": sessions[c]} for c in cells]
        return Recording(stims=stims, neurons=neurons, trials=trials, quirks=quirks,
                         sources=[{"archive": s["archive"], "site": s["site"],
                                   "kind": s["kind"]} for s in sites])

    def _wavs(self, raw_dir: Path, metas: list[dict[str, Any]], pre: dict[str, float], k: int,
              quirks: dict[str, int]) -> tuple[list[int], list[Any]]:
        keep, stims, missing = [], [], []
        for i, meta in enumerate(metas):
            path = raw_dir / WAV_DIR / meta["wav"]
            if not path.is_file():
                missing.append(meta["wav"])
                continue
            keep.append(i)
            stims.append(WavStim(path, meta, expected_sr=SOUND_RATE, inset_ms=pre[meta["name"]],
                                 n_bins=meta["n_samples"] // k))
        if not stims:
            raise RawDataError(f"{type(self).__name__}: waveform mode found none of the "
                               f"{len(metas)} wavs in {raw_dir / WAV_DIR}. Pass download=True "
                               f"to fetch them from the LBHB baphy mirror.")
        if missing:
            warn_quirk(quirks, type(self).__name__, "nat_waveforms_missing", len(missing),
                       f"sounds have no wav in {raw_dir / WAV_DIR} (e.g. {missing[:3]}); they "
                       f"are left out of waveform mode (download=True fetches what the mirror "
                       f"has)")
        return keep, stims

