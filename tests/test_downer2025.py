"""Downer 2025 on its fixture release: counts from the spike times written, the pulse channel,
splits, selections, the archive read in place, per-session shards (reuse, resume after a kill)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import deepstrf.datasets.audio.downer2025 as downer
from deepstrf.datasets.audio.downer2025 import (
    MVOC_TEST_IDS,
    TIMIT_TEST_IDS,
    Downer2025Dataset,
    Release,
    read_channel,
)
from deepstrf.errors import CacheMissError, DataQuirkWarning, RawDataError
from deepstrf.io.cache import list_entries, read_manifest
from deepstrf.testing.fixtures.downer2025 import write_downer2025

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The fixture release, unpacked and zipped (``<root>/raw/...``)."""
    root = tmp_path_factory.mktemp("downer")
    info = write_downer2025(root / "raw", make_zip=True, seed=2)
    return root, info


def _zip_only(release, tmp_path) -> Path:
    """A dataset folder whose raw/ holds only the zip, as Zenodo serves it."""
    root, info = release
    target = tmp_path / "z" / "raw" / info.zip_path.name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(info.zip_path, target)
    return tmp_path / "z"


def _folder_only(release, tmp_path) -> Path:
    root, info = release
    target = tmp_path / "f" / "raw" / "auditory_cortex_data"
    if not target.exists():
        shutil.copytree(info.root, target)
    return tmp_path / "f"


def _expected(trials_ms, T, dt):
    edges = np.arange(T + 1) * dt
    return np.stack([np.histogram(t, bins=edges)[0] for t in trials_ms]).astype(np.float32)


def _quiet(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQuirkWarning)
        return Downer2025Dataset(**kwargs)


@pytest.mark.parametrize("stimuli", ["timit", "mvocs"])
def test_every_pair_equals_counts_from_the_spike_times_written(release, tmp_path, stimuli):
    info = release[1]
    ds = _quiet(path=_zip_only(release, tmp_path), stimuli=stimuli, smooth=False)
    truth = info.pairs(stimuli)
    stims = {m["name"]: s for s, m in enumerate(ds.stim_meta)}
    cells = {m["cell_id"]: n for n, m in enumerate(ds.nrn_meta)}
    assert {c.cell_id for c in info.channels} == set(cells)
    assert {k for k, _ in truth} == set(stims)
    for (name, cell), trials in truth.items():
        s, n = stims[name], cells[cell]
        T = ds.stim_meta[s]["n_bins"]
        assert T == round(info.stim_length_s(stimuli, name) * 1000 / 5.0)
        np.testing.assert_array_equal(ds.responses[s][n].numpy(), _expected(trials, T, 5.0))
    # the last vocalisation is in the play list but no session played it: no stimulus at all;
    # every other (stim, channel) pair was recorded
    assert int(ds.nrn_masks.sum()) == len(truth) == len(stims) * len(cells)
    if stimuli == "timit":
        test = [m for m in ds.stim_meta if m["stim_id"] in TIMIT_TEST_IDS]
        assert test and all(ds.responses[stims[m["name"]]][0].shape[0] == 11 for m in test)


def test_metadata(release, tmp_path):
    info = release[1]
    ds = _quiet(path=_zip_only(release, tmp_path), smooth=False)
    by_id = {m["cell_id"]: m for m in ds.nrn_meta}
    m = by_id["b_180413_Ch10s2"] if "b_180413_Ch10s2" in by_id else by_id["b_180501_Ch10s2"]
    assert m["channel"] == 10 and m["channel_suffix"] == "s2"
    m = by_id["b_180501_Ch5p"]
    assert m == {"cell_id": "b_180501_Ch5p", "session_id": "180501", "animal_id": "b",
                 "hemisphere": "RH", "area_group": "core", "area": "R", "channel": 5,
                 "channel_suffix": "p", "n_channels_in_session": 4,
                 "coord_x": info.metadata["180501"]["coord"][0],
                 "coord_y": info.metadata["180501"]["coord"][1],
                 "recording_type": "multi-unit"}
    assert by_id["c_190604_Ch1"]["area"] == "A1" and by_id["b_180413_Ch1"]["area"] == "AL"
    sent = {t["name"]: t for t in info.timit}
    for meta in ds.stim_meta:
        t = sent[meta["name"]]
        assert meta["type"] == "timit" and meta["stim_id"] == t["sent_id"]
        assert meta["duration_s"] == pytest.approx(t["duration_s"])
        assert meta["n_samples"] == len(t["speech"]) and meta["befaft_s"] == [0.5, 0.5]
        assert meta["split"] == ("test" if t["test"] else "estimation")
        assert meta["n_reps_canonical"] == (11 if t["test"] else 1)
    # befaft trimmed: the waveform mode stim is the speech itself, from the onset
    wf = _quiet(path=_zip_only(release, tmp_path), smooth=False, return_waveform=True,
                cache="off")
    s = next(i for i, m in enumerate(wf.stim_meta) if m["name"] == info.timit[0]["name"])
    speech = info.timit[0]["speech"].astype(np.float32)
    got = wf.stims[s].numpy()[0]
    np.testing.assert_allclose(got[:len(speech)], speech, atol=1e-6)


