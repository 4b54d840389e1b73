"""Tests of the CRCNS AA1/AA2/AA4 fixture writers (deepstrf.testing.fixtures)."""

from __future__ import annotations

import hashlib
import re
import struct
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepstrf.errors import RawDataError
from deepstrf.io.archive import extract_archive
from deepstrf.io.readers import decode_attr, read_spike_times, read_stim_file, read_wav
from deepstrf.preprocessing.spectrogram import compute_spectrogram
from deepstrf.preprocessing.spikes import bin_spike_times, n_bins_for_duration
from deepstrf.testing.fixtures import (
    AA2_REGIONS,
    FixtureInfo,
    Quirks,
    break_stim_reference,
    corrupt_spike_file,
    delete_h5_group,
    set_wav_sample_rate,
    truncate_file,
    write_crcns_aa1,
    write_crcns_aa2,
    write_crcns_aa4,
)
from tests.conftest import REALDATA

REAL_AA2 = REALDATA / "aa2"
needs_real_aa2 = pytest.mark.skipif(not REAL_AA2.is_dir(), reason="real CRCNS aa-2 files absent")

STIM_FILE = re.compile(rb"[0-9A-F]{32}\.wav\n")
TIME = r"-?\d+\.\d{3}"
SPIKE_LINE = re.compile(rf"(?:{TIME}(?: {TIME})* )?")
SPIKE_LINE_NO_SPACE = re.compile(rf"(?:{TIME}(?: {TIME})*)?")
AA4_NAME = re.compile(r"Site\d+_L\d+R\d+_e\d+_s\d+(?:_ss\d+)?")


@pytest.fixture(scope="module")
def aa1(tmp_path_factory) -> FixtureInfo:
    base = tmp_path_factory.mktemp("aa1")
    return write_crcns_aa1(base / "tree", archive_dir=base / "archives")


@pytest.fixture(scope="module")
def aa2(tmp_path_factory) -> FixtureInfo:
    base = tmp_path_factory.mktemp("aa2")
    return write_crcns_aa2(base / "tree", archive_dir=base / "archives")


@pytest.fixture(scope="module")
def aa4(tmp_path_factory) -> FixtureInfo:
    base = tmp_path_factory.mktemp("aa4")
    return write_crcns_aa4(base / "tree", archive_dir=base / "archives")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def parse_wav_header(data: bytes) -> dict[str, int | bytes]:
    riff, riff_size, wave_id, fmt, fmt_size, audio_format, channels, rate, byte_rate, align, \
        bits, data_id, data_size = struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44])
    return dict(riff=riff, riff_size=riff_size, wave=wave_id, fmt=fmt, fmt_size=fmt_size,
                format=audio_format, channels=channels, rate=rate, byte_rate=byte_rate,
                align=align, bits=bits, data=data_id, data_size=data_size)


def check_wav(path: Path, rate: int) -> None:
    data = path.read_bytes()
    header = parse_wav_header(data)
    assert header == dict(riff=b"RIFF", riff_size=len(data) - 8, wave=b"WAVE", fmt=b"fmt ",
                          fmt_size=16, format=1, channels=1, rate=rate, byte_rate=2 * rate,
                          align=2, bits=16, data=b"data", data_size=len(data) - 44)


def check_spike_bytes(data: bytes, trailing_space: bool = True) -> None:
    assert b"\r" not in data and data.endswith(b"\n")
    pattern = SPIKE_LINE if trailing_space else SPIKE_LINE_NO_SPACE
    for line in data.decode("ascii").split("\n")[:-1]:
        assert pattern.fullmatch(line), repr(line)


# --- AA1 -----------------------------------------------------------------------

def test_aa1_layout(aa1):
    root = aa1.root
    assert sorted(p.name for p in root.iterdir()) == ["Field_L_cells", "MLd_cells", "all_stims"]
    assert sorted(p.name for p in (root / "all_stims").iterdir()) == ["conspecific", "flatrip"]
    assert len(aa1.cells) == 6 and len(aa1.stims) == 6
    assert {c.area for c in aa1.cells} == {"Field_L", "MLd"}
    for cell in aa1.cells:
        assert cell.path == root / f"{cell.area}_cells" / cell.cell_id
        assert re.fullmatch(r"[a-z]+\d{4}_\d+(_[AB])?", cell.cell_id)
        bird, seq, *rig = cell.cell_id.split("_")
        assert cell.animal == bird and cell.meta == {"cell_seq": int(seq),
                                                     "rig": rig[0] if rig else None}
        assert sorted(p.name for p in cell.path.iterdir()) == sorted(cell.stim_types)
    # every cell heard every stimulus of each type, numbered 1..n
    for cell in aa1.cells:
        for stim_type in ("conspecific", "flatrip"):
            entries = [r for r in aa1.responses_of(cell.cell_id) if r.stim_type == stim_type]
            assert [r.number for r in entries] == [1, 2, 3]
            assert sorted(r.stim_name for r in entries) == sorted(
                s.name for s in aa1.stims if s.type == stim_type)
            names = {p.name for p in (cell.path / stim_type).iterdir()}
            assert names == {f"{k}{n}" for k in ("stim", "spike") for n in (1, 2, 3)}
    # a recording pair shares its protocol and is split between areas
    pairs = {}
    for cell in aa1.cells:
        if cell.meta["rig"]:
            pairs.setdefault(cell.cell_id[:-2], []).append(cell)
    for members in pairs.values():
        if len(members) == 2:
            a, b = sorted(members, key=lambda c: c.meta["rig"])
            assert (a.area, b.area) == ("MLd", "Field_L")
            assert [r.stim_name for r in aa1.responses_of(a.cell_id)] == [
                r.stim_name for r in aa1.responses_of(b.cell_id)]


