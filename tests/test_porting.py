"""Issue 9, section 3: scripts written for deepSTRF 0.1.0 port by changing the import.

Each behaviour of the published deepSTRF 0.1.0 is either ours too, or offered through an
explicit argument; the expected values come from small re-derivations of deepSTRF's
formulas written here (loops over neurons, as in its code), never from its package.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from deepstrf.datasets.audio.audio_dataset import AudioNeuralDataset
from deepstrf.datasets.neural_dataset import NeuralDataset
from deepstrf.errors import ContractError, ContractIndexError, ContractTypeError
from deepstrf.metrics import (
    coherence,
    compute_CCmax,
    compute_TTRC,
    corrcoef,
    mse_loss,
    normalized_corrcoef,
    poisson_loss,
)
from deepstrf.models import split_stimuli
from deepstrf.utils.data import concat_neural_datasets, neural_collate

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "porting-from-deepstrf.md"


# ----------------------------------------------------------------------------
# deepSTRF 0.1.0's formulas, re-derived (PSTH = nanmean over repeats, loops per neuron)
# ----------------------------------------------------------------------------


def _psth(responses: torch.Tensor) -> torch.Tensor:
    return responses.double().nanmean(dim=2, keepdim=True) if responses.shape[2] > 1 \
        else responses.double()


def _their_per_neuron_loss(pred, responses, element) -> torch.Tensor:
    """Per-neuron mean over the valid PSTH bins of ``element(pred, psth)``."""
    psth = _psth(responses)
    out = []
    for n in range(pred.shape[1]):
        valid = ~torch.isnan(psth[:, n])
        if not valid.any():
            out.append(float("nan"))
            continue
        out.append(float(element(pred[:, n].double()[valid], psth[:, n][valid]).mean()))
    return torch.tensor(out, dtype=torch.float64)


def _their_reduce(per_neuron: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_neuron
    kept = per_neuron[~torch.isnan(per_neuron)]
    if reduction == "sum":
        return kept.sum()
    return kept.mean() if kept.numel() else torch.tensor(float("nan"))


def _their_mse(pred, responses, reduction="mean"):
    return _their_reduce(_their_per_neuron_loss(pred, responses, lambda p, g: (p - g) ** 2),
                         reduction)


def _their_poisson(pred, responses, reduction="mean", eps=1e-8):
    def element(p, g):
        return p - g * torch.log(p.clamp(min=eps) + eps)
    return _their_reduce(_their_per_neuron_loss(pred, responses, element), reduction)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xc * xc).sum() * (yc * yc).sum()))
    return float((xc * yc).sum() / den) if den > 1e-12 else float("nan")


def _their_corrcoef(pred, responses) -> np.ndarray:
    psth = _psth(responses).numpy()
    p = pred.double().numpy()
    out = []
    for n in range(p.shape[1]):
        valid = ~np.isnan(psth[:, n])
        out.append(_pearson(p[:, n][valid], psth[:, n][valid]) if valid.sum() >= 2 else np.nan)
    return np.array(out)


def _their_ttrc(responses: torch.Tensor) -> np.ndarray:
    out = []
    for block in responses.double().numpy():
        reps = block[~np.isnan(block).all(axis=-1)]
        if len(reps) == 1:
            out.append(1.0)
            continue
        pairs = [_pearson(reps[i], reps[j]) for i in range(len(reps))
                 for j in range(i + 1, len(reps))]
        out.append(float(np.mean(pairs)) if pairs else np.nan)
    return np.array(out)


def _batch(seed: int, n_stims=3, n_neurons=4, max_rep=5, n_time=30):
    """Collated-like data: ragged repeats (NaN rows), ragged lengths (NaN tails), a sentinel."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1.0, size=(n_stims, n_neurons, 1, n_time))
    resp = rng.poisson(np.broadcast_to(rate, (n_stims, n_neurons, max_rep, n_time))).astype(float)
    for b in range(n_stims):
        resp[b, :, :, n_time - 4 * b:] = np.nan          # stimuli of different lengths
        for n in range(n_neurons):
            resp[b, n, rng.integers(1, max_rep + 1):] = np.nan   # 1..max_rep repeats
    resp[1, 2] = np.nan                                   # a pair never recorded
    pred = torch.from_numpy(rate + rng.normal(0, 0.3, rate.shape)).float().abs() + 0.05
    return pred, torch.from_numpy(resp).float()