def test_pulse_channel_never_reaches_a_stimulus(release, tmp_path):
    info = release[1]
    rate = info.wav_rate
    ds = _quiet(path=_zip_only(release, tmp_path), stimuli="mvocs", smooth=False,
                return_waveform=True, audio_fs=rate, cache="off")
    assert ds.get_S() == len(info.mvocs) - 1  # the last voc was played by no session
    pulses = info.wav[:, 1] != 0
    assert pulses.any()
    for s, meta in enumerate(ds.stim_meta):
        voc = next(v for v in info.mvocs if v["name"] == meta["name"])
        lo = int(round(voc["onset_s"] * rate))
        n = meta["n_samples"]
        assert pulses[lo:lo + n].any()  # the pulse sits right at the onset
        channel0 = info.wav[lo:lo + n, 0].astype(np.float32) / 32768
        got = ds.stims[s].numpy()[0][:n]
        np.testing.assert_array_equal(got, channel0)
        assert meta["n_reps_in_wav"] == voc["n_in_wav"]
        assert meta["split"] == ("test" if voc["voc_id"] in MVOC_TEST_IDS else "estimation")
        assert meta["duration_s"] == pytest.approx(voc["length_s"], abs=1 / rate)
    # and the spectrogram mode uses the same samples: equal to the front end on channel 0
    from deepstrf.preprocessing.kaldi import kaldi_spectrogram

    spec = _quiet(path=_zip_only(release, tmp_path), stimuli="mvocs", smooth=False,
                  spec_zscore=False, cache="off")
    meta = spec.stim_meta[0]
    voc = next(v for v in info.mvocs if v["name"] == meta["name"])
    lo = int(round(voc["onset_s"] * rate))
    wave0 = info.wav[lo:lo + meta["n_samples"], 0].astype(np.float32) / 32768
    params = spec._front_end.spectrogram
    want = kaldi_spectrogram(wave0, rate, params)[:, :meta["n_bins"]]
    np.testing.assert_allclose(spec.stims[0].numpy()[0], want, rtol=1e-5, atol=1e-4)


def test_spectrogram_front_end_zscore_and_grid(release, tmp_path):
    ds = _quiet(path=_zip_only(release, tmp_path), smooth=False)
    assert ds.F == 80
    for s in range(ds.get_S()):
        x = ds.stims[s].numpy()[0]
        assert x.shape == (80, ds.stim_meta[s]["n_bins"])
        np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-4)
        np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-3)
    raw = _quiet(path=_zip_only(release, tmp_path), smooth=False, spec_zscore=False,
                 dt_ms=20.0, cache="off")
    assert raw.stims[0].shape[-1] == raw.stim_meta[0]["n_bins"]
    assert float(raw.stims[0].max()) > 5  # Kaldi log energies on the int16 scale


def test_splits_and_selections(release, tmp_path):
    path = _zip_only(release, tmp_path)
    every = _quiet(path=path, smooth=False)
    test = _quiet(path=path, smooth=False, subset="test")
    est = _quiet(path=path, smooth=False, subset="estimation")
    assert {m["stim_id"] for m in test.stim_meta} == {12}
    assert {m["stim_id"] for m in est.stim_meta} == \
        {m["stim_id"] for m in every.stim_meta} - {12}
    voc_test = _quiet(path=path, stimuli="mvocs", smooth=False, subset="test")
    assert {m["stim_id"] for m in voc_test.stim_meta} == {7}
    assert {m["session_id"] for m in _quiet(path=path, animals=["c"]).nrn_meta} == {"190604"}
    assert {m["session_id"] for m in _quiet(path=path, areas=["core"]).nrn_meta} == \
        {"180501", "190604"}
    assert {m["session_id"] for m in _quiet(path=path, areas="primary").nrn_meta} == \
        {"180501", "190604"}
    assert {m["area"] for m in _quiet(path=path, areas=["AL", "A1"]).nrn_meta} == {"AL", "A1"}
    one = _quiet(path=path, sessions=["180501"])
    assert {m["cell_id"] for m in one.nrn_meta} == \
        {"b_180501_Ch1", "b_180501_Ch2", "b_180501_Ch5p", "b_180501_Ch10s2"}
    with pytest.raises(ValueError, match="not in the release"):
        _quiet(path=path, sessions=["200101"])


