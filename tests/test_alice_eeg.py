"""AliceEEGDataset on the fixture tree of deepstrf.testing.fixtures.alice, and on the real files."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile

mne = pytest.importorskip("mne")

from deepstrf.datasets.audio.alice_eeg import (  # noqa: E402
    AliceEEGDataset,
    read_word_table,
    segment_bins,
)
from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError  # noqa: E402
from deepstrf.preprocessing.eeg import EEGParams, EEGSubjectTask, preprocess_subject  # noqa: E402
from deepstrf.testing.fixtures._common import write_wav  # noqa: E402
from deepstrf.testing.fixtures.alice import (  # noqa: E402
    ALICE_EEG_CHANNELS,
    ALICE_SEGMENT_DURATIONS_S,
    AliceSubjectPlan,
    alice_pooled_truth,
    write_alice_eeg,
)

REAL = Path("/work/shared/realdata/alice")
SUBJECTS = ("S01", "S26")
DURATION_FACTOR = 40.0  # segments of 1.2-1.7 s
POOL = {"method": "pool", "hp_freq_hz": None}


def _build(root, **kwargs):
    """Construct, collecting the quirk warnings (the S26 missing segment)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQuirkWarning)
        ds = AliceEEGDataset(root, **kwargs)
    return ds, [str(w.message) for w in caught if issubclass(w.category, DataQuirkWarning)]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """S01 (first_samp 1234, bad channels '7' and '40') and S26 (no segment 1, bad '7' kept good)."""
    root = tmp_path_factory.mktemp("alice") / "data"
    fx = write_alice_eeg(root / "raw", subjects=SUBJECTS, segment_durations_s=DURATION_FACTOR,
                         first_samp={"S01": 1234, "S26": 0}, seed=3)
    return root, fx


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
    """Both modes, default parameters, built once (cached, so the build record is kept)."""
    root, _ = tree
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPSTRF_DATA_DIR", str(tmp_path_factory.mktemp("home")))
        neurons, msgs = _build(root, cache="rebuild")
        repeats, _ = _build(root, cache="rebuild", treat_subjects_as="repeats")
    return neurons, repeats, msgs


def _index(ds):
    return ({m["name"]: s for s, m in enumerate(ds.stim_meta)},
            {m["cell_id"]: n for n, m in enumerate(ds.nrn_meta)})


def test_responses_equal_the_preprocessed_samples(tree, built):
    """Every (segment, channel) equals preprocess_subject run on the file alone."""
    root, fx = tree
    ds, _, _ = built
    stims, cells = _index(ds)
    assert len(ds.nrn_meta) == 2 * 61 and ds.get_S() == 12
    for subject, record in fx.subjects.items():
        bins = {str(s): segment_bins(fx.segments[s].wav, 10.0) for s in range(1, 13)}
        expected = preprocess_subject(EEGSubjectTask(record.path, bins, EEGParams()))
        assert expected.first_samp == record.first_samp
        for label, block in expected.segments.items():
            s = stims[f"{label}.wav"]
            assert ds.stim_meta[s]["n_bins"] == bins[label] == block.shape[1]
            for row, channel in enumerate(expected.ch_names):
                got = ds.responses[s][cells[f"{subject}_{channel}"]].numpy()
                np.testing.assert_array_equal(got, block[row:row + 1])


def test_pooled_values_equal_block_means_of_the_written_samples(tree):
    """No filter, pooling: bin k is the mean of the 5 samples from the onset (first_samp 1234)."""
    root, fx = tree
    ds, _ = _build(root, cache="off", **POOL)
    truth = alice_pooled_truth(fx, 10.0)
    stims, cells = _index(ds)
    assert int(ds.nrn_masks.sum()) == len(truth) == (12 + 11) * 61
    for (stim, cell), rows in truth.items():
        np.testing.assert_allclose(ds.responses[stims[stim]][cells[cell]].numpy(), rows,
                                   rtol=1e-5, atol=1e-12)
    # one value by hand: S01 channel '3', segment 2, bin 4
    rec = fx.subjects["S01"]
    start = math.floor(rec.onsets_s[2] * 500 + 0.5)
    by_hand = rec.eeg[rec.row("3"), start + 20:start + 25].mean()
    assert ds.responses[stims["2.wav"]][cells["S01_3"]][0, 4].item() == \
        pytest.approx(by_hand, rel=1e-6)


