"""
Means over the valid samples of a minibatch (RecurrentPPO pads its sequences; padded rows are not samples).

``valid`` is a boolean tensor of the minibatch's shape, or ``None`` when every sample counts; then the plain
``mean()`` is used, so an unmasked algorithm computes exactly what SB3 computes. Masked means select with
``th.where`` rather than multiplying by a 0/1 weight: a padded row holding ``inf`` would otherwise give ``inf * 0 =
NaN``. None of them syncs with the host (no boolean indexing).
"""

import torch as th


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
