"""Le, Bjoring & Meliza 2025: zebra finch auditory pallium units to occluded song.

=========  ===========================================================
species    adult zebra finch (*Taeniopygia guttata*), anaesthetised
areas      auditory pallium: NCM/L3, L2a/b, CM/L1 (some unlabelled)
signal     extracellular single units, spike times (pprox JSON)
N          nat8a 794 (cohorts 1 and 2), nat8b 445, synth8b 476 (cohort 3)
S          nat8a 72, nat8b 96, synth8b 96 (8 motifs x variants), 0.8-1.2 s
R          nominally 10 (4-10 after curation)
access     open, figshare article 29203457, one zip of about 105 MB
=========  ===========================================================

Motifs with their critical interval (CI, a syllable) intact (``C``), silenced
(``G``), replaced by a noise burst (``GB``), under the burst (``CB``), masked
(``GM``/``CM``) or the burst alone (``N``). Details: docs/datasets/le-2025.md.

Preprocessing
-------------
* Responses: one pprox file per unit (:mod:`deepstrf.io.pprox`): legacy (ms
  minus ``stim_on``) or stimtrial (s minus ``stimulus.interval[0]``, which is
  not always 0), binned at ``dt_ms`` from onset to the end of the wav; empty
  trials stay zero-count repeats; 21 ms unit-sum Hanning smoothing by default.
* Stimuli: the paper's gammatone spectrogram (ERB-spaced bands, RMS window,
  ``log1p``; :mod:`deepstrf.preprocessing.gammatone`, equal to ``gtgram``) on
  the response grid at each wav's rate (40, 48, 44.1 kHz; resampled only for a
  whole-sample hop). deepSTRF 0.1.0's ``gtgram`` frame ``k`` covers only the
  first 2.5 ms of bin ``k`` and drifts at 44.1 kHz. Or the waveform at
  ``audio_fs`` (``return_waveform=True``).
* Metadata: ``recordings.csv``, ``ephys-birds.csv`` and ``song-birds.csv``
  joined into ``nrn_meta`` (cohort, area, hemisphere, sex, age, rearing group)
  and ``stim_meta`` (motif, variant, CI and its onset/offset, song bird). A
  malformed row or pprox file, or a trial of a stimulus without a wav, raises
  an error naming the file; tolerated quirks warn
  (:class:`~deepstrf.errors.DataQuirkWarning`) and are counted.

Parameters
----------
%(path)s
experiment : {'nat8a', 'nat8b', 'synth8b'}, default 'nat8b'
    One experiment per instance (``ds1 + ds2`` joins them).
%(dt_ms)s
n_bands : int, default 50
    Gammatone bands, ERB-spaced.
fmin, fmax : float, default 1000.0 and 8000.0
    Lowest centre frequency and top of the ERB scale, Hz.
%(window_ms)s
%(smooth)s
keep_areas : sequence of str, optional
    Keep only the units of these areas (``nrn_meta['area']``).
compute_reliability : bool, default False
    Run :meth:`compute_neuron_quality` after loading (deepSTRF 0.1.0 always does).
%(download)s
%(return_waveform)s
%(audio_fs)s
cohorts : 'all' or sequence of int
    nat8a: 1 (legacy files, familiarity manipulation) and/or 2.
%(compression)s
%(spectrogram)s
%(n_jobs)s
%(cache)s
%(progress)s

References
----------
Le M., Bjoring M.C. & Meliza C.D. (2025). The zebra finch auditory cortex
reconstructs occluded syllables in conspecific song. Nat Commun 16:8452.
doi:10.1038/s41467-025-63182-y
Le M., Bjoring M.C. & Meliza C.D. (2025). Dataset. figshare.
doi:10.6084/m9.figshare.29203457
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepstrf._validation import check_choice, check_names
from deepstrf.datasets._docs import fill_doc
from deepstrf.datasets._source import ArchiveSpec, DatasetInfo
from deepstrf.datasets.audio._spikes_audio import (SpikeAudioDataset, SpikeRecording,
                                                    SpikeTrains, StimSource, make_front_end)
from deepstrf.errors import DataQuirkWarning, RawDataError
from deepstrf.io.download import RemoteFile
from deepstrf.io.tables import parse_age_days, parse_cell, read_csv_table

__all__ = ["Le2025Dataset", "parse_stim_name", "EXPERIMENTS"]
__doc__ = fill_doc(__doc__)

#: The release's three experiments, one per dataset instance (``experiment=``).
EXPERIMENTS = ("nat8a", "nat8b", "synth8b")
#: response folder and cohort of each experiment
RESPONSES = {"nat8a": (("nat8a-alpha-responses", 1), ("nat8a-beta-responses", 2)),
             "nat8b": (("nat8b-responses", 3),), "synth8b": (("synth8b-responses", 3),)}
COUNTS = {"nat8a": (794, 72), "nat8b": (445, 96), "synth8b": (476, 96)}
METADATA = {"recordings": ("site", "bird", "area", "hemisphere"),
            "ephys-birds": ("bird", "uuid", "sex", "group", "age", "cohort"),
            "song-birds": ("bird", "gap", "gap_start", "gap_stop", "group")}
_NAT8A_STEM = re.compile(r"(?P<motif>[A-Za-z]+\d+)_(?P<cond>continuous|continuousnoise|gapnoise|"
                         r"gap|noise)(?P<ci>[12]?)$")
_NAT8A_VARIANTS = {"continuous": "C", "gap": "G", "noise": "N", "gapnoise": "GB",
                   "continuousnoise": "CB"}
_EP_STEM = re.compile(r"ep_(?P<motif>(?P<set>nat8|synth8)mk\d+)_(?P<variant>CB|CM|GB|GM|C|G|N)"
                      r"(?:_g(?P<ci>\d+[a-z]?))?(?:_snr(?P<snr>-?\d+))?$")


def parse_stim_name(stem: str) -> dict[str, Any] | None:
    """``motif``, ``variant``, ``critical_interval``, ``snr_db`` and ``experiment`` of a
    wav stem, or None if it follows no experiment's naming."""
    m = _NAT8A_STEM.match(stem)
    if m and (m["cond"] == "continuous") == (m["ci"] == ""):
        return {"motif": m["motif"], "variant": _NAT8A_VARIANTS[m["cond"]],
                "critical_interval": int(m["ci"]) if m["ci"] else None, "snr_db": None,
                "experiment": "nat8a", "condition": m["cond"] + m["ci"]}
    m = _EP_STEM.match(stem)
    if not m or (m["ci"] is None) != (m["variant"] in ("C", "CM")):
        return None
    ci = m["ci"] if m["ci"] is None or not m["ci"].isdigit() else int(m["ci"])
    return {"motif": m["motif"], "variant": m["variant"], "critical_interval": ci,
            "snr_db": None if m["snr"] is None else int(m["snr"]),
            "experiment": "nat8b" if m["set"] == "nat8" else "synth8b", "condition": None}