def test_missing_segment_is_a_sentinel_and_is_counted(tree, built):
    _, fx = tree
    ds, _, msgs = built
    assert fx.subjects["S26"].segments == tuple(range(2, 13))
    stims, cells = _index(ds)
    s1 = stims["1.wav"]
    for channel in ALICE_EEG_CHANNELS:
        r = ds.responses[s1][cells[f"S26_{channel}"]]
        assert tuple(r.shape) == (1, 1) and bool(r.isnan().all())
        assert bool(ds.nrn_masks[s1, cells[f"S26_{channel}"]]) is False
        assert bool(ds.nrn_masks[s1, cells[f"S01_{channel}"]]) is True
    assert bool(ds.nrn_masks[stims["2.wav"], cells["S26_1"]]) is True
    assert any("S26_alice-raw.fif" in m and "'1'" in m for m in msgs)
    manifest = ds.provenance["manifest"]
    assert manifest["quirks"] == {"missing_segment": 1}
    sources = {src["subject"]: src for src in manifest["sources"]}
    assert sources["S26"]["missing_segments"] == [1] and sources["S01"]["first_samp"] == 1234


def test_bad_channels_are_nan_for_their_subject_only(tree, built):
    _, fx = tree
    ds, _, _ = built
    stims, cells = _index(ds)
    bads = {s: set(r.bads) for s, r in fx.subjects.items()}
    assert bads["S01"] and bads["S26"]
    for subject, chans in bads.items():
        other = next(o for o in SUBJECTS if o != subject)
        for channel in chans:
            n = cells[f"{subject}_{channel}"]
            assert ds.nrn_meta[n]["bad"] is True
            for s in range(12):
                if ds.nrn_masks[s, n]:
                    assert bool(ds.responses[s][n].isnan().all())
            if channel not in bads[other]:
                assert not bool(ds.responses[stims["3.wav"]][cells[f"{other}_{channel}"]]
                                .isnan().any())
    good = cells["S01_" + next(c for c in ALICE_EEG_CHANNELS if c not in bads["S01"])]
    assert ds.nrn_meta[good]["bad"] is False


def test_metadata_units_and_positions(tree, built):
    _, fx = tree
    ds, _, _ = built
    meta = ds.nrn_meta[0]
    assert meta == {**meta, "cell_id": "S01_1", "channel_id": "1", "subject": "S01",
                    "area": "EEG", "unit": "V"}
    # channels by name, in numeric order ('29' is stored last in the files)
    assert [m["channel_id"] for m in ds.nrn_meta[:61]] == list(ALICE_EEG_CHANNELS)
    raw = mne.io.read_raw_fif(fx.subjects["S01"].path, verbose="error")
    head = raw.get_montage().get_positions()["ch_pos"]
    for m in ds.nrn_meta[:61]:
        assert m["xyz"] == pytest.approx(list(head[m["channel_id"]]), abs=1e-9)
    assert set(fx.montage_channels) >= {m["channel_id"] for m in ds.nrn_meta}
    assert [m["name"] for m in ds.stim_meta] == [f"{s}.wav" for s in range(1, 13)]
    for m in ds.stim_meta:
        seg = fx.segments[m["segment"]]
        assert m["type"] == "alice_chapter1" and m["sample_rate"] == 44100.0
        assert m["n_samples"] == seg.n_audio_samples
        assert m["n_bins"] == math.ceil(seg.n_audio_samples / 441 - 1e-9)
    assert ds.F == 8 and tuple(ds.stims[0].shape) == (1, 8, ds.stim_meta[0]["n_bins"])


def test_repeats_mode_puts_subjects_on_the_repeat_axis(built):
    neurons, ds, _ = built
    assert len(ds.nrn_meta) == 61 and ds.get_S() == 12
    n_stims, n_cells = _index(neurons)
    stims, cells = _index(ds)
    for s_meta in ds.stim_meta:
        assert s_meta["subjects"] == list(SUBJECTS)
    for channel in ("1", "7", "29", "61"):
        n = cells[channel]
        assert ds.nrn_meta[n]["subject"] is None and ds.nrn_meta[n]["unit"] == "V"
        for name, s in stims.items():
            rows = ds.responses[s][n].numpy()
            assert rows.shape == (2, ds.stim_meta[s]["n_bins"])
            for r, subject in enumerate(SUBJECTS):
                k = n_cells[f"{subject}_{channel}"]
                if neurons.nrn_masks[n_stims[name], k]:
                    np.testing.assert_array_equal(
                        rows[r], neurons.responses[n_stims[name]][k].numpy()[0])
                else:  # S26 on segment 1
                    assert (subject, name) == ("S26", "1.wav") and np.isnan(rows[r]).all()
    bad_subjects = {m["channel_id"]: m["bad_subjects"] for m in ds.nrn_meta}
    for subject in SUBJECTS:
        for channel in neurons.nrn_meta:
            if channel["subject"] == subject and channel["bad"]:
                assert subject in bad_subjects[channel["channel_id"]]


