"""Tests of the NEMS0 recording reader (deepstrf.io.nems) and its fixture writer."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepstrf.errors import DataQuirkWarning, MissingRawDataError, RawDataError
from deepstrf.io import nems
from deepstrf.io.nems import NemsFormatError
from deepstrf.testing.fixtures import nems as fx

REC = "TST015a"
FS_POP = 100
FS_SPK = 1000
#: presentation sequence: stim name per trial (val stim 'v' repeated, est stims once)
SEQUENCE = ["v.wav", "e1.wav", "v.wav", "e2.wav", "v.wav"]
PRE, SOUND, POST = 0.25, 1.0, 0.25
TRIAL_S = PRE + SOUND + POST


def _trials(gap_s: float = 0.0) -> list[fx.Trial]:
    return [fx.Trial(stim, i * (TRIAL_S + gap_s), PRE, SOUND, POST)
            for i, stim in enumerate(SEQUENCE)]


class Mini:
    """A miniature recording with one signal of each type and its truth."""

    def __init__(self, tmp_path: Path, *, seed: int = 0, wrapper: str | None = None,
                 name: str = "rec.tgz") -> None:
        rng = np.random.default_rng(seed)
        self.trials = _trials()
        self.rows = fx.trial_epochs(self.trials)
        n_pop = round(len(SEQUENCE) * TRIAL_S * FS_POP)
        self.pop = rng.poisson(1.5, (n_pop, 3)).astype(np.float64) * 0.125
        self.pop[rng.random(self.pop.shape) < 0.05] = np.nan
        self.pop[:, 2] = np.nan  # a cell without data, as in the NAT4 population file
        self.pop_chans = ["TST015a-01-1", "TST015a-02-1", "TST015a-02-2"]
        n_spk = round(len(SEQUENCE) * TRIAL_S * FS_SPK)
        # chans deliberately not in alphabetical order: the sidecar's order must win
        self.spk_chans = ["TST015a-09-1", "TST015a-01-2"]
        self.counts = {c: rng.poisson(0.2, n_spk) for c in self.spk_chans}
        self.spikes = {c: fx.spikes_from_counts(self.counts[c], FS_SPK, 0.0, rng, on_edge=0.5)
                       for c in self.spk_chans}
        self.tiles = {f"STIM_{s}": rng.random((4, round(TRIAL_S * FS_POP)))
                      for s in dict.fromkeys(SEQUENCE)}
        self.meta = {"siteid": REC, "rasterfs": FS_POP, "stimfmt": "ozgf",
                     "cellid": np.array(self.pop_chans)}
        self.signals = {
            "resp": fx.PointProcessSpec(self.spikes, FS_SPK, self.rows, chans=self.spk_chans),
            "pop": fx.RasterSpec(self.pop, FS_POP, self.rows, chans=self.pop_chans,
                                 meta={"unit": "count"}),
            "stim": fx.TiledSpec(self.tiles, FS_POP, self.rows),
        }
        self.path = fx.write_nems_recording(tmp_path / name, REC, self.meta, self.signals,
                                            wrapper=wrapper)


@pytest.fixture
def mini(tmp_path: Path) -> Mini:
    return Mini(tmp_path)


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

def test_meta_and_listing(mini: Mini) -> None:
    rec = nems.read_recording(mini.path)
    assert rec.name == REC
    assert rec.archive == str(mini.path)
    assert rec.available == ("resp", "pop", "stim")
    assert rec.meta["siteid"] == REC and rec.meta["rasterfs"] == FS_POP
    np.testing.assert_array_equal(rec.meta["cellid"], np.array(mini.pop_chans))
    assert rec.quirks == {}


def test_rasterized_round_trip_keeps_nan(mini: Mini) -> None:
    pop = nems.read_recording(mini.path)["pop"]
    assert isinstance(pop, nems.RasterizedSignal)
    assert pop.values.dtype == np.float64 and pop.values.shape == mini.pop.shape
    np.testing.assert_array_equal(pop.values, mini.pop)  # NaN where NaN, values exact
    assert np.isnan(pop.values[:, 2]).all()
    assert pop.chans == tuple(mini.pop_chans) and pop.fs == 100.0
    assert pop.sidecar.segments.tolist() == [[0, mini.pop.shape[0]]]
    assert pop.sidecar.meta == {"unit": "count"}
    assert pop.sidecar.signal_type == "RasterizedSignal"
    assert not pop.values.flags.writeable
    small = nems.read_recording(mini.path, signals="pop", dtype=np.float32)["pop"]
    assert small.values.dtype == np.float32
    np.testing.assert_array_equal(small.values, mini.pop.astype(np.float32))


def test_epoch_table_round_trip(mini: Mini) -> None:
    epochs = nems.read_recording(mini.path).epochs["resp"]
    assert len(epochs) == len(mini.rows)
    assert list(zip(epochs.start.tolist(), epochs.end.tolist(), epochs.name)) == mini.rows
    assert epochs.names("STIM_") == ("STIM_v.wav", "STIM_e1.wav", "STIM_e2.wav")
    assert epochs.counts("STIM_") == {"STIM_v.wav": 3, "STIM_e1.wav": 1, "STIM_e2.wav": 1}
    np.testing.assert_array_equal(epochs.occurrences("STIM_v.wav"),
                                  [[0.0, 1.5], [3.0, 4.5], [6.0, 7.5]])
    np.testing.assert_array_equal(epochs.occurrence_samples("STIM_v.wav", FS_SPK),
                                  [[0, 1500], [3000, 4500], [6000, 7500]])
    assert epochs.occurrences("STIM_absent").shape == (0, 2)


def test_point_process_round_trip(mini: Mini) -> None:
    resp = nems.read_recording(mini.path, signals=["resp"])["resp"]
    assert isinstance(resp, nems.PointProcess)
    assert resp.chans == tuple(mini.spk_chans)
    assert list(resp.spike_times) == mini.spk_chans  # sidecar order, not HDF5's alphabetical
    for chan in mini.spk_chans:
        np.testing.assert_array_equal(resp.spike_times[chan], mini.spikes[chan])
        assert resp.spike_times[chan].dtype == np.float64
    assert resp.sidecar.segments.tolist() == [[0, 7500]]


def test_tiled_round_trip(mini: Mini) -> None:
    stim = nems.read_recording(mini.path, signals=["stim"])["stim"]
    assert isinstance(stim, nems.TiledSignal)
    assert list(stim.tiles) == sorted(mini.tiles)
    for key, array in mini.tiles.items():
        np.testing.assert_array_equal(stim.tiles[key], array)
    assert stim.chans is None


def test_point_process_counts_recomputed_from_written_spikes(mini: Mini) -> None:
    resp = nems.read_recording(mini.path, signals="resp")["resp"]
    bounds = resp.occurrence_samples("STIM_v.wav")
    native = resp.rasterize(bounds)
    pooled = resp.rasterize(bounds, bin_samples=10)
    assert native.shape == (3, 2, 1500) and pooled.shape == (3, 2, 150)
    for c, chan in enumerate(mini.spk_chans):
        for r, (a, b) in enumerate(bounds):
            truth = mini.counts[chan][a:b]
            np.testing.assert_array_equal(native[r, c], truth)
            np.testing.assert_array_equal(pooled[r, c], truth.reshape(150, 10).sum(axis=1))
    # the writer put spikes on edges where a plain float floor goes wrong
    t = np.concatenate(list(mini.spikes.values()))
    assert (np.floor(t * FS_SPK) != nems.spike_samples(t, FS_SPK)).sum() >= 3
    # every spike written lies in some trial, and all are counted exactly once
    everything = resp.rasterize(np.array([[0, 7500]]))
    for c, chan in enumerate(mini.spk_chans):
        assert everything[0, c].sum() == mini.spikes[chan].size
        np.testing.assert_array_equal(everything[0, c], mini.counts[chan])


def test_raster_extract_epoch(mini: Mini) -> None:
    pop = nems.read_recording(mini.path, signals="pop")["pop"]
    block = pop.extract_epoch("STIM_v.wav")
    assert block.shape == (3, 3, 150)
    for r, start in enumerate([0, 300, 600]):
        np.testing.assert_array_equal(block[r], mini.pop[start:start + 150].T)
    uneven = pop.extract(np.array([[10, 20], [100, 105]]))
    np.testing.assert_array_equal(uneven[1, :, :5], mini.pop[100:105].T)
    assert np.isnan(uneven[1, :, 5:]).all()


def test_small_shapes_and_quoted_names(tmp_path: Path) -> None:
    rows = [(0.0, 0.05, 'STIM_a, "quoted".wav'), (0.05, 0.1, "STIM_b.wav")]
    path = fx.write_nems_recording(tmp_path / "s.tgz", "SML001a", {}, {
        "one": fx.RasterSpec(np.arange(10.0).reshape(10, 1), 100, rows, chans=["c"]),
        "none": fx.RasterSpec(np.zeros((0, 2)), 100, [], chans=["a", "b"], segments=[[0, 0]]),
        "flat": fx.PointProcessSpec({"c": np.array([[0.01], [0.02]])}, 100, rows)})
    rec = nems.read_recording(path)
    np.testing.assert_array_equal(rec["one"].values, np.arange(10.0).reshape(10, 1))
    assert rec["none"].values.shape == (0, 2) and len(rec["none"].epochs) == 0
    assert rec["one"].epochs.name == ('STIM_a, "quoted".wav', "STIM_b.wav")
    np.testing.assert_array_equal(rec["flat"].spike_times["c"], [0.01, 0.02])
    np.testing.assert_array_equal(rec["one"].extract_epoch('STIM_a, "quoted".wav')[0, 0],
                                  np.arange(5.0))


def test_multi_segment_rows(tmp_path: Path) -> None:
    # Two stored pieces of the time line: samples [0, 30) and [50, 80) of the recording.
    values = np.arange(60 * 2, dtype=np.float64).reshape(60, 2)
    rows = [(0.0, 0.3, "A"), (0.5, 0.8, "B")]
    path = fx.write_nems_recording(tmp_path / "seg.tgz", "SEG001a", {}, {
        "resp": fx.RasterSpec(values, 100, rows, chans=["a", "b"], segments=[[0, 30], [50, 80]])})
    sig = nems.read_recording(path)["resp"]
    np.testing.assert_array_equal(sig.extract_epoch("B")[0], values[30:60].T)
    np.testing.assert_array_equal(sig.extract_epoch("A")[0], values[0:30].T)
    np.testing.assert_array_equal(sig.extract(np.array([[55, 60]]))[0], values[35:40].T)
    with pytest.raises(ValueError, match=r"samples \[25, 55\] are not inside one stored segment"):
        sig.extract(np.array([[25, 55]]))


@pytest.mark.parametrize("wrapper", ["", "some_other_folder", "a/b"])
def test_any_wrapper_folder(tmp_path: Path, mini: Mini, wrapper: str) -> None:
    other = Mini(tmp_path / "w", wrapper=wrapper)
    a, b = nems.read_recording(mini.path), nems.read_recording(other.path)
    assert a.available == b.available
    np.testing.assert_array_equal(a["pop"].values, b["pop"].values)


def test_extracted_folder(tmp_path: Path, mini: Mini) -> None:
    with tarfile.open(mini.path) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    for folder in (tmp_path / "x", tmp_path / "x" / REC):
        rec = nems.read_recording(folder)
        assert rec.available == ("pop", "resp", "stim")  # files in name order
        np.testing.assert_array_equal(rec["resp"].spike_times[mini.spk_chans[0]],
                                      mini.spikes[mini.spk_chans[0]])


def test_signal_selection_and_headers_only(mini: Mini) -> None:
    rec = nems.read_recording(mini.path, signals=["resp"])
    assert list(rec.signals) == ["resp"] and "pop" not in rec
    with pytest.raises(KeyError, match="'pop' was not read.*in the archive: resp, pop, stim"):
        rec["pop"]
    heads = nems.read_recording(mini.path, load_data=False)
    assert heads.signals == {}
    assert heads.sidecars["resp"].chans == tuple(mini.spk_chans)
    assert heads.sidecars["pop"].n_samples == 750
    assert len(heads.epochs["stim"]) == len(mini.rows)
    with pytest.raises(NemsFormatError, match="no signal 'pupil'; the archive holds resp, pop"):
        nems.read_recording(mini.path, signals=["pupil"])


def test_argument_errors(tmp_path: Path, mini: Mini) -> None:
    with pytest.raises(MissingRawDataError, match="does not exist"):
        nems.read_recording(tmp_path / "absent.tgz")
    with pytest.raises(ValueError, match="signals must be None"):
        nems.read_recording(mini.path, signals=[])
    with pytest.raises(ValueError, match="dtype must be a floating type"):
        nems.read_recording(mini.path, dtype=np.int32)


# ---------------------------------------------------------------------------
# Nested archives
# ---------------------------------------------------------------------------

def _two_sites(tmp_path: Path) -> tuple[Mini, Mini]:
    return (Mini(tmp_path / "s1", seed=1, name=f"A1_{REC}_{fx.hex_id(REC)}.tgz"),
            Mini(tmp_path / "s2", seed=2, name=f"A1_TST016b_{fx.hex_id('TST016b')}.tgz"))


def test_zip_of_recordings(tmp_path: Path) -> None:
    one, two = _two_sites(tmp_path)
    names = [f"A1_single_sites/{one.path.name}", f"A1_single_sites/{two.path.name}"]
    container = fx.write_container_zip(tmp_path / "A1_single_sites.zip",
                                       dict(zip(names, [one.path, two.path])))
    assert nems.list_recordings(container) == names
    seen = list(nems.iter_recordings(container, signals="resp"))
    assert [name for name, _ in seen] == names
    for (name, rec), truth in zip(seen, (one, two)):
        assert rec.archive == f"{container} > {name}"
        for chan in truth.spk_chans:
            np.testing.assert_array_equal(rec["resp"].spike_times[chan], truth.spikes[chan])
    direct = nems.read_recording(container, member=names[1], signals=["pop"])
    np.testing.assert_array_equal(direct["pop"].values, two.pop)
    _expect(container, None, "is a zip of recordings, not a recording; pass member=")
    only = list(nems.iter_recordings(container, members=[names[1]], load_data=False))
    assert [n for n, _ in only] == [names[1]]


def test_tgz_of_recordings(tmp_path: Path) -> None:
    one, two = _two_sites(tmp_path)
    names = [f"A1_natural_sounds/NAT/{one.path.name}", f"A1_natural_sounds/NAT/{two.path.name}"]
    container = fx.write_container_tgz(tmp_path / "A1_natural_sounds.tgz",
                                       dict(zip(names, [one.path, two.path])))
    with tarfile.open(container) as tf:
        assert tf.getnames()[:2] == ["A1_natural_sounds", "A1_natural_sounds/NAT"]
    assert nems.list_recordings(container) == names
    recs = dict(nems.iter_recordings(container))
    np.testing.assert_array_equal(recs[names[0]]["pop"].values, one.pop)
    np.testing.assert_array_equal(recs[names[1]]["stim"].tiles["STIM_v.wav"],
                                  two.tiles["STIM_v.wav"])
    direct = nems.read_recording(container, member=names[0], signals="resp")
    assert direct.archive == f"{container} > {names[0]}"
    _expect(container, None, "It holds recording archives .'A1_natural_sounds/NAT/A1_TST015a")
    with pytest.raises(MissingRawDataError, match="holds no recording 'nope.tgz'"):
        nems.read_recording(container, member="nope.tgz")
    with pytest.raises(MissingRawDataError, match="'nope.tgz'"):
        list(nems.iter_recordings(container, members=["nope.tgz"]))


def test_folder_of_recordings(tmp_path: Path) -> None:
    one, two = _two_sites(tmp_path)
    folder = tmp_path / "recordings"
    folder.mkdir()
    for m in (one, two):
        (folder / m.path.name).write_bytes(m.path.read_bytes())
    assert nems.list_recordings(folder) == sorted([one.path.name, two.path.name])
    recs = dict(nems.iter_recordings(folder, signals="resp"))
    assert set(recs) == {one.path.name, two.path.name}


def test_nested_read_streams_members(tmp_path: Path) -> None:
    """A skipped member of an inner archive never sits in memory whole, nor the archives."""
    rng = np.random.default_rng(5)
    rows = [(0.0, 20.0, "STIM_x.wav")]
    big = rng.random((2000, 200))  # ~10 MB of %.18e text, incompressible digits
    spikes = {"c1": np.array([0.5, 1.25])}
    inner = fx.write_nems_recording(tmp_path / "big.tgz", "BIG001a", {}, {
        "pupil": fx.RasterSpec(big, 100, rows),
        "resp": fx.PointProcessSpec(spikes, 100, rows)})
    container = fx.write_container_tgz(tmp_path / "outer.tgz", {"sites/big.tgz": inner})
    big_bytes = 2000 * 200 * 25
    assert inner.stat().st_size > big_bytes // 4
    tracemalloc.start()
    try:
        rec = nems.read_recording(container, member="sites/big.tgz", signals=["resp"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(rec["resp"].spike_times["c1"], [0.5, 1.25])
    assert peak < big_bytes // 8, f"peak {peak} bytes for a {big_bytes}-byte skipped member"


# ---------------------------------------------------------------------------
# NEMS arithmetic
# ---------------------------------------------------------------------------

def test_seconds_to_samples_rounds_like_nems() -> None:
    # numpy rounds half to even, as SignalBase.get_epoch_bounds does
    assert nems.seconds_to_samples([0.005, 0.015, 0.025, 1.5, 888.75], 100).tolist() == \
        [0, 2, 2, 150, 88875]
    assert nems.seconds_to_samples(0.29, 100).item() == 29
    with pytest.raises(ValueError, match="finite"):
        nems.seconds_to_samples([np.nan], 100)


def test_floor_rule_on_bin_edges() -> None:
    fs = 100.0
    # Edge times as a sorter/baphy would store them: start + k/fs in float.
    k = np.arange(1, 20000)
    edges = k / fs
    naive = np.floor(edges * fs).astype(np.int64)
    assert (naive != k).any(), "the test needs edges where the float floor goes wrong"
    np.testing.assert_array_equal(nems.spike_samples(edges, fs), k)
    # just inside the bin before an edge stays there
    np.testing.assert_array_equal(nems.spike_samples(edges - 1e-7, fs), k - 1)
    np.testing.assert_array_equal(nems.spike_samples([0.29, 0.2899, 700.29], fs),
                                  [29, 28, 70029])


def test_rasterize_occurrences_edges_and_bounds() -> None:
    fs = 1000.0
    start = 3.0  # occurrence at samples [3000, 4500)
    bounds = np.array([[3000, 4500]])
    times = np.array([
        start,              # first sample: counted in bin 0
        start + 0.236,      # edge of 1 ms bin 236; the float product lands below it
        start + 0.009999,   # inside 10 ms bin 0
        start + 0.01,       # edge of 10 ms bin 1
        start + 1.5,        # the occurrence's end: excluded
        start - 1e-6,       # before it: excluded
    ])
    assert np.floor(times[1] * fs) - 3000 == 235, "naive floor must fail on this edge"
    native = nems.rasterize_occurrences(times, bounds, fs)
    assert native.shape == (1, 1500) and native.dtype == np.float32
    expected = np.zeros(1500)
    expected[[0, 236, 9, 10]] += 1
    np.testing.assert_array_equal(native[0], expected)
    pooled = nems.rasterize_occurrences(times, bounds, fs, bin_samples=10)
    np.testing.assert_array_equal(pooled[0], expected.reshape(150, 10).sum(axis=1))
    assert pooled[0, 0] == 2 and pooled[0, 1] == 1 and pooled[0, 23] == 1
    rel, lengths = nems.occurrence_spike_times(times, bounds, fs)
    assert lengths.tolist() == [4]
    assert rel[0] == 0.0 and rel[2] == 10.0 and rel[3] == 236.0
    assert rel[1] == pytest.approx(9.999, abs=1e-9)


def test_rasterize_occurrences_padding_and_errors() -> None:
    counts = nems.rasterize_occurrences([0.0051, 0.105], np.array([[0, 20], [10, 20]]), 100.0)
    np.testing.assert_array_equal(counts[0], np.eye(20)[0] + np.eye(20)[10])
    np.testing.assert_array_equal(counts[1, :10], np.eye(10)[0])
    assert np.isnan(counts[1, 10:]).all()
    with pytest.raises(ValueError, match="not a multiple of bin_samples=3"):
        nems.rasterize_occurrences([0.0], np.array([[0, 20]]), 100.0, bin_samples=3)
    with pytest.raises(ValueError, match=r"\(R, 2\)"):
        nems.rasterize_occurrences([0.0], np.array([0, 20]), 100.0)


def test_stim_occurrences(mini: Mini) -> None:
    occ = nems.read_recording(mini.path, signals="resp")["resp"].stim_occurrences()
    assert [(o.name, o.repeat, o.start, o.end) for o in occ] == [
        ("STIM_v.wav", 0, 0, 1500), ("STIM_e1.wav", 0, 1500, 3000), ("STIM_v.wav", 1, 3000, 4500),
        ("STIM_e2.wav", 0, 4500, 6000), ("STIM_v.wav", 2, 6000, 7500)]
    assert {(o.pre_samples, o.post_samples, o.n_samples) for o in occ} == {(250, 250, 1500)}
    bare = nems.EpochTable(start=np.array([0.0, 2.0]), end=np.array([2.0, 4.0]),
                           name=("STIM_seq0001.wav", "STIM_seq0002.wav"))
    assert [(o.pre_samples, o.post_samples) for o in nems.stim_occurrences(bare, 100)] == \
        [(0, 0), (0, 0)]
    clash = nems.EpochTable(start=np.array([0.0, 0.0, 0.0]), end=np.array([2.0, 0.5, 1.0]),
                            name=("STIM_a", "PreStimSilence", "PreStimSilence"), archive="x.tgz",
                            member="x/x.resp.epoch.csv")
    with pytest.raises(NemsFormatError, match="silences of different lengths") as err:
        nems.stim_occurrences(clash, 100)
    assert err.value.member == "x/x.resp.epoch.csv"


# ---------------------------------------------------------------------------
# Malformed pieces: each error names the archive and the member
# ---------------------------------------------------------------------------

def _member(path: Path, suffix: str) -> str:
    with tarfile.open(path) as tf:
        return next(n for n in tf.getnames() if n.endswith(suffix))


def _read_member(path: Path, suffix: str) -> bytes:
    with tarfile.open(path) as tf:
        return tf.extractfile(_member(path, suffix)).read()


def _expect(path: Path, member_suffix: str | None, match: str, archive: str | None = None,
            **kwargs) -> NemsFormatError:
    with pytest.raises(NemsFormatError, match=match) as info:
        nems.read_recording(path, **kwargs)
    err = info.value
    assert isinstance(err, RawDataError) and isinstance(err, ValueError)
    assert err.archive == (archive or str(path))
    assert err.archive in str(err)
    if member_suffix is None:
        assert err.member is None
    else:
        assert err.member is not None and err.member.endswith(member_suffix), err.member
        assert repr(err.member) in str(err)
    return err


def _sidecar(mini: Mini, sig: str) -> dict:
    return json.loads(_read_member(mini.path, f".{sig}.json"))


def test_missing_sidecar(mini: Mini) -> None:
    fx.replace_member(mini.path, ".resp.json", None)
    _expect(mini.path, ".resp.h5", "signal 'resp' has no JSON sidecar")
    # other signals still read when only they are asked for
    assert "pop" in nems.read_recording(mini.path, signals=["pop"])


def test_missing_epoch_table_and_data(tmp_path: Path, mini: Mini) -> None:
    fx.replace_member(mini.path, ".pop.epoch.csv", None, dest=tmp_path / "a.tgz")
    _expect(tmp_path / "a.tgz", ".pop.json", "no epoch table")
    fx.replace_member(mini.path, ".pop.csv", None, dest=tmp_path / "b.tgz")
    _expect(tmp_path / "b.tgz", ".pop.json", "describes a RasterizedSignal, but the archive "
                                              "has no")
    fx.replace_member(mini.path, ".meta.json", None, dest=tmp_path / "c.tgz")
    _expect(tmp_path / "c.tgz", None, "no '<recording>.meta.json'")


def test_csv_wrong_column_count(mini: Mini) -> None:
    lines = _read_member(mini.path, ".pop.csv").split(b"\n")
    lines[41] = lines[41].rsplit(b",", 1)[0]
    fx.replace_member(mini.path, ".pop.csv", b"\n".join(lines))
    _expect(mini.path, ".pop.csv", "line 42 has 2 columns, the lines before 3")


def test_csv_bad_token_and_blank_line(tmp_path: Path, mini: Mini) -> None:
    lines = _read_member(mini.path, ".pop.csv").split(b"\n")
    bad = list(lines)
    bad[7] = b"1.0,NA,2.0"
    fx.replace_member(mini.path, ".pop.csv", b"\n".join(bad), dest=tmp_path / "a.tgz")
    _expect(tmp_path / "a.tgz", ".pop.csv", "line 8, column 2: 'NA' is not a number")
    # a blank line is skipped (as pandas does for NEMS0); the rows then miss one sample
    blank = list(lines)
    blank[3] = b""
    fx.replace_member(mini.path, ".pop.csv", b"\n".join(blank), dest=tmp_path / "b.tgz")
    _expect(tmp_path / "b.tgz", ".pop.csv", "749 rows .samples., but the segments")


def test_csv_shape_against_sidecar(tmp_path: Path, mini: Mini) -> None:
    lines = _read_member(mini.path, ".pop.csv").split(b"\n")
    fx.replace_member(mini.path, ".pop.csv", b"\n".join(lines[:100] + [b""]),
                      dest=tmp_path / "a.tgz")
    _expect(tmp_path / "a.tgz", ".pop.csv", "100 rows .samples., but the segments of .* cover "
                                            "750")
    side = _sidecar(mini, "pop")
    side["chans"] = side["chans"][:2]
    fx.replace_member(mini.path, ".pop.json", json.dumps(side).encode(), dest=tmp_path / "b.tgz")
    _expect(tmp_path / "b.tgz", ".pop.csv", "3 columns, but the sidecar .* lists 2 channels")


def test_epoch_outside_segments(mini: Mini) -> None:
    table = _read_member(mini.path, ".resp.epoch.csv") + b"7.0,7.6,STIM_late.wav\n"
    fx.replace_member(mini.path, ".resp.epoch.csv", table)
    err = _expect(mini.path, ".resp.epoch.csv", r"epoch 'STIM_late.wav' .*samples 7000-7600 at "
                                                 r"1000 Hz.* outside the signal's segments "
                                                 r"\[\[0, 7500\]\]")
    assert err.archive == str(mini.path)


def test_epoch_table_rows(tmp_path: Path, mini: Mini) -> None:
    base = _read_member(mini.path, ".resp.epoch.csv")
    cases = {
        b"start,stop,name\n0.0,1.0,A\n": "header with columns start, end, name",
        base + b"1.0,2.0\n": "has 2 fields, the header 3",
        base + b"x,2.0,A\n": "start and end must be numbers",
        base + b"2.0,1.0,A\n": "end >= start",
    }
    for i, (table, match) in enumerate(cases.items()):
        dest = tmp_path / f"{i}.tgz"
        fx.replace_member(mini.path, ".resp.epoch.csv", table, dest=dest)
        _expect(dest, ".resp.epoch.csv", match)


def test_hdf5_channel_absent_from_chans(tmp_path: Path, mini: Mini) -> None:
    side = _sidecar(mini, "resp")
    side["chans"] = [mini.spk_chans[0]]
    fx.replace_member(mini.path, ".resp.json", json.dumps(side).encode(), dest=tmp_path / "a.tgz")
    _expect(tmp_path / "a.tgz", ".resp.h5", f"dataset '{mini.spk_chans[1]}' is not a channel of "
                                            f"the sidecar")
    side["chans"] = [*mini.spk_chans, "TST015a-33-1"]
    fx.replace_member(mini.path, ".resp.json", json.dumps(side).encode(), dest=tmp_path / "b.tgz")
    _expect(tmp_path / "b.tgz", ".resp.h5", "no spike-time dataset for channel 'TST015a-33-1'")


def test_bad_sidecars(tmp_path: Path, mini: Mini) -> None:
    side = _sidecar(mini, "resp")
    cases = [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({**side, "fs": 0}).encode(), "'fs' must be a positive sample rate"),
        (json.dumps({**side, "fs": "100"}).encode(), "'fs' must be a positive sample rate"),
        (json.dumps({**side, "chans": [1, 2]}).encode(), "'chans' must be a list of channel-id"),
        (json.dumps({**side, "chans": None}).encode(), "must list its channels"),
        (json.dumps({**side, "chans": ["a", "a"]}).encode(), "lists 'a' more than once"),
        (json.dumps({**side, "signal_type": "<class 'x.Y'>"}).encode(), "'signal_type' must "
                                                                         "name one of"),
        (json.dumps({**side, "segments": [[0, 10.5]]}).encode(), "'segments' must be a list"),
        (json.dumps({**side, "segments": [[0, 10], [5, 20]]}).encode(), "non-overlapping"),
        (json.dumps({**side, "signal_type": "<class 'nems0.signal.RasterizedSignal'>"}).encode(),
         "stored as .csv, not .h5"),
    ]
    for i, (data, match) in enumerate(cases):
        dest = tmp_path / f"{i}.tgz"
        fx.replace_member(mini.path, ".resp.json", data, dest=dest)
        member = ".resp.h5" if "stored as" in match else ".resp.json"
        _expect(dest, member, match)


def test_bad_hdf5(tmp_path: Path, mini: Mini) -> None:
    fx.replace_member(mini.path, ".resp.h5", b"not an hdf5 file", dest=tmp_path / "a.tgz")
    _expect(tmp_path / "a.tgz", ".resp.h5", "not a readable HDF5 file")
    tiles = {**mini.tiles, "STIM_unknown.wav": np.zeros((4, 150))}
    spec = fx.TiledSpec(tiles, FS_POP, mini.rows)
    path = fx.write_nems_recording(tmp_path / "t.tgz", REC, {}, {"stim": spec})
    _expect(path, ".stim.h5", "dataset 'STIM_unknown.wav' names no epoch")
    spec = fx.TiledSpec({"STIM_v.wav": np.zeros((4, 150)), "STIM_e1.wav": np.zeros((3, 150))},
                        FS_POP, mini.rows)
    path = fx.write_nems_recording(tmp_path / "u.tgz", REC, {}, {"stim": spec})
    _expect(path, ".stim.h5", "dataset 'STIM_v.wav' has 4 channels, the ones before 3")
    spec = fx.PointProcessSpec({"c": np.array([np.nan])}, FS_POP, mini.rows)
    path = fx.write_nems_recording(tmp_path / "v.tgz", REC, {}, {"resp": spec})
    _expect(path, ".resp.h5", "1-D array of finite spike times")


def test_duplicate_and_unknown_members(tmp_path: Path, mini: Mini) -> None:
    extra = {f"{REC}.resp.json": _read_member(mini.path, ".resp.json")}
    path = fx.write_nems_recording(tmp_path / "d.tgz", REC, mini.meta, mini.signals,
                                   extra_files=extra)
    _expect(path, ".resp.json", "a second sidecar of signal 'resp'")
    path = fx.write_nems_recording(tmp_path / "u.tgz", REC, mini.meta, mini.signals,
                                   extra_files={"README.txt": b"hi", f"._{REC}.resp.json": b"x"})
    with pytest.warns(DataQuirkWarning, match="2 member.s. that are not NEMS0 recording files"):
        rec = nems.read_recording(path)
    assert rec.quirks == {"unknown_members": 2}


def test_later_views_are_skipped_and_reported(tmp_path: Path, mini: Mini) -> None:
    extra = {f"01.{REC}.resp.json": b"{}", f"01.{REC}.resp.h5": b"",
             "02.OTHER.pop.csv": b"1\n"}
    path = fx.write_nems_recording(tmp_path / "v.tgz", REC, mini.meta, mini.signals,
                                   extra_files=extra)
    with pytest.warns(DataQuirkWarning) as caught:
        rec = nems.read_recording(path)
    assert rec.quirks == {"ignored_views": 2, "unknown_members": 1}
    assert any("later NEMS0 views" in str(w.message) for w in caught)
    np.testing.assert_array_equal(rec["resp"].spike_times[mini.spk_chans[1]],
                                  mini.spikes[mini.spk_chans[1]])


def test_tolerated_sidecar_gaps(tmp_path: Path, mini: Mini) -> None:
    side = _sidecar(mini, "pop")
    del side["segments"], side["signal_type"]
    fx.replace_member(mini.path, ".pop.json", json.dumps(side).encode())
    with pytest.warns(DataQuirkWarning) as caught:
        rec = nems.read_recording(mini.path, signals="pop")
    assert len(caught) == 2
    assert rec.quirks == {"sidecar_without_signal_type": 1, "sidecar_without_segments": 1}
    assert rec["pop"].sidecar.segments.tolist() == [[0, 750]]
    np.testing.assert_array_equal(rec["pop"].values, mini.pop)


def test_unreadable_archives(tmp_path: Path, mini: Mini) -> None:
    data = mini.path.read_bytes()
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(data[: len(data) // 2])
    _expect(cut, None, "not a readable archive")
    page = tmp_path / "page.tgz"
    page.write_bytes(b"<html>login</html>")
    _expect(page, None, "not a readable archive")


def test_nested_errors_name_outer_inner_and_member(tmp_path: Path) -> None:
    one, two = _two_sites(tmp_path)
    lines = _read_member(two.path, ".pop.csv").split(b"\n")
    lines[9] += b",1.0"
    fx.replace_member(two.path, ".pop.csv", b"\n".join(lines))
    names = {f"NAT/{one.path.name}": one.path, f"NAT/{two.path.name}": two.path}
    for container in (fx.write_container_zip(tmp_path / "c.zip", names),
                      fx.write_container_tgz(tmp_path / "c.tgz", names)):
        inner = f"NAT/{two.path.name}"
        _expect(container, ".pop.csv", "line 10 has 4 columns", archive=f"{container} > {inner}",
                member=inner)
        with pytest.raises(NemsFormatError) as info:
            list(nems.iter_recordings(container))
        assert info.value.archive == f"{container} > {inner}"
        assert str(info.value).startswith(
            f"{container} > {inner}, member '{REC}/{REC}.pop.csv': line 10 has 4 columns")


# ---------------------------------------------------------------------------
# The fixture writes NEMS0's exact format
# ---------------------------------------------------------------------------

def test_fixture_layout_is_nems0s(mini: Mini) -> None:
    with tarfile.open(mini.path) as tf:
        infos = tf.getmembers()
    assert [i.name for i in infos] == [f"{REC}/{REC}.{f}" for f in (
        "meta.json", "resp.h5", "resp.json", "resp.epoch.csv", "pop.csv", "pop.json",
        "pop.epoch.csv", "stim.h5", "stim.json", "stim.epoch.csv")]
    assert {(i.uname, i.gname, i.isreg()) for i in infos} == {("nems", "users", True)}
    side = _read_member(mini.path, ".resp.json").decode()
    assert list(json.loads(side)) == ["name", "chans", "fs", "meta", "recording", "segments",
                                      "signal_type", "normalization", "norm_baseline",
                                      "norm_gain"]
    assert '"signal_type": "<class \'nems0.signal.PointProcess\'>"' in side
    assert '"segments": [[0, 7500]]' in side
    first = _read_member(mini.path, ".pop.csv").split(b"\n")[0].split(b",")
    assert len(first) == 3 and all(v == b"nan" or len(v) in (24, 25) for v in first)
    assert _read_member(mini.path, ".stim.epoch.csv").startswith(
        b"start,end,name\n0.0,1.5,TRIAL\n0.0,1.5,REFERENCE\n0.0,0.25,PreStimSilence\n"
        b"0.0,1.5,STIM_v.wav\n1.25,1.5,PostStimSilence\n1.5,3.0,TRIAL\n")
    meta = json.loads(_read_member(mini.path, ".meta.json"))
    assert meta["cellid"]["__ndarray__"] == mini.pop_chans and meta["cellid"]["shape"] == [3]
    with tarfile.open(mini.path) as tf:
        import h5py
        with h5py.File(io.BytesIO(tf.extractfile(f"{REC}/{REC}.resp.h5").read())) as f:
            assert sorted(f) == sorted(mini.spk_chans)
            assert f[mini.spk_chans[0]].compression == "gzip"


def test_fixture_is_reproducible(tmp_path: Path) -> None:
    a, b = Mini(tmp_path / "a"), Mini(tmp_path / "b")
    digest = [hashlib.sha256(m.path.read_bytes()).hexdigest() for m in (a, b)]
    assert digest[0] == digest[1]
    one, two = _two_sites(tmp_path)
    zips = [fx.write_container_zip(tmp_path / f"{i}.zip", {"x/a.tgz": one.path})
            for i in range(2)]
    assert zips[0].read_bytes() == zips[1].read_bytes()
    with zipfile.ZipFile(zips[0]) as zf:
        assert zf.namelist() == ["x/", "x/a.tgz"]


def test_hex_id() -> None:
    assert fx.hex_id("TNC015a") == fx.hex_id("TNC015a") != fx.hex_id("TNC016a")
    assert len(fx.hex_id("x")) == 40 and int(fx.hex_id("x"), 16) >= 0


def test_replace_member_needs_one_match(mini: Mini) -> None:
    with pytest.raises(ValueError, match="4 members end with '.json'"):
        fx.replace_member(mini.path, ".json", None)


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(nems, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


def test_reader_imports_neither_torch_nor_h5py_up_front() -> None:
    import subprocess
    import sys

    code = ("import sys, deepstrf.io.nems, deepstrf.testing.fixtures.nems; "
            "print(sorted(m for m in ('torch', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
