"""Concatenation: block-diagonal, tags, compatibility checks, selections across sources."""

from __future__ import annotations

import pytest
import torch

from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.datasets.neural_dataset import NeuralDataset
from deepstrf.datasets.video.video_dataset import VideoNeuralDataset
from deepstrf.testing.synthetic import make_ragged_dataset
from deepstrf.utils.data import concat_neural_datasets


class SubAudio(AudioNeuralDataset):
    pass


def two():
    a = make_ragged_dataset(3, 4, n_bands=5, T_range=(4, 6), coverage=0.7, seed=1)
    b = make_ragged_dataset(2, 3, n_bands=5, T_range=(3, 5), coverage=0.9, seed=2)
    for m in b.nrn_meta:  # a different schema on the second source
        del m["area"]
        m["region"] = "CM"
    return a, b


def test_block_diagonal_and_tags():
    a, b = two()
    c = a + b
    assert type(c) is AudioNeuralDataset
    assert c.get_S() == 5 and c.get_N() == 7 and c.F == 5
    masks = c.nrn_masks
    assert torch.equal(masks[:3, :4], a.nrn_masks) and torch.equal(masks[3:, 4:], b.nrn_masks)
    assert not masks[:3, 4:].any() and not masks[3:, :4].any()
    for s in range(3):
        for n in range(4):
            assert torch.equal(torch.nan_to_num(c.responses[s][n], 9.0),
                               torch.nan_to_num(a.responses[s][n], 9.0))
        assert c.responses[s][5].shape == (1, 1)
    assert torch.equal(c.responses[4][6], b.responses[1][2])
    assert {m["dataset"] for m in c.nrn_meta[:4]} == {"AudioNeuralDataset"}
    assert {m["dataset"] for m in c.stim_meta[3:]} == {"AudioNeuralDataset_2"}
    assert "dataset" not in a.nrn_meta[0]  # sources untouched
    assert c.I == list(range(7)) and len(c) == 5


def test_explicit_names_and_selection_across_schemas():
    a, b = two()
    c = concat_neural_datasets([a, b], names=["AA1", "AA2"])
    assert c.select_pop_by_nrn_attr("dataset", "AA2") == [4, 5, 6]
    assert c.iterable_stims == [3, 4]
    assert c.select_pop_by_nrn_attr("area", "A1") == [0, 2]  # AA2 neurons lack 'area'
    assert all(s < 3 for s in c.iterable_stims)
    assert c.select_pop_by_nrn_query("region == 'CM' or area == 'A2'") == [1, 3, 4, 5, 6]
    c.reset_pop_selection()
    c.select_stims_by_attr("dataset", "AA1")
    assert c.selected_neurons == [0, 1, 2, 3]
    assert c.provenance["operations"][0]["parameters"]["names"] == ["AA1", "AA2"]
    assert set(c.provenance["manifest"]["sources"]) == {"AA1", "AA2"}


def test_nested_concat_keeps_inner_tags():
    a, b = two()
    c = concat_neural_datasets([a, b], names=["AA1", "AA2"])
    d = c + make_ragged_dataset(2, 2, n_bands=5, seed=5)
    tags = [m["dataset"] for m in d.nrn_meta]
    assert tags[:7] == ["AA1"] * 4 + ["AA2"] * 3 and tags[7:] == ["AudioNeuralDataset_2"] * 2


def test_most_specific_common_class():
    a = make_ragged_dataset(2, 2, n_bands=4, seed=1, cls=SubAudio)
    b = make_ragged_dataset(2, 2, n_bands=4, seed=2, cls=SubAudio)
    assert type(a + b) is SubAudio
    c = make_ragged_dataset(2, 2, n_bands=4, seed=3)
    assert type(a + c) is AudioNeuralDataset


def test_incompatible_dt_bands_modality():
    a = make_ragged_dataset(2, 2, n_bands=4, seed=1, dt_ms=5.0)
    with pytest.raises(ValueError, match="dt=5 ms.*dt=1 ms"):
        a + make_ragged_dataset(2, 2, n_bands=4, seed=1, dt_ms=1.0)
    with pytest.raises(ValueError, match="F=4.*F=6"):
        a + make_ragged_dataset(2, 2, n_bands=6, seed=1)
    vid = VideoNeuralDataset.from_data([torch.rand(1, 2, 3, 4)], [[torch.ones(1, 4)]], dt_ms=5.0)
    with pytest.raises(TypeError, match="not an AudioNeuralDataset"):
        a + vid
    with pytest.raises(TypeError, match="not a VideoNeuralDataset"):
        vid + a
    assert a.__add__(3) is NotImplemented


def test_concat_argument_errors():
    a, b = two()
    with pytest.raises(ValueError, match="at least one"):
        concat_neural_datasets([])
    with pytest.raises(TypeError, match="single dataset"):
        concat_neural_datasets(a)
    with pytest.raises(TypeError, match=r"datasets\[1\] is a int"):
        concat_neural_datasets([a, 1])
    with pytest.raises(ValueError, match="one name per dataset"):
        concat_neural_datasets([a, b], names=["x"])
    with pytest.raises(ValueError, match="distinct"):
        concat_neural_datasets([a, b], names=["x", "x"])
    assert concat_neural_datasets([a]) is a


def test_edits_on_concat_do_not_touch_sources():
    a, b = two()
    c = a + b
    before = a.responses[0][0].clone() if a.nrn_masks[0, 0] else None
    n = int(torch.nonzero(a.nrn_masks[0])[0])
    shape = a.responses[0][n].shape
    c.responses[0][n] = torch.full(shape, 42.0)
    assert float(c.responses[0][n][0, 0]) == 42.0
    assert float(a.responses[0][n][0, 0]) != 42.0 or before is None


def test_base_class_concat():
    x = NeuralDataset.from_data([torch.rand(3)], [[torch.ones(2, 3)]], dt_ms=1.0)
    y = NeuralDataset.from_data([torch.rand(4)], [[torch.ones(1, 4)]], dt_ms=1.0)
    z = x + y
    assert type(z) is NeuralDataset and z.get_N() == 2 and len(z) == 2


def test_common_class_skips_abstract_bases():
    from abc import abstractmethod

    class Family(AudioNeuralDataset):
        @abstractmethod
        def _hook(self): ...

    class One(Family):
        def _hook(self): return 1

    class Two(Family):
        def _hook(self): return 2

    a = make_ragged_dataset(2, 2, n_bands=4, seed=1, cls=One)
    b = make_ragged_dataset(2, 2, n_bands=4, seed=2, cls=Two)
    assert type(a + b) is AudioNeuralDataset  # Family is abstract: cannot be the result


def test_chained_concat_tags_stay_distinct():
    a, b, c = (make_ragged_dataset(2, 2, n_bands=4, seed=k) for k in (1, 2, 3))
    abc = (a + b) + c
    tags = [m["dataset"] for m in abc.nrn_meta]
    assert len(set(tags)) == 3 and tags[:2] == [tags[0]] * 2 and tags[4:] == [tags[4]] * 2
    assert abc.select_pop_by_nrn_attr("dataset", tags[4]) == [4, 5]