def test_second_construction_is_a_cache_hit(tree):
    root, _ = tree
    first, _ = _build(root, **POOL)
    again, msgs = _build(root, **POOL)
    assert first.provenance["cache_hit"] is False and again.provenance["cache_hit"] is True
    assert again.provenance["manifest"]["key"] == first.provenance["manifest"]["key"]
    assert msgs == []  # nothing rebuilt, nothing re-warned
    for s in range(12):
        assert again.stims[s].equal(first.stims[s])
        for n in (0, 70, 121):
            np.testing.assert_array_equal(again.responses[s][n].numpy(),
                                          first.responses[s][n].numpy())
    params = again.provenance["manifest"]["parameters"]
    assert params["eeg"] == {"dt_ms": 10.0, "hp_freq_hz": None, "lp_freq_hz": None,
                             "reference": None, "method": "pool"}
    assert params["mne_version"] == mne.__version__
    other, _ = _build(root, method="pool", hp_freq_hz=2.0)
    assert other.provenance["cache_hit"] is False


def test_sharded_layout_and_subject_selection(tmp_path):
    fx = write_alice_eeg(tmp_path / "raw", subjects=("S01", "S03"), layout="sharded",
                         segment_durations_s=DURATION_FACTOR, seed=5)
    assert (tmp_path / "raw" / "eeg.0" / "eeg" / "S01").is_dir()
    ds, msgs = _build(tmp_path, cache="off", subjects="S03", **POOL)
    assert msgs == [] and {m["subject"] for m in ds.nrn_meta} == {"S03"}
    truth = {k: v for k, v in alice_pooled_truth(fx).items() if k[1].startswith("S03_")}
    stims, cells = _index(ds)
    for (stim, cell), rows in truth.items():
        np.testing.assert_allclose(ds.responses[stims[stim]][cells[cell]].numpy(), rows,
                                   rtol=1e-5, atol=1e-12)


def test_segment_past_the_recording_end_is_nan(tmp_path):
    durations = {s: round(d / DURATION_FACTOR, 3) for s, d in ALICE_SEGMENT_DURATIONS_S.items()}
    onsets, t = {}, 1.0
    for s in range(1, 13):
        onsets[s] = t
        t += durations[s] + 0.05
    n_samples = int((onsets[12] + durations[12] / 2) * 500)  # stops half-way into segment 12
    plan = AliceSubjectPlan(segments=tuple(range(1, 13)), onsets_s=onsets, bads=("5",),
                            n_samples=n_samples)
    fx = write_alice_eeg(tmp_path / "raw", subjects=("S01",), plans={"S01": plan},
                         segment_durations_s=DURATION_FACTOR)
    ds, msgs = _build(tmp_path, **POOL)
    stims, cells = _index(ds)
    row = ds.responses[stims["12.wav"]][cells["S01_1"]].numpy()[0]
    start = math.floor(onsets[12] * 500 + 0.5)
    n_in = (n_samples - start) // 5  # whole bins inside the recording
    assert np.isfinite(row[:n_in]).all() and np.isnan(row[n_in:]).all()
    np.testing.assert_allclose(row, alice_pooled_truth(fx)[("12.wav", "S01_1")][0],
                               rtol=1e-5, atol=1e-12)
    assert ds.provenance["manifest"]["quirks"] == {"segment_past_end": 1}
    assert any("'12'" in m and "past the end" in m for m in msgs)


