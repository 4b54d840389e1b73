"""CRCNSAC1Dataset on fixture trees in the release's MATLAB layout (both subsets)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d, median_filter

from deepstrf.datasets.audio._crcns_ac1_read import assemble_sequence, parse_sequence
from deepstrf.datasets.audio.crcns_ac1 import WEHR_VALID_NEURONS, CRCNSAC1Dataset
from deepstrf.errors import DeepSTRFWarning, RawDataError
from deepstrf.io.cache import list_entries
from deepstrf.preprocessing.logspectrogram import SILENCE_DB, log_band_grid
from deepstrf.testing.fixtures import truncate_file
from deepstrf.testing.fixtures.crcns_ac1 import AC1Quirks, write_crcns_ac1
from deepstrf.testing.matfiles import struct_array, write_mat

DT = 5.0
CLEAN = AC1Quirks(False, False, False, False)


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return write_crcns_ac1(tmp_path_factory.mktemp("ac1") / "tree" / "raw", seed=0)


def load(root, **kw):
    """Load recording every warning (quirks warn, and pytest turns ours into errors)."""
    kw.setdefault("cache", "off")
    kw.setdefault("smooth", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CRCNSAC1Dataset(root, **kw)
    ds.caught = [str(w.message) for w in caught if issubclass(w.category, DeepSTRFWarning)]
    return ds


@pytest.fixture(scope="module")
def default(fx):
    return load(fx.root.parent)


def index(ds):
    return ({m["name"]: s for s, m in enumerate(ds.stim_meta)},
            {m["cell_id"]: n for n, m in enumerate(ds.nrn_meta)})


def pool(x, k, T):
    return np.asarray(x[:T * k], dtype=np.float64).reshape(T, k).mean(axis=1)


def window(rep, T):
    k = int(round(rep.sample_rate * DT / 1000))
    return rep.trace_mv[rep.onset:rep.onset + T * k], k


def reference_detrend(trace, sf, med_ms=100.0, gauss_ms=10.0):
    size = int(round(med_ms * sf / 1000))
    size += 1 - size % 2
    return trace - gaussian_filter1d(median_filter(trace, size=size, mode="reflect"),
                                     gauss_ms * sf / 1000, mode="reflect")


# ---------------------------------------------------------------------------- contents
def test_both_subsets_load_with_their_metadata(fx, default):
    ds = default
    stims, cells = index(ds)
    assert set(stims) == {s for s, _ in fx.pairs} and set(cells) == set(fx.cells)
    assert int(ds.nrn_masks.sum()) == len(fx.pairs)
    assert ds.F == 53 and ds.dt == DT
    for cell, truth in fx.cells.items():
        meta = ds.nrn_meta[cells[cell]]
        for key in ("experimenter", "area", "signal_type", "animal_id"):
            assert meta[key] == truth[key], (cell, key)
        assert meta["session"] == cell and meta["species"] == "rat"
    wehr = [m for m in ds.nrn_meta if m["experimenter"] == "wehr"]
    assert [m["_wehr_cell_idx"] for m in wehr] == [1, 2]
    assert all(m["recording_type"] == "whole-cell" for m in wehr)
    mgb = next(m for m in ds.nrn_meta if m["area"] == "MGB")
    assert mgb["recording_type"] == "cell-attached" and mgb["site"] == "MGB"
    seq = ds.stim_meta[stims["asari/class1/2+class1/1+class3/3l"]]
    assert seq["segment_files"] == ["class1/2.mat", "class1/1.mat", "class3/3l.mat"]
    assert seq["class_n"] == [1, 1, 3] and seq["experimenter"] == "asari"
    assert seq["segments"] == [2, 1, 3] and seq["sequence"] == "Sequence 1: 2  1  3"
    frag = ds.stim_meta[stims["wehr/fragments/2"]]
    assert frag["idx"] == 2 and frag["description"] == fx.stims["wehr/fragments/2"]["description"]
    assert frag["category"] == "fragments" and frag["sample_rate"] == 44100.0
    # T: the shorter of stimulus and trigger duration (which the fixture writes equal)
    for name, s in stims.items():
        samples, rate = fx.stims[name]["samples"], fx.stims[name]["rate"]
        duration_ms = samples.size / rate * 1000
        assert ds.stim_meta[s]["n_bins"] == min(math.ceil(duration_ms / DT - 1e-9),
                                                round(duration_ms / DT))
        assert ds.stims[s].shape == (1, 53, ds.stim_meta[s]["n_bins"])
    assert any("mixes membrane potential" in w for w in ds.caught)
    assert len(WEHR_VALID_NEURONS) == 21 and 8 not in WEHR_VALID_NEURONS


def test_pooled_values_equal_a_pooling_of_the_raw_traces(fx):
    ds = load(fx.root.parent, detrend_med_ms=None, gating=False)
    stims, cells = index(ds)
    checked = 0
    for (name, cell), reps in fx.pairs.items():
        rows = ds.responses[stims[name]][cells[cell]].numpy()
        T = ds.stim_meta[stims[name]]["n_bins"]
        assert rows.shape == (len(reps), T), (name, cell)
        for row, rep in zip(rows, reps):
            if rep.spike_ms is not None:
                expected = np.histogram(rep.spike_ms, bins=np.arange(T + 1) * DT)[0]
            else:
                x, k = window(rep, T)
                expected = pool(x, k, T)
            np.testing.assert_allclose(row, expected, atol=2e-4, rtol=0)
            checked += 1
    assert checked == sum(len(r) for r in fx.pairs.values())


def test_detrending_removes_the_drift(fx):
    raw = load(fx.root.parent, detrend_med_ms=None, gating=False)
    ds = load(fx.root.parent, gating=False)
    stims, cells = index(ds)
    n, errors = 0, []
    for (name, cell), reps in fx.pairs.items():
        if reps[0].spike_ms is not None or any(r.corrupted for r in reps):
            continue
        s, c = stims[name], cells[cell]
        T = ds.stim_meta[s]["n_bins"]
        for r, rep in enumerate(reps):
            k = int(round(rep.sample_rate * DT / 1000))
            clean, drift = pool(rep.clean, k, T), pool(rep.drift, k, T)
            got, before = ds.responses[s][c][r].numpy(), raw.responses[s][c][r].numpy()
            err_after, err_before = np.std(got - clean), np.std(before - clean)
            # without detrending the error is the drift (and noise); after, a fraction of it
            assert err_before > 0.8 * np.std(drift)
            assert err_after < err_before, (name, cell, r, err_after, err_before)
            assert np.corrcoef(got, clean)[0, 1] > 0.9
            errors.append((err_after, err_before))
            # and exactly the median-then-Gaussian baseline of the whole trace, subtracted
            x = reference_detrend(rep.trace_mv, rep.sample_rate)[rep.onset:]
            np.testing.assert_allclose(got, pool(x, k, T), atol=2e-4, rtol=0)
            n += 1
    assert n >= 8
    after, before = np.mean(errors, axis=0)
    assert after < 0.25 * before, (after, before)


def test_gating_drops_exactly_the_planted_repeats(fx, default):
    ds = default
    stims, cells = index(ds)
    planted = {(cell, rep.label): rep.corrupted for (name, cell), reps in fx.pairs.items()
               for rep in reps if rep.corrupted}
    assert sorted(planted.values()) == ["artefact", "polarity", "saturation"]
    dropped = {(m["cell_id"], g.split(" ")[1].rstrip(":")) for m in ds.nrn_meta
               for g in m["gated_repeats"]}
    assert dropped == set(planted)
    assert sum(m["n_repeats_gated"] for m in ds.nrn_meta) == 3
    assert any("repeat gating dropped 3 repeat(s)" in w for w in ds.caught)
    for (name, cell), reps in fx.pairs.items():
        if reps[0].spike_ms is not None:
            continue
        kept = fx.kept(name, cell)
        rows = ds.responses[stims[name]][cells[cell]].numpy()
        T = rows.shape[1]
        assert rows.shape[0] == len(kept), (name, cell)
        for row, rep in zip(rows, kept):
            k = int(round(rep.sample_rate * DT / 1000))
            x = reference_detrend(rep.trace_mv, rep.sample_rate)[rep.onset:]
            np.testing.assert_allclose(row, pool(x, k, T), atol=2e-4, rtol=0)
    off = load(fx.root.parent, gating=False)
    assert sum(m["n_repeats_gated"] for m in off.nrn_meta) == 0
    lax = load(fx.root.parent, gating={"max_abs_mv": 500.0, "min_loo_r": None})
    reasons = [g for m in lax.nrn_meta for g in m["gated_repeats"]]
    assert len(reasons) == 1 and "from the median" in reasons[0]


def test_cell_attached_spikes_are_detected_and_binned(fx, default):
    stims, cells = index(default)
    mgb = [c for c, m in fx.cells.items() if m["area"] == "MGB"]
    assert mgb
    total = 0
    for (name, cell), reps in fx.pairs.items():
        if cell not in mgb:
            continue
        rows = default.responses[stims[name]][cells[cell]].numpy()
        T = rows.shape[1]
        for row, rep in zip(rows, reps):
            expected = np.histogram(rep.spike_ms, bins=np.arange(T + 1) * DT)[0]
            np.testing.assert_array_equal(row, expected)
            total += len(rep.spike_ms)
    assert total > 20
    smoothed = load(fx.root.parent, sites="MGB", smooth=True)
    s2, c2 = index(smoothed)
    name = next(n for n, c in fx.pairs if c in mgb)
    a = smoothed.responses[s2[name]][c2[mgb[0]]].numpy()
    b = default.responses[stims[name]][cells[mgb[0]]].numpy()
    assert not np.array_equal(a, b) and abs(a.sum() - b.sum()) < 0.05 * b.sum() + 2


def test_sequences_are_assembled_sample_for_sample(fx):
    root = fx.root / "asari" / "Stimuli"
    for name, stim in fx.stims.items():
        if not name.startswith("asari/"):
            continue
        wave, rate = assemble_sequence(tuple(root / f for f in stim["segment_files"]), 5.0)
        assert rate == 97656.0
        np.testing.assert_array_equal(wave, stim["samples"])
    # the ramp: sin^2 rising from 0 over round(5 ms * sf) samples, mirrored at the end
    seg = fx.root / "asari" / "Stimuli" / "class1" / "1.mat"
    from deepstrf.io.readers import read_mat

    raw = read_mat(seg)["stimulus"]["sample"]
    one, _ = assemble_sequence((seg,), 5.0)
    n = round(0.005 * 97656)
    j = np.arange(n)
    np.testing.assert_allclose(one[:n], (raw[:n] * np.sin(np.pi / 2 * j / n) ** 2), atol=1e-6)
    np.testing.assert_allclose(one[-n:], raw[-n:] * np.sin(np.pi / 2 * j[::-1] / n) ** 2,
                               atol=1e-6)
    np.testing.assert_allclose(one[n:-n], raw[n:-n], atol=1e-6)
    assert parse_sequence("Sequence 1: 2  1  3  1  4") == (2, 1, 3, 1, 4)
    assert parse_sequence("sequence 12:3") == (3,) and parse_sequence("tone 1") is None


def _direct_db(x, sr, f, centre, L):
    """One band, one frame, straight from the definition (loops, zero outside the sound)."""
    w = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(L) / (L - 1))
    acc = 0j
    for n in range(L):
        i = centre - L // 2 + n
        if 0 <= i < len(x):
            acc += w[n] * x[i] * np.exp(-2j * np.pi * f * n / sr)
    return 20 * np.log10(abs(acc) + 1e-12)


def test_spectrogram_matches_the_direct_formula_with_nyquist_handling(fx, default):
    stims, _ = index(default)
    n_bands, top = log_band_grid(100.0, 45000.0, 6)
    assert (n_bands, log_band_grid(100.0, 25600.0, 6)[0]) == (53, 49)
    freqs = 100.0 * 2.0 ** (np.arange(53) / 6)
    assert math.isclose(top, freqs[-1])
    rng = np.random.default_rng(0)
    for name in ("wehr/fragments/1", "asari/class1/1+class3/3l"):
        s = stims[name]
        spec = default.stims[s][0].numpy()
        x, sr = fx.stims[name]["samples"].astype(np.float64), fx.stims[name]["rate"]
        L = round(2 * DT * sr / 1000)
        above = freqs >= sr / 2
        assert default.stim_meta[s]["n_bands_above_nyquist"] == int(above.sum())
        assert np.all(spec[above] == np.float32(SILENCE_DB))
        # 44.1 kHz Wehr stimuli: the 6 bands from 22.6 kHz up are silent; 97656 Hz: none
        assert int(above.sum()) == (6 if name.startswith("wehr") else 0)
        for i in [0, 1, spec.shape[1] - 1, *rng.integers(0, spec.shape[1], 4)]:
            centre = round(i * DT * sr / 1000)
            for k in [0, 17, *np.flatnonzero(~above)[-2:], *rng.integers(0, (~above).sum(), 3)]:
                assert spec[k, i] == pytest.approx(_direct_db(x, sr, freqs[k], centre, L),
                                                   abs=2e-3), (name, i, k)


def test_waveform_mode_keeps_the_grid_lock(fx):
    ds = load(fx.root.parent, return_waveform=True, experimenter="wehr")
    for s, meta in enumerate(ds.stim_meta):
        assert ds.stims[s].shape == (1, meta["n_bins"] * 480)
        assert ds.responses[s][0].shape[-1] in (meta["n_bins"], 1)
    assert ds.audio_fs == 96000


# ---------------------------------------------------------------------------- selection
def test_experimenter_and_site_selection(fx):
    wehr = load(fx.root.parent, experimenter="wehr")
    assert {m["experimenter"] for m in wehr.nrn_meta} == {"wehr"}
    assert all(m["name"].startswith("wehr/") for m in wehr.stim_meta)
    assert not any("mixes" in w for w in wehr.caught)
    mgb = load(fx.root.parent, sites="MGB")
    assert [m["area"] for m in mgb.nrn_meta] == ["MGB"]
    assert {m["signal_type"] for m in mgb.nrn_meta} == {"spikes"}
    a1 = load(fx.root.parent, experimenter="asari", sites="A1")
    assert [m["cell_id"] for m in a1.nrn_meta] == [c for c, m in fx.cells.items()
                                                   if m["experimenter"] == "asari"
                                                   and m["area"] == "A1"]


def test_quirks_are_reported(fx, default):
    joined = " | ".join(default.caught)
    assert "trigger_type_typo" in joined and "nauralsound" in joined
    assert "missing_stimulus_references" in joined and "names position(s) [5]" in joined
    # 'natural', 'natural sound' and the typo are all read: no repeat was lost
    stims, cells = index(default)
    name, cell = "wehr/fragments/1", next(iter(fx.cells))
    assert default.responses[stims[name]][cells[cell]].shape[0] == len(fx.kept(name, cell))


def test_a_truncated_response_is_nan_past_its_end(tmp_path):
    write_crcns_ac1(tmp_path / "t" / "raw", n_wehr_cells=1, n_asari_a1=0, n_asari_mgb=0,
                    corrupt=False, quirks=AC1Quirks(False, False, False, False, True))
    ds = load(tmp_path / "t", experimenter="wehr", gating=False)
    assert any("truncated_responses" in w for w in ds.caught)
    rows = ds.responses[0][0].numpy()
    T = rows.shape[1]
    short = 20  # 100 ms of bins
    assert np.isnan(rows[0, T - short:]).all() and np.isfinite(rows[0, :T - short]).all()
    assert np.isfinite(rows[1:]).all()


def test_cache_hit_is_equal(fx, tmp_path):
    a = load(fx.root.parent, cache="use", experimenter="wehr")
    b = load(fx.root.parent, cache="use", experimenter="wehr")
    assert a.provenance["cache_hit"] is False and b.provenance["cache_hit"] is True
    for s in range(a.get_S()):
        assert a.stims[s].equal(b.stims[s])
        for n in range(a.get_N()):
            assert np.array_equal(a.responses[s][n].numpy(), b.responses[s][n].numpy(),
                                  equal_nan=True)
    assert b.nrn_meta == a.nrn_meta
    assert a.provenance["manifest"]["quirks"]["gated_repeats"] == 3


# ---------------------------------------------------------------------------- bad input
def _small(tmp_path):
    return write_crcns_ac1(tmp_path / "b" / "raw", n_wehr_cells=1, n_wehr_stims=1,
                           n_repeats=2, n_asari_mgb=0, corrupt=False, quirks=CLEAN)


def _no_response(fx):
    path = fx.pairs[("wehr/fragments/1", next(iter(fx.cells)))][0].file
    write_mat(path, {"triggers": struct_array([{"type": "naturalsound", "time": 1.0,
                                                "param": {"description": "x",
                                                          "duration": 10.0}}])}, version="5")
    return path, "no 'response'"


def _past_the_trace(fx):
    rep = fx.pairs[("wehr/fragments/1", next(iter(fx.cells)))][1]
    write_mat(rep.file, {"response": {"trace": np.zeros(100, np.int16), "scale": 0.005,
                                      "sf": 4000.0},
                         "triggers": struct_array([{"type": "naturalsound", "time": 801.0,
                                                    "param": {"description": "fragment 1 "
                                                              "(natural sound)",
                                                              "duration": 100.0}}])},
              version="5")
    return rep.file, "points outside the 100-sample"


def _unknown_description(fx):
    rep = fx.pairs[("wehr/fragments/1", next(iter(fx.cells)))][0]
    write_mat(rep.file, {"response": {"trace": np.zeros(9000, np.int16), "scale": 0.005,
                                      "sf": 4000.0},
                         "triggers": struct_array([{"type": "naturalsound", "time": 801.0,
                                                    "param": {"description": "fragment 99",
                                                              "duration": 100.0}}])},
              version="5")
    return rep.file, "matches no stimulus"


def _bad_sequence(fx):
    asari = next(c for c, m in fx.cells.items() if m["experimenter"] == "asari")
    path = next(r.file for (n, c), reps in fx.pairs.items() if c == asari for r in reps)
    write_mat(path, {"param": {"stimulus": struct_array([{"file": "class1/1.mat"}]),
                               "recording": {"site": "auditory cortex", "type": "whole cell"}},
                     "triggers": struct_array([{"type": "naturalsound", "time": 1.0,
                                                "param": {"description": "chirp 3",
                                                          "duration": 10.0}}]),
                     "response": {"trace": np.zeros(500), "scale": 1.0, "sf": 10000.0}},
              version="5")
    return path, "'chirp 3' is not a stimulus description"


def _truncated_mat(fx):
    path = fx.pairs[("wehr/fragments/1", next(iter(fx.cells)))][0].file
    truncate_file(path, 300)
    return path, "not a readable MATLAB file"


def _truncated_stimulus(fx):
    path = fx.root / "wehr" / "Stimuli" / "fragments" / "1.mat"
    truncate_file(path, 200)
    return path, "not a readable MATLAB file"


def _missing_segment(fx):
    (fx.root / "asari" / "Stimuli" / "class3" / "3l.mat").unlink()
    asari = next(c for c, m in fx.cells.items() if m["experimenter"] == "asari")
    return fx.pairs[next(k for k in fx.pairs if k[1] == asari)][0].file.parent, \
        "names 'class3/3l.mat', which is not under"


@pytest.mark.parametrize("breaker", [_no_response, _past_the_trace, _unknown_description,
                                     _bad_sequence, _truncated_mat, _truncated_stimulus,
                                     _missing_segment])
def test_malformed_files_raise_naming_the_file_and_leave_no_cache(tmp_path, breaker):
    fx = _small(tmp_path)
    path, message = breaker(fx)
    with pytest.raises(RawDataError) as err:
        load(tmp_path / "b", cache="use")
    text = str(err.value)
    assert str(path) in text and message in text, text
    assert not list_entries(tmp_path / "b" / "processed")


@pytest.mark.parametrize("kwargs, match", [
    ({"experimenter": "zador"}, "experimenter"),
    ({"sites": "IC"}, "sites"),
    ({"dt_ms": 0.3}, "whole number of samples of the wehr"),
    ({"dt_ms": 0.25, "experimenter": "asari"}, "asari"),
    ({"gating": "strict"}, "gating must be"),
    ({"gating": {"max_abs": 3}}, "fields are"),
    ({"gating": {"min_loo_r": 2.0}}, "min_loo_r"),
    ({"fmax": 50.0}, "fmax must be above fmin"),
    ({"window_ms": -1.0}, "window_ms"),
    ({"spike_detection": 3}, "spike_detection"),
    ({"detrend_med_ms": -5.0}, "detrend_med_ms"),
    ({"audio_fs": 44100.5, "return_waveform": True}, "audio_fs"),
])
def test_bad_arguments_fail_before_any_io(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CRCNSAC1Dataset(tmp_path / "untouched", **kwargs)
    assert not (tmp_path / "untouched").exists()


# ---------------------------------------------------------------------------- download
def test_download_fetches_and_unpacks_only_what_the_experimenters_need(tmp_path, monkeypatch):
    import deepstrf.io.download as dl
    from deepstrf.testing.http_server import LocalHTTPServer

    fx = write_crcns_ac1(tmp_path / "src", n_wehr_cells=1, n_wehr_stims=1, n_repeats=2,
                         corrupt=False, quirks=CLEAN,
                         archive_dir=tmp_path / "archives")
    payloads = {name: path.read_bytes() for name, path in fx.archives.items()}
    assert sorted(payloads) == ["crcns-ac1-asari-results-1.zip",
                                "crcns-ac1-asari-results-2.zip", "crcns-ac1.zip"]
    with LocalHTTPServer() as server:
        server.add_crcns_user("ada", "s3cret")
        server.add_crcns_dataset("ac-1", payloads)
        monkeypatch.setattr(dl, "CRCNS_LOGIN_URL", server.crcns_login_url)
        monkeypatch.setattr(dl, "CRCNS_DOWNLOAD_URL", server.crcns_download_url)
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        target = tmp_path / "AC1"
        wehr = load(target, experimenter="wehr", download=True, username="ada",
                    password="s3cret")
        assert not server.requests_for("/ac-1/crcns-ac1-asari-results-1.zip")
        assert (target / "raw" / "wehr" / "Results").is_dir()
        assert not (target / "raw" / "asari").exists()   # unpacked: the chosen subset only
        both = load(target, download=True, username="ada", password="s3cret")
        assert server.requests_for("/ac-1/crcns-ac1-asari-results-1.zip")
        raw = CRCNSAC1Dataset.download_raw(tmp_path / "other", experimenter="asari",
                                           username="ada", password="s3cret")
        assert (raw / "asari" / "Stimuli").is_dir() and (raw / "asari-results-2").is_dir()
        assert not (raw / "wehr").exists()
    assert (target / "raw" / "asari-results-1").is_dir()
    reference = load(fx.root)
    assert [m["cell_id"] for m in both.nrn_meta] == [m["cell_id"] for m in reference.nrn_meta]
    for s in range(both.get_S()):
        for n in range(both.get_N()):
            assert np.array_equal(both.responses[s][n].numpy(),
                                  reference.responses[s][n].numpy(), equal_nan=True)
    assert wehr.get_N() == 1


def test_parallel_build_equals_the_serial_one(fx, default):
    par = load(fx.root.parent, n_jobs=2)
    assert par.nrn_meta == default.nrn_meta and par.stim_meta == default.stim_meta
    for s in range(default.get_S()):
        assert par.stims[s].equal(default.stims[s])
        for n in range(default.get_N()):
            assert np.array_equal(par.responses[s][n].numpy(),
                                  default.responses[s][n].numpy(), equal_nan=True)


def test_duplicate_descriptions_and_stray_folders_are_quirks(tmp_path):
    import shutil

    fx = _small(tmp_path)
    src = fx.root / "wehr" / "Stimuli" / "fragments" / "1.mat"
    (fx.root / "wehr" / "Stimuli" / "zcopies").mkdir()
    shutil.copy(src, fx.root / "wehr" / "Stimuli" / "zcopies" / "7.mat")
    (fx.root / "wehr" / "Results" / "notes").mkdir()
    (fx.root / "asari-results-1" / "old_exports").mkdir()
    ds = load(tmp_path / "b")
    joined = " | ".join(ds.caught)
    assert "1 x duplicate_stimulus_descriptions" in joined and "zcopies/7.mat" in joined
    assert joined.count("1 x unrecognised_session_folders") == 2 and "old_exports" in joined
    assert [m["name"] for m in ds.stim_meta if m["experimenter"] == "wehr"] == \
        ["wehr/fragments/1"]


def test_a_session_whose_files_disagree_on_the_site_is_an_error(tmp_path):
    fx = _small(tmp_path)
    asari = next(c for c, m in fx.cells.items() if m["experimenter"] == "asari")
    second = fx.root / "asari-results-1" / asari / "2.mat"
    from deepstrf.io.readers import read_mat

    data = read_mat(second)
    data["param"]["recording"]["site"] = "MGB"
    data["param"]["stimulus"] = struct_array(data["param"]["stimulus"])
    data["triggers"] = struct_array(data["triggers"])
    write_mat(second, data, version="5")
    with pytest.raises(RawDataError, match="one session is one cell") as err:
        load(tmp_path / "b")
    assert str(second) in str(err.value)


@pytest.mark.parametrize("trace_dtype, wehr_rate, above", [("float64", 44100.0, 6),
                                                           ("int16", 97656.0, 0),
                                                           ("int16", 32000.0, 9)])
def test_open_format_questions_trace_dtype_and_wehr_rate(tmp_path, trace_dtype, wehr_rate,
                                                         above):
    """Uncertainty 7: the trace dtype and the Wehr stimulus rate are read, not assumed."""
    fx = write_crcns_ac1(tmp_path / "u" / "raw", n_wehr_cells=1, n_wehr_stims=1, n_repeats=2,
                         n_asari_a1=0, n_asari_mgb=0, corrupt=False, quirks=CLEAN,
                         trace_dtype=trace_dtype, wehr_stim_rate=wehr_rate)
    ds = load(tmp_path / "u", experimenter="wehr", detrend_med_ms=None, gating=False)
    meta = ds.stim_meta[0]
    assert meta["sample_rate"] == wehr_rate and meta["n_bands_above_nyquist"] == above
    freqs = 100.0 * 2.0 ** (np.arange(53) / 6)
    assert above == int((freqs >= wehr_rate / 2).sum())
    (reps,) = fx.pairs.values()
    T = meta["n_bins"]
    for row, rep in zip(ds.responses[0][0].numpy(), reps):
        x, k = window(rep, T)
        np.testing.assert_allclose(row, pool(x, k, T), atol=2e-4, rtol=0)


@pytest.mark.parametrize("under_raw", [False, True])
def test_deepstrf_layout_is_read_in_place(tmp_path, under_raw):
    """deepSTRF 0.1.0 unpacks each zip into a folder named after it: such a folder works too."""
    fx = _small(tmp_path)
    reference = load(tmp_path / "b")
    peer = tmp_path / "peer"
    base = peer / "raw" if under_raw else peer
    for top, moved in (("wehr", "crcns-ac1/wehr"), ("asari", "crcns-ac1/asari"),
                       ("asari-results-1", "crcns-ac1-asari-results-1/asari-results-1"),
                       ("asari-results-2", "crcns-ac1-asari-results-2/asari-results-2")):
        (base / moved).parent.mkdir(parents=True, exist_ok=True)
        (fx.root / top).rename(base / moved)
    ds = load(peer, cache="use")
    assert ds.nrn_meta == reference.nrn_meta and ds.stim_meta == reference.stim_meta
    for s in range(ds.get_S()):
        assert ds.stims[s].equal(reference.stims[s])
    assert not under_raw or (peer / "processed").is_dir()   # its own folder: cache beside it
    assert under_raw or not (peer / "processed").exists()   # read in place: never written
    (base / "crcns-ac1-asari-results-2").rename(tmp_path / "aside")
    with pytest.raises(FileNotFoundError, match="asari-results-2"):
        load(peer, cache="off")
    assert load(peer, experimenter="wehr").get_N() == 1


def _known_drive(spec, kernel):
    """The simulated cell's linear drive, from the loaded spectrogram (the fixture's model)."""
    z = spec - spec.mean(axis=1, keepdims=True)
    z /= z.std()
    out = np.zeros(spec.shape[1])
    for lag in range(kernel.shape[1]):
        out[lag:] += kernel[:, lag] @ z[:, :spec.shape[1] - lag]
    return out


def test_stimuli_and_responses_share_the_grid(fx, default):
    """The known kernel on the loaded spectrogram predicts the loaded response, at lag 0 best."""
    stims, cells = index(default)
    for (name, cell), reps in fx.pairs.items():
        s, c = stims[name], cells[cell]
        pred = _known_drive(default.stims[s][0].numpy().astype(np.float64), fx.kernels[cell])
        resp = np.nanmean(default.responses[s][c].numpy(), axis=0)
        if reps[0].spike_ms is not None:   # spike counts: Poisson-like around a softplus rate
            box = np.ones(5) / 5
            rate = np.convolve(np.log1p(np.exp(3 * pred)), box, "same")
            counts = np.convolve(resp, box, "same")
            r = np.corrcoef(rate, counts)[0, 1]
            assert r > 0.4 and r > np.corrcoef(rate[:-3], counts[3:])[0, 1], (name, cell, r)
            continue
        r = np.corrcoef(pred, resp)[0, 1]
        shifted = max(np.corrcoef(pred[:-1], resp[1:])[0, 1],
                      np.corrcoef(pred[1:], resp[:-1])[0, 1])
        assert r > 0.95 and r > shifted + 0.03, (name, cell, r, shifted)


def test_windows_separators_in_stimulus_paths_are_a_quirk(tmp_path):
    write_crcns_ac1(tmp_path / "w" / "raw", n_wehr_cells=1, n_wehr_stims=1, n_repeats=2,
                    n_asari_mgb=0, corrupt=False,
                    quirks=AC1Quirks(False, False, False, False, windows_paths=True))
    ds = load(tmp_path / "w", experimenter="asari")
    assert any("windows_path_separators" in w and "class1\\\\2.mat" in w for w in ds.caught)
    assert {m["name"] for m in ds.stim_meta} == {
        "asari/class1/2+class1/1+class3/3l", "asari/class1/1+class3/3l",
        "asari/class3/3l+class1/2+class3/3l"}
