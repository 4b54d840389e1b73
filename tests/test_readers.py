"""Tests of deepstrf.io.readers and the MATLAB writer deepstrf.testing.matfiles."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse
import soundfile

from deepstrf.errors import RawDataError
from deepstrf.io.readers import decode_attr, read_mat, read_spike_times, read_stim_file, read_wav
from deepstrf.testing.matfiles import struct_array, write_mat
from tests.conftest import REALDATA

AA2 = REALDATA / "aa2"
needs_aa2 = pytest.mark.skipif(not AA2.is_dir(), reason="real CRCNS aa-2 files absent")


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_same(a, b, where="value"):
    """Deep equality that also checks types, dtypes and shapes."""
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif scipy.sparse.issparse(a):
        assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype, where
        assert (a != b).nnz == 0, where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{where}: {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if a.dtype == object:
            for index in np.ndindex(a.shape):
                assert_same(a[index], b[index], f"{where}{index}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
        assert a == b, where


# --- read_spike_times ------------------------------------------------------


def test_spike_file_in_the_real_format(tmp_path):
    path = write_bytes(tmp_path, "spike1", b"-464.938 159.375 837.125 \n\n12.000 \n")
    trials = read_spike_times(path)
    assert len(trials) == 3
    assert all(t.dtype == np.float64 for t in trials)
    np.testing.assert_array_equal(trials[0], [-464.938, 159.375, 837.125])
    assert trials[1].shape == (0,)
    np.testing.assert_array_equal(trials[2], [12.0])


@pytest.mark.parametrize(
    "data",
    [
        b"1.5 2.5 \n\n3 \n",             # the writer's format
        b"1.5 2.5\n\n3\n",                # no trailing spaces
        b"1.5 2.5 \r\n\r\n3 \r\n",        # CRLF
        b"1.5\t 2.5\n  \n   3   \n",      # tabs, runs of spaces, blank-looking line
        b"1.5 2.5\n\n3",                  # no final line feed
    ],
)
def test_spike_file_variants_parse_the_same(tmp_path, data):
    trials = read_spike_times(write_bytes(tmp_path, "spike", data))
    assert [t.tolist() for t in trials] == [[1.5, 2.5], [], [3.0]]


@pytest.mark.parametrize(
    ("data", "n_trials"),
    [(b"", 0), (b"\n", 1), (b"\n\n", 2), (b"\n" * 5 + b"993.312 \n" + b"\n" * 4, 10)],
)
def test_empty_trials_count(tmp_path, data, n_trials):
    trials = read_spike_times(write_bytes(tmp_path, "spike", data))
    assert len(trials) == n_trials


def test_numbers_in_all_decimal_forms(tmp_path):
    trials = read_spike_times(write_bytes(tmp_path, "s", b"-1 +2 .5 5. 1e3 -2.5E-1 \n"))
    np.testing.assert_array_equal(trials[0], [-1, 2, 0.5, 5, 1000, -0.25])


@pytest.mark.parametrize(
    ("data", "line", "token"),
    [
        (b"1.0 2.0 \n3.0 abc \n", 2, "abc"),
        (b"1.2.3 \n", 1, "1.2.3"),
        (b"\n\n1.0 nan \n", 3, "nan"),
        (b"1.0 inf\n", 1, "inf"),
        (b"1_000 \n", 1, "1_000"),
        (b"1,5 \n", 1, "1,5"),
        (b"5 - 3\n", 1, "-"),
        (b"1.0 \n2.0 \xe9 \n", 2, "\xe9"),
        (b"1e \n", 1, "1e"),
        (b"1.0\n2.0\xa03.0\n", 2, "\xa0"),
        (b"1.0\x0c2.0\n", 1, "\x0c"),
    ],
)
def test_malformed_token_names_file_line_and_token(tmp_path, data, line, token):
    path = write_bytes(tmp_path, "spike7", data)
    with pytest.raises(RawDataError) as info:
        read_spike_times(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and repr(token) in message


def test_spike_file_missing_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_spike_times(tmp_path / "nope")


def test_many_trials_parse_correctly(tmp_path):
    rng = np.random.default_rng(0)
    trials = [np.round(rng.uniform(-500, 3000, rng.integers(0, 60)), 3) for _ in range(20)]
    text = "".join((" ".join(f"{t:.3f}" for t in tr) + " \n") if tr.size else "\n" for tr in trials)
    parsed = read_spike_times(write_bytes(tmp_path, "spike", text.encode()))
    assert len(parsed) == 20
    for a, b in zip(parsed, trials, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_aa2
@pytest.mark.realdata
def test_real_spike18_has_ten_trials_nine_empty():
    trials = read_spike_times(AA2 / "all_cells/oo0909_4_A/conspecific/spike18")
    assert len(trials) == 10
    assert [t.size for t in trials] == [0] * 5 + [1] + [0] * 4
    assert trials[5].tolist() == [993.312]


@needs_aa2
@pytest.mark.realdata
def test_real_yy1617_spike_files():
    folder = AA2 / "all_cells/yy1617_4_A/conspecific"
    for n in range(1, 21):
        trials = read_spike_times(folder / f"spike{n}")
        assert len(trials) == 10
        times = np.concatenate(trials)
        assert times.size > 0 and np.all(times >= 0)
        np.testing.assert_allclose(times * 1000, np.round(times * 1000), atol=1e-6)
        # Tokens and values agree one for one.
        raw = (folder / f"spike{n}").read_text().split()
        assert times.size == len(raw)
    assert len(read_spike_times(AA2 / "all_cells/oo0909_4_A/conspecific/spike12")) > 0


# --- read_stim_file --------------------------------------------------------


def test_stim_file_returns_the_name(tmp_path):
    path = write_bytes(tmp_path, "stim3", b"0CE3F97518B992FDCA431CEB28645617.wav\n")
    assert read_stim_file(path) == "0CE3F97518B992FDCA431CEB28645617.wav"
    crlf = write_bytes(tmp_path, "stim4", b"  a_b-c.1.WAV \r\n")
    assert read_stim_file(crlf) == "a_b-c.1.WAV"


@pytest.mark.parametrize(
    "data",
    [b"", b"\n  \n", b"a.wav b.wav\n", b"a.wav\nb.wav\n", b"../x.wav\n", b"/etc/x.wav",
     b"sound.mp3\n", b"\xff\xfe.wav\n", b".wav\n"],
)
def test_bad_stim_files_raise(tmp_path, data):
    path = write_bytes(tmp_path, "stim1", data)
    with pytest.raises(RawDataError, match="stim1"):
        read_stim_file(path)


@needs_aa2
@pytest.mark.realdata
def test_real_stim_files_name_existing_wavs():
    folder = AA2 / "all_cells/yy1617_4_A/conspecific"
    for n in range(1, 21):
        name = read_stim_file(folder / f"stim{n}")
        assert len(name) == 36 and (AA2 / "all_stims" / name).is_file()


# --- read_wav --------------------------------------------------------------


def write_pcm16(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    soundfile.write(str(path), samples, sample_rate, subtype="PCM_16")
    return path


def test_wav_values_and_rate(tmp_path):
    ints = np.array([0, 16384, -32768, 32767, -1], dtype=np.int16)
    path = write_pcm16(tmp_path / "a.wav", ints, 32000)
    samples, rate = read_wav(path, expected_sr=32000)
    assert rate == 32000 and isinstance(rate, int)
    assert samples.dtype == np.float32 and samples.shape == (5,)
    np.testing.assert_array_equal(samples, ints / 32768.0)


def test_stereo_is_mixed_to_the_channel_mean(tmp_path):
    left = np.array([0.5, -0.25, 0.0, 1.0]) * 0.5
    right = np.array([0.0, 0.25, 0.5, 0.0]) * 0.5
    path = tmp_path / "st.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    mono, _ = read_wav(path)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)
    both, rate = read_wav(path, mono=False)
    assert both.shape == (2, 4) and rate == 16000
    np.testing.assert_allclose(both[1], right, atol=1e-7)
    single, _ = read_wav(write_pcm16(tmp_path / "m.wav", np.zeros(3, np.int16), 8000), mono=False)
    assert single.shape == (1, 3)


def test_wrong_rate_names_file_expected_and_got(tmp_path):
    path = write_pcm16(tmp_path / "r.wav", np.zeros(10, np.int16), 44100)
    with pytest.raises(RawDataError) as info:
        read_wav(path, expected_sr=32000)
    message = str(info.value)
    assert str(path) in message and "44100" in message and "32000" in message


def test_truncated_data_chunk_raises(tmp_path):
    path = write_pcm16(tmp_path / "t.wav", np.arange(1000, dtype=np.int16), 32000)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(RawDataError, match="truncated"):
        read_wav(path)


def test_truncated_header_only_raises(tmp_path):
    path = write_pcm16(tmp_path / "t.wav", np.arange(1000, dtype=np.int16), 32000)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(RawDataError):
        read_wav(path)


def riff(chunks: list[tuple[bytes, bytes]], riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(d)) + d + b"\0" * (len(d) % 2)
                              for cid, d in chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


FMT_MONO16 = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)


def test_list_chunk_before_data_is_fine(tmp_path):
    data = np.array([1, -2, 3], np.int16).tobytes()
    path = write_bytes(tmp_path, "l.wav", riff([(b"fmt ", FMT_MONO16), (b"LIST", b"INFOxyz"),
                                                  (b"data", data)]))
    samples, rate = read_wav(path)
    assert rate == 8000
    np.testing.assert_array_equal(samples, np.array([1, -2, 3]) / 32768.0)


def test_riff_size_larger_than_file_raises(tmp_path):
    data = np.zeros(4, np.int16).tobytes()
    path = write_bytes(tmp_path, "r.wav", riff([(b"fmt ", FMT_MONO16), (b"data", data)], 9999))
    with pytest.raises(RawDataError, match="RIFF header declares"):
        read_wav(path)


def test_missing_data_chunk_raises(tmp_path):
    path = write_bytes(tmp_path, "n.wav", riff([(b"fmt ", FMT_MONO16)]))
    with pytest.raises(RawDataError, match="no data chunk"):
        read_wav(path)


def test_garbage_and_missing_audio(tmp_path):
    with pytest.raises(RawDataError, match="cannot decode"):
        read_wav(write_bytes(tmp_path, "g.wav", b"this is not audio at all" * 10))
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "missing.wav")


@pytest.mark.parametrize(("kwargs", "error"), [(dict(expected_sr=0), ValueError),
                                               (dict(expected_sr="32k"), TypeError),
                                               (dict(mono=1), TypeError)])
def test_read_wav_bad_arguments(tmp_path, kwargs, error):
    path = write_pcm16(tmp_path / "a.wav", np.zeros(4, np.int16), 8000)
    with pytest.raises(error):
        read_wav(path, **kwargs)


@needs_aa2
@pytest.mark.realdata
def test_real_wavs():
    wavs = sorted((AA2 / "all_stims").glob("*.wav"))
    assert len(wavs) == 20
    for wav in wavs[:5]:
        assert hashlib.md5(wav.read_bytes()).hexdigest().upper() == wav.stem
        samples, rate = read_wav(wav, expected_sr=32000)
        assert rate == 32000 and samples.ndim == 1 and samples.dtype == np.float32
        assert samples.size == (wav.stat().st_size - 44) // 2
        assert np.abs(samples).max() <= 1.0 and np.abs(samples).max() > 0.01


# --- MATLAB files ----------------------------------------------------------


def rich_variables() -> dict:
    return {
        "scalar": 3.5,
        "int_scalar": np.int32(-7),
        "py_int": 5,
        "flag": True,
        "single": np.float32(2.5),
        "cplx": np.complex128(1 - 2j),
        "text": "hello",
        "empty_text": "",
        "empty": np.zeros((0, 0)),
        "empty_row": np.zeros((1, 0), dtype=np.int16),
        "row": np.arange(4.0),
        "column": np.arange(4.0).reshape(4, 1),
        "matrix": np.arange(6.0).reshape(2, 3),
        "cube": np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        "uint": np.arange(5, dtype=np.uint64),
        "logicals": np.array([True, False, True]),
        "complex_row": np.array([1 + 2j, 3 - 1j]),
        "char_matrix": np.array(["ab", "cde"]),
        "cell": [np.arange(3.0), "hi", 2.0],
        "cell_of_structs": [{"a": 1.0}, {"a": 2.0}],
        "one_cell": [np.arange(2.0)],
        "empty_cell": np.empty((0, 0), dtype=object),
        "cell_2d": np.array([[1.0, "x"], [np.arange(2), np.zeros((0, 0))]], dtype=object),
        "nested_cell": [[1.0, "in"], "out"],
        "struct": {"f": 1.0, "g": "x", "h": {"k": np.arange(3), "deep": {"z": "bottom"}}},
        "empty_struct": {},
        "struct_array": struct_array([{"t": np.arange(2.0), "name": "a"},
                                      {"t": np.zeros((1, 0)), "name": "b"}]),
        "struct_2d": struct_array([{"q": float(i)} for i in range(4)], shape=(2, 2)),
        "sparse": scipy.sparse.csc_matrix(np.array([[0, 1.5], [2.0, 0], [0, 0]])),
        "sparse_empty": scipy.sparse.csc_matrix((2, 3)),
        "sparse_logical": scipy.sparse.csc_matrix(np.array([[True, False], [False, True]])),
        "sparse_complex": scipy.sparse.csc_matrix(np.array([[1 + 1j, 0]])),
    }


def test_v5_and_v73_give_identical_python(tmp_path):
    variables = rich_variables()
    v5 = read_mat(write_mat(tmp_path / "a5.mat", variables, version="5"))
    v73 = read_mat(write_mat(tmp_path / "a73.mat", variables, version="7.3"))
    assert sorted(v5) == sorted(v73) == sorted(variables)
    for name in variables:
        assert_same(v5[name], v73[name], name)


def test_decoded_values(tmp_path):
    out = read_mat(write_mat(tmp_path / "a.mat", rich_variables()))
    assert out["scalar"] == 3.5 and type(out["scalar"]) is float
    assert out["int_scalar"] == -7 and type(out["int_scalar"]) is int
    assert out["flag"] == 1
    assert out["text"] == "hello"
    assert out["empty_text"].dtype == np.dtype("<U1") and out["empty_text"].shape == (0,)
    np.testing.assert_array_equal(out["matrix"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(out["column"], np.arange(4.0))
    assert out["cube"].dtype == np.int16 and out["cube"].shape == (2, 3, 4)
    np.testing.assert_array_equal(out["cube"], np.arange(24).reshape(2, 3, 4))
    assert out["logicals"].dtype == np.uint8
    assert out["char_matrix"].tolist() == ["ab ", "cde"]
    assert out["cell"][1] == "hi" and out["cell"].dtype == object
    assert out["cell_of_structs"] == [{"a": 1.0}, {"a": 2.0}]
    np.testing.assert_array_equal(out["one_cell"], [0.0, 1.0])
    assert out["struct"]["h"]["deep"] == {"z": "bottom"}
    assert out["empty_struct"] == {}
    assert [e["name"] for e in out["struct_array"]] == ["a", "b"]
    assert out["struct_2d"].shape == (2, 2) and out["struct_2d"][1, 0] == {"q": 1.0}
    assert isinstance(out["nested_cell"][0], np.ndarray)
    np.testing.assert_array_equal(out["sparse"].toarray(), [[0, 1.5], [2, 0], [0, 0]])


def test_v5_matches_scipy_simplify_cells(tmp_path):
    variables = rich_variables()
    # simplify_cells leaves mat_struct objects inside 2-D struct arrays; compare the rest.
    del variables["struct_2d"]
    path = write_mat(tmp_path / "a5.mat", variables, version="5")
    ours = read_mat(path)
    theirs = {k: v for k, v in scipy.io.loadmat(path, simplify_cells=True).items()
              if not k.startswith("__")}
    for name in variables:
        assert_same(theirs[name], ours[name], name)


def test_structs_nested_in_cells_become_dicts_everywhere(tmp_path):
    variables = {"mixed": [5.0, {"a": 1.0}]}
    for version in ("5", "7.3"):
        out = read_mat(write_mat(tmp_path / f"m{version}.mat", variables, version=version))
        assert out["mixed"][1] == {"a": 1.0}


def test_v73_layout_follows_matlab_conventions(tmp_path):
    path = write_mat(tmp_path / "c.mat", {
        "m": np.arange(6.0).reshape(2, 3), "s": "abc", "c": [1.0, "x"], "st": {"b": 1.0, "a": 2.0},
        "sa": struct_array([{"t": 1.0}, {"t": 2.0}]), "e": np.zeros((0, 3)),
    })
    head = path.read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file")
    assert head[124:128] == b"\x00\x02IM"
    assert scipy.io.matlab.matfile_version(str(path)) == (2, 0)
    with h5py.File(path, "r") as fh:
        assert fh["m"].shape == (3, 2) and fh["m"].attrs["MATLAB_class"] == b"double"
        np.testing.assert_array_equal(fh["m"][()], np.arange(6.0).reshape(2, 3).T)
        assert fh["s"].dtype == np.uint16 and fh["s"].shape == (3, 1)
        assert fh["s"].attrs["MATLAB_class"] == b"char"
        assert fh["c"].dtype == h5py.ref_dtype and fh["c"].shape == (2, 1)
        assert fh[fh["c"][1, 0]].attrs["MATLAB_class"] == b"char"
        assert fh[fh["c"][0, 0]].name.startswith("/#refs#/")
        assert isinstance(fh["st"], h5py.Group)
        fields = [b"".join(f).decode() for f in fh["st"].attrs["MATLAB_fields"]]
        assert fields == ["b", "a"]
        assert fh["sa"]["t"].dtype == h5py.ref_dtype and "MATLAB_class" not in fh["sa"]["t"].attrs
        assert fh["e"].attrs["MATLAB_empty"] == 1
        np.testing.assert_array_equal(fh["e"][()], [0, 3])
    # Field order comes from MATLAB_fields, not HDF5's alphabetical listing.
    assert list(read_mat(path)["st"]) == ["b", "a"]


def test_variable_names_selects_and_checks(tmp_path):
    variables = {"a": 1.0, "b": "x", "c": [1.0]}
    for version in ("5", "7.3"):
        path = write_mat(tmp_path / f"v{version}.mat", variables, version=version)
        assert read_mat(path, variable_names=["b"]) == {"b": "x"}
        assert read_mat(path, variable_names="a") == {"a": 1.0}
        with pytest.raises(RawDataError, match="no variable.*'zz'.*holds: a, b, c"):
            read_mat(path, variable_names=["a", "zz"])
    with pytest.raises(TypeError):
        read_mat(path, variable_names=[1])


def test_ns1_like_nested_struct_arrays(tmp_path):
    """data.set(1x3).repeats(1xR).t rows, as in the NS1 spike files, in both versions."""
    sets = struct_array([
        {"repeats": struct_array([{"t": np.array([1.0, 5.5])}, {"t": np.zeros((1, 0))}])},
        {"repeats": struct_array([{"t": np.array([2.0])}, {"t": np.array([3.0, 4.0])}])},
        {"repeats": struct_array([{"t": np.zeros((1, 0))}, {"t": np.zeros((1, 0))}])},
    ])
    for version in ("5", "7.3"):
        out = read_mat(write_mat(tmp_path / f"ns1_{version}.mat", {"data": {"set": sets}},
                                 version=version))
        repeats = out["data"]["set"][1]["repeats"]
        assert isinstance(repeats, list) and repeats[1]["t"].tolist() == [3.0, 4.0]
        assert repeats[0]["t"] == 2.0
        assert out["data"]["set"][2]["repeats"][0]["t"].shape == (0,)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_content_in_memory_reads_like_the_file(tmp_path, version):
    variables = rich_variables()
    path = write_mat(tmp_path / f"c{version}.mat", variables, version=version)
    from_file, from_bytes = read_mat(path), read_mat(path.read_bytes())
    assert sorted(from_bytes) == sorted(from_file)
    for name in variables:
        assert_same(from_file[name], from_bytes[name], name)
    picked = read_mat(path.read_bytes(), ["scalar"], name="release.zip > c.mat")
    assert picked == {"scalar": 3.5}
    with pytest.raises(RawDataError, match=r"release.zip > c.mat: no variable\(s\) 'nope'.*scalar"):
        read_mat(path.read_bytes(), ["nope"], name="release.zip > c.mat")
    with pytest.raises(RawDataError, match="^<bytes>: (not a readable|unknown) MATLAB file"):
        read_mat(path.read_bytes()[:300])


def test_not_a_mat_file_raises(tmp_path):
    for data in (b"", b"garbage" * 40, b"MATLAB 5.0 MAT-file" + b"\0" * 100):
        path = write_bytes(tmp_path, "bad.mat", data)
        with pytest.raises(RawDataError, match="bad.mat"):
            read_mat(path)
    with pytest.raises(FileNotFoundError):
        read_mat(tmp_path / "missing.mat")


def test_truncated_v73_raises(tmp_path):
    path = write_mat(tmp_path / "t.mat", {"x": np.arange(1000.0)})
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(RawDataError, match="t.mat"):
        read_mat(path)


def test_truncated_v5_raises(tmp_path):
    path = write_mat(tmp_path / "t5.mat", {"x": np.arange(1000.0)}, version="5")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(RawDataError, match="t5.mat"):
        read_mat(path)


def test_unsupported_matlab_class_raises(tmp_path):
    path = write_mat(tmp_path / "f.mat", {"ok": 1.0})
    with h5py.File(path, "r+") as fh:
        ds = fh.create_dataset("handle", data=np.zeros((1, 1), np.uint32))
        ds.attrs["MATLAB_class"] = np.bytes_("function_handle")
        obj = fh.create_dataset("obj", data=np.zeros((1, 1), np.uint32))
        obj.attrs["MATLAB_class"] = np.bytes_("string")
        obj.attrs["MATLAB_object_decode"] = np.int32(3)
        fh.create_dataset("plain", data=np.zeros(3))
    assert read_mat(path, variable_names=["ok"]) == {"ok": 1.0}
    with pytest.raises(RawDataError, match="no MATLAB_class"):
        read_mat(path, variable_names=["plain"])
    with pytest.raises(RawDataError, match="function_handle"):
        read_mat(path, variable_names=["handle"])
    with pytest.raises(RawDataError, match="unsupported MATLAB object"):
        read_mat(path, variable_names=["obj"])


def test_plain_hdf5_without_userblock_is_read(tmp_path):
    path = tmp_path / "plain.mat"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("x", data=np.arange(3.0).reshape(3, 1))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
    np.testing.assert_array_equal(read_mat(path)["x"], [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    ("variables", "error", "match"),
    [
        ({"1bad": 1.0}, ValueError, "not a MATLAB identifier"),
        ({"_x": 1.0}, ValueError, "not a MATLAB identifier"),
        ({"ok": {"bad field": 1.0}}, ValueError, "bad field"),
        ({"ok": None}, TypeError, "NoneType"),
        ({"ok": b"bytes"}, TypeError, "bytes"),
        ({"ok": np.zeros(3, np.float16)}, TypeError, "float16"),
        ({"ok": [1.0, object()]}, TypeError, "object"),
    ],
)
def test_writer_rejects_bad_values(tmp_path, variables, error, match):
    with pytest.raises(error, match=match):
        write_mat(tmp_path / "x.mat", variables)


def test_writer_rejects_bad_version_and_containers(tmp_path):
    with pytest.raises(ValueError, match="version"):
        write_mat(tmp_path / "x.mat", {"a": 1.0}, version="7")
    with pytest.raises(TypeError, match="dict"):
        write_mat(tmp_path / "x.mat", [("a", 1.0)])


def test_struct_array_checks():
    with pytest.raises(ValueError, match="at least one"):
        struct_array([])
    with pytest.raises(ValueError, match="same fields"):
        struct_array([{"a": 1}, {"b": 2}])
    with pytest.raises(ValueError, match="holds 4 elements"):
        struct_array([{"a": 1}], shape=(2, 2))
    with pytest.raises(TypeError):
        struct_array([{"a": 1}, 5])
    array = struct_array([{"a": 1}, {"a": 2}, {"a": 3}], shape=(3, 1))
    assert array.shape == (3, 1) and array[2, 0]["a"] == 3


# --- decode_attr -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"single", "single"),
        (np.bytes_(b"Site1"), "Site1"),
        ("call", "call"),
        (np.str_("song"), "song"),
        (np.array([b"multi"]), "multi"),
        (np.array(["noise"]), "noise"),
        (np.array([[b"x"]], dtype=object), "x"),
        (np.array([b"a", b"b"]), ["a", "b"]),
        ("caf\u00e9".encode(), "caf\u00e9"),
        (b"\xe9t\xe9", "\u00e9t\u00e9"),
        (7, 7),
        (np.array([3]), 3),
    ],
)
def test_decode_attr_values(value, expected):
    out = decode_attr(value)
    assert out == expected and type(out) is type(expected) or (
        isinstance(expected, int) and int(out) == expected)


def test_decode_attr_leaves_numeric_arrays(tmp_path):
    numbers = np.array([1.5, 2.5])
    assert decode_attr(numbers) is numbers


def test_decode_attr_on_h5py_attributes(tmp_path):
    """The three ways AA4-era files store text attributes all decode to str."""
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as fh:
        fh.attrs["vlen_str"] = "single"
        fh.attrs["fixed_bytes"] = np.bytes_(b"multi")
        fh.attrs["bytes_array"] = np.array([b"Site1"])
        fh.attrs["number"] = np.int64(12)
    with h5py.File(path, "r") as fh:
        assert decode_attr(fh.attrs["vlen_str"]) == "single"
        assert decode_attr(fh.attrs["fixed_bytes"]) == "multi"
        assert decode_attr(fh.attrs["bytes_array"]) == "Site1"
        assert decode_attr(fh.attrs["number"]) == 12


def test_read_array_from_each_kind_of_file(tmp_path):
    import h5py

    from deepstrf.io.readers import read_array

    a = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", x=a)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["g/x"] = a
    write_mat(tmp_path / "a.mat", {"s": {"x": a}, "c": [a, 2 * a]}, version="7.3")
    assert np.array_equal(read_array(tmp_path / "a.npy"), a)
    assert np.array_equal(read_array(tmp_path / "a.npz", "x"), a)
    assert np.array_equal(read_array(tmp_path / "a.h5", "g/x"), a)
    assert np.array_equal(read_array(tmp_path / "a.h5", ("g", "x")), a)
    assert np.array_equal(read_array(tmp_path / "a.mat", ("s", "x")), a)
    assert np.array_equal(read_array(tmp_path / "a.mat", ("c", 1)), 2 * a)
    with pytest.raises(RawDataError, match=r"a\.npz: give key= among \['x'\]"):
        read_array(tmp_path / "a.npz", "y")
    with pytest.raises(RawDataError, match=r"a\.h5: cannot read g/y"):
        read_array(tmp_path / "a.h5", "g/y")
    with pytest.raises(RawDataError, match=r"a\.mat: c has no element 5"):
        read_array(tmp_path / "a.mat", ("c", 5))
    with pytest.raises(ValueError, match="a key is needed"):
        read_array(tmp_path / "a.h5")