@pytest.mark.parametrize("kwargs, match", [
    ({"subjects": "S1"}, "subjects must be names like 'S01'"),
    ({"subjects": 3}, "subjects must be None"),
    ({"treat_subjects_as": "channels"}, "treat_subjects_as must be one of"),
    ({"method": "pool", "dt_ms": 5.0}, "multiple of 2 ms"),
    ({"method": "smooth"}, "method must be one of"),
    ({"hp_freq_hz": 300.0}, "Nyquist"),
    ({"hp_freq_hz": 40.0, "lp_freq_hz": 10.0}, "below lp_freq_hz"),
    ({"n_bands": 0}, "n_bands"),
])
def test_bad_arguments_fail_before_any_io(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AliceEEGDataset(tmp_path / "untouched", **kwargs)
    assert not (tmp_path / "untouched").exists() and not (tmp_path / "home").exists()


def _entries(root):
    processed = root / "processed"
    return sorted(p.name for p in processed.iterdir()) if processed.is_dir() else []


def _small_tree(root, **kwargs):
    return write_alice_eeg(root / "raw", subjects=("S01",), segment_durations_s=DURATION_FACTOR,
                           **kwargs)


def test_unknown_subject_is_an_error_without_a_cache_entry(tmp_path):
    _small_tree(tmp_path)
    with pytest.raises(ValueError, match=r"subjects \['S02'\] are not in .*found \['S01'\]"):
        AliceEEGDataset(tmp_path, subjects=["S01", "S02"], **POOL)
    assert not [e for e in _entries(tmp_path) if not e.startswith(".")]


def test_wav_with_the_wrong_rate_names_the_file(tmp_path):
    _small_tree(tmp_path)
    wav = tmp_path / "raw" / "stimuli" / "5.wav"
    write_wav(wav, np.zeros(22050, dtype=np.int16), 22050)
    with pytest.raises(RawDataError, match=r"5\.wav: sample rate 22050 Hz"):
        AliceEEGDataset(tmp_path, **POOL)
    assert not [e for e in _entries(tmp_path) if not e.startswith(".")]


def test_truncated_fif_names_the_file(tmp_path):
    fx = _small_tree(tmp_path)
    path = fx.subjects["S01"].path
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(RawDataError, match="S01_alice-raw.fif: truncated FIF file"):
        AliceEEGDataset(tmp_path, **POOL)
    assert not [e for e in _entries(tmp_path) if not e.startswith(".")]


def test_missing_wav_and_missing_eeg(tmp_path):
    fx = _small_tree(tmp_path)
    fx.segments[3].wav.unlink()
    with pytest.raises(MissingRawDataError, match=r"3\.wav: no such file"):
        AliceEEGDataset(tmp_path, **POOL)
    empty = tmp_path / "other"
    (empty / "raw" / "stimuli").mkdir(parents=True)
    (empty / "raw" / "eeg").mkdir()
    with pytest.raises(MissingRawDataError):
        AliceEEGDataset(empty, **POOL)


def test_a_subject_in_both_layouts_is_refused(tmp_path):
    fx = _small_tree(tmp_path)
    copy = tmp_path / "raw" / "eeg.0" / "eeg" / "S01" / "S01_alice-raw.fif"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(fx.subjects["S01"].path.read_bytes())
    with pytest.raises(RawDataError, match="subject S01 is in .* and in .*eeg.0"):
        AliceEEGDataset(tmp_path, **POOL)


# --- the real files ----------------------------------------------------------

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="/work/shared/realdata/alice absent")


@needs_real
def test_real_segment_12_wav_is_read_in_place():
    from deepstrf.datasets.audio._spikes_audio import WavStim, make_front_end

    wav = REAL / "DownTheRabbitHoleFinal_SoundFile12.wav"
    assert segment_bins(wav, 10.0) == math.ceil(2071953 / 441) == 4699
    front = make_front_end(dt_ms=10.0, smooth=False, n_bands=8, compression="log1p",
                           window_ms=25.0, return_waveform=False, audio_fs=44100)
    stim, facts = WavStim(wav, {"name": "12.wav"}, expected_sr=44100,
                          n_bins=4699).render(front.prepare({44100.0}), 4699)
    assert stim.shape == (1, 8, 4699) and np.isfinite(stim).all() and stim.std() > 0
    assert facts["n_samples"] == 2071953 and facts["duration_s"] == pytest.approx(46.983,
                                                                                  abs=1e-3)


@needs_real
def test_real_word_table_is_read_in_place():
    table = read_word_table(REAL / "AliceChapterOne-EEG.csv")
    assert sorted(table) == list(range(1, 13))
    assert sum(len(t["Word"]) for t in table.values()) == 2129
    for segment, t in table.items():
        onsets = np.asarray(t["onset"])
        assert (np.diff(onsets) >= 0).all() and onsets[0] >= 0
        # every word starts inside its segment's sound
        assert onsets[-1] < {1: 57.541, 2: 60.845, 3: 63.259, 4: 69.989, 5: 66.273,
                             6: 63.778, 7: 62.897, 8: 57.311, 9: 57.226, 10: 61.27,
                             11: 56.17, 12: 46.983}[segment]
    assert table[1]["Word"][0] == "Alice"


