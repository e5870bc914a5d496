"""
Means over the valid samples of a minibatch (RecurrentPPO pads its sequences; padded rows are not samples).

``valid`` is a boolean tensor of the minibatch's shape, or ``None`` when every sample counts; then the plain
``mean()`` is used, so an unmasked algorithm computes exactly what SB3 computes. Masked means select with
``th.where`` rather than multiplying by a 0/1 weight: a padded row holding ``inf`` would otherwise give ``inf * 0 =
NaN``. None of them syncs with the host (no boolean indexing).
"""

from typing import Any, NamedTuple, TypeVar

import torch as th

NamedTupleT = TypeVar("NamedTupleT", bound=NamedTuple)


def masked_mean(values: th.Tensor, valid: th.Tensor | None) -> th.Tensor:
    """Mean of ``values`` over the valid samples (0 if there are none)."""
    if valid is None:
        return values.mean()
    return th.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


def normalize_advantages(advantages: th.Tensor, valid: th.Tensor | None) -> th.Tensor:
    """
    Advantages shifted and scaled to mean 0 and (unbiased) standard deviation 1 over the valid samples, as SB3 and
    sb3-contrib normalise them per minibatch; padded rows are set to 0.
    """
    if valid is None:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    mean = masked_mean(advantages, valid)
    centred = th.where(valid, advantages - mean, 0.0)
    std = (centred.pow(2).sum() / (valid.sum() - 1).clamp_min(1)).sqrt()
    return centred / (std + 1e-8)


def zero_invalid_rows(samples: NamedTupleT, valid: th.Tensor) -> NamedTupleT:
    """
    A minibatch (an SB3 ``*BufferSamples`` named tuple) whose invalid rows are 0 in every per-sample tensor: observations
    (also in a dict), actions, old values and log-probabilities, advantages, returns. Fields that are not per-sample
    (e.g. the LSTM states of each sequence) are kept. Done *before* any non-linear operation, this guarantees that
    neither a value nor a gradient becomes NaN through ``inf * 0``, whatever the padding holds.
    """

    def zero(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: zero(item) for key, item in value.items()}
        if isinstance(value, th.Tensor) and value.dim() > 0 and value.shape[0] == valid.shape[0]:
            return th.where(valid.view(-1, *(1,) * (value.dim() - 1)), value, th.zeros((), dtype=value.dtype))
        return value

    return samples._replace(**{name: zero(value) for name, value in samples._asdict().items()})