def test_aa1_bytes(aa1):
    for stim in aa1.stims:
        data = stim.path.read_bytes()
        assert stim.path.parent == aa1.root / "all_stims" / stim.type
        assert stim.name == hashlib.md5(data).hexdigest().upper() + ".wav" == stim.md5 + ".wav"
        check_wav(stim.path, 32000)
        assert stim.n_samples == (len(data) - 44) // 2
    for r in aa1.responses:
        raw = r.stim_file.read_bytes()
        assert len(raw) == 37 and STIM_FILE.fullmatch(raw)
        check_spike_bytes(r.spike_file.read_bytes())
        assert r.spike_file.read_bytes().count(b"\n") == len(r.trials) == 10


def test_aa1_round_trip_through_readers(aa1):
    truth = aa1.truth
    for stim in aa1.stims:
        samples, rate = read_wav(stim.path, expected_sr=32000)
        assert rate == 32000
        np.testing.assert_array_equal(samples, truth.sounds[stim.sound])
        np.testing.assert_array_equal(compute_spectrogram(samples, rate, truth.params),
                                      truth.spectrograms[stim.sound])
    for r in aa1.responses:
        assert read_stim_file(r.stim_file) == r.stim_name
        trials = read_spike_times(r.spike_file)
        assert len(trials) == len(r.trials)
        for got, want in zip(trials, r.trials, strict=True):
            np.testing.assert_array_equal(got, want)
    for cell in aa1.cells:
        for stim in aa1.stims:
            assert aa1.trials(cell.cell_id, stim.name) is not None


def test_aa1_spikes_follow_the_true_rates(aa1):
    # Pooled over every (cell, stim), binned counts match the true rates (Poisson z-score).
    truth = aa1.truth
    diffs, variances = [], []
    for r in aa1.responses:
        cell = aa1.cell(r.cell_id)
        stim = aa1.stim(r.stim_name)
        n_bins = n_bins_for_duration(stim.n_samples, stim.sample_rate, 5.0)
        counts = bin_spike_times(r.trials, 5.0, n_bins)
        rate = truth.rates[stim.sound][cell.neuron]
        assert rate.shape == (n_bins,)
        diffs.append(counts.sum() - len(r.trials) * rate.sum())
        variances.append(len(r.trials) * rate.sum())
    z = np.sum(diffs) / np.sqrt(np.sum(variances))
    assert abs(z) < 4
    # spontaneous spikes before the onset and after the stimulus are present
    times = np.concatenate([t for r in aa1.responses for t in r.trials])
    durations = {s.name: 1000 * s.duration_s for s in aa1.stims}
    late = [t[t > durations[r.stim_name]] for r in aa1.responses for t in r.trials]
    assert (times < 0).any() and sum(x.size for x in late) > 0
    assert times.min() >= -500 and times.max() < 600 + 500 + 5
    assert aa1.quirk_sites == {"pre_post_spikes": ["every spike file"]}


def test_aa1_archive(aa1, tmp_path):
    (archive,) = aa1.archives
    assert archive.name == "crcns-aa1.zip" and archive.crcns_dataset == "aa-1"
    data = archive.path.read_bytes()
    assert archive.size == len(data) and archive.md5 == hashlib.md5(data).hexdigest()
    assert archive.sha256 == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(archive.path) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
    assert tops == {"all_stims", "Field_L_cells", "MLd_cells"}
    out = extract_archive(archive.path, tmp_path / "out")
    extracted = {k: v for k, v in tree_bytes(out).items() if not k.startswith(".extracted-")}
    assert extracted == tree_bytes(aa1.root)
    assert aa1.archive_payloads() == {"crcns-aa1.zip": data}