# ----------------------------------------------------------------------------
# Metadata entries that are not dicts
# ----------------------------------------------------------------------------


def _tuple_meta_dataset():
    """Three stims (tuples, as in deepSTRF's examples, and one dict), three neurons."""
    stims = [torch.rand(1, 4, 6) for _ in range(3)]
    rows = [[torch.rand(2, 6) for _ in range(3)] for _ in range(3)]
    rows[2][0] = torch.full((1, 1), float("nan"))
    stim_meta = [("s0",), ("s1",), {"name": "s2", "type": "song"}]
    nrn_meta = [("c0", "L"), {"cell_id": "c1", "area": "L"}, {"cell_id": "c2", "area": "MLd"}]
    return AudioNeuralDataset.from_data(stims, rows, dt_ms=5.0, stim_meta=stim_meta,
                                        nrn_meta=nrn_meta)


class _Subclass(NeuralDataset):
    """A dataset class written the deepSTRF way: lists filled, then validate()."""

    def __init__(self, stim_meta):
        super().__init__("x", 5.0)
        self.stims = [torch.rand(1, 3, 4) for _ in stim_meta]
        self.responses = [[torch.rand(2, 4)] for _ in stim_meta]
        self.stim_meta = stim_meta
        self.nrn_meta = [("n0",)]
        self.N_neurons = 1
        self.validate()


def test_metadata_entries_may_be_any_object():
    ds = _Subclass([("s0",), ("s1",)])
    assert ds.stim_meta == [("s0",), ("s1",)] and ds.nrn_meta == [("n0",)]
    assert ds[1]["stim_meta"] == ("s1",)
    batch = neural_collate([ds[0], ds[1]])
    assert batch["stim_meta"] == [("s0",), ("s1",)]
    ds = _tuple_meta_dataset()
    assert ds.stim_meta[0] == ("s0",) and ds.get_nrn_meta()[0] == ("c0", "L")


def test_attribute_and_query_filters_skip_non_mappings():
    ds = _tuple_meta_dataset()
    assert ds.select_stims_by_attr("type", "song") == [2]
    ds.reset_stim_selection()
    assert ds.select_stims_by_query("not type == 'poem'") == [2]   # tuples never match
    ds.reset_stim_selection()
    assert ds.select_stims_by_query("name is not None") == [2]
    ds.reset_stim_selection()
    assert ds.select_pop_by_nrn_attr("area", "L") == [1]
    assert ds.select_pop_by_nrn_query("area in ('L', 'MLd')") == [1, 2]
    # neurons that heard a stim of type song: neuron 0 did not (sentinel)
    assert ds.select_pop_by_stim_attr("type", "song") == [1, 2]
    assert ds.select_pop_by_stim_query("type == 'song'") == [1, 2]


def test_predicates_see_every_entry_and_skip_failures_on_non_mappings():
    ds = _tuple_meta_dataset()
    # as in deepSTRF the predicate gets the entry as it is: tuple-aware predicates work
    assert ds.select_stims_by_predicate(lambda m: isinstance(m, tuple) and m[0] == "s1") == [1]
    ds.reset_stim_selection()
    # a predicate written for dicts skips the tuples (deepSTRF: AttributeError escapes)
    assert ds.select_stims_by_predicate(lambda m: m.get("type") == "song") == [2]
    ds.reset_stim_selection()
    assert ds.select_stims_by_predicate(lambda m: m["type"] == "song") == [2]
    ds.reset_stim_selection()
    assert ds.select_pop_by_nrn_predicate(lambda m: m["area"] == "L") == [1]
    assert ds.select_pop_by_stim_predicate(lambda m: m.get("name") == "s2") == [1, 2]
    # on a dict, an AttributeError from the predicate is a bug of the predicate: it escapes
    with pytest.raises(AttributeError):
        ds.select_pop_by_nrn_predicate(lambda m: m.area)