def test_fixture_word_table_round_trips(tree):
    _, fx = tree
    table = read_word_table(fx.word_table)
    for s, seg in fx.segments.items():
        if seg.words:
            np.testing.assert_array_equal(table[s]["onset"], seg.word_onsets_s())
            np.testing.assert_array_equal(table[s]["NGRAM"], seg.word_values("NGRAM"))


# --- download ------------------------------------------------------------------

PUBLISHED_MD5 = {"stimuli.zip": "4336a47bef7d3e63239c40c0623dc186",
                 "eeg.0.zip": "d63d96a6e5080578dbf71320ddbec0a0",
                 "eeg.1.zip": "bdc65f168db4c0f19bb0fed20eae129b",
                 "eeg.2.zip": "3fb33ca1c4640c863a71bddd45006815"}


def test_remote_files_carry_the_published_md5s():
    files = {f.name: f for f in AliceEEGDataset.remote_files}
    assert {n: f.md5 for n, f in files.items()} == PUBLISHED_MD5
    assert all(f.url.startswith("https://drum.lib.umd.edu/bitstreams/") for f in files.values())


def _serve_zips(tmp_path, monkeypatch, server, md5=None):
    import hashlib

    from deepstrf.io.download import RemoteFile
    from deepstrf.testing.fixtures.alice import write_alice_zips

    # one subject in each eeg.N.zip (11 per archive, in the listed order)
    fx = write_alice_eeg(tmp_path / "src", subjects=("S01", "S26", "S37"),
                         segment_durations_s=DURATION_FACTOR, seed=9)
    zips = write_alice_zips(fx, tmp_path / "zips")
    files = []
    for name, path in zips.items():
        data = path.read_bytes()
        server.add_file(f"/bitstreams/{name}", data)
        digest = hashlib.md5(data).hexdigest() if md5 is None else md5
        files.append(RemoteFile(name, url=server.url_for(f"/bitstreams/{name}"), md5=digest))
    monkeypatch.setattr(AliceEEGDataset, "remote_files", tuple(files))
    return fx


def test_download_unpacks_the_four_zips_into_one_tree_and_loads(tmp_path, monkeypatch):
    from deepstrf.testing import LocalHTTPServer

    with LocalHTTPServer() as server:
        fx = _serve_zips(tmp_path, monkeypatch, server)
        ds, msgs = _build(tmp_path / "home_ds", download=True, **POOL)
    raw = tmp_path / "home_ds" / "raw"
    assert (raw / "eeg" / "S01" / "S01_alice-raw.fif").is_file()
    assert (raw / "eeg" / "S26" / "S26_alice-raw.fif").is_file()
    assert (raw / "eeg" / "S37" / "S37_alice-raw.fif").is_file()
    assert any("S26" in m for m in msgs)
    assert (raw / "stimuli" / "12.wav").is_file()
    truth = alice_pooled_truth(fx)
    stims, cells = _index(ds)
    assert int(ds.nrn_masks.sum()) == len(truth)
    for (stim, cell), rows in list(truth.items())[::37]:
        np.testing.assert_allclose(ds.responses[stims[stim]][cells[cell]].numpy(), rows,
                                   rtol=1e-5, atol=1e-12)


def test_download_with_a_wrong_md5_is_refused(tmp_path, monkeypatch):
    """A served file whose MD5 is not the published one is not used (no tree, no cache)."""
    from deepstrf.errors import ChecksumError
    from deepstrf.io.download import RemoteFile
    from deepstrf.testing import LocalHTTPServer

    with LocalHTTPServer() as server:
        files = []
        for name, md5 in PUBLISHED_MD5.items():
            server.add_file(f"/bitstreams/{name}", b"PK not the release's bytes")
            files.append(RemoteFile(name, url=server.url_for(f"/bitstreams/{name}"), md5=md5))
        monkeypatch.setattr(AliceEEGDataset, "remote_files", tuple(files))
        with pytest.raises(ChecksumError, match=r"(stimuli|eeg\.\d)\.zip"):
            AliceEEGDataset(tmp_path / "home_ds", download=True, **POOL)
    raw = tmp_path / "home_ds" / "raw"
    assert not (raw / "eeg").exists() and not (raw / "stimuli").exists()
    assert not [e for e in _entries(tmp_path / "home_ds") if not e.startswith(".")]