class Le2025Dataset(SpikeAudioDataset):
    __doc__ = __doc__

    info = DatasetInfo(
        name="le2025", title="Le 2025: zebra finch auditory pallium, occluded song",
        species="zebra finch", area="NCM, L2, L3, CM (auditory pallium)",
        signal="single units (spike times)", n_neurons=1715, n_stims=264,  # all 3 experiments
        repeats="4-10", download_size="105 MB", access="open",
        citation="Le M., Bjoring M.C. & Meliza C.D. (2025). The zebra finch auditory cortex "
                 "reconstructs occluded syllables in conspecific song. Nat Commun 16:8452.",
        doi="10.6084/m9.figshare.29203457", url="https://figshare.com/articles/29203457",
        papers=("Le, Bjoring & Meliza (2025) Nat Commun 16:8452, "
                "doi:10.1038/s41467-025-63182-y",))
    folder = "Le_2025"
    # figshare publishes the zip's MD5 through its API: fetched and checked at download time
    remote_files = (RemoteFile.figshare("zebf-auditory-restoration-1.zip", article=29203457,
                                        file_id=55083911),)
    # the zip wraps everything in zebf-auditory-restoration-1/
    archives = (ArchiveSpec("zebf-auditory-restoration-1.zip", strip_components="auto",
                            provides=("metadata", *(f"{e}-stimuli" for e in EXPERIMENTS),
                                      *(d for e in EXPERIMENTS for d, _ in RESPONSES[e]))),)
    raw_markers = ("metadata",)
    cache_version = 1

    def __init__(self, path: Any = None, experiment: str = "nat8b", dt_ms: float = 5.0,
                 n_bands: int = 50, fmin: float = 1000.0, fmax: float = 8000.0,
                 window_ms: float = 2.5, smooth: bool | float = True, keep_areas: Any = None,
                 compute_reliability: bool = False, download: bool = False,
                 return_waveform: bool = False, audio_fs: int = 48000, *,
                 cohorts: Any = "all", compression: str = "log1p", spectrogram: Any = None,
                 n_jobs: int | None = 1, cache: str = "use", progress: bool | None = None):
        check_choice("experiment", experiment, EXPERIMENTS)
        front = make_front_end(dt_ms=dt_ms, smooth=smooth, kind="gammatone", n_bands=n_bands,
                               f_min=fmin, f_max=fmax, compression=compression,
                               window_ms=window_ms, return_waveform=return_waveform,
                               audio_fs=audio_fs, spectrogram=spectrogram)
        known = tuple(c for _, c in RESPONSES[experiment])
        chosen = known if cohorts == "all" else (cohorts,) if isinstance(cohorts, int) else cohorts
        if not isinstance(chosen, (tuple, list)) or not chosen or any(
                isinstance(c, bool) or c not in known for c in chosen):
            raise ValueError(f"cohorts must be 'all' or a sequence of {known} for experiment="
                             f"{experiment!r}; got {cohorts!r}.")
        if not isinstance(compute_reliability, bool):
            raise TypeError(f"compute_reliability must be True or False; got "
                            f"{compute_reliability!r}.")
        params = {"experiment": experiment, "cohorts": sorted(set(chosen)),
                  "keep_areas": "all" if keep_areas is None
                  else list(check_names("keep_areas", keep_areas))}
        full = params["cohorts"] == list(known) and params["keep_areas"] == "all"
        n, s = COUNTS[experiment]
        self.info = dataclasses.replace(type(self).info, n_neurons=n, n_stims=s)
        self._init_source(path, params, front, download=download, username=None,
                          password=None, n_jobs=n_jobs, cache=cache, progress=progress,
                          expect_full=full)
        if compute_reliability:
            self.compute_neuron_quality()

    def _needs(self, params: Mapping[str, Any]):
        exp = params["experiment"]
        needed = ("metadata", f"{exp}-stimuli",
                  *(d for d, c in RESPONSES[exp] if c in params["cohorts"]))
        return self.remote_files, self.archives, needed, needed

    def _parse(self, raw_dir: Path, params: Mapping[str, Any], n_jobs: int | None,
               progress: bool | None) -> SpikeRecording:
        from deepstrf.io.pprox import read_pprox
        from deepstrf.preprocessing.parallel import parallel_map

        exp, owner, quirks = params["experiment"], type(self).__name__, {}
        self._examples = {}
        path = {name: raw_dir / "metadata" / f"{name}.csv" for name in METADATA}
        rows = {name: read_csv_table(path[name], cols) for name, cols in METADATA.items()}
        sites = {r["site"]: r for _, r in rows["recordings"]}
        bpath, spath = path["ephys-birds"], path["song-birds"]
        birds = {r["bird"]: {**r, "age_days": parse_age_days(bpath, i, "age", r["age"]),
                             "cohort": parse_cell(bpath, i, "cohort", r["cohort"], int)}
                 for i, r in rows["ephys-birds"]}
        cis, song_bird, groups = {}, {}, {}
        for i, r in rows["song-birds"]:
            gap = parse_cell(spath, i, "gap", r["gap"], int)
            span = [parse_cell(spath, i, c, r[c]) for c in ("gap_start", "gap_stop")]
            for name in (r["bird"], r.get("nat8b_encoding") or r.get("nat8b_coding")):
                if name:
                    cis[(name, gap)], song_bird[name] = span, r["bird"]
            groups.setdefault(r["group"], set()).add(r["bird"])
        stims = []
        for wav in sorted((raw_dir / f"{exp}-stimuli").glob("*.wav")):
            meta = parse_stim_name(wav.stem)
            if meta is None or meta["experiment"] != exp:
                self._quirk(quirks, "unnamed_wavs", f"{wav} follows no {exp} stimulus naming")
                continue
            on, off = (np.nan if v is None else v / 1000.0 for v in cis.get(
                (meta["motif"], meta["critical_interval"]), (None, None)))
            stims.append(StimSource(path=wav, meta={
                "name": wav.stem, **meta, "syntax": "scrambled" if exp == "synth8b" else
                "natural", "song_bird": song_bird.get(meta["motif"]), "ci_onset_s": on,
                "ci_offset_s": off}))
        # motif, then CI (None last), then variant: the peer's order
        stims.sort(key=lambda st: (st.meta["motif"], st.meta["critical_interval"] is None,
                                   str(st.meta["critical_interval"]), st.meta["variant"],
                                   st.meta["name"]))
        stim_index = {s.meta["name"]: i for i, s in enumerate(stims)}
        files = [(p, c) for d, c in RESPONSES[exp] if c in params["cohorts"]
                 for p in sorted((raw_dir / d).glob("*.pprox"))]
        units = parallel_map(read_pprox, [p for p, _ in files], n_jobs=n_jobs,
                             progress=progress, desc=f"{owner}: units")
        neurons, trials = [], {}
        for (path, cohort), unit in zip(files, units):
            meta = self._neuron(unit, cohort, exp, sites, birds, groups, quirks)
            if params["keep_areas"] != "all" and meta["area"] not in params["keep_areas"]:
                continue
            names = [s if c is None else f"{s}_{c}" for s, c in zip(unit.stimuli, unit.conditions)]
            starts = np.concatenate([[0], np.cumsum(unit.lengths)])
            by_stim: dict[int, list[int]] = {}
            for i, name in enumerate(names):
                if name in stim_index:
                    by_stim.setdefault(stim_index[name], []).append(i)
                elif (parse_stim_name(name) or {}).get("experiment", exp) != exp:
                    self._quirk(quirks, "other_experiment_trials",
                                f"{path} has trials of {name}, not a {exp} stimulus")
                else:
                    raise RawDataError(
                        f"{path}: trial {i} plays stimulus {name!r}, which has no wav in "
                        f"{raw_dir / f'{exp}-stimuli'}. The raw folder is incomplete; fetch "
                        "the dataset again (download=True after deleting it).")
            n = len(neurons)
            neurons.append(meta)
            for s, idx in by_stim.items():
                trials[(s, n)] = SpikeTrains(
                    np.concatenate([unit.times_ms[starts[i]:starts[i + 1]] for i in idx]),
                    unit.lengths[idx])
        for kind, examples in self._examples.items():
            warnings.warn(f"{owner}: {quirks[kind]} tolerated {kind.replace('_', ' ')}: "
                          f"{'; '.join(examples)}{'; ...' if quirks[kind] > 3 else ''}.",
                          DataQuirkWarning, stacklevel=4)
        return SpikeRecording(stims=stims, neurons=neurons, trials=trials, quirks=quirks)

    def _neuron(self, unit: Any, cohort: int, exp: str, sites: dict, birds: dict,
                groups: dict, quirks: dict[str, int]) -> dict[str, Any]:
        """A unit's ``nrn_meta``: its file's metadata joined with the three tables."""
        top, stem = unit.metadata, unit.path.stem
        parts = stem.split("_")
        legacy = unit.schema == "legacy"
        animal = top.get("bird") if legacy and top.get("bird") else parts[0]
        bird, site = birds.get(animal), sites.get("_".join(parts[:3]), {})
        if not unit.schema_declared:
            self._quirk(quirks, "pprox_without_schema", f"{unit.path} has no $schema")
        if bird is None or (not legacy and not site):
            self._quirk(quirks, "units_without_metadata", f"{unit.path}: bird {animal!r} or "
                        f"site {'_'.join(parts[:3])!r} is not in the metadata tables")
        bird = bird or {}
        if bird.get("cohort") not in (None, cohort):
            self._quirk(quirks, "cohort_mismatch", f"{unit.path} is in the cohort-{cohort} "
                        f"folder but ephys-birds.csv gives cohort {bird['cohort']}")
        area = (top.get("location") if legacy else site.get("area")) or "unknown"
        group = top.get("familiar") if legacy else bird.get("group")
        return {"cell_id": stem, "animal_id": animal, "animal_uuid": (
                    top.get("bird-uuid") if legacy else top.get("bird")) or bird.get("uuid"),
                "cohort": cohort, "experiment": exp, "area": "unknown" if area == "N/A" else area,
                "hemisphere": (top.get("hemisphere") if legacy else site.get("hemisphere"))
                or None, "site": "_".join(parts[:3]),
                "familiar_motifs": sorted(groups.get(group, ())) if group else [],
                "group": group or None, "sex": bird.get("sex") or top.get("bird-sex") or None,
                "age_days": bird.get("age_days"),
                "pprox_file": f"{unit.path.parent.name}/{unit.path.name}",
                "pprox_schema": unit.schema}

    def _quirk(self, quirks: dict[str, int], kind: str, message: str) -> None:
        """Count a tolerated quirk; one warning per kind is given at the end of the parse."""
        quirks[kind] = quirks.get(kind, 0) + 1
        if quirks[kind] <= 3:
            self._examples.setdefault(kind, []).append(message)
