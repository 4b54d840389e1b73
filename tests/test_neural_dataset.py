"""NeuralDataset: contract, masks, bidirectional selection, items, validation errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.datasets.neural_dataset import NeuralDataset
from tests.conftest import NAN, sentinel, toy_parts


def nan_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(torch.isnan(a), torch.isnan(b))) and bool(
        torch.equal(torch.nan_to_num(a, nan=-12345.0), torch.nan_to_num(b, nan=-12345.0)))


# ---------------------------------------------------------------------------- contract basics
def test_attributes_and_accessors(toy):
    assert toy.path == "toy" and toy.dt == 5.0
    assert toy.get_N() == toy.N_neurons == 4
    assert toy.get_S() == 3 and len(toy.stims) == 3
    assert toy.I == [0, 1, 2, 3] and toy.S_sel is None
    assert [m["cell_id"] for m in toy.get_nrn_meta()] == ["c0", "c1", "c2", "c3"]
    assert isinstance(toy, torch.utils.data.Dataset)


def test_responses_read_back_exactly(toy, toy_values):
    for s in range(3):
        assert len(toy.responses[s]) == 4
        for n in range(4):
            got = toy.responses[s][n]
            if (s, n) in toy_values:
                assert got.dtype == torch.float32
                assert torch.equal(got, toy_values[(s, n)])
            else:
                assert got.shape == (1, 1) and torch.isnan(got).all()
    assert len(toy.responses) == 3
    assert torch.equal(toy.responses[-1][-1], toy.responses[2][3], ) is False  # both NaN


def test_nrn_masks_from_sentinels_and_cached(toy):
    expected = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(toy.nrn_masks, expected)
    assert toy.nrn_masks is toy.nrn_masks  # computed once
    toy.invalidate_nrn_masks()
    assert torch.equal(toy.nrn_masks, expected)


def test_len_and_iterable_stims(toy):
    assert len(toy) == 2  # stim 2 was heard by nobody
    assert toy.iterable_stims == [0, 1]


def test_item_values_padding_and_mask(toy, toy_values):
    item = toy[0]
    assert set(item) == {"stims", "responses", "valid_mask", "stim_meta"}
    assert item["stim_meta"]["name"] == "s0"
    assert item["stims"] is toy.stims[0]
    resp, mask = item["responses"], item["valid_mask"]
    assert resp.shape == (4, 3, 5) and mask.shape == (4, 3, 5) and mask.dtype == torch.bool
    assert torch.equal(resp[0, :2], toy_values[(0, 0)]) and torch.isnan(resp[0, 2]).all()
    assert torch.isnan(resp[1]).all()
    assert torch.equal(resp[2, 0], toy_values[(0, 2)][0]) and torch.isnan(resp[2, 1:]).all()
    assert torch.equal(resp[3], toy_values[(0, 3)])
    assert torch.equal(mask, ~torch.isnan(resp))
    item1 = toy[1]
    assert item1["responses"].shape == (4, 2, 3)
    assert torch.equal(item1["responses"][1], toy_values[(1, 1)])
    assert int(item1["valid_mask"].sum()) == 6


def test_negative_slice_and_list_indexing(toy):
    assert toy[-1]["stim_meta"]["name"] == "s1"
    assert toy[-2]["stim_meta"]["name"] == "s0"
    many = toy[0:2]
    assert set(many) == {"stims", "responses", "valid_mask", "stim_meta"}
    assert [m["name"] for m in many["stim_meta"]] == ["s0", "s1"]
    assert [m["name"] for m in toy[[1, 0]]["stim_meta"]] == ["s1", "s0"]
    assert [m["name"] for m in toy[np.array([1])]["stim_meta"]] == ["s1"]
    assert toy[5:9]["stim_meta"] == []


@pytest.mark.parametrize("bad", [2, -3, 10])
def test_index_out_of_range(toy, bad):
    with pytest.raises(IndexError, match=r"len=2.*\[-2, 1\]"):
        toy[bad]


def test_index_bad_type(toy):
    with pytest.raises(TypeError, match="int, slice or list"):
        toy["0"]
    with pytest.raises(TypeError):
        toy[1.0]


def test_repr_says_what_is_selected(toy):
    assert "no selection" in repr(toy) and "4 neurons and 2 stims in use" in repr(toy)
    toy.select_pop_by_nrn_attr("area", "M")
    text = repr(toy)
    assert "2 neurons chosen" in text and "2 neurons and 2 stims in use" in text
    toy.select_stims_by_attr("type", "call")
    assert "1 stims chosen" in repr(toy) and "1 neurons and 1 stims in use" in repr(toy)


# ---------------------------------------------------------------------------- neuron selection
def test_select_neuron_and_population(toy):
    assert toy.select_neuron(3) == [3]
    assert len(toy) == 1 and toy.iterable_stims == [0]
    item = toy[0]
    assert item["responses"].shape == (1, 3, 5)
    assert toy.select_population([3, 0]) == [3, 0]
    assert toy.selected_neurons == [3, 0]
    resp = toy[0]["responses"]
    assert torch.equal(resp[0], toy.responses[0][3]) and torch.equal(resp[1, :2], toy.responses[0][0])
    assert toy.select_population(np.array([1])) == [1] and toy.iterable_stims == [1]
    assert toy.select_population(torch.tensor([2, 1])) == [2, 1]


@pytest.mark.parametrize("call", [lambda d: d.select_neuron(4), lambda d: d.select_neuron(-1),
                                  lambda d: d.select_population([0, 4])])
def test_neuron_index_out_of_range(toy, call):
    with pytest.raises(IndexError, match=r"valid range is \[0, 3\]"):
        call(toy)


def test_neuron_selection_bad_inputs(toy):
    with pytest.raises(TypeError, match="integer"):
        toy.select_neuron("3")
    with pytest.raises(ValueError, match="more than once"):
        toy.select_population([1, 1])
    with pytest.raises(TypeError, match="sequence"):
        toy.select_population(3)
    with pytest.raises(TypeError, match="callable"):
        toy.select_pop_by_nrn_predicate("area == 'L'")


def test_select_by_nrn_attr_skips_missing_key(toy):
    assert toy.select_pop_by_nrn_attr("area", "M") == [1, 3]
    assert len(toy) == 2
    assert toy.select_pop_by_nrn_attr("snr", 0.2) == [1]
    assert toy.select_pop_by_nrn_attr("missing_key", 1) == []
    assert len(toy) == 0 and toy.selected_neurons == []


def test_empty_selection_means_nothing_not_everything(toy):
    toy.select_pop_by_nrn_attr("area", "nowhere")
    assert toy.I == [] and len(toy) == 0 and toy.get_nrn_meta() == []
    with pytest.raises(IndexError, match="nothing is selected"):
        toy[0]


def test_select_by_nrn_predicate_skips_key_and_type_errors(toy):
    assert toy.select_pop_by_nrn_predicate(lambda m: m["snr"] > 0.5) == [0, 3]  # c2 lacks snr
    assert toy.select_pop_by_nrn_predicate(lambda m: m["area"] > 3) == []  # TypeError skipped
    with pytest.raises(ZeroDivisionError):  # other errors surface
        toy.select_pop_by_nrn_predicate(lambda m: 1 / 0)


def test_select_pop_by_stim_attr_and_predicate(toy):
    assert toy.select_pop_by_stim_attr("type", "call") == [1]
    assert toy.select_pop_by_stim_attr("type", "song") == [0, 2, 3]  # stim 2 adds nobody
    assert toy.select_pop_by_stim_predicate(lambda m: m["duration_s"] < 0.02) == [1]
    assert toy.select_pop_by_stim_attr("type", "none") == []


def test_reset_pop_selection(toy):
    toy.select_neuron(1)
    toy.reset_pop_selection()
    assert toy.I == [0, 1, 2, 3] and len(toy) == 2


def test_I_setter_is_select_population(toy):
    toy.I = [2]
    assert toy.selected_neurons == [2]
    toy.I = None
    assert toy.selected_neurons == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- stim selection
def test_select_stims_bidirectional(toy):
    assert toy.select_stims_by_attr("type", "call") == [1]
    assert toy.S_sel == [1]
    assert toy.selected_neurons == [1]  # neurons without data on stim 1 are hidden
    assert len(toy) == 1
    item = toy[0]
    assert item["stim_meta"]["name"] == "s1" and item["responses"].shape == (1, 2, 3)
    assert [m["cell_id"] for m in toy.get_nrn_meta()] == ["c1"]


def test_stim_selection_intersects_neuron_selection(toy):
    toy.select_population([0, 1])
    toy.select_stim(0)
    assert toy.selected_neurons == [0] and len(toy) == 1
    toy.select_stims([2])  # nobody heard stim 2
    assert toy.selected_neurons == [] and len(toy) == 0
    toy.select_stims([])
    assert len(toy) == 0 and toy.S_sel == []


def test_select_stims_by_predicate_and_reset(toy):
    assert toy.select_stims_by_predicate(lambda m: m["duration_s"] > 0.02) == [0]  # s2 skipped
    assert len(toy) == 1
    toy.reset_stim_selection()
    assert toy.S_sel is None and len(toy) == 2


def test_select_stims_sorted_and_validated(toy):
    assert toy.select_stims([1, 0]) == [0, 1]
    with pytest.raises(IndexError, match=r"valid range is \[0, 2\]"):
        toy.select_stims([0, 3])
    with pytest.raises(IndexError, match=r"\[0, 2\]"):
        toy.select_stim(3)
    with pytest.raises(ValueError, match="more than once"):
        toy.select_stims([0, 0])
    toy.S_sel = [1]
    assert toy.iterable_stims == [1]
    toy.S_sel = None
    assert toy.iterable_stims == [0, 1]


def test_selection_cache_is_invalidated(toy):
    assert len(toy) == 2
    toy.select_neuron(1)
    assert len(toy) == 1
    toy.responses[0][1] = torch.ones(1, 5)  # neuron 1 now heard stim 0 too
    assert toy.nrn_masks[0, 1]
    assert len(toy) == 2


# ---------------------------------------------------------------------------- queries
def test_string_queries_both_sides(toy):
    assert toy.select_pop_by_nrn_query("area == 'L' and snr > 0.5") == [0]
    assert toy.select_pop_by_nrn_query("area in ('L', 'M') and not snr < 0.5") == [0, 3]
    assert toy.select_pop_by_nrn_query("snr is not None or area == 'L'") == [0, 1, 2, 3]
    assert toy.select_stims_by_query("type in ('song', 'call')") == [0, 1, 2]
    assert toy.select_stims_by_query("type == 'song' and duration_s >= 0.025") == [0]
    assert toy.select_pop_by_stim_query("type == 'call'") == [1]


def test_malformed_query_points_at_bad_part(toy):
    with pytest.raises(ValueError) as err:
        toy.select_pop_by_nrn_query("area == 'L' and len(area) > 2")
    text = str(err.value)
    assert "function calls are not allowed" in text
    lines = text.splitlines()
    assert lines[1].strip() == "area == 'L' and len(area) > 2"
    assert lines[2].index("^") == lines[1].index("len(area)")


# ---------------------------------------------------------------------------- list-of-lists subclasses
class HandBuilt(NeuralDataset):
    """A subclass filling responses as a list of lists, the deepSTRF way."""

    def __init__(self, path=None, dt_ms=1.0):
        super().__init__(path, dt_ms)
        stims, responses, stim_meta, nrn_meta, _ = toy_parts()
        self.stims = stims
        self.responses = []
        for row in responses:
            self.responses.append(row)
        self.stim_meta = stim_meta
        self.nrn_meta = nrn_meta
        self.N_neurons = len(nrn_meta)
        self.validate()


def test_subclass_filling_lists_then_validate(toy_values):
    ds = HandBuilt()
    assert len(ds) == 2
    assert torch.equal(ds.responses[0][3], toy_values[(0, 3)])
    assert torch.equal(ds.nrn_masks[:, 1], torch.tensor([False, True, False]))
    assert "packed responses" in repr(ds.responses)


def test_responses_setter_repacks():
    ds = HandBuilt()
    stims, responses, *_ = toy_parts()
    responses[2][0] = torch.ones(2, 4)
    ds.responses = responses
    assert len(ds) == 3 and ds.iterable_stims == [0, 1, 2]


def test_pair_edits_through_responses_view(toy, toy_values):
    toy.responses[0][3] = sentinel()
    assert not toy.nrn_masks[0, 3] and toy.responses[0][3].shape == (1, 1)
    toy.responses[0][1] = torch.full((4, 5), 2.0)
    assert toy.responses[0][1].shape == (4, 5) and torch.equal(toy.responses[0][0],
                                                               toy_values[(0, 0)])
    with pytest.raises(ValueError, match="T=5"):
        toy.responses[0][2] = torch.ones(1, 4)
    toy.responses[1][1] = torch.zeros(2, 3)  # same shape: copy-on-write
    assert float(toy.responses[1][1].sum()) == 0.0
    with pytest.raises(IndexError, match=r"\[0, 3\]"):
        toy.responses[0][4]
    with pytest.raises(IndexError, match=r"\[0, 2\]"):
        toy.responses[3]


# ---------------------------------------------------------------------------- validation errors
def build(**changes):
    stims, responses, stim_meta, nrn_meta, _ = toy_parts()
    parts = {"stims": stims, "responses": responses, "stim_meta": stim_meta, "nrn_meta": nrn_meta}
    parts.update(changes)
    return AudioNeuralDataset.from_data(parts["stims"], parts["responses"], dt_ms=5.0,
                                        stim_meta=parts["stim_meta"], nrn_meta=parts["nrn_meta"])


def test_validate_dt():
    with pytest.raises(ValueError, match="dt_ms must be a finite number > 0; got -1"):
        AudioNeuralDataset.from_data([], [], dt_ms=-1)
    with pytest.raises(ValueError, match="dt_ms"):
        NeuralDataset(None, 0)
    ds = HandBuilt()
    ds.dt = 0
    with pytest.raises(ValueError, match="dt"):
        ds.validate()


def test_validate_empty():
    with pytest.raises(ValueError, match="no neurons"):
        AudioNeuralDataset.from_data([], [], dt_ms=1.0)
    stims, responses, stim_meta, nrn_meta, _ = toy_parts()
    with pytest.raises(ValueError, match="no stimuli"):
        AudioNeuralDataset.from_data([], [], dt_ms=1.0, nrn_meta=nrn_meta, stim_meta=[], F=6)


def test_validate_nrn_meta_length():
    ds = HandBuilt()
    ds.nrn_meta = ds.nrn_meta[:3]
    with pytest.raises(ValueError, match="N_neurons=4 but nrn_meta has 3"):
        ds.validate()


def test_validate_row_of_wrong_length():
    stims, responses, *_ = toy_parts()
    responses[1] = responses[1][:3]
    with pytest.raises(ValueError, match=r"responses\[1\] has 3 entries.*N_neurons=4"):
        build(responses=responses)


def test_validate_wrong_rank_names_stim_and_neuron():
    stims, responses, *_ = toy_parts()
    responses[0][2] = torch.ones(5)
    with pytest.raises(ValueError, match=r"responses\[0\]\[2\] must be 2-D"):
        build(responses=responses)
    stims, responses, *_ = toy_parts()
    responses[1][3] = np.ones((1, 3))
    with pytest.raises(TypeError, match=r"responses\[1\]\[3\] must be a torch.Tensor"):
        build(responses=responses)


def test_validate_T_mismatch_between_neurons_and_with_stim():
    stims, responses, *_ = toy_parts()
    responses[0][2] = torch.ones(1, 4)
    with pytest.raises(ValueError, match=r"responses\[0\]\[2\] has T=4.*responses\[0\]\[0\] has T=5"):
        build(responses=responses)
    stims, responses, *_ = toy_parts()
    stims[1] = torch.rand(1, 6, 4)
    with pytest.raises(ValueError, match=r"stim 1 \(e.g. neuron 1\) have T=3.*stims\[1\] has T=4"):
        build(stims=stims)


def test_validate_nan_in_stim():
    stims, *_ = toy_parts()
    stims[2][0, 1, 1] = NAN
    with pytest.raises(ValueError, match=r"stims\[2\] contains NaN"):
        build(stims=stims)


def test_validate_stim_rank_and_bands():
    stims, *_ = toy_parts()
    stims[1] = torch.rand(6, 3)
    with pytest.raises(ValueError, match=r"stims\[1\] must be a \(1, F, T\) spectrogram"):
        build(stims=stims)
    stims, *_ = toy_parts()
    stims[1] = torch.rand(1, 5, 3)
    with pytest.raises(ValueError, match=r"stims\[1\] has 5 frequency bands but F=6"):
        build(stims=stims)
    stims, *_ = toy_parts()
    stims[0] = torch.ones(1, 6, 5, dtype=torch.int64)
    with pytest.raises(TypeError, match="floating-point"):
        build(stims=stims)


def test_validate_meta_types_and_counts():
    stims, responses, stim_meta, nrn_meta, _ = toy_parts()
    with pytest.raises(ValueError, match="3 stims but 2 stim_meta"):
        build(stim_meta=stim_meta[:2])
    nrn_meta = list(nrn_meta)
    nrn_meta[1] = "c1"  # any object is accepted as metadata (issue 9; tests/test_porting.py)
    assert build(nrn_meta=nrn_meta).nrn_meta[1] == "c1"


def test_validate_zero_repeats_and_bad_dtype():
    stims, responses, *_ = toy_parts()
    responses[0][1] = torch.ones(0, 5)
    with pytest.raises(ValueError, match=r"responses\[0\]\[1\] has 0 repeats"):
        build(responses=responses)
    stims, responses, *_ = toy_parts()
    responses[0][1] = torch.ones(1, 5, dtype=torch.bool)
    with pytest.raises(TypeError, match="real numbers"):
        build(responses=responses)


def test_bad_input_leaves_list_intact():
    stims, responses, *_ = toy_parts()
    responses[2][3] = torch.ones(3)
    with pytest.raises(ValueError):
        build(responses=responses)
    assert all(row is not None for row in responses)


# ---------------------------------------------------------------------------- waveform mode
def waveform_dataset(hop=4, T=(5, 3, 4), audio_len=None, dt_ms=1.0, audio_fs=4000):
    stims_spec, responses, stim_meta, nrn_meta, _ = toy_parts()
    lengths = audio_len or [t * hop for t in T]
    stims = [torch.rand(1, n) for n in lengths]
    return AudioNeuralDataset.from_data(stims, responses, dt_ms=dt_ms, stim_meta=stim_meta,
                                        nrn_meta=nrn_meta, audio_fs=audio_fs, F=32)


def test_waveform_mode_grid_lock_ok():
    ds = waveform_dataset()
    assert ds.is_waveform and ds.hop == 4 and ds.get_F() == 32
    assert ds[0]["stims"].shape == (1, 20) and ds[0]["responses"].shape == (4, 3, 5)


def test_waveform_mode_non_integer_hop():
    with pytest.raises(ValueError, match=r"integer number of audio samples.*= 4\.41"):
        waveform_dataset(audio_fs=4410, dt_ms=1.0)


def test_waveform_mode_length_mismatch():
    with pytest.raises(ValueError, match=r"waveform stim 1 has 13 samples.*3 bins of 4.*= 12"):
        waveform_dataset(audio_len=[20, 13, 16])


def test_waveform_mode_stim_nobody_heard_is_not_checked():
    ds = waveform_dataset(audio_len=[20, 12, 7])  # stim 2 has no responses
    assert ds.get_S() == 3


def test_audio_F_must_be_positive():
    stims, responses, stim_meta, nrn_meta, _ = toy_parts()
    with pytest.raises(ValueError, match="F must be a positive int"):
        AudioNeuralDataset.from_data([torch.rand(1, 5)] * 3, responses, dt_ms=1.0,
                                     stim_meta=stim_meta, nrn_meta=nrn_meta, audio_fs=1000)


# ---------------------------------------------------------------------------- provenance
def test_provenance_records_basics(toy):
    prov = toy.provenance
    assert prov["class"] == "AudioNeuralDataset" and prov["n_stims"] == 3
    assert prov["operations"] == [] and prov["manifest"] is None