def test_aa1_archive_root_option_and_reproducibility(aa1, tmp_path):
    info = write_crcns_aa1(tmp_path / "tree", archive_dir=tmp_path / "arch",
                           archive_root="crcns-aa1")
    with zipfile.ZipFile(info.archives[0].path) as zf:
        assert {name.split("/")[0] for name in zf.namelist()} == {"crcns-aa1"}
        assert "crcns-aa1/all_stims/" in zf.namelist()
    again = write_crcns_aa1(tmp_path / "tree2", archive_dir=tmp_path / "arch2")
    assert tree_bytes(again.root) == tree_bytes(aa1.root)
    assert again.archives[0].md5 == aa1.archives[0].md5
    other = write_crcns_aa1(tmp_path / "tree3", seed=1)
    assert tree_bytes(other.root) != tree_bytes(aa1.root)


def test_aa1_sizes_and_repeat_ranges(tmp_path):
    info = write_crcns_aa1(tmp_path / "t", n_cells=3, n_conspecific=2, n_flatrip=0,
                           n_repeats=(3, 6), duration_range_s=(0.2, 0.2), n_birds=3)
    assert len(info.cells) == 3 and len({c.animal for c in info.cells}) >= 2
    assert all(s.type == "conspecific" and s.n_samples == 6400 for s in info.stims)
    assert not (tmp_path / "t" / "all_stims" / "flatrip").exists()
    repeats = {r.cell_id: len(r.trials) for r in info.responses}
    assert set(repeats.values()) <= {3, 4, 5, 6}
    for r in info.responses:
        assert len(r.trials) == repeats[r.cell_id]


@pytest.mark.slow
def test_aa1_realistic_size(tmp_path):
    info = write_crcns_aa1(tmp_path / "t", n_cells=100, n_conspecific=10, n_flatrip=20,
                           duration_range_s=(1.0, 2.0))
    assert len(info.cells) == 100 and len(info.stims) == 30 and len(info.responses) == 3000
    assert sum(1 for _ in (tmp_path / "t").rglob("spike*")) == 3000
    rates = np.concatenate(info.truth.rates, axis=1) / 0.005
    assert 30 < rates.mean() < 110  # default target 40-100 spikes/s


# --- AA1 / AA2 quirks ------------------------------------------------------------

ALL_TEXT_QUIRKS = dict(no_trailing_space=True, orphan_stim=True, orphan_spike=True,
                       missing_type_folder=True, duplicate_stim=True, empty_trials=True)


@pytest.mark.parametrize("writer", [write_crcns_aa1, write_crcns_aa2])
def test_text_quirks(writer, tmp_path):
    info = writer(tmp_path / "t", quirks=ALL_TEXT_QUIRKS)
    sites = info.quirk_sites
    assert set(sites) == set(ALL_TEXT_QUIRKS) | {"pre_post_spikes"}
    first = info.cells[0]
    # no trailing space: every line of the first cell ends with a digit
    for r in info.responses_of(first.cell_id):
        if r.spike_file is not None:
            data = r.spike_file.read_bytes()
            check_spike_bytes(data, trailing_space=False)
            assert b" \n" not in data
            for got, want in zip(read_spike_times(r.spike_file), r.trials, strict=True):
                np.testing.assert_array_equal(got, want)
    # duplicate: the first wav of the first folder is played again at the end
    stim_type = first.stim_types[0]
    entries = [r for r in info.responses_of(first.cell_id) if r.stim_type == stim_type]
    assert entries[-1].stim_name == entries[0].stim_name
    assert entries[-1].stim_file.read_bytes() == entries[0].stim_file.read_bytes()
    assert info.trials(first.cell_id, entries[0].stim_name) is entries[0].trials
    # missing type folder: the last cell has no conspecific folder
    last = info.cells[-1]
    assert "conspecific" not in last.stim_types
    assert not (last.path / "conspecific").exists() and last.path.is_dir()
    # orphans
    orphan_stim = [r for r in info.responses if r.stim_file is not None and r.trials is None]
    orphan_spike = [r for r in info.responses if r.stim_file is None and r.trials is not None]
    assert len(orphan_stim) == len(orphan_spike) == 1
    r = orphan_stim[0]
    assert r.spike_file is None and not (r.stim_file.parent / f"spike{r.number}").exists()
    assert not r.paired and info.trials(r.cell_id, r.stim_name) is None
    r = orphan_spike[0]
    assert (r.spike_file.parent / f"spike{r.number}").exists()
    assert not (r.spike_file.parent / f"stim{r.number}").exists()
    # empty trials: bare LF lines, and one single spike left
    (where,) = sites["empty_trials"]
    cell_id, stim_type, name = where.split("/")
    path = info.cell(cell_id).path / stim_type / name
    lines = path.read_bytes().decode("ascii").split("\n")[:-1]
    assert sum(1 for line in lines if line == "") == len(lines) - 1
    assert [len(t) for t in read_spike_times(path)] == [0] * 5 + [1] + [0] * 4