# --- BAD_ spans, waveform mode, workers, metrics ---------------------------------

def test_bad_annotation_spans_are_nan(tmp_path):
    fx = _small_tree(tmp_path)
    rec = fx.subjects["S01"]
    raw = mne.io.read_raw_fif(rec.path, preload=True, verbose="error")
    onset3 = rec.onsets_s[3]
    # orig_time of the file's annotations: onsets on the recording clock
    raw.annotations.append(onset3 + 0.5 + raw.first_samp / 500.0, 0.2, "BAD_muscle")
    raw.save(rec.path, overwrite=True, verbose="error")
    ds, _ = _build(tmp_path, cache="off", **POOL)
    stims, cells = _index(ds)
    row = ds.responses[stims["3.wav"]][cells["S01_1"]].numpy()[0]
    nan_bins = np.flatnonzero(np.isnan(row))
    # bins of 10 ms touching [0.5, 0.7) s after the onset (the onset rounds to a 2 ms sample)
    assert nan_bins.min() in (49, 50) and nan_bins.max() in (69, 70)
    assert np.array_equal(nan_bins, np.arange(nan_bins.min(), nan_bins.max() + 1))
    truth = alice_pooled_truth(fx)[("3.wav", "S01_1")][0]
    keep = np.ones(row.size, bool)
    keep[nan_bins] = False
    np.testing.assert_allclose(row[keep], truth[keep], rtol=1e-5, atol=1e-12)
    # the other segments are untouched
    np.testing.assert_allclose(ds.responses[stims["4.wav"]][cells["S01_1"]].numpy(),
                               alice_pooled_truth(fx)[("4.wav", "S01_1")], rtol=1e-5,
                               atol=1e-12)


def test_waveform_mode_keeps_the_grid(tree):
    root, fx = tree
    ds, _ = _build(root, cache="off", return_waveform=True, audio_fs=44100, **POOL)
    for s, meta in enumerate(ds.stim_meta):
        T = meta["n_bins"]
        assert tuple(ds.stims[s].shape) == (1, T * 441)
        assert ds.responses[s][0].shape[-1] == T
        seg = fx.segments[meta["segment"]]
        wave, _ = soundfile.read(seg.wav, dtype="float32")
        np.testing.assert_allclose(ds.stims[s][0, :wave.size].numpy(), wave, atol=1e-6)


def test_results_do_not_depend_on_n_jobs(tree, built):
    root, _ = tree
    one = built[0]  # n_jobs=1, default filter
    two, _ = _build(root, cache="off", n_jobs=2)
    for s in range(12):
        for n in range(len(one.nrn_meta)):
            np.testing.assert_array_equal(one.responses[s][n].numpy(),
                                          two.responses[s][n].numpy())


def test_metrics_and_collate_work_on_the_eeg(built):
    """neural_collate batches and corrcoef on repeats-mode EEG, against numpy on the valid bins."""
    import torch
    from torch.utils.data import DataLoader

    from deepstrf.metrics import corrcoef
    from deepstrf.utils.data import neural_collate

    _, ds, _ = built
    preds, resps = [], []
    for batch in DataLoader(ds, batch_size=5, collate_fn=neural_collate):
        y = batch["responses"]
        assert y.dtype == torch.float32 and y.shape[2] == 2
        preds.append(torch.nan_to_num(y[:, :, :1], nan=0.0))  # subject S01 predicts the PSTH
        resps.append(y)
    cc = torch.cat([corrcoef(p, y, reduction="none")[None] for p, y in
                    zip(preds, resps)])  # per batch, to exercise the NaN handling
    assert cc.shape == (len(preds), 61)
    pred = np.concatenate([p.numpy()[:, :, 0].transpose(1, 0, 2).reshape(61, -1)
                           for p in preds[:1]], axis=1)
    y = resps[0].numpy()
    good = [n for n, m in enumerate(ds.nrn_meta) if not m["bad_subjects"]]
    assert good
    for n in good[:10]:
        rows = y[:, n]                                   # (B, 2, T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            psth = np.nanmean(rows, axis=1).ravel()
        p = pred[n]
        ok = np.isfinite(psth)
        expected = np.corrcoef(p[ok], psth[ok])[0, 1]
        assert cc[0, n].item() == pytest.approx(expected, abs=1e-4)
