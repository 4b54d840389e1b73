"""The Alice word table on the response grid, and TRF recovery through DataLoader."""

from __future__ import annotations

import math
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from deepstrf.datasets.audio.alice_eeg import (  # noqa: E402
    AliceEEGDataset,
    _segment_words,
    read_word_table,
    render_word_feature,
    segment_bins,
    word_bins,
)
from deepstrf.errors import DataQuirkWarning  # noqa: E402
from deepstrf.preprocessing.spikes import bin_spike_times, n_bins_for_duration  # noqa: E402
from deepstrf.testing.fixtures.alice import (  # noqa: E402
    ALICE_EEG_CHANNELS,
    ALICE_SEGMENT_DURATIONS_S,
    write_alice_eeg,
)

REAL = Path("/work/shared/realdata/alice")
DT = 10.0


def _build(root, **kwargs):
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
    """Two subjects, segments of 5.7-7 s (about 10 words each), S26 without segment 1."""
    root = tmp_path_factory.mktemp("alice_words") / "data"
    fx = write_alice_eeg(root / "raw", subjects=("S01", "S26"), segment_durations_s=10.0,
                         seed=5)
    return root, fx


def _exact_bin(onset: str, dt_ms: float = DT) -> int:
    """floor(onset * 1000 / dt) in exact decimal arithmetic."""
    return int((Decimal(onset) * 1000) // Decimal(repr(dt_ms)))


def test_word_bins_snap_onsets_on_an_edge():
    # 2.01 * 1000 / 10 is 200.99999999999997 in floating point: a plain floor says 200
    assert math.floor(2.01 * 1000 / 10) == 200
    np.testing.assert_array_equal(word_bins([0.0, 0.0099999, 0.01, 2.01, 0.03, 0.5049], 10.0),
                                  [0, 0, 1, 201, 3, 50])
    np.testing.assert_array_equal(word_bins([0.003, 0.004], 2.0), [1, 2])
    # the same rule as spike binning: one 'spike' per word lands in the same bin
    onsets = np.array([0.046, 0.562721, 0.784543, 2.01, 1.256929, 0.3])
    counts = bin_spike_times([[t * 1000.0] for t in onsets], DT, 300)
    np.testing.assert_array_equal(word_bins(onsets, DT), counts.argmax(axis=1))


def test_words_are_in_stim_meta_and_render_at_their_bins(tree):
    root, fx = tree
    ds, msgs = _build(root, cache="off", method="pool", hp_freq_hz=None)
    assert not any("word table" in m or "outside the segment" in m for m in msgs), msgs
    assert ds.get_S() == 12
    x = ds.word_predictor("NGRAM")
    ones = render_word_feature(ds)
    n_words = 0
    for s, meta in enumerate(ds.stim_meta):
        rows = fx.segments[meta["segment"]].words
        words = meta["words"]
        assert rows and words["Word"] == [r["Word"] for r in rows]
        assert words["onset"] == [float(r["onset"]) for r in rows]
        assert "Segment" not in words
        bins = [_exact_bin(r["onset"]) for r in rows]
        assert words["bin"] == bins
        T = meta["n_bins"]
        assert x[s].shape == (1, T) == tuple(ds.responses[s][0].shape[-2:])
        assert x[s].dtype == np.float32 and all(0 <= b < T for b in bins)
        expected = np.zeros(T)
        np.add.at(expected, bins, [float(r["NGRAM"]) for r in rows])
        np.testing.assert_array_equal(x[s][0], expected.astype(np.float32))
        assert np.count_nonzero(x[s]) == len(set(bins))
        np.testing.assert_array_equal(ones[s][0], np.bincount(bins, minlength=T))
        n_words += len(rows)
    assert n_words == sum(len(seg.words) for seg in fx.segments.values())


def test_missing_values_and_bad_columns(tree):
    root, fx = tree
    ds, _ = _build(root, cache="off", method="pool", hp_freq_hz=None)
    nan_words = [(s, i) for s, m in enumerate(ds.stim_meta)
                 for i, v in enumerate(m["words"]["IsLexical"]) if v is None]
    with pytest.raises(KeyError, match="no column 'Surprisal'"):
        ds.word_predictor("Surprisal")
    with pytest.raises(ValueError, match="not numeric"):
        ds.word_predictor("Word")
    if nan_words:
        with pytest.raises(ValueError, match="missing=0.0"):
            ds.word_predictor("IsLexical")
    filled = ds.word_predictor("IsLexical", missing=-1.0)
    for s, meta in enumerate(ds.stim_meta):
        words = meta["words"]
        expected = np.zeros(meta["n_bins"])
        np.add.at(expected, words["bin"],
                  [-1.0 if v is None else v for v in words["IsLexical"]])
        np.testing.assert_array_equal(filled[s][0], expected.astype(np.float32))


def test_word_table_round_trips_through_the_cache(tree):
    root, _ = tree
    first, _ = _build(root, method="pool", hp_freq_hz=None)
    again, _ = _build(root, method="pool", hp_freq_hz=None)
    assert first.provenance["cache_hit"] is False and again.provenance["cache_hit"] is True
    assert again.stim_meta == first.stim_meta  # plain JSON: None, not NaN
    for a, b in zip(again.word_predictor("RNN"), first.word_predictor("RNN")):
        np.testing.assert_array_equal(a, b)


def test_word_outside_its_segment_and_missing_table_are_reported(tmp_path):
    fx = write_alice_eeg(tmp_path / "raw", subjects=("S01",), segment_durations_s=20.0, seed=2)
    text = fx.word_table.read_text().splitlines(keepends=True)
    header, first = text[0], text[1].split(",")
    assert first[2] == "1"
    first[3] = "999.5"                                   # onset long after segment 1's end
    fx.word_table.write_text(header + ",".join(first) + "".join(text[2:]), newline="")
    ds, msgs = _build(tmp_path, cache="rebuild", method="pool", hp_freq_hz=None)
    assert any("999.5" in m and "segment 1" in m for m in msgs)
    assert ds.provenance["manifest"]["quirks"] == {"word_outside_segment": 1}
    s1 = next(s for s, m in enumerate(ds.stim_meta) if m["segment"] == 1)
    assert ds.stim_meta[s1]["words"]["bin"][0] == 99950     # kept in the table...
    row = ds.word_predictor()[s1][0]
    assert row.sum() == len(ds.stim_meta[s1]["words"]["bin"]) - 1  # ...not rendered

    fx.word_table.unlink()
    ds, msgs = _build(tmp_path, cache="rebuild", method="pool", hp_freq_hz=None)
    assert any("no word table" in m for m in msgs)
    assert ds.provenance["manifest"]["quirks"] == {"missing_word_table": 1}
    assert all(m["words"] is None for m in ds.stim_meta)
    with pytest.raises(ValueError, match="no word table"):
        ds.word_predictor("NGRAM")


# --- the real word table ------------------------------------------------------------

@pytest.mark.skipif(not REAL.is_dir(), reason="/work/shared/realdata/alice absent")
def test_real_words_land_in_their_12_segments():
    table = read_word_table(REAL / "AliceChapterOne-EEG.csv")
    bins = {s: n_bins_for_duration(round(d * 44100), 44100, DT)
            for s, d in ALICE_SEGMENT_DURATIONS_S.items()}
    assert bins[12] == segment_bins(REAL / "DownTheRabbitHoleFinal_SoundFile12.wav", DT)
    total = 0
    for s in range(1, 13):
        words = _segment_words(table[s], DT)
        b = np.asarray(words["bin"])
        assert b.min() >= 0 and b.max() < bins[s], s
        assert (np.diff(b) >= 0).all()
        total += b.size
        # JSON-able: the file's NaN (6 IsLexical entries) became None
        assert not any(isinstance(v, float) and math.isnan(v)
                       for col in words.values() for v in col)
    assert total == 2129
    assert sum(v is None for s in table for v in _segment_words(table[s], DT)["IsLexical"]) == 6
    first = _segment_words(table[1], DT)
    assert first["Word"][:2] == ["Alice", "was"] and first["bin"][:2] == [4, 56]


# --- TRF recovery through DataLoader + neural_collate ---------------------------------

def _lagged(x: np.ndarray, n_lags: int) -> np.ndarray:
    """(B, T) -> (B, T, n_lags): column l is x delayed by l bins."""
    out = np.zeros(x.shape + (n_lags,))
    for lag in range(n_lags):
        out[:, lag:, lag] = x[:, :x.shape[1] - lag]
    return out


def test_ridge_through_the_dataloader_recovers_the_kernels(tmp_path):
    """Envelope (from the spectrogram) and word (word_predictor) TRFs of the well-driven channels."""
    import torch
    from torch.utils.data import DataLoader

    from deepstrf.utils.data import neural_collate

    fx = write_alice_eeg(tmp_path / "raw", subjects=("S01", "S03"), segment_durations_s=5.0,
                         seed=11)
    ds, _ = _build(tmp_path, cache="off", treat_subjects_as="repeats")
    n_lags = 60
    xtx, xty = 0.0, 0.0
    for batch in DataLoader(ds, batch_size=4, collate_fn=neural_collate):
        spec = batch["stims"].numpy().astype(np.float64)          # (B, 1, F, T)
        y = batch["responses"].numpy().astype(np.float64)         # (B, N, R, T)
        metas = batch["stim_meta"]
        B, N, R, T = y.shape
        env = np.sqrt(np.expm1(spec[:, 0]).sum(axis=1))          # undo log1p: band power
        wrd = np.zeros((B, T))
        valid = np.zeros((B, T), dtype=bool)
        for b, x in enumerate(render_word_feature(metas, fx.truth.word_feature)):
            wrd[b, :x.shape[1]] = x[0]
            valid[b, n_lags:metas[b]["n_bins"]] = True
        X = np.concatenate([_lagged(env, n_lags), _lagged(wrd, n_lags),
                            np.ones((B, T, 1))], axis=2)[valid]      # (rows, 2L+1)
        Y = np.transpose(y, (0, 3, 1, 2))[valid].reshape(-1, N * R)  # (rows, N*R)
        Y = np.nan_to_num(Y, nan=0.0)  # NaN rows: bad channels, excluded below
        xtx = xtx + X.T @ X
        xty = xty + X.T @ Y
    reg = np.eye(2 * n_lags + 1)
    reg[-1, -1] = 0.0
    coef = np.linalg.solve(xtx + reg * np.trace(xtx) / xtx.shape[0] * 1e-3, xty)
    coef = coef.reshape(-1, N, R)
    lag_rows = (np.arange(fx.truth.lags_s.size) + 2) // 5
    bad = {c for r in fx.subjects.values() for c in r.bads}
    for kind, block in (("envelope", coef[:n_lags]), ("word", coef[n_lags:2 * n_lags])):
        truth = fx.truth.kernels(kind)
        gains = np.abs(fx.truth.envelope_gain if kind == "envelope" else fx.truth.word_gain)
        well = [i for i in np.flatnonzero(gains > 0.5 * gains.max())
                if ALICE_EEG_CHANNELS[i] not in bad]
        assert len(well) > 5
        for i in well:
            n = next(k for k, m in enumerate(ds.nrn_meta) if m["channel_id"] ==
                     ALICE_EEG_CHANNELS[i])
            true = np.array([truth[i, lag_rows == lag].sum() for lag in range(n_lags)])
            for r in range(R):
                r_fit = np.corrcoef(block[:, n, r], true)[0, 1]
                assert r_fit > 0.8, (kind, ALICE_EEG_CHANNELS[i], r, r_fit)
    assert isinstance(batch["responses"], torch.Tensor)