def test_smoothing_on_by_default(release, tmp_path):
    path = _zip_only(release, tmp_path)
    raw, smooth = _quiet(path=path, smooth=False), _quiet(path=path)
    a, b = raw.responses[0][0].numpy(), smooth.responses[0][0].numpy()
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a.sum(), b.sum(), rtol=0.05)


def test_zip_in_place_equals_unpacked_folder(release, tmp_path):
    z = _quiet(path=_zip_only(release, tmp_path), smooth=False)
    f = _quiet(path=_folder_only(release, tmp_path), smooth=False)
    assert z.provenance["manifest"]["digest"]["all"] == f.provenance["manifest"]["digest"]["all"]
    assert not (tmp_path / "z" / "raw" / "auditory_cortex_data").exists()  # never unpacked


@pytest.mark.parametrize("stimuli", ["timit", "mvocs"])
def test_files_resaved_as_matlab_v73_read_the_same(tmp_path, stimuli):
    small = dict(sessions=(("180413", "b", "RH", "non-primary", "AL"),
                           ("180501", "b", "RH", "primary", "A1")),
                 n_channels=(2, 1), n_timit=3, n_vocs=2, no_trialinfo=("180501",), seed=4)
    write_downer2025(tmp_path / "v5" / "raw", **small)
    v73 = write_downer2025(tmp_path / "v73" / "raw", mat_version="7.3", **small)
    head = (v73.root / "sessions" / "180413" / v73.channels[0].path.name).read_bytes()[512:520]
    assert head == b"\x89HDF\r\n\x1a\n"     # really HDF5 files
    a = _quiet(path=tmp_path / "v5", stimuli=stimuli, smooth=False)
    b = _quiet(path=tmp_path / "v73", stimuli=stimuli, smooth=False)
    assert a.stim_meta == b.stim_meta and a.nrn_meta == b.nrn_meta
    for s in range(a.get_S()):
        assert torch.equal(a.stims[s], b.stims[s])
        for n in range(a.N_neurons):
            assert torch.equal(a.responses[s][n].nan_to_num(-1), b.responses[s][n].nan_to_num(-1))


def test_fast_channel_reader_equals_scipy_and_skips_the_waveforms(release):
    import tracemalloc

    from scipy.io import loadmat

    info = release[1]
    rel = Release.locate(info.zip_path.parent)
    assert rel.is_zip is False  # the unpacked folder wins when both are there
    rel = Release(str(info.zip_path), True, "auditory_cortex_data/")
    with rel.reader() as reader:
        for ch in info.channels[:3]:
            name = f"sessions/{ch.session}/{ch.path.name}"
            spk, trial = read_channel(reader, name)
            np.testing.assert_array_equal(spk, ch.spktimes)
            ref = loadmat(str(ch.path), squeeze_me=True, struct_as_record=False)
            np.testing.assert_array_equal(trial["stimon"], ref["trial"].stimon)
            np.testing.assert_array_equal(trial["timit"], ref["trial"].timitStimcode)
    # a channel with a large waveform matrix: reading it never holds the matrix
    big = write_downer2025(Path(info.root).parent.parent / "big", sessions=(
        ("180413", "b", "RH", "non-primary", "AL"),), n_channels=1, n_timit=2, n_vocs=2,
        waveform_samples=4000, seed=5)
    ch = big.channels[0]
    events_bytes = len(ch.spktimes) * 4000 * 8
    rel = Release.locate(big.root)
    with rel.reader() as reader:
        tracemalloc.start()
        spk, _ = read_channel(reader, f"sessions/{ch.session}/{ch.path.name}")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    np.testing.assert_array_equal(spk, ch.spktimes)
    assert events_bytes > 10 * 2**20 and peak < events_bytes / 5, (peak, events_bytes)