def test_concat_split_and_quality_with_non_mapping_metadata():
    a, b = _tuple_meta_dataset(), _tuple_meta_dataset()
    both = concat_neural_datasets([a, b], names=["a", "b"])
    assert both.stim_meta[:3] == [("s0",), ("s1",), {"name": "s2", "type": "song", "dataset": "a"}]
    assert both.stim_meta[5] == {"name": "s2", "type": "song", "dataset": "b"}
    assert both.nrn_meta[3] == ("c0", "L")
    assert both.select_stims_by_attr("dataset", "b") == [5]
    train, val, test = split_stimuli(a, seed=0, stratify="type")
    assert sorted(train + val + test) == [0, 1, 2]
    with pytest.raises(TypeError, match=r"nrn_meta\[0\] is a tuple"):
        a.compute_neuron_quality()
    assert "snr" not in a.nrn_meta[1]      # nothing half-written


# ----------------------------------------------------------------------------
# poisson_loss(validate_input=...)
# ----------------------------------------------------------------------------


def test_poisson_validate_input_raises_on_negative_rates_at_valid_bins_only():
    pred, resp = _batch(0)
    pred = pred.clone()
    assert torch.isnan(resp[1, 2]).all()
    pred[1, 2, 0, 3] = -0.5                      # at a bin without data: allowed
    value = poisson_loss(pred, resp, validate_input=True, target="psth", pool="neurons")
    assert torch.allclose(value.double(), _their_poisson(pred, resp), rtol=1e-5)
    pred[0, 1, 0, 5] = -0.25                     # at a valid bin
    with pytest.raises(ValueError, match=r"pred\[0, 1, 0, 5\] = -0.25"):
        poisson_loss(pred, resp, validate_input=True)
    assert torch.isfinite(poisson_loss(pred, resp))          # default False, as deepSTRF
    assert torch.isfinite(poisson_loss(pred, resp, log_input=True, validate_input=True))
    with pytest.raises(TypeError, match="validate_input must be True or False"):
        poisson_loss(pred, resp, validate_input="yes")
    # positional order as in deepSTRF: (..., log_input, validate_input, eps)
    with pytest.raises(ValueError, match="negative"):
        poisson_loss(pred, resp, None, "mean", False, True, 1e-8)


# ----------------------------------------------------------------------------
# (B, N, R, T) responses: PSTH and per-neuron averaging
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_reproduce_deepstrf_with_target_psth_and_pool_neurons(reduction):
    pred, resp = _batch(1)
    ours = mse_loss(pred, resp, reduction=reduction, target="psth", pool="neurons")
    torch.testing.assert_close(ours.double(), _their_mse(pred, resp, reduction), rtol=1e-5,
                               atol=1e-6, equal_nan=True)
    ours = poisson_loss(pred, resp, reduction=reduction, target="psth", pool="neurons")
    torch.testing.assert_close(ours.double(), _their_poisson(pred, resp, reduction), rtol=1e-5,
                               atol=1e-6, equal_nan=True)


def test_default_losses_weigh_every_repeat_and_differ_from_deepstrf():
    pred, resp = _batch(2)
    p, r = pred.double(), resp.double()
    valid = ~torch.isnan(r)
    per_element = torch.where(valid, (p - torch.nan_to_num(r)) ** 2, 0.0)
    expected = per_element.sum() / valid.sum()
    assert torch.allclose(mse_loss(pred, resp).double(), expected, rtol=1e-5)
    assert abs(float(mse_loss(pred, resp)) - float(_their_mse(pred, resp))) > 0.05
    # each option alone: PSTH pooled over bins; repeats averaged per neuron
    psth = _psth(resp)
    keep = ~torch.isnan(psth)
    pooled_psth = torch.where(keep, (p - torch.nan_to_num(psth)) ** 2, 0.0).sum() / keep.sum()
    assert torch.allclose(mse_loss(pred, resp, target="psth").double(), pooled_psth, rtol=1e-5)
    per_neuron = per_element.sum(dim=(0, 2, 3)) / valid.sum(dim=(0, 2, 3))
    assert torch.allclose(mse_loss(pred, resp, pool="neurons").double(), per_neuron.mean(),
                          rtol=1e-5)


