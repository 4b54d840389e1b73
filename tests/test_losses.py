"""Tests of deepstrf.metrics.losses: values, gradients, padding, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepstrf.metrics import mse_loss, poisson_loss
from tests._metrics_reference import ragged_batch, ref_losses

LOSSES = {
    "mse": lambda p, r, **kw: mse_loss(p, r, **kw),
    "poisson": lambda p, r, **kw: poisson_loss(p, r, **kw),
    "poisson_log": lambda p, r, **kw: poisson_loss(p, r, log_input=True, **kw),
}


def positive_batch(seed: int = 0, **kwargs):
    pred, resp, rate = ragged_batch(seed, **kwargs)
    # Positive predictions everywhere valid, garbage (including NaN) in the padding.
    pred = torch.where(torch.isnan(rate), torch.full_like(pred, float("nan")), pred.abs() + 0.1)
    return pred, resp


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_values_match_reference(name, seed):
    pred, resp = positive_batch(seed)
    ref = ref_losses(np.nan_to_num(pred.numpy(), nan=1.0), resp.numpy())
    total, count = ref[name], ref["count"]
    loss = LOSSES[name]
    assert loss(pred, resp).item() == pytest.approx(total.sum() / count.sum(), rel=1e-9)
    assert loss(pred, resp, reduction="sum").item() == pytest.approx(total.sum(), rel=1e-9)
    with np.errstate(invalid="ignore"):
        per_neuron = total / count
    per_neuron[count == 0] = np.nan
    np.testing.assert_allclose(loss(pred, resp, reduction="none").detach().numpy(), per_neuron,
                               rtol=1e-9, equal_nan=True)


def test_neuron_without_data_is_nan_and_empty_mean_is_nan():
    pred, resp = positive_batch(0)
    resp = resp.clone()
    resp[:, 2] = float("nan")
    per_neuron = mse_loss(pred, resp, reduction="none")
    assert torch.isnan(per_neuron[2]) and torch.isfinite(per_neuron[[0, 1, 3]]).all()
    empty = torch.full_like(resp, float("nan"))
    assert torch.isnan(mse_loss(pred, empty))
    assert poisson_loss(pred, empty, reduction="sum").item() == 0.0


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_with_padding(name, reduction):
    pred, resp = positive_batch(2, n_stims=3, n_neurons=2, max_rep=3, max_bins=6)
    assert torch.isnan(resp).any()
    pred = torch.nan_to_num(pred, nan=0.5).requires_grad_(True)

    def f(p):
        out = LOSSES[name](p, resp, reduction=reduction)
        return out[torch.isfinite(out)] if reduction == "none" else out

    assert torch.autograd.gradcheck(f, (pred,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(LOSSES))
def test_padding_gets_exactly_zero_gradient(name):
    pred, resp = positive_batch(1)
    padded = torch.isnan(pred)
    # NaN in the padding, and a value whose exp overflows: neither may leak.
    pred = torch.where(padded, torch.tensor(float("nan"), dtype=pred.dtype), pred)
    pred[tuple(padded.nonzero()[0].tolist())] = 1e4
    pred.requires_grad_(True)
    loss = LOSSES[name](pred, resp)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad[padded] == 0)
    # Bins that are valid for no repeat (sentinel pairs) also get zero gradient.
    unheard = torch.isnan(resp).all(dim=(2, 3))
    assert torch.all(pred.grad[unheard] == 0)
    assert pred.grad[~padded].abs().sum() > 0


def test_mse_minimum_is_the_psth():
    _, resp = positive_batch(0)
    psth = torch.nanmean(resp, dim=2, keepdim=True)
    pred = torch.nan_to_num(psth, nan=0.0).requires_grad_(True)
    mse_loss(pred, resp).backward()
    assert pred.grad.abs().max().item() < 1e-12


def test_mask_replaces_nan_and_mask_hides_data():
    pred, resp = positive_batch(0)
    valid = ~torch.isnan(resp)
    filled = torch.nan_to_num(resp, nan=50.0)
    for loss in LOSSES.values():
        assert loss(pred, filled, mask=valid).item() == pytest.approx(loss(pred, resp).item(), rel=1e-12)
    hide = torch.ones(1, resp.shape[1], 1, 1, dtype=torch.bool)
    hide[0, 0] = False
    per_neuron = mse_loss(pred, resp, mask=valid & hide, reduction="none")
    assert torch.isnan(per_neuron[0])


def test_dtype_follows_prediction():
    pred, resp = positive_batch(0)
    assert mse_loss(pred.float(), resp).dtype == torch.float32
    assert poisson_loss(pred.float(), resp.float(), reduction="none").dtype == torch.float32
    a = mse_loss(pred.float(), resp.float()).item()
    assert a == pytest.approx(mse_loss(pred, resp).item(), rel=1e-5)


def test_loss_errors():
    pred, resp = positive_batch(0)
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'sum'; got 'median'"):
        mse_loss(pred, resp, reduction="median")
    with pytest.raises(ValueError, match="single repeat"):
        poisson_loss(resp, resp)
    with pytest.raises(ValueError, match="agree on T"):
        mse_loss(pred[..., :3], resp)
    with pytest.raises(ValueError, match="pred must be a 4-D tensor"):
        mse_loss(pred[:, :, 0], resp)
    with pytest.raises(TypeError, match="log_input must be True or False"):
        poisson_loss(pred, resp, log_input="yes")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        poisson_loss(pred, resp, eps=-1.0)
    with pytest.raises(TypeError, match="floating-point"):
        mse_loss(torch.ones(pred.shape, dtype=torch.int64), resp)
    with pytest.raises(ValueError, match="mask must have the shape of responses"):
        mse_loss(pred, resp, mask=torch.ones(2, 2, dtype=torch.bool))