# ---------------------------------------------------------------------------- shards
def _shards(processed: Path) -> dict[str, dict]:
    return {m["shard"]: m for _, m in list_entries(processed)
            if m is not None and m.get("kind") == "shard"}


def test_a_selection_then_the_whole_release_reuses_its_shards(release, tmp_path):
    path = _zip_only(release, tmp_path)
    two = _quiet(path=path, sessions=["180413", "180501"], smooth=False)
    assert two.shard_report.built == ["session 180413 timit", "session 180501 timit"]
    every = _quiet(path=path, smooth=False)
    assert every.shard_report.reused == ["session 180413 timit", "session 180501 timit"]
    assert every.shard_report.built == ["session 190604 timit"]
    shards = _shards(path / "processed")
    assert set(shards) == {"stimuli timit", "session 180413 timit", "session 180501 timit",
                           "session 190604 timit"}
    assert [s["reused"] for s in every.provenance["manifest"]["shards"]] == \
        [True, True, True, False]
    # the composition equals a build from scratch
    scratch = _quiet(path=path, smooth=False, cache="off")
    for s in range(every.get_S()):
        for n in range(every.N_neurons):
            np.testing.assert_array_equal(every.responses[s][n].numpy(),
                                          scratch.responses[s][n].numpy())
    # another bin width is another set of shards; the stimuli shard is per front end too
    _quiet(path=path, sessions=["180413"], smooth=False, dt_ms=10.0)
    shard_entries = [m["shard"] for _, m in list_entries(path / "processed")
                     if m is not None and m.get("kind") == "shard"]
    assert sorted(shard_entries) == sorted(["stimuli timit"] * 2 + ["session 180413 timit"] * 2
                                           + ["session 180501 timit", "session 190604 timit"])


def test_a_changed_session_rebuilds_only_its_shard(release, tmp_path):
    path = _folder_only(release, tmp_path)
    first = _quiet(path=path, smooth=False)
    ch = path / "raw" / "auditory_cortex_data" / "sessions" / "180501" / "b_180501_Ch2_MUspk.mat"
    os.utime(ch, (1, 1))  # size and time change only: a new fingerprint
    with ch.open("ab") as f:
        f.write(b"\0" * 8)
    again = _quiet(path=path, smooth=False)
    assert again.provenance["cache_hit"] is False
    assert again.shard_report.built == ["session 180501 timit"]
    assert sorted(again.shard_report.reused) == ["session 180413 timit", "session 190604 timit"]
    assert first.provenance["manifest"]["key"] != again.provenance["manifest"]["key"]


def test_an_interrupted_build_resumes_at_the_first_missing_shard(release, tmp_path,
                                                                 monkeypatch):
    path = _zip_only(release, tmp_path)
    real = downer._build_session
    calls = []

    def failing(task, n_jobs=1):
        calls.append(task["nrn_meta"][0]["session_id"])
        if len(calls) == 3:
            raise RuntimeError("injected failure in the third session")
        return real(task, n_jobs)

    monkeypatch.setattr(downer, "_build_session", failing)
    with pytest.raises(RuntimeError, match="injected"):
        _quiet(path=path, smooth=False)
    assert calls == ["180413", "180501", "190604"]
    assert set(_shards(path / "processed")) == {"stimuli timit", "session 180413 timit",
                                                 "session 180501 timit"}
    assert not [p for p, m in list_entries(path / "processed") if m and "kind" not in m]
    monkeypatch.setattr(downer, "_build_session", real)
    ds = _quiet(path=path, smooth=False)
    assert ds.shard_report.reused == ["session 180413 timit", "session 180501 timit"]
    assert ds.shard_report.built == ["session 190604 timit"]