def test_quirks_can_turn_off_pre_post_spikes(tmp_path):
    info = write_crcns_aa1(tmp_path / "t", quirks={"pre_post_spikes": False})
    times = np.concatenate([t for r in info.responses for t in r.trials])
    assert times.min() >= 0
    durations = {s.name: 1000 * s.duration_s for s in info.stims}
    for r in info.responses:
        for t in r.trials:
            assert np.all(t < durations[r.stim_name] + 5.0)
    assert info.quirk_sites == {}
    info2 = write_crcns_aa4(tmp_path / "a4", quirks=Quirks(pre_ms=100.0, post_ms=0.0))
    times = np.concatenate([t for r in info2.responses for t in r.trials])
    assert times.min() >= -100


@pytest.mark.parametrize("writer, quirks, error", [
    (write_crcns_aa1, {"noise_units": True}, ValueError),
    (write_crcns_aa1, {"shared_wav_across_types": True}, ValueError),
    (write_crcns_aa2, {"singl_typo": True}, ValueError),
    (write_crcns_aa4, {"orphan_stim": True}, ValueError),
    (write_crcns_aa1, {"no_such_quirk": True}, ValueError),
    (write_crcns_aa1, {"orphan_stim": 1}, TypeError),
    (write_crcns_aa1, {"pre_ms": -5.0}, ValueError),
    (write_crcns_aa1, ["orphan_stim"], TypeError),
])
def test_bad_quirks(writer, quirks, error, tmp_path):
    with pytest.raises(error):
        writer(tmp_path / "t", quirks=quirks)
    assert not (tmp_path / "t").exists()


def test_quirk_needing_more_entries(tmp_path):
    with pytest.raises(ValueError, match="missing_type_folder"):
        write_crcns_aa1(tmp_path / "t", n_cells=1, n_conspecific=1, n_flatrip=0,
                        quirks={"missing_type_folder": True})
    with pytest.raises(ValueError, match="orphan_spike"):
        write_crcns_aa1(tmp_path / "t", n_cells=1, n_conspecific=1, n_flatrip=1,
                        quirks={"orphan_stim": True, "orphan_spike": True, "empty_trials": True})


@pytest.mark.parametrize("kwargs, error", [
    (dict(n_cells=0), ValueError),
    (dict(n_conspecific=0, n_flatrip=0), ValueError),
    (dict(n_repeats=0), ValueError),
    (dict(n_repeats=(5, 2)), ValueError),
    (dict(n_repeats=(1, 2, 3)), ValueError),
    (dict(duration_range_s=(0.5, 0.2)), ValueError),
    (dict(duration_range_s="long"), TypeError),
    (dict(dt_ms=-1.0), ValueError),
    (dict(seed=-1), ValueError),
    (dict(n_lags=0), ValueError),
    (dict(archive_root="a/b"), ValueError),
    (dict(archive_dir=3), TypeError),
    (dict(spectrogram_params="mel"), TypeError),
])
def test_aa1_bad_arguments(kwargs, error, tmp_path):
    with pytest.raises(error):
        write_crcns_aa1(tmp_path / "t", **kwargs)


def test_root_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        write_crcns_aa1(tmp_path / "file")
    with pytest.raises(TypeError):
        write_crcns_aa1(42)


def test_spectrogram_params_must_agree_with_dt(tmp_path):
    from deepstrf.preprocessing.spectrogram import SpectrogramParams

    with pytest.raises(ValueError, match="dt_ms"):
        write_crcns_aa1(tmp_path / "t", dt_ms=5.0, spectrogram_params=SpectrogramParams(dt_ms=2.0))
    params = SpectrogramParams(dt_ms=2.0, n_bands=12)
    info = write_crcns_aa1(tmp_path / "t", dt_ms=2.0, spectrogram_params=params, n_cells=1,
                           n_conspecific=1, n_flatrip=0)
    assert info.truth.params == params and info.truth.population.strfs.shape[1] == 12


# --- AA2 -----------------------------------------------------------------------

