"""
Exact KL[π_old(·|s) ‖ π_θ(·|s)] for Stable-Baselines3 action distributions.

The paper (§4) penalises the KL between the *full* old and new action distributions at each state, with the old
policy first (as in TRPO). Every SB3 distribution wraps a torch distribution in ``.distribution``; we dispatch on
that torch object, so subclasses such as sb3-contrib's ``MaskableCategorical`` are covered too:

- ``Categorical`` (Discrete) and a list of them (MultiDiscrete): computed from normalised log-probabilities, so a
  probability that underflows to 0 contributes ``0 · finite = 0`` instead of ``0 · log 0 = NaN`` (pitfall 2 of the
  paper notes; ``torch.distributions.kl_divergence`` returns ``inf`` there).
- ``Bernoulli`` (MultiBinary): computed from logits with ``softplus``, finite for every finite logit.
- ``Normal`` (DiagGaussian, gSDE): per-dimension closed form. For the tanh-squashed variants (SquashedDiagGaussian,
  gSDE with ``squash_output``) the KL of the squashed distributions equals the KL of the underlying Gaussians,
  because KL is invariant under the same invertible map applied to both.

In every case the KL is summed over independent action dimensions (pitfall 10) and returned per sample.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch as th
from stable_baselines3.common.distributions import Distribution
from torch.distributions import Bernoulli, Categorical, Normal
from torch.nn import functional as F

#: The tensors that fully determine a batch of action distributions, each with the batch as first dimension.
DistributionParams = tuple[th.Tensor, ...]


def categorical_kl(old_log_probs: th.Tensor, new_log_probs: th.Tensor) -> th.Tensor:
    """
    KL between categorical distributions given as normalised log-probabilities, shape (batch, n_actions).

    Actions that π_old gives probability 0 contribute 0 (the limit of p log(p/q)), so the sum runs over the valid
    actions only. That includes actions masked out with ``-inf`` logits on both sides (``-inf - -inf`` is NaN, and is
    never multiplied in, so neither the value nor its gradient becomes NaN) or with sb3-contrib's ``-1e8``.

    :return: KL per sample, shape (batch,)
    """
    old_probs = old_log_probs.exp()
    log_ratio = th.where(old_probs > 0, old_log_probs - new_log_probs, 0.0)
    return (old_probs * log_ratio).sum(dim=-1)


def bernoulli_kl(old_logits: th.Tensor, new_logits: th.Tensor) -> th.Tensor:
    """
    KL between products of independent Bernoullis given by their logits, shape (batch, n_dims).

    Uses ``log p = -softplus(-l)`` and ``log(1 - p) = -softplus(l)``, which stay finite for every finite logit.

    :return: KL summed over dimensions, shape (batch,)
    """
    old_p = th.sigmoid(old_logits)
    kl = old_p * (F.softplus(-new_logits) - F.softplus(-old_logits)) + (1.0 - old_p) * (
        F.softplus(new_logits) - F.softplus(old_logits)
    )
    return kl.sum(dim=-1)


def diag_gaussian_kl(old_mean: th.Tensor, old_std: th.Tensor, new_mean: th.Tensor, new_std: th.Tensor) -> th.Tensor:
    """
    KL between diagonal Gaussians, shape (batch, action_dim).

    Same algebraic form as ``torch.distributions.kl`` (``0.5 * (v + t - 1 - log v)``), which is exactly 0 when both
    distributions are identical; written out to avoid building ``Normal`` objects (and their argument checks) per
    minibatch.

    :return: KL summed over action dimensions, shape (batch,)
    """
    var_ratio = (old_std / new_std).pow(2)
    mean_term = ((old_mean - new_mean) / new_std).pow(2)
    return (0.5 * (var_ratio + mean_term - 1.0 - var_ratio.log())).sum(dim=-1)


class ClosedFormKL(NamedTuple):
    """How to read the parameters of one family of distributions and compute the KL between two of them."""

    #: short name, logged once so the user can see which formula is used
    name: str
    #: torch distribution (or SB3's list of Categoricals) -> parameter tensors
    parameters: Callable[[object], DistributionParams]
    #: (old parameters, new parameters) -> KL per sample
    kl: Callable[[DistributionParams, DistributionParams], th.Tensor]


_CATEGORICAL = ClosedFormKL("categorical", lambda d: (d.logits,), lambda old, new: categorical_kl(old[0], new[0]))  # type: ignore[attr-defined]
_MULTI_CATEGORICAL = ClosedFormKL(
    "multi_categorical",
    lambda dists: tuple(d.logits for d in dists),  # type: ignore[attr-defined]
    lambda old, new: sum((categorical_kl(o, n) for o, n in zip(old, new, strict=True)), start=th.zeros(())),
)
_BERNOULLI = ClosedFormKL("bernoulli", lambda d: (d.logits,), lambda old, new: bernoulli_kl(old[0], new[0]))  # type: ignore[attr-defined]
_DIAG_GAUSSIAN = ClosedFormKL(
    "diag_gaussian",
    lambda d: (d.loc, d.scale),  # type: ignore[attr-defined]
    lambda old, new: diag_gaussian_kl(old[0], old[1], new[0], new[1]),
)


def torch_distribution_of(distribution: Distribution) -> object:
    """
    The torch distribution(s) inside an SB3 distribution: ``.distribution``, or the list ``.distributions`` of
    sb3-contrib's masked multi-categorical and Bernoulli distributions (``None`` if not populated).
    """
    torch_distribution = getattr(distribution, "distribution", None)
    return getattr(distribution, "distributions", None) if torch_distribution is None else torch_distribution


def closed_form_kl(distribution: Distribution) -> ClosedFormKL | None:
    """
    Find the closed-form KL for an SB3 distribution.

    ``distribution.distribution`` must be populated (i.e. ``proba_distribution`` has been called).
    ``torch.distributions.Categorical.logits`` are normalised log-probabilities, which :func:`categorical_kl` needs.

    :param distribution: an SB3 ``Distribution``
    :return: the matching :class:`ClosedFormKL`, or ``None`` if the distribution has no known closed form
    """
    torch_distribution = torch_distribution_of(distribution)
    if isinstance(torch_distribution, Categorical):
        return _CATEGORICAL
    if (
        isinstance(torch_distribution, Sequence)
        and torch_distribution
        and all(isinstance(d, Categorical) for d in torch_distribution)
    ):
        return _MULTI_CATEGORICAL
    if isinstance(torch_distribution, Bernoulli):
        return _BERNOULLI
    if isinstance(torch_distribution, Normal):
        return _DIAG_GAUSSIAN
    return None


def sampled_kl(old_log_prob: th.Tensor, new_log_prob: th.Tensor) -> th.Tensor:
    """
    Sample estimate of KL[π_old ‖ π_θ] from the log-probabilities of actions drawn from π_old.

    This is the "k3" estimator ``(r - 1) - log r`` with ``r = π_θ / π_old`` (http://joschu.net/blog/kl-approx.html),
    unbiased and non-negative; SB3 uses it for ``approx_kl``. Only used for distributions without a closed form.

    :return: estimate per sample, shape (batch,)
    """
    log_ratio = new_log_prob - old_log_prob
    return th.expm1(log_ratio) - log_ratio


def kl_between(old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor | None:
    """
    Exact KL[π_old(·|s) ‖ π_θ(·|s)] per sample between two SB3 distributions of the same family.

    :param old_distribution: π_old, populated (``proba_distribution`` called)
    :param new_distribution: π_θ, populated
    :return: KL per sample, shape (batch,), or ``None`` if the family has no known closed form
    """
    closed_form = closed_form_kl(new_distribution)
    if closed_form is None:
        return None
    old = closed_form.parameters(torch_distribution_of(old_distribution))
    return closed_form.kl(old, closed_form.parameters(torch_distribution_of(new_distribution)))