def test_psth_losses_are_differentiable_with_zero_gradient_on_padding():
    pred, resp = _batch(3)
    pred = pred.clone().requires_grad_(True)
    loss = mse_loss(pred, resp, target="psth", pool="neurons") + \
        poisson_loss(pred, resp, target="psth", pool="neurons")
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[1, 2] == 0).all()                 # the pair never recorded
    assert (pred.grad[2, :, :, -8:] == 0).all()         # padded tail of the short stim
    with pytest.raises(ValueError, match="target must be one of 'repeats', 'psth'"):
        mse_loss(pred, resp, target="trials")
    with pytest.raises(ValueError, match="pool must be one of 'elements', 'neurons'"):
        mse_loss(pred, resp, pool="stims")


def test_corrcoef_already_compares_with_the_psth_like_deepstrf():
    pred, resp = _batch(4)
    np.testing.assert_allclose(corrcoef(pred, resp, reduction="none").double().numpy(),
                               _their_corrcoef(pred, resp), rtol=1e-5)
    assert math.isclose(float(corrcoef(pred, resp)), float(np.nanmean(_their_corrcoef(pred, resp))),
                        rel_tol=1e-5)


# ----------------------------------------------------------------------------
# R = 1: CCmax, TTRC, CCnorm
# ----------------------------------------------------------------------------


def test_ccmax_and_ttrc_of_a_single_repeat():
    rng = np.random.default_rng(5)
    rate = 4.0 * (1.0 + np.sin(np.linspace(0, 6 * np.pi, 40)))
    resp = torch.from_numpy(rng.poisson(rate, size=(3, 4, 40)).astype(np.float32))
    resp[0, 1:] = float("nan")            # one valid repeat
    resp[1] = float("nan")                # none
    assert torch.isnan(compute_CCmax(resp)[:2]).all()
    assert torch.isnan(compute_TTRC(resp)[:2]).all()
    cc = compute_CCmax(resp, single_repeat="one")
    assert cc[0].item() == 1.0 and math.isnan(cc[1].item())
    assert 0.5 < cc[2].item() == compute_CCmax(resp)[2].item() <= 1.0
    ttrc = compute_TTRC(resp, single_repeat="one")
    np.testing.assert_allclose(ttrc.double().numpy(), _their_ttrc(resp), rtol=1e-5,
                               equal_nan=True)
    assert compute_CCmax(resp[:1, :1], single_repeat="one").tolist() == [1.0]
    with pytest.raises(ValueError, match="single_repeat must be one of 'nan', 'one'"):
        compute_TTRC(resp, single_repeat="raw")


@pytest.mark.parametrize("method", ["schoppe", "hsu"])
def test_normalized_corrcoef_with_a_single_repeat(method):
    pred, resp = _batch(6, max_rep=1)
    assert resp.shape[2] == 1
    assert torch.isnan(normalized_corrcoef(pred, resp, method=method, reduction="none")).all()
    raw = normalized_corrcoef(pred, resp, method=method, reduction="none", single_repeat="raw")
    np.testing.assert_allclose(raw.double().numpy(), _their_corrcoef(pred, resp), rtol=1e-5)
    assert torch.equal(raw, corrcoef(pred, resp, reduction="none"))
    # with several repeats the option changes nothing
    pred, resp = _batch(6)
    assert torch.equal(normalized_corrcoef(pred, resp, method=method, single_repeat="raw"),
                       normalized_corrcoef(pred, resp, method=method))
    with pytest.raises(ValueError, match="single_repeat must be one of 'nan', 'raw'"):
        normalized_corrcoef(pred, resp, single_repeat="one")


def _their_schoppe_one_stimulus(pred, responses) -> np.ndarray:
    """deepSTRF's 'schoppe' CCnorm for B = 1: Cov(pred, PSTH) / sqrt(Var(pred) SP)."""
    out = []
    for n in range(pred.shape[1]):
        reps = responses[0, n].double().numpy()
        reps = reps[~np.isnan(reps).all(axis=-1)]
        r = len(reps)
        psth = reps.mean(axis=0)
        p = pred[0, n, 0].double().numpy()
        sp = (r * psth.var(ddof=1) - reps.var(axis=-1, ddof=1).mean()) / (r - 1)
        cov = ((p - p.mean()) * (psth - psth.mean())).sum() / (len(p) - 1)
        out.append(cov / math.sqrt(p.var(ddof=1) * sp) if sp > 0 else np.nan)
    return np.array(out)