def test_aa2_layout_and_csvs(aa2):
    root = aa2.root
    assert sorted(p.name for p in root.iterdir()) == [
        "all_cells", "all_stims", "cell_regions.csv", "cell_stim_classes.csv",
        "crcns-aa2-README.txt", "stim_data.csv"]
    wavs = sorted(p.name for p in (root / "all_stims").iterdir())
    assert wavs == sorted(s.name for s in aa2.stims) and len(wavs) == 8
    assert all((root / "all_stims" / w).is_file() for w in wavs)
    unused = [s for s in aa2.stims if not s.referenced]
    assert len(unused) == 1 and unused[0].type in ("unknown", "bengalese")
    assert sorted(p.name for p in (root / "all_cells").iterdir()) == sorted(
        c.cell_id for c in aa2.cells)

    regions = (root / "cell_regions.csv").read_bytes().decode("ascii")
    assert regions.endswith("\n") and "\r" not in regions
    rows = [line.split(",") for line in regions.splitlines()]
    assert [r[0] for r in rows] == sorted(c.cell_id for c in aa2.cells)
    assert all(len(r) == 2 and r[1] in AA2_REGIONS for r in rows)
    assert {r[0]: r[1] for r in rows} == {c.cell_id: c.area for c in aa2.cells}

    classes = (root / "cell_stim_classes.csv").read_text().splitlines()
    lengths = set()
    for line in classes:
        cell_id, *folders = line.split(",")
        lengths.add(len(folders))
        assert sorted(folders) == sorted(p.name for p in (root / "all_cells" / cell_id).iterdir())
    assert lengths == {2, 3}  # ragged: some cells heard songrip

    stim_rows = [line.split(",") for line in (root / "stim_data.csv").read_text().splitlines()]
    assert [r[0] for r in stim_rows] == wavs
    for name, rate, depth, n_samples, stim_class in stim_rows:
        stim = aa2.stim(name)
        assert (float(rate), int(depth), int(n_samples), stim_class) == (
            32000.0, 16, stim.n_samples, stim.type)
    readme = (root / "crcns-aa2-README.txt").read_text()
    assert "all_stims" in readme and "cell_regions.csv" in readme


def test_aa2_protocols_and_round_trip(aa2):
    referenced = set()
    for r in aa2.responses:
        assert r.stim_file.parent.parent == aa2.cell(r.cell_id).path
        assert STIM_FILE.fullmatch(r.stim_file.read_bytes())
        assert read_stim_file(r.stim_file) == r.stim_name
        check_spike_bytes(r.spike_file.read_bytes())
        for got, want in zip(read_spike_times(r.spike_file), r.trials, strict=True):
            np.testing.assert_array_equal(got, want)
        stim = aa2.stim(r.stim_name)
        assert stim.type == r.stim_type
        referenced.add(stim.name)
    assert referenced == {s.name for s in aa2.stims if s.referenced}
    for stim in aa2.stims:
        check_wav(stim.path, 32000)
        assert stim.path.name == hashlib.md5(stim.path.read_bytes()).hexdigest().upper() + ".wav"
        np.testing.assert_array_equal(read_wav(stim.path)[0], aa2.truth.sounds[stim.sound])


def test_aa2_archives(aa2, tmp_path):
    names = [a.name for a in aa2.archives]
    assert names == ["crcns-aa2-docs.tar.gz", "crcns-aa2-all_cells.tar.gz",
                     "crcns-aa2-all_stims.tar.gz"]
    for archive in aa2.archives:
        assert archive.crcns_dataset == "aa-2"
        assert archive.md5 == hashlib.md5(archive.path.read_bytes()).hexdigest()
        with tarfile.open(archive.path) as tf:
            members = tf.getnames()
        assert members[:2] == ["crcns", "crcns/aa2"]
        assert all(m.startswith("crcns/aa2/") for m in members[2:])
    with tarfile.open(aa2.archives[0].path) as tf:
        assert sorted(tf.getnames()[2:]) == [
            "crcns/aa2/cell_regions.csv", "crcns/aa2/cell_stim_classes.csv",
            "crcns/aa2/crcns-aa2-README.txt", "crcns/aa2/stim_data.csv"]
    out = tmp_path / "out"
    for archive in aa2.archives:
        extract_archive(archive.path, out, strip_components=2)
    extracted = {k: v for k, v in tree_bytes(out).items() if not k.startswith(".extracted-")}
    assert extracted == tree_bytes(aa2.root)


def test_aa2_archives_download_from_the_local_crcns_server(aa2, tmp_path, monkeypatch):
    from deepstrf.io.download import RemoteFile, fetch
    from deepstrf.testing.http_server import LocalHTTPServer

    with LocalHTTPServer() as server:
        server.add_crcns_user("alice", "secret")
        server.add_crcns_dataset("aa-2", aa2.archive_payloads())
        monkeypatch.setenv("DEEPSTRF_CRCNS_LOGIN_URL", server.crcns_login_url)
        monkeypatch.setenv("DEEPSTRF_CRCNS_DOWNLOAD_URL", server.crcns_download_url)
        files = [RemoteFile(a.name, crcns=(a.crcns_dataset, a.name), size=a.size, md5=a.md5)
                 for a in aa2.archives]
        paths = fetch(files, tmp_path / "raw", username="alice", password="secret",
                      progress=False)
    for archive in aa2.archives:
        extract_archive(paths[archive.name], tmp_path / "tree", strip_components=2)
    extracted = {k: v for k, v in tree_bytes(tmp_path / "tree").items()
                 if not k.startswith(".extracted-")}
    assert extracted == tree_bytes(aa2.root)