def test_a_killed_build_keeps_its_finished_shards(release, tmp_path):
    """The build process is killed (SIGKILL, no cleanup) while building the third session."""
    path = _zip_only(release, tmp_path)
    script = textwrap.dedent(f"""
        import os, signal, warnings
        warnings.simplefilter("ignore")
        import deepstrf.datasets.audio.downer2025 as downer
        real, calls = downer._build_session, []
        def killing(task, n_jobs=1):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(task, n_jobs)
        downer._build_session = killing
        downer.Downer2025Dataset({str(path)!r}, smooth=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert set(_shards(path / "processed")) == {"stimuli timit", "session 180413 timit",
                                                 "session 180501 timit"}
    ds = _quiet(path=path, smooth=False)
    assert ds.shard_report.built == ["session 190604 timit"]
    assert ds.N_neurons == len(release[1].channels)


def test_readonly_and_off(release, tmp_path):
    path = _zip_only(release, tmp_path)
    with pytest.raises(CacheMissError):
        _quiet(path=path, cache="readonly")
    _quiet(path=path, cache="off")
    assert not (path / "processed").exists() or not list_entries(path / "processed")
    with pytest.raises(CacheMissError):
        _quiet(path=path, cache="readonly")


def test_parallel_build_equals_serial(release, tmp_path):
    path = _zip_only(release, tmp_path)
    serial = _quiet(path=path, smooth=False, cache="off")
    parallel = _quiet(path=path, smooth=False, n_jobs=2)
    assert parallel.shard_report.built == ["session 180413 timit", "session 180501 timit",
                                           "session 190604 timit"]
    for s in range(serial.get_S()):
        assert serial.stims[s].equal(parallel.stims[s])
        for n in range(serial.N_neurons):
            np.testing.assert_array_equal(serial.responses[s][n].numpy(),
                                          parallel.responses[s][n].numpy())


def test_cache_ls_shows_the_shards(release, tmp_path, capsys):
    from deepstrf.cli import main

    path = _zip_only(release, tmp_path)
    _quiet(path=path, sessions=["180413"], smooth=False)
    assert main(["cache", "ls", "downer2025", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "shard" in out and "session 180413 timit" in out and "stimuli timit" in out


# ---------------------------------------------------------------------------- quirks, errors
def test_quirks_are_warned_and_recorded(release, tmp_path):
    path = _zip_only(release, tmp_path)
    with pytest.warns(DataQuirkWarning, match="no TRIALINFO"):
        ds = Downer2025Dataset(path, smooth=False)
    assert ds.provenance["manifest"]["quirks"] == {"sessions_without_trialinfo": 1}


def test_a_damaged_channel_file_names_it_and_leaves_no_entry(release, tmp_path):
    path = _folder_only(release, tmp_path)
    bad = path / "raw" / "auditory_cortex_data" / "sessions" / "180501" / "b_180501_Ch2_MUspk.mat"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(RawDataError, match="b_180501_Ch2_MUspk.mat"):
        _quiet(path=path, smooth=False)
    assert not [m for _, m in list_entries(path / "processed")
                if m is not None and m.get("kind") != "shard"]
    assert "session 180501 timit" not in _shards(path / "processed")


def test_a_metadata_file_without_its_keys_is_refused(release, tmp_path):
    path = _folder_only(release, tmp_path)
    (path / "raw" / "auditory_cortex_data" / "sessions_metadata.yml").write_text("a: 1\n")
    with pytest.raises(RawDataError, match="sessions_metadata.yml"):
        _quiet(path=path)


@pytest.mark.parametrize("kwargs", [{"stimuli": "dmr"}, {"subset": "train"},
                                    {"animals": ["z"]}, {"areas": ["V1"]},
                                    {"sessions": ["1804"]}, {"dt_ms": 25.0}, {"n_bands": 0},
                                    {"fmax": 9000.0}, {"spec_zscore": "yes"},
                                    {"n_bands": 40, "n_mels": 64}])
def test_bad_arguments_fail_before_any_io(tmp_path, kwargs):
    with pytest.raises((ValueError, TypeError)):
        Downer2025Dataset(tmp_path / "untouched", **kwargs)
    assert not (tmp_path / "untouched").exists()


def test_manifest_of_a_shard_is_readable(release, tmp_path):
    path = _zip_only(release, tmp_path)
    ds = _quiet(path=path, sessions=["180413"])
    entry = path / "processed" / ds.provenance["manifest"]["shards"][1]["key"]
    manifest = read_manifest(entry)
    assert manifest["kind"] == "shard" and manifest["shard"] == "session 180413 timit"
    assert manifest["raw_fingerprint"]["n_files"] == 4  # 3 channels and TRIALINFO


def test_a_truncated_zip_is_named(release, tmp_path):
    path = _zip_only(release, tmp_path)
    archive = path / "raw" / "auditory_cortex_data.zip"
    archive.write_bytes(archive.read_bytes()[:4096])
    with pytest.raises(RawDataError, match="auditory_cortex_data.zip"):
        _quiet(path=path)