def test_normalized_corrcoef_on_one_stimulus_matches_deepstrf():
    rng = np.random.default_rng(9)
    rate = 3.0 * (1.2 + np.sin(np.linspace(0, 8 * np.pi, 80)))[None, None, None] \
        * rng.uniform(0.5, 1.5, size=(1, 3, 1, 1))
    resp = torch.from_numpy(rng.poisson(np.repeat(rate, 8, axis=2))).float()
    resp[0, 1, 5:] = float("nan")
    pred = torch.from_numpy(rate + rng.normal(0, 0.5, rate.shape)).float()
    np.testing.assert_allclose(normalized_corrcoef(pred, resp, reduction="none").double().numpy(),
                               _their_schoppe_one_stimulus(pred, resp), rtol=1e-5)


# ----------------------------------------------------------------------------
# coherence and predictions with several repeats
# ----------------------------------------------------------------------------


def test_coherence_accepts_nan_padding_where_deepstrf_raises():
    rng = np.random.default_rng(7)
    rate = torch.from_numpy(rng.gamma(2.0, 1.0, size=(2, 3, 1, 1200)))
    resp = torch.poisson(rate.expand(2, 3, 6, 1200).contiguous())
    resp[1, :, :, 900:] = float("nan")
    resp[0, 1, 3:] = float("nan")
    pred = rate + 0.2 * torch.from_numpy(rng.normal(size=rate.shape))
    value = coherence(pred, resp, dt_ms=5.0, reduction="none")
    assert torch.isfinite(value).all() and ((value > 0) & (value <= 1)).all()
    # on one NaN-free stimulus it is Welch's estimate averaged over all its bins, as scipy
    # computes it (deepSTRF: the same per stimulus, then averaged over stimuli)
    scipy_signal = pytest.importorskip("scipy.signal")
    one = coherence(pred[:1], resp[:1], dt_ms=5.0, reduction="none", nperseg=256)
    psth = resp[:1].nanmean(dim=2).numpy()
    _, coh = scipy_signal.coherence(pred[:1].squeeze(2).numpy(), psth, fs=200.0, nperseg=256)
    np.testing.assert_allclose(one.numpy(), coh[0].mean(axis=-1), rtol=1e-6)


def test_normalized_corrcoef_rejects_predictions_with_several_repeats():
    pred, resp = _batch(8)
    with pytest.raises(ValueError, match=r"pred must have a single repeat"):
        normalized_corrcoef(pred.expand(-1, -1, 2, -1), resp)
    with pytest.raises(ValueError, match=r"pred must have a single repeat"):
        corrcoef(resp, resp)


# ----------------------------------------------------------------------------
# AssertionError compatibility
# ----------------------------------------------------------------------------


def _audio(F=4, dt_ms=5.0):
    stims = [torch.rand(1, F, 6) for _ in range(2)]
    rows = [[torch.rand(2, 6) for _ in range(2)] for _ in range(2)]
    return AudioNeuralDataset.from_data(stims, rows, dt_ms=dt_ms)


def test_validate_violations_are_assertion_errors():
    ds = _audio()
    ds.nrn_meta = ds.nrn_meta[:1]
    with pytest.raises(AssertionError, match="N_neurons=2 but nrn_meta has 1 entries") as info:
        ds.validate()
    assert isinstance(info.value, ValueError) and isinstance(info.value, ContractError)
    assert isinstance(info.value.__cause__, ValueError)          # chained
    ds = _audio()
    ds.N_neurons = "2"
    with pytest.raises(AssertionError, match="N_neurons must be an int") as info:
        ds.validate()
    assert isinstance(info.value, TypeError) and isinstance(info.value, ContractTypeError)
    ported = "caught"
    try:
        _Subclass([])
    except AssertionError:      # a deepSTRF script's handler
        ported = "caught by except AssertionError"
    assert ported == "caught by except AssertionError"