def test_aa2_shared_wav_across_types(tmp_path):
    info = write_crcns_aa2(tmp_path / "t", quirks={"shared_wav_across_types": True})
    (where,) = info.quirk_sites["shared_wav_across_types"]
    shared = where.split(" ")[0]
    types = {r.stim_type for r in info.responses if r.stim_name == shared}
    assert types == {"conspecific", "songrip"}
    assert info.stim(shared).type == "conspecific"
    with pytest.raises(ValueError, match="shared_wav_across_types"):
        write_crcns_aa2(tmp_path / "u", n_songrip=0, quirks={"shared_wav_across_types": True})


def test_aa2_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_crcns_aa2(tmp_path / "t", n_conspecific=0, n_flatrip=0, n_songrip=0)
    with pytest.raises(ValueError):
        write_crcns_aa2(tmp_path / "t", n_unused=-1)
    with pytest.raises(TypeError):
        write_crcns_aa2(tmp_path / "t", n_cells=2.5)


# --- AA4 -----------------------------------------------------------------------

def test_aa4_layout_and_hdf5_structure(aa4):
    root = aa4.root
    assert sorted(p.name for p in root.iterdir()) == ["GreBlu9508M", "YelBlu6903F"]
    assert len(aa4.cells) == 6
    for cell in aa4.cells:
        assert cell.path == root / cell.animal / f"{cell.cell_id}.h5"
        assert AA4_NAME.fullmatch(cell.cell_id)
        m = cell.meta
        assert cell.cell_id.startswith(f"{m['site']}_L{m['ldepth']}R{m['rdepth']}_e"
                                       f"{m['electrode']}_s{m['sort_id']}")
        assert (m["subsort_id"] is None) == ("_ss" not in cell.cell_id)
        assert m["sex"] == cell.animal[-1] and cell.area is None
        with h5py.File(cell.path, "r") as fh:
            attrs = {k: decode_attr(v) for k, v in fh.attrs.items()}
            assert set(attrs) == {"site", "ldepth", "rdepth", "electrode", "sortid", "sortType",
                                  "tank_name", "source_directory"}
            assert attrs["site"] == m["site"] and attrs["sortType"] == m["sort_type"]
            assert attrs["sortType"] in ("single", "multi")
            assert (int(attrs["electrode"]), int(attrs["ldepth"]), int(attrs["sortid"])) == (
                m["electrode"], m["ldepth"], m["sort_id"])
            groups = sorted(fh)
            assert "class_info" in groups and "extra_info" in groups
            protocols = [g for g in groups if g not in ("class_info", "extra_info")]
            assert protocols == ["Block1", "Block2"]
            for protocol in protocols:
                for number, group in fh[protocol].items():
                    assert (root / cell.animal / "wavfiles" / f"stim{number}.wav").is_file()
                    a = {k: decode_attr(v) for k, v in group.attrs.items()}
                    assert set(a) == {"stim_md5", "stim_duration", "stim_type", "stim_class",
                                      "original_wavfile", "tdt_wavfile", "stim_source",
                                      "stim_source_sex", "zscore", "tstat", "pvalue"}
                    assert a["tdt_wavfile"] == f"stim{number}.wav"
                    assert a["stim_type"] in ("song", "call", "mlnoise")
                    wav = root / cell.animal / "wavfiles" / a["tdt_wavfile"]
                    assert a["stim_md5"] == hashlib.md5(wav.read_bytes()).hexdigest()
                    assert a["stim_duration"] == pytest.approx(aa4.stim(a["stim_md5"]).duration_s)
                    assert sorted(group, key=int) == [str(i) for i in range(1, 11)]
                    for trial in group.values():
                        assert set(trial.attrs) == {"bg_rate", "peri_rate", "pre_time",
                                                    "post_time"}
                        assert trial.attrs["pre_time"] == 0.5
                        assert sorted(trial) == ["spike_ids", "spike_times"]


