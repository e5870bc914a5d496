"""
The loss of one minibatch: the objective's policy term, SB3 PPO's value and entropy terms, and SB3's diagnostics.

Every per-sample term is averaged over the valid samples only (a recurrent minibatch's padding is not a sample), so an
algorithm without padding computes exactly what SB3 PPO's ``train()`` computes, operation for operation.
"""

from typing import Any, NamedTuple, Protocol

import torch as th
from stable_baselines3.common.distributions import Distribution
from torch.nn import functional as F

from sb3_ppo_variants.masking import masked_mean, normalize_advantages
from sb3_ppo_variants.objectives import PolicyBatch, SurrogateObjective

#: π_θ and V on a minibatch: values, log π_θ(a|s) of the taken actions, entropy (``None``: no closed form), π_θ itself.
Evaluation = tuple[th.Tensor, th.Tensor, th.Tensor | None, Distribution]


class OldPolicyKL(Protocol):
    """What the loss asks of π_old (:mod:`sb3_ppo_variants.old_policy`): the KL per sample of a minibatch."""

    def kl(self, rollout_data: Any, new_distribution: Distribution, new_log_prob: th.Tensor) -> th.Tensor: ...


class LossCoefficients(NamedTuple):
    """The update's settings that the loss reads, with the schedules evaluated for the current update."""

    clip_range: float
    clip_range_vf: float | None
    ent_coef: float
    vf_coef: float
    normalize_advantage: bool


def ppo_loss(
    rollout_data: Any,
    evaluation: Evaluation,
    objective: SurrogateObjective,
    old_policy: OldPolicyKL | None,
    coefficients: LossCoefficients,
    valid: th.Tensor | None,
) -> tuple[th.Tensor, dict[str, th.Tensor]]:
    """
    Total loss of one minibatch, and its named terms: SB3's ``train/*`` scalars, then the objective's diagnostics.

    :param rollout_data: the minibatch (padded rows already zeroed)
    :param evaluation: π_θ and V on the minibatch, with gradients
    :param objective: the surrogate objective
    :param old_policy: π_old, when the objective uses the KL
    :param coefficients: clip ranges, loss coefficients and advantage normalisation
    :param valid: which rows are samples (``None``: all)
    :return: the loss, and its named 0-d terms
    """
    values, log_prob, entropy, new_distribution = evaluation
    advantages = rollout_data.advantages

    # Normalization does not make sense if mini batchsize == 1, see SB3 GH issue #325
    if coefficients.normalize_advantage and len(advantages) > 1:
        advantages = normalize_advantages(advantages, valid)

    # ratio between old and new policy, should be one at the first iteration
    log_ratio = log_prob - rollout_data.old_log_prob
    if valid is not None:
        log_ratio = th.where(valid, log_ratio, 0.0)
    ratio = th.exp(log_ratio)
    kl = None
    if objective.requires_kl:
        assert old_policy is not None, "the objective uses the KL: π_old must be captured"
        kl = old_policy.kl(rollout_data, new_distribution, log_prob)
    objective_output = objective.loss(PolicyBatch(ratio=ratio, advantages=advantages, kl=kl, mask=valid))
    policy_loss = objective_output.loss

    value_loss = _value_loss(values, rollout_data, coefficients.clip_range_vf, valid)

    # Entropy loss favors exploration; approximate entropy when there is no analytical form
    entropy_loss = -masked_mean(-log_prob if entropy is None else entropy, valid)

    loss = policy_loss + coefficients.ent_coef * entropy_loss + coefficients.vf_coef * value_loss

    with th.no_grad():
        # SB3's diagnostics: k3 estimate of KL[π_old ‖ π_θ] on the taken actions
        # (http://joschu.net/blog/kl-approx.html), and the fraction of ratios outside the clip range.
        approx_kl = masked_mean(th.expm1(log_ratio) - log_ratio, valid)
        clip_fraction = masked_mean((th.abs(ratio - 1) > coefficients.clip_range).float(), valid)
    terms = {
        "policy_gradient_loss": policy_loss,
        "value_loss": value_loss,
        "entropy_loss": entropy_loss,
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
        "loss": loss,
        **objective_output.diagnostics,
    }
    return loss, terms


def _value_loss(values: th.Tensor, rollout_data: Any, clip_range_vf: float | None, valid: th.Tensor | None) -> th.Tensor:
    """SB3 PPO's value loss: the squared error to the TD(λ) returns, with the optional clipping around the old values."""
    values = values.flatten()
    if clip_range_vf is None:
        values_pred = values
    else:
        # Clip the difference between old and new value. NOTE: this depends on the reward scaling
        values_pred = rollout_data.old_values + th.clamp(values - rollout_data.old_values, -clip_range_vf, clip_range_vf)
    # Value loss using the TD(gae_lambda) target
    returns = rollout_data.returns
    return F.mse_loss(returns, values_pred) if valid is None else masked_mean((returns - values_pred) ** 2, valid)