def test_concatenating_different_dt_or_F_is_an_assertion_error():
    with pytest.raises(AssertionError, match="different bin widths") as info:
        _audio(dt_ms=5.0) + _audio(dt_ms=10.0)
    assert isinstance(info.value, ValueError)
    with pytest.raises(AssertionError, match="different numbers of frequency bands") as info:
        concat_neural_datasets([_audio(F=4), _audio(F=8)])
    assert isinstance(info.value, ValueError)
    other = _Subclass([("s0",)])
    with pytest.raises(AssertionError, match="not an AudioNeuralDataset") as info:
        concat_neural_datasets([_audio(), other])
    assert isinstance(info.value, TypeError)


def test_names_of_the_wrong_length_are_an_assertion_error():
    with pytest.raises(AssertionError, match="names has 1 entries for 2 datasets") as info:
        concat_neural_datasets([_audio(), _audio()], names=["a"])
    assert isinstance(info.value, ValueError)
    assert concat_neural_datasets([_audio(), _audio()], names=["a", "b"]).N_neurons == 4


def test_selection_index_checks_are_assertion_errors():
    ds = _audio()
    for call in (lambda: ds.select_neuron(9), lambda: ds.select_stim(-1),
                 lambda: ds.select_population([0, 5]), lambda: ds.select_stims([3])):
        with pytest.raises(AssertionError, match="out of range") as info:
            call()
        assert isinstance(info.value, IndexError) and isinstance(info.value, ContractIndexError)
    with pytest.raises(AssertionError, match="must be an integer") as info:
        ds.select_neuron(1.5)
    assert isinstance(info.value, TypeError)
    with pytest.raises(AssertionError, match="more than once"):
        ds.select_population([1, 1])


# ----------------------------------------------------------------------------
# The distribution name
# ----------------------------------------------------------------------------


def test_distribution_is_not_named_like_deepstrf_on_the_index():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "deepstrf-datasets"
    assert project["scripts"]["deepstrf"] == "deepstrf.cli:main"
    # no install line anywhere names the other package's distribution
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "deepstrf").rglob("*.py")), *sorted((ROOT / "examples").rglob("*"))]
    bad = re.compile(r"pip install ['\"]?deepstrf(?![-\w])")
    for path in texts:
        if path.is_file() and path != GUIDE:   # the guide explains what that line installs
            assert not bad.search(path.read_text(errors="replace")), path
    readme = (ROOT / "README.md").read_text()
    assert "pip install deepstrf-datasets" in readme
    assert "docs/porting-from-deepstrf.md" in readme
    assert "pip install deepstrf-datasets" in GUIDE.read_text()


def test_manifest_records_our_version_not_the_index_deepstrf(monkeypatch):
    from importlib import metadata

    import deepstrf
    from deepstrf.io import cache

    real = metadata.version

    def fake(name):  # deepSTRF 0.1.0 installed beside us owns the 'deepstrf' distribution
        return "0.0.1-other" if name.lower() == "deepstrf" else real(name)

    monkeypatch.setattr(metadata, "version", fake)
    assert cache._versions()["deepstrf"] == deepstrf.__version__


def test_porting_guide_says_to_uninstall_deepstrf_first():
    text = GUIDE.read_text()
    assert "pip uninstall deepSTRF" in text
    assert "case-insensitive" in text
    assert "porting-from-deepstrf.md" in (ROOT / "docs" / "index.md").read_text()


# ----------------------------------------------------------------------------
# The guide's code runs and prints what it shows
# ----------------------------------------------------------------------------


def test_porting_guide_code_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_DATA_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("DEEPSTRF_PROGRESS", "0")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    level = logging.getLogger("deepstrf").level
    found = re.findall(r"```(\w*)\n(.*?)```", GUIDE.read_text(), re.S)
    namespace: dict = {"__name__": "__docs__"}
    n_python = 0
    try:
        for i, (lang, code) in enumerate(found):
            if lang != "python":
                continue
            n_python += 1
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"porting-from-deepstrf.md, block {i}", "exec"), namespace)
            following = found[i + 1] if i + 1 < len(found) else None
            if following is not None and following[0] == "text":
                assert out.getvalue() == following[1], f"block {i}"
    finally:
        logging.getLogger("deepstrf").setLevel(level)
    assert n_python >= 3
