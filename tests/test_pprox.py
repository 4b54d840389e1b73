"""pprox reader: both layouts, onsets never assumed 0, every malformed piece named."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from deepstrf.errors import RawDataError
from deepstrf.io.pprox import LEGACY_SCHEMA, STIMTRIAL_SCHEMA, read_pprox
from deepstrf.preprocessing.spikes import bin_spike_times


def _write(tmp_path, document, name="u_1_1_c1.pprox"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _stimtrial(trials, **top):
    return {"$schema": STIMTRIAL_SCHEMA, "bird": "uuid-1", **top, "pprox": trials}


def _trial(events, name="ep_x_C", on=0.0, off=1.0, **extra):
    return {"events": events, "offset": 12.5, "index": 0, "interval": [on - 1.0, off + 1.0],
            "stimulus": {"name": name, "interval": [on, off]},
            "recording": {"entry": 0, "start": 1, "end": 2}, **extra}


def test_stimtrial_times_are_ms_from_the_stimulus_onset(tmp_path):
    path = _write(tmp_path, _stimtrial([_trial([-0.2, 0.0, 0.0125, 0.5]),
                                        _trial([], name="ep_x_G_g1"),
                                        _trial([2.015, 2.5], on=2.0, off=3.0)]))
    unit = read_pprox(path)
    assert unit.schema == "stimtrial" and unit.schema_declared and unit.n_trials == 3
    assert unit.stimuli == ("ep_x_C", "ep_x_G_g1", "ep_x_C")
    assert unit.conditions == (None, None, None)
    np.testing.assert_array_equal(unit.lengths, [4, 0, 2])
    np.testing.assert_array_equal(unit.trial_times(0), [-200.0, 0.0, 12.5, 500.0])
    assert unit.trial_times(1).size == 0
    # older files: trial-relative times with a non-zero onset, subtracted (never assumed 0)
    np.testing.assert_array_equal(unit.trial_times(2), [15.0, 500.0])
    np.testing.assert_allclose(unit.durations_ms, [1000.0, 1000.0, 1000.0])
    assert unit.metadata == {"$schema": STIMTRIAL_SCHEMA, "bird": "uuid-1"}


def test_a_spike_on_a_bin_edge_lands_in_the_bin_that_starts_there(tmp_path):
    onsets = np.arange(0.0, 200.0, 0.37)             # seconds into a long recording
    trials = [_trial([on + 0.015, on + 0.005, on + 0.0999], on=on, off=on + 1.0)
              for on in onsets]
    unit = read_pprox(_write(tmp_path, _stimtrial(trials)))
    raw = np.array([(on + 0.015 - on) * 1000.0 for on in onsets])
    assert (raw < 15.0).any()                         # the float error the reader removes
    counts = bin_spike_times([unit.trial_times(i) for i in range(unit.n_trials)], 5.0, 40)
    assert (counts[:, 3] == 1).all() and (counts[:, 1] == 1).all() and (counts[:, 19] == 1).all()
    assert counts.sum() == 3 * len(onsets)


def test_legacy_times_are_ms_from_stim_on(tmp_path):
    doc = {"$schema": LEGACY_SCHEMA, "bird": "B1", "location": "NCM", "hemisphere": "R",
           "pprox": [{"stimulus": "B189", "condition": "gap1", "event": [1995.0, 2015.0, 2100.5],
                      "stim_on": 2000.0, "stim_off": 3012.0, "stim_uuid": "x", "category": "c",
                      "units": "ms", "trial": 1, "index": 0},
                     {"stimulus": "B189", "condition": "continuous", "event": [],
                      "stim_on": 1000.0, "trial": 2, "index": 1}]}
    unit = read_pprox(_write(tmp_path, doc))
    assert unit.schema == "legacy" and unit.stimuli == ("B189", "B189")
    assert unit.conditions == ("gap1", "continuous")
    np.testing.assert_array_equal(unit.trial_times(0), [-5.0, 15.0, 100.5])
    np.testing.assert_array_equal(unit.durations_ms[:1], [1012.0])
    assert np.isnan(unit.durations_ms[1]) and unit.metadata["location"] == "NCM"


def test_layout_without_schema_is_read_from_the_trials(tmp_path):
    legacy = read_pprox(_write(tmp_path, {"pprox": [{"stimulus": "A", "event": [5.0],
                                                     "stim_on": 1.0}]}, "a.pprox"))
    trial = read_pprox(_write(tmp_path, {"pprox": [_trial([0.5])]}, "b.pprox"))
    older = read_pprox(_write(tmp_path, {"$schema": STIMTRIAL_SCHEMA, "pprox": [
        {"events": [2.25], "stimulus": "song_1", "stimulus_begin": 2.0}]}, "c.pprox"))
    base = read_pprox(_write(tmp_path, {"$schema": LEGACY_SCHEMA, "pprox": [_trial([0.5])]},
                             "d.pprox"))
    assert (legacy.schema, legacy.schema_declared) == ("legacy", False)
    assert (trial.schema, trial.schema_declared) == ("stimtrial", False)
    assert base.schema == "stimtrial" and base.schema_declared
    np.testing.assert_array_equal(legacy.trial_times(0), [4.0])
    np.testing.assert_array_equal(trial.trial_times(0), [500.0])
    np.testing.assert_array_equal(older.trial_times(0), [250.0])
    assert older.stimuli == ("song_1",)


@pytest.mark.parametrize("content,message", [
    ("<!DOCTYPE html><html><body>Login</body></html>", "HTML"),
    ('{"$schema": "%s", "pprox": [{"events": [0.1, 0.' % STIMTRIAL_SCHEMA, "truncated"),
    ("", "not a valid pprox JSON"),
    ('{"pprox": [{"events": [NaN], "stimulus": {"name": "a", "interval": [0, 1]}}]}',
     "non-finite"),
    ("[1, 2]", "JSON object"),
    ('{"bird": "x"}', "'pprox' list"),
    ('{"pprox": [3]}', "trial 0 of 'pprox' must be a JSON object"),
    ('{"$schema": "https://example.org/other.json#", "pprox": []}', "unknown '\\$schema'"),
])
def test_malformed_files_name_the_file(tmp_path, content, message):
    path = _write(tmp_path, content, "broken_1_1_c3.pprox")
    with pytest.raises(RawDataError, match=message) as err:
        read_pprox(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("trial,message", [
    ({"stimulus": {"name": "a", "interval": [0, 1]}}, "trial 1 has no 'events' field"),
    ({"events": "0.1 0.2", "stimulus": {"name": "a", "interval": [0, 1]}}, "list of numbers"),
    ({"events": [0.1, "0.2"], "stimulus": {"name": "a", "interval": [0, 1]}}, "'0.2'"),
    ({"events": [True], "stimulus": {"name": "a", "interval": [0, 1]}}, "list of numbers"),
    ({"events": [[0.1]], "stimulus": {"name": "a", "interval": [0, 1]}}, "list of numbers"),
    ({"events": [0.1], "stimulus": {"name": "a"}}, "onset the spike times are measured"),
    ({"events": [0.1], "stimulus": {"name": "a", "interval": ["0", 1]}}, "interval\\[0\\]"),
    ({"events": [0.1], "stimulus": {"name": "a", "interval": [1, 0]}}, "ends before"),
    ({"events": [0.1], "stimulus": {"name": "", "interval": [0, 1]}}, "non-empty string"),
    ({"events": [0.1], "stimulus": "a"}, "expected 'stimulus' as an object"),
])
def test_bad_stimtrial_trials_name_the_file_and_trial(tmp_path, trial, message):
    path = _write(tmp_path, _stimtrial([_trial([0.0]), trial]))
    with pytest.raises(RawDataError, match=message) as err:
        read_pprox(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("trial,message", [
    ({"stimulus": "B1", "condition": "gap1", "stim_on": 0.0}, "no 'event' field"),
    ({"stimulus": "B1", "event": [1.0]}, "no 'stim_on'"),
    ({"stimulus": "B1", "event": [1.0], "stim_on": None}, "'stim_on' must be a finite"),
    ({"stimulus": 189, "event": [1.0], "stim_on": 0.0}, "'stimulus' must be a non-empty"),
    ({"stimulus": "B1", "condition": 2, "event": [1.0], "stim_on": 0.0}, "'condition'"),
])
def test_bad_legacy_trials_name_the_file(tmp_path, trial, message):
    path = _write(tmp_path, {"$schema": LEGACY_SCHEMA, "pprox": [trial]})
    with pytest.raises(RawDataError, match=message) as err:
        read_pprox(path)
    assert str(path) in str(err.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pprox"):
        read_pprox(tmp_path / "nope.pprox")
    path = tmp_path / "bin.pprox"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RawDataError, match="not UTF-8") as err:
        read_pprox(path)
    assert str(path) in str(err.value)


def test_reader_does_not_import_torch(tmp_path):
    path = _write(tmp_path, _stimtrial([_trial([0.1])]))
    code = ("import sys\nfrom deepstrf.io.pprox import read_pprox\n"
            f"read_pprox({str(path)!r})\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