def test_aa4_round_trip_and_shared_stimuli(aa4):
    for r in aa4.responses:
        cell = aa4.cell(r.cell_id)
        with h5py.File(r.spike_file, "r") as fh:
            group = fh[r.group]
            assert decode_attr(group.attrs["stim_md5"]) == r.stim_name
            for i, want in enumerate(r.trials, start=1):
                times = group[str(i)]["spike_times"][()]
                ids = group[str(i)]["spike_ids"][()]
                if want.size:
                    np.testing.assert_array_equal(times, want / 1000.0)
                    np.testing.assert_array_equal(ids, cell.meta["sort_id"])
                else:
                    assert times.shape == () and times == -999 and ids == -999
        assert r.stim_file == aa4.root / cell.animal / "wavfiles" / f"stim{r.number}.wav"
    # the same sound appears in several animals under different numbers
    shared = [s for s in aa4.stims if len(s.paths) == 2]
    assert shared
    for stim in shared:
        a, b = stim.paths
        assert a.read_bytes() == b.read_bytes()
        assert stim.md5 == hashlib.md5(a.read_bytes()).hexdigest()
        check_wav(a, 24414)
        samples, rate = read_wav(a)
        assert rate == 24414
        np.testing.assert_array_equal(samples, aa4.truth.sounds[stim.sound])
    assert any(len(set(s.meta["numbers"].values())) == 2 for s in shared)
    # spectrogram at the TDT rate is what the simulation used
    stim = aa4.stims[0]
    samples, rate = read_wav(stim.path)
    np.testing.assert_array_equal(compute_spectrogram(samples, rate, aa4.truth.params),
                                  aa4.truth.spectrograms[stim.sound])


def test_aa4_quirks(tmp_path):
    quirks = dict(noise_units=True, singl_typo=True, mixed_attr_types=True, missing_depth=True,
                  empty_trials=True)
    info = write_crcns_aa4(tmp_path / "t", quirks=quirks)
    assert set(info.quirk_sites) == set(quirks) | {"pre_post_spikes"}
    sort_types = {}
    kinds = {}
    for cell in info.cells:
        with h5py.File(cell.path, "r") as fh:
            raw = fh.attrs["sortType"]
            sort_types[cell.cell_id] = decode_attr(raw)
            kinds[cell.cell_id] = type(raw)
            has_depth = "ldepth" in fh.attrs and "rdepth" in fh.attrs
            assert has_depth == (cell.meta["ldepth"] is not None)
            group = next(iter(fh["Block1"].values()))
            assert type(group.attrs["stim_md5"]) is kinds[cell.cell_id]
    assert sorted(info.quirk_sites["noise_units"]) == sorted(
        c for c, t in sort_types.items() if t in ("noise", "tdt"))
    assert sorted(t for t in sort_types.values() if t in ("noise", "tdt")) == ["noise", "tdt"]
    assert list(sort_types.values()).count("singl") == 1
    assert set(kinds.values()) == {str, np.bytes_, np.ndarray}
    assert sum(c.meta["ldepth"] is None for c in info.cells) == 1
    # empty trials are stored as the scalar -999
    (where,) = info.quirk_sites["empty_trials"]
    empties = 0
    for r in info.responses:
        with h5py.File(r.spike_file, "r") as fh:
            for i, trial in enumerate(r.trials, start=1):
                if trial.size == 0:
                    assert fh[r.group][str(i)]["spike_times"][()] == -999.0
                    empties += 1
    assert empties >= 9


def test_aa4_archives(aa4, tmp_path):
    assert [a.name for a in aa4.archives] == ["GreBlu9508M.tar.gz", "YelBlu6903F.tar.gz"]
    out = tmp_path / "out"
    for archive in aa4.archives:
        assert archive.crcns_dataset == "aa-4"
        with tarfile.open(archive.path) as tf:
            animal = archive.name[:-len(".tar.gz")]
            assert all(n == animal or n.startswith(animal + "/") for n in tf.getnames())
        extract_archive(archive.path, out)
    extracted = {k: v for k, v in tree_bytes(out).items() if not k.startswith(".extracted-")}
    assert extracted == tree_bytes(aa4.root)


def test_aa4_is_reproducible(aa4, tmp_path):
    again = write_crcns_aa4(tmp_path / "t", archive_dir=tmp_path / "a")
    assert tree_bytes(again.root) == tree_bytes(aa4.root)
    assert [a.md5 for a in again.archives] == [a.md5 for a in aa4.archives]


@pytest.mark.parametrize("kwargs, error", [
    (dict(animals=()), ValueError),
    (dict(animals=("A", "A")), ValueError),
    (dict(animals=("a/b",)), ValueError),
    (dict(n_units=0), ValueError),
    (dict(n_songs=0, n_calls=0, n_mlnoise=0), ValueError),
    (dict(n_calls=-1), ValueError),
])
def test_aa4_bad_arguments(kwargs, error, tmp_path):
    with pytest.raises(error):
        write_crcns_aa4(tmp_path / "t", **kwargs)


