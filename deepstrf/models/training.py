"""Gradient training of any encoding model with the masked losses of deepstrf.metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from deepstrf._validation import check_choice, check_int, check_positive

__all__ = ["fit_gradient"]


def fit_gradient(model: torch.nn.Module, ds: Any, train_stims: Sequence[int], *,
                 loss: str = "poisson", epochs: int = 20, lr: float = 1e-2,
                 batch_size: int = 8, weight_decay: float = 0.0, seed: int = 0,
                 progress: bool | None = None, packed: bool = False) -> list[float]:
    """Train ``model`` (stims ``(B, 1, F, T)`` -> ``(B, N, 1, T)``) with Adam.

    Padding and missing (stim, neuron) pairs never contribute: the losses of
    :mod:`deepstrf.metrics` take the batch's ``valid_mask``. ``'poisson'``
    expects non-negative rates (use an output nonlinearity such as
    ``'softplus'`` or ``'exp'``); ``'mse'`` takes any output. ``packed=True``
    trains on :class:`~deepstrf.utils.packed.PackedBatch` es (the real rows
    only; the same losses and gradients, faster and smaller when most of the
    dense batch would be padding).

    Returns
    -------
    list of float
        The mean training loss of each epoch.
    """
    from tqdm.auto import tqdm

    from deepstrf._config import progress_disable
    from deepstrf.metrics import mse_loss, poisson_loss
    from deepstrf.utils.data import stim_loader

    check_choice("loss", loss, ("poisson", "mse"))
    epochs = check_int("epochs", epochs, minimum=1)
    lr = check_positive("lr", lr)
    criterion = poisson_loss if loss == "poisson" else mse_loss
    loader = stim_loader(ds, train_stims, batch_size=batch_size, shuffle=True, packed=packed,
                         generator=torch.Generator().manual_seed(seed))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in tqdm(range(epochs), desc="training", disable=progress_disable(progress)):
        total, batches = 0.0, 0
        for batch in loader:
            optimiser.zero_grad()
            value = criterion(model(batch["stims"]), batch["responses"],
                              mask=batch["valid_mask"])
            value.backward()
            optimiser.step()
            total += float(value.detach())
            batches += 1
        history.append(total / batches)
    return history