def test_aa4_single_animal_string(tmp_path):
    info = write_crcns_aa4(tmp_path / "t", animals="BlaBro09xxF", n_units=1, n_songs=1,
                           n_calls=0, n_mlnoise=0)
    assert [c.animal for c in info.cells] == ["BlaBro09xxF"]
    assert [s.type for s in info.stims] == ["song"]


# --- error injection ---------------------------------------------------------------

def test_error_injection_text_files(tmp_path):
    info = write_crcns_aa1(tmp_path / "t", n_cells=1, n_conspecific=1, n_flatrip=1)
    r = info.responses[0]
    name = break_stim_reference(r.stim_file)
    assert read_stim_file(r.stim_file) == name and len(r.stim_file.read_bytes()) == 37
    assert not (info.root / "all_stims" / r.stim_type / name).exists()
    corrupt_spike_file(r.spike_file, line=3)
    with pytest.raises(RawDataError, match="line 3"):
        read_spike_times(r.spike_file)
    with pytest.raises(FileNotFoundError):
        break_stim_reference(tmp_path / "nope")
    with pytest.raises(ValueError):
        break_stim_reference(r.stim_file, "x.mp3")
    with pytest.raises(ValueError):
        corrupt_spike_file(r.spike_file, line=11)
    with pytest.raises(ValueError):
        corrupt_spike_file(r.spike_file, token="a b")


def test_error_injection_wavs_and_hdf5(tmp_path):
    info = write_crcns_aa1(tmp_path / "t", n_cells=1, n_conspecific=2, n_flatrip=0)
    wav_a, wav_b = (s.path for s in info.stims)
    set_wav_sample_rate(wav_a, 44100)
    samples, rate = read_wav(wav_a)
    assert rate == 44100
    np.testing.assert_array_equal(samples, info.truth.sounds[info.stims[0].sound])
    with pytest.raises(RawDataError, match="44100"):
        read_wav(wav_a, expected_sr=32000)
    truncate_file(wav_b, 1000)
    assert wav_b.stat().st_size == 1000
    with pytest.raises(RawDataError, match="truncated"):
        read_wav(wav_b)
    with pytest.raises(ValueError):
        truncate_file(wav_b, 5000)
    with pytest.raises(TypeError):
        set_wav_sample_rate(wav_a, 44100.5)

    info4 = write_crcns_aa4(tmp_path / "a4", n_units=1, animals=("GreBlu9508M",))
    r = info4.responses[0]
    delete_h5_group(r.spike_file, f"{r.group}/1")
    with h5py.File(r.spike_file, "r") as fh:
        assert "1" not in fh[r.group] and "2" in fh[r.group]
    delete_h5_group(r.spike_file, "Block1")
    with h5py.File(r.spike_file, "r") as fh:
        assert "Block1" not in fh
    with pytest.raises(KeyError):
        delete_h5_group(r.spike_file, "Block1")


# --- comparison with the real aa-2 files ---------------------------------------------

@needs_real_aa2
def test_stim_files_match_the_real_layout(aa2):
    real = sorted((REAL_AA2 / "all_cells").glob("*/*/stim*"))
    assert real
    for path in real:
        assert len(path.read_bytes()) == 37 and STIM_FILE.fullmatch(path.read_bytes())
    for r in aa2.responses:
        assert STIM_FILE.fullmatch(r.stim_file.read_bytes())


@needs_real_aa2
def test_spike_lines_match_the_real_style(aa2):
    real = sorted((REAL_AA2 / "all_cells").glob("*/*/spike*"))
    assert real
    real_values, ours = [], []
    for path in real:
        check_spike_bytes(path.read_bytes())
        real_values += [v for t in read_spike_times(path) for v in t]
    for r in aa2.responses:
        check_spike_bytes(r.spike_file.read_bytes())
        ours += [v for t in r.trials for v in t]
    # both sit on the 32 kHz clock, rounded down to the microsecond
    for values in (np.array(real_values), np.array(ours)):
        us = np.round(values * 1000).astype(np.int64)
        j = -((-us * 32) // 1000)
        np.testing.assert_array_equal(j * 1000 // 32, us)
    # an all-but-one-empty file looks like the real oo0909_4_A/conspecific/spike18
    assert (REAL_AA2 / "all_cells/oo0909_4_A/conspecific/spike18").read_bytes() == (
        b"\n" * 5 + b"993.312 \n" + b"\n" * 4)


@needs_real_aa2
def test_wav_header_matches_the_real_layout(aa2):
    real = sorted((REAL_AA2 / "all_stims").glob("*.wav"))
    assert real
    ours = aa2.stims[0].path.read_bytes()
    for path in real:
        data = path.read_bytes()
        assert path.stem == hashlib.md5(data).hexdigest().upper()
        # identical header layout: only the two size fields differ
        assert data[:4] == ours[:4] and data[8:40] == ours[8:40]
        check_wav(path, 32000)
