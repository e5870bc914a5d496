"""
SB3's actor-critic forward without module calls or ``Distribution`` objects, for the rollout and for the update.

On an MLP policy most of a forward pass's time is per-call overhead, not arithmetic: ``nn.Module.__call__``, torch
``Distribution`` objects with argument validation at every call. :class:`FastActorCritic` runs the same torch
operations on tensors of the same shapes, in the same order, drawing the same random numbers from the same generators,
so actions, values, log-probabilities, entropies and the autograd graph (hence the gradients) are SB3's. It only drops
the overhead around them. :func:`fast_policy_unsupported_reason` says which policies it covers; every other policy runs
its own methods.
"""

import copy
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import (
    MaskableBernoulliDistribution,
    MaskableCategoricalDistribution,
    MaskableMultiCategoricalDistribution,
)
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from torch import nn
from torch.distributions import Categorical, Normal
from torch.nn import functional as F
from torch.nn.modules import module as torch_module

#: The logit of an illegal action in sb3-contrib's MaskableCategorical.apply_masking.
_HUGE_NEG = th.tensor(-1e8)
#: MaskableCategorical.entropy's contribution of an illegal action (the same 0-d tensor it builds).
_ZERO = th.tensor(0.0)
#: sb3-contrib's masked distributions that FastActorCritic computes (Discrete, MultiDiscrete, MultiBinary actions).
_MASKED_DISTRIBUTIONS = (MaskableCategoricalDistribution, MaskableMultiCategoricalDistribution, MaskableBernoulliDistribution)
#: torch.distributions.Normal.log_prob's constant, computed the same way.
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))

Layer = Callable[[Any], th.Tensor]

#: What these activation modules' forward calls (the functions themselves, without a Python method around them).
_ACTIVATIONS: dict[type[nn.Module], Layer] = {nn.Tanh: th.tanh, nn.ReLU: th.relu}


def _has_module_hooks(policy: nn.Module) -> bool:
    """Whether a forward or backward hook (global, or on a module of ``policy``) would run in ``nn.Module.__call__``."""
    # torch keeps the hooks in private dicts (torch 2.3-2.13); there is no public way to ask whether any is registered.
    global_hooks = (
        torch_module._global_forward_pre_hooks,
        torch_module._global_forward_hooks,
        torch_module._global_backward_pre_hooks,
        torch_module._global_backward_hooks,
    )
    if any(len(hooks) > 0 for hooks in global_hooks):
        return True
    return any(
        len(hooks) > 0
        for m in policy.modules()
        for hooks in (m._forward_pre_hooks, m._forward_hooks, m._backward_pre_hooks, m._backward_hooks)
    )


def extractors_unsupported_reason(policy: Any) -> str | None:
    """
    Why the fast forward cannot stand in for ``policy``'s feature extraction, or ``None``: only SB3's
    ``FlattenExtractor`` (shared or separate actor/critic extractors) followed by SB3's ``MlpExtractor``.
    """
    extractors = (
        [policy.features_extractor]
        if policy.share_features_extractor
        else [policy.pi_features_extractor, policy.vf_features_extractor]
    )
    if any(type(extractor) is not FlattenExtractor for extractor in extractors):
        return "features extractor other than FlattenExtractor"
    if type(policy.mlp_extractor) is not MlpExtractor:
        return f"mlp extractor {type(policy.mlp_extractor).__name__}"
    return None


def heads_unsupported_reason(policy: Any, distributions: tuple[type, ...]) -> str | None:
    """
    Why the fast forward cannot stand in for ``policy``'s heads, or ``None``: an action distribution of one of the
    ``distributions`` classes (a Gaussian not squashed), ``nn.Linear`` action and value heads, no module hooks.
    """
    if type(policy.action_dist) not in distributions:
        return f"action distribution {type(policy.action_dist).__name__}"
    if isinstance(policy.action_space, spaces.Box) and policy.squash_output:
        return "squashed actions"
    if not (isinstance(policy.action_net, nn.Linear) and isinstance(policy.value_net, nn.Linear)):
        return "action or value head other than nn.Linear"
    if _has_module_hooks(policy):
        return "module hooks on the policy"
    return None


def fast_policy_unsupported_reason(policy: Any, use_sde: bool) -> str | None:
    """
    Why :class:`FastActorCritic` cannot stand in for ``policy``'s own forward passes, or ``None`` when it can. The
    cases: SB3's ``ActorCriticPolicy`` itself on the CPU, a non-image ``Box`` observation space with
    ``FlattenExtractor``, SB3's ``MlpExtractor``, a diagonal Gaussian (not squashed) or categorical action
    distribution, no gSDE, no module hooks; and sb3-contrib's ``MaskableActorCriticPolicy`` itself with its masked
    categorical, multi-categorical or Bernoulli distribution (``Discrete``, ``MultiDiscrete``, ``MultiBinary``
    actions). ``Discrete`` observations are covered too, and ``MultiDiscrete``/``MultiBinary`` ones for the masked
    policy (whose test environments have them).

    :param policy: the policy (the one being trained, or π_old's frozen copy)
    :param use_sde: whether the algorithm uses gSDE
    :return: a short reason, or ``None``
    """
    masked = type(policy) is MaskableActorCriticPolicy
    if type(policy) is not ActorCriticPolicy and not masked:  # subclasses may change evaluate_actions()
        return f"policy class {type(policy).__name__} (only ActorCriticPolicy/MlpPolicy)"
    if use_sde:
        return "gSDE"
    if policy.device.type != "cpu":
        return f"device {policy.device}"
    observation_space = policy.observation_space
    flat_box = isinstance(observation_space, spaces.Box) and not (
        policy.normalize_images and is_image_space(observation_space)
    )
    # MaskablePPO's own test environments observe MultiDiscrete/MultiBinary spaces (SB3's preprocess_obs encodes them)
    multi = masked and isinstance(observation_space, (spaces.MultiDiscrete, spaces.MultiBinary))
    if not (flat_box or multi or isinstance(observation_space, spaces.Discrete)):
        return f"observation space {observation_space}"
    reason = extractors_unsupported_reason(policy)
    if reason is not None:
        return reason
    return heads_unsupported_reason(
        policy, _MASKED_DISTRIBUTIONS if masked else (DiagGaussianDistribution, CategoricalDistribution)
    )


def _layers(net: nn.Sequential) -> list[Layer]:
    """The layers of one MLP as plain functions: ``F.linear`` is what ``nn.Linear.forward`` computes."""
    layers: list[Layer] = []
    for layer in net:
        if type(layer) is nn.Linear:
            layers.append(partial(F.linear, weight=layer.weight, bias=layer.bias))
        elif type(layer) in _ACTIVATIONS and not getattr(layer, "inplace", False):
            layers.append(_ACTIVATIONS[type(layer)])
        else:
            layers.append(layer.forward)  # any other module: its own forward, without __call__
    return layers


class OneHot(NamedTuple):
    """
    A batch of ``Discrete`` observations, one-hot encoded only where needed: the indices, and the one-hot rows
    (``None`` under ``no_grad``, where no weight gradient needs them).
    """

    indices: th.Tensor
    rows: th.Tensor | None


class _OneHotLinear(th.autograd.Function):
    """
    ``F.linear(rows, weight, bias)`` of one-hot ``rows``, computed as ``weight``'s columns at ``indices`` plus
    ``bias``, with ``F.linear``'s gradients.

    Forward: each output is a sum of products of which exactly one is ``1 * w`` and the others are ``0 * w = ±0``, so
    whatever order a matrix product adds them in, it gives ``w`` exactly, and then ``w + b`` rounded once: the same
    value as the gathered column plus the bias (``tests/test_parity_update.py`` checks both ways, up to a Discrete(500)
    observation). Backward: what ``F.linear``'s ``addmm`` gives the weight and the bias, from the same one-hot rows
    with the same matrix product (``grad.t().mm(rows)``, the weight being ``t()`` of a contiguous matrix) and the
    bias's gradient reduced by autograd as for ``addmm`` (the batch's sum). It saves the forward product, most of a
    first layer's cost on wide one-hot inputs (Taxi's 500).
    """

    @staticmethod
    def forward(ctx: Any, rows: th.Tensor, indices: th.Tensor, weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
        ctx.save_for_backward(rows)
        return weight.t().index_select(0, indices) + bias

    @staticmethod
    def backward(ctx: Any, grad: th.Tensor) -> tuple[None, None, th.Tensor | None, th.Tensor | None]:
        (rows,) = ctx.saved_tensors
        weight_grad = grad.t().mm(rows) if ctx.needs_input_grad[2] else None
        return None, None, weight_grad, grad if ctx.needs_input_grad[3] else None


def _one_hot_linear(one_hot: OneHot, weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
    """A first ``nn.Linear`` on one-hot features (:class:`_OneHotLinear`; a plain gather under ``no_grad``)."""
    if one_hot.rows is None:
        return weight.t().index_select(0, one_hot.indices) + bias
    return _OneHotLinear.apply(one_hot.rows, one_hot.indices, weight, bias)  # type: ignore[no-any-return]


def _invalid_parameter(name: str, distribution: str, constraint: str, value: th.Tensor) -> ValueError:
    """The error of torch's distribution argument validation, which SB3's loop runs at every step (NaN parameters)."""
    return ValueError(
        f"Expected parameter {name} (Tensor of shape {tuple(value.shape)}) of distribution {distribution} "
        f"to satisfy the constraint {constraint}, but found invalid values:\n{value}"
    )


class FastActorCritic:
    """
    SB3 ``ActorCriticPolicy``'s forward passes without module calls or distribution argument validation:
    ``forward`` for the rollout (:meth:`start_rollout`, :meth:`act`), ``evaluate_actions`` and ``get_distribution``
    for the update (:meth:`evaluate`, :meth:`distribution`).

    The layers are bound to the policy's parameter tensors, which the optimizer and ``load_state_dict`` update in
    place. In the update, SB3 checks the distribution's arguments at every call and raises ``ValueError`` on NaN; here a
    NaN flows into the loss, which the update reports as :class:`~sb3_ppo_variants.update_stats.NonFiniteLossError`
    and undoes.

    :param policy: a policy accepted by :func:`fast_policy_unsupported_reason`
    """

    def __init__(self, policy: ActorCriticPolicy):
        self.action_shape: tuple[int, ...] = policy.action_space.shape or ()
        observation_space = policy.observation_space
        #: Discrete observations: preprocess_obs one-hot encodes them
        self.one_hot: int | None = int(observation_space.n) if isinstance(observation_space, spaces.Discrete) else None
        # F.one_hot(...).float() as rows of the identity (the same 0/1 values): one_hot checks its input's range with
        # two reductions per call, index_select raises on the same out-of-range indices
        self.identity = th.eye(self.one_hot) if self.one_hot is not None else None
        #: MultiDiscrete/MultiBinary observations (masked policy): SB3's own preprocess_obs
        self.observation_space: spaces.Space | None = (
            observation_space if isinstance(observation_space, (spaces.MultiDiscrete, spaces.MultiBinary)) else None
        )
        # nn.Flatten of a (batch, n) tensor is itself
        self.flatten = self.one_hot is not None or len(observation_space.shape or ()) != 1
        policy_net, value_net_ = policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net
        self.pi_layers = _layers(policy_net)
        self.vf_layers = _layers(value_net_)
        #: Discrete observations into a first nn.Linear on both sides: that layer gathers the weight's columns
        #: (:class:`_OneHotLinear`), and the features are :class:`OneHot` indices (rows only for the gradient)
        self.one_hot_inputs = (
            self.one_hot is not None
            # the weight's gradient formula below is addmm's for a contiguous weight (nn.Linear's)
            and all(
                len(net) > 0 and type(net[0]) is nn.Linear and net[0].weight.is_contiguous()
                for net in (policy_net, value_net_)
            )
        )
        if self.one_hot_inputs:
            first_pi, first_vf = policy_net[0], value_net_[0]
            assert isinstance(first_pi, nn.Linear) and isinstance(first_vf, nn.Linear)
            self.first_layers = (first_pi, first_vf)
            for layers, first in ((self.pi_layers, first_pi), (self.vf_layers, first_vf)):
                layers[0] = partial(_one_hot_linear, weight=first.weight, bias=first.bias)
            self.pi_rest, self.vf_rest = self.pi_layers[1:], self.vf_layers[1:]
        action_net, value_net = policy.action_net, policy.value_net
        assert isinstance(action_net, nn.Linear) and isinstance(value_net, nn.Linear)
        self.action_weight, self.action_bias = action_net.weight, action_net.bias
        self.value_weight, self.value_bias = value_net.weight, value_net.bias
        self.action_dist: Distribution = policy.action_dist
        self.gaussian = isinstance(self.action_dist, DiagGaussianDistribution)
        #: sb3-contrib's masked distributions (MaskablePPO's MlpPolicy)
        self.masked = isinstance(self.action_dist, _MASKED_DISTRIBUTIONS)
        #: the masked distribution's categoricals: one over all logits (``None``, Discrete), or one per block of
        #: ``split_sizes`` columns of the logits (MultiDiscrete; MultiBinary is blocks of 2), as sb3-contrib splits them
        self.split_sizes: list[int] | None = None
        self.n_logits = 0
        if isinstance(self.action_dist, MaskableMultiCategoricalDistribution):
            self.split_sizes = [int(size) for size in self.action_dist.action_dims]
            self.n_logits = sum(self.split_sizes)
        elif isinstance(self.action_dist, MaskableCategoricalDistribution):
            self.n_logits = self.action_dist.action_dim
        # The update's π_θ/π_old for the KL: a copy of the policy's distribution object, filled with torch Categoricals
        # of the masked logits (the policy's own object is left as sb3-contrib last filled it).
        self.masked_dist: Any = copy.copy(self.action_dist) if self.masked else None
        self.log_std: th.Tensor | None = policy.log_std if self.gaussian else None

    def _features(self, obs: th.Tensor) -> Any:
        if self.one_hot_inputs:  # Discrete observations into first linear layers: their indices (and rows for autograd)
            assert self.identity is not None
            indices = obs.long().reshape(-1)
            rows = self.identity.index_select(0, indices) if th.is_grad_enabled() else None
            return OneHot(indices, rows)
        if self.identity is not None:  # preprocess_obs of a Discrete space: F.one_hot(obs.long(), n).float()
            features = self.identity.index_select(0, obs.long().reshape(-1)).reshape(*obs.shape, -1)
        elif self.observation_space is not None:  # MultiDiscrete (one-hot per component) or MultiBinary (float)
            features = preprocess_obs(obs, self.observation_space)  # type: ignore[assignment]
        else:
            features = obs.float()  # preprocess_obs of a non-image Box (a no-op for float32)
        return features.flatten(1) if self.flatten else features  # FlattenExtractor

    def _latent_pi(self, features: Any) -> th.Tensor:
        for layer in self.pi_layers:
            features = layer(features)
        return features  # type: ignore[no-any-return]

    def _latent_vf(self, features: Any) -> th.Tensor:
        for layer in self.vf_layers:
            features = layer(features)
        return features  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------------------------------------------------
    # The rollout: ActorCriticPolicy.forward
    # ------------------------------------------------------------------------------------------------------------------

    @th.no_grad()
    def start_rollout(self, n_envs: int) -> None:
        """
        Before :meth:`act`: the parameters do not change during a rollout, so what depends only on them (the
        Gaussian's standard deviation, its square and log, broadcast to the batch as ``Normal`` does) is computed once,
        with SB3's operations.

        :param n_envs: the batch size of every :meth:`act` call (the number of environments)
        """
        if self.gaussian:
            assert self.log_std is not None
            # DiagGaussianDistribution.proba_distribution and Normal.log_prob, on a batch of n_envs rows
            ones = th.ones((n_envs, self.log_std.shape[-1]), dtype=self.log_std.dtype)
            self.scale = ones * self.log_std.exp()
            # -(x / y) == (-x) / y == x / (-y) exactly in IEEE arithmetic: dividing by -2σ² saves the negation
            self.minus_two_var = -(2 * self.scale**2)
            self.log_scale = self.scale.log()
            if not bool((self.scale > 0).all()):
                raise _invalid_parameter("scale", "Normal", "GreaterThan(lower_bound=0.0)", self.scale)
            # Normal.rsample draws torch.empty(shape).normal_(): refilling one tensor of that shape draws the same numbers
            self.noise = th.empty_like(self.scale)
        if self.one_hot_inputs:
            # The first layers' weights transposed once per rollout: each step gathers its rows (_OneHotLinear's values)
            self.rollout_first = [(layer.weight.t().contiguous(), layer.bias) for layer in self.first_layers]

    def act(self, obs: th.Tensor, masks: np.ndarray | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        ``policy(obs)`` (call under ``th.no_grad()``, after :meth:`start_rollout`). A hot per-step function: kept in
        one piece (but the masking shared with the update, :meth:`_masked_logits`), since a split would add Python
        calls to every environment step.

        :param obs: a batch of ``n_envs`` observations, as ``obs_as_tensor`` gives them
        :param masks: the legal actions (a masked policy): ``MaskableCategorical.apply_masking``'s logits
        :return: actions, values and log-probabilities, as ``ActorCriticPolicy.forward`` returns them
        """
        if self.one_hot_inputs:  # the first layers' outputs as rows of their transposed weights, plus the bias
            indices = obs.long().reshape(-1)
            (pi_weight, pi_bias), (vf_weight, vf_bias) = self.rollout_first
            latent_pi = pi_weight.index_select(0, indices).add_(pi_bias)
            for layer in self.pi_rest:
                latent_pi = layer(latent_pi)
            latent_vf = vf_weight.index_select(0, indices).add_(vf_bias)
            for layer in self.vf_rest:
                latent_vf = layer(latent_vf)
        else:
            features = self._features(obs)
            latent_pi = self._latent_pi(features)
            latent_vf = self._latent_vf(features)
        values = F.linear(latent_vf, self.value_weight, self.value_bias)
        mean_actions = F.linear(latent_pi, self.action_weight, self.action_bias)
        if self.gaussian:
            # Normal(mean, scale).rsample() and .log_prob(), summed over the action dimensions (sum_independent_dims)
            if th.isnan(mean_actions).any():
                raise _invalid_parameter("loc", "Normal", "Real()", mean_actions)
            actions = mean_actions + self.noise.normal_() * self.scale
            # -((actions - mean) ** 2) / (2 * var) - log_scale - log(sqrt(2π)), in place on a temporary (same kernels)
            log_prob = (actions - mean_actions).pow_(2).div_(self.minus_two_var).sub_(self.log_scale).sub_(_LOG_SQRT_2PI)
            log_prob = log_prob.sum(dim=1)
        elif self.masked and self.split_sizes is None:
            # MaskableCategorical: normalised logits, apply_masking (-1e8 for illegal actions), normalised again (even
            # without masks); softmax probabilities, multinomial sample, gathered log-probability. _masked_logits'
            # operations, inline: this is the per-step path of Discrete actions.
            logits = mean_actions - mean_actions.logsumexp(dim=-1, keepdim=True)
            if th.isnan(logits).any():  # the first Categorical's validation
                raise _invalid_parameter("logits", "Categorical", "IndependentConstraint(Real(), 1)", logits)
            if masks is not None:
                logits = th.where(th.as_tensor(masks, dtype=th.bool).reshape(logits.shape), logits, _HUGE_NEG)
            logits = logits - logits.logsumexp(dim=-1, keepdim=True)
            samples = th.multinomial(F.softmax(logits, dim=-1), 1, True)
            log_prob = logits.gather(-1, samples).squeeze(-1)
            actions = samples.T.reshape(-1)
        elif self.masked:
            # sb3-contrib's masked multi-categorical distribution: per categorical, the masked logits normalised again,
            # the softmax probabilities, one multinomial draw (in the categoricals' order), the gathered log-probability
            sub_actions: list[th.Tensor] = []
            sub_log_probs: list[th.Tensor] = []
            for masked_logits, _ in self._masked_logits(mean_actions, masks, check_nan=True):
                logits = masked_logits - masked_logits.logsumexp(dim=-1, keepdim=True)
                sample = th.multinomial(F.softmax(logits, dim=-1), 1, True)
                sub_log_probs.append(logits.gather(-1, sample).squeeze(-1))
                sub_actions.append(sample.T.reshape(-1))
            # MaskableMultiCategoricalDistribution: sample() and log_prob() stack, log_prob() sums
            actions, log_prob = th.stack(sub_actions, dim=1), th.stack(sub_log_probs, dim=1).sum(dim=1)
        else:
            # Categorical(logits=...): normalised logits, softmax probabilities, multinomial sample, gathered log-prob
            logits = mean_actions - mean_actions.logsumexp(dim=-1, keepdim=True)
            if th.isnan(logits).any():
                raise _invalid_parameter("logits", "Categorical", "IndependentConstraint(Real(), 1)", logits)
            samples = th.multinomial(F.softmax(logits, dim=-1), 1, True)
            log_prob = logits.gather(-1, samples).squeeze(-1)
            actions = samples.T.reshape(-1)
        return actions.reshape((-1, *self.action_shape)), values, log_prob

    # ------------------------------------------------------------------------------------------------------------------
    # The update: ActorCriticPolicy.evaluate_actions and get_distribution
    # ------------------------------------------------------------------------------------------------------------------

    # ------------------------------------------------------------------------------------------------------------------
    # sb3-contrib's masked distributions (rollout and update)
    # ------------------------------------------------------------------------------------------------------------------

    def _masked_logits(
        self, mean_actions: th.Tensor, masks: np.ndarray | th.Tensor | None, check_nan: bool
    ) -> list[tuple[th.Tensor, th.Tensor | None]]:
        """
        What sb3-contrib's ``proba_distribution`` then ``apply_masking(masks)`` compute, up to the last normalisation:
        for each categorical (one for ``Discrete``, one per ``th.split`` block of the logits' columns otherwise), its
        logits normalised (``Categorical(logits=...)``) with ``-1e8`` at the illegal actions, and its boolean mask
        (``None`` without masks). The same operations on tensors of the same shapes and layouts (the split blocks are
        the same column views), without ``MaskableCategorical`` objects and their argument validation.

        :param mean_actions: the action head's output
        :param masks: the legal actions (an array from the env, or the buffer's float masks), or ``None``
        :param check_nan: raise torch's validation error on NaN logits (the rollout's check, one host sync per block)
        :return: per categorical, the masked logits (normalising them again gives the distribution's) and the mask
        """
        logits = mean_actions.view(-1, self.n_logits)
        splits: Sequence[th.Tensor]
        split_masks: Sequence[Any]
        if self.split_sizes is None:  # MaskableCategoricalDistribution
            splits, split_masks = (logits,), (masks,)
        else:  # MaskableMultiCategoricalDistribution.proba_distribution and apply_masking
            splits = th.split(logits, self.split_sizes, dim=1)
            split_masks = (None,) * len(splits)
            if masks is not None:
                split_masks = th.split(th.as_tensor(masks).view(-1, self.n_logits), self.split_sizes, dim=1)
        masked: list[tuple[th.Tensor, th.Tensor | None]] = []
        for split, mask in zip(splits, split_masks, strict=True):
            normalised = split - split.logsumexp(dim=-1, keepdim=True)
            if check_nan and th.isnan(normalised).any():
                raise _invalid_parameter("logits", "Categorical", "IndependentConstraint(Real(), 1)", normalised)
            if mask is None:
                masked.append((normalised, None))
            else:
                mask = th.as_tensor(mask, dtype=th.bool).reshape(normalised.shape)
                masked.append((th.where(mask, normalised, _HUGE_NEG), mask))
        return masked

    def _fill_masked(
        self, mean_actions: th.Tensor, masks: th.Tensor | None
    ) -> tuple[Distribution, list[tuple[Categorical, th.Tensor | None]]]:
        """
        sb3-contrib's masked distribution of ``mean_actions`` with ``masks`` applied, as :attr:`masked_dist` holding
        unvalidated torch ``Categorical`` objects whose logits are ``MaskableCategorical``'s (the same normalisation of
        the same masked logits): its ``log_prob`` is sb3-contrib's, and the KL reads its logits.

        :return: the distribution, and each categorical with its mask (for :meth:`_masked_entropy`)
        """
        categoricals = [
            (Categorical(logits=logits, validate_args=False), mask)
            for logits, mask in self._masked_logits(mean_actions, masks, check_nan=False)
        ]
        if self.split_sizes is None:
            self.masked_dist.distribution = categoricals[0][0]
        else:
            self.masked_dist.distributions = [categorical for categorical, _ in categoricals]
        return self.masked_dist, categoricals

    def _masked_entropy(self, categoricals: list[tuple[Categorical, th.Tensor | None]]) -> th.Tensor:
        """``MaskableCategorical.entropy`` of each categorical (illegal actions contribute 0), summed as sb3-contrib does."""
        entropies = []
        for categorical, mask in categoricals:
            if mask is None:
                entropies.append(categorical.entropy())  # MaskableCategorical without masks: Categorical's entropy
            else:
                p_log_p = categorical.logits * categorical.probs
                entropies.append(-th.where(mask, p_log_p, _ZERO).sum(-1))
        if self.split_sizes is None:
            return entropies[0]
        return th.stack(entropies, dim=1).sum(dim=1)

    # ------------------------------------------------------------------------------------------------------------------

    def _fill(self, latent_pi: th.Tensor, masks: th.Tensor | None = None) -> Distribution:
        """
        ``_get_action_dist_from_latent``: the action head, then the distribution as SB3 builds it (unvalidated), or
        sb3-contrib's masked distribution with ``masks`` applied (:meth:`_fill_masked`).
        """
        mean_actions = F.linear(latent_pi, self.action_weight, self.action_bias)
        if self.masked:
            return self._fill_masked(mean_actions, masks)[0]
        if self.gaussian:
            assert self.log_std is not None
            action_std = th.ones_like(mean_actions) * self.log_std.exp()  # DiagGaussianDistribution.proba_distribution
            self.action_dist.distribution = Normal(mean_actions, action_std, validate_args=False)
        else:
            self.action_dist.distribution = Categorical(logits=mean_actions, validate_args=False)
        return self.action_dist

    def evaluate(
        self, obs: th.Tensor, actions: th.Tensor, entropy_grad: bool = True, masks: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, Distribution]:
        """
        ``policy.evaluate_actions(obs, actions)``, plus the filled distribution (``policy.action_dist``).

        :param obs: a minibatch of observations
        :param actions: the taken actions (long and flat for ``Discrete``), as ``evaluate_actions`` takes them
        :param entropy_grad: ``False``: the entropies are computed without autograd. For ``ent_coef = 0`` the entropy
            is only logged: SB3's graph carries it with a zero gradient, which adds exactly 0 to every parameter's
            gradient, so leaving it out changes no number and saves its backward pass
        :param masks: the stored action masks (a masked policy)
        :return: values, log-probabilities, entropies, π_θ
        """
        features = self._features(obs)
        # mlp_extractor(features): actor, then critic
        latent_pi = self._latent_pi(features)
        latent_vf = self._latent_vf(features)
        categoricals = None
        if self.masked:
            mean_actions = F.linear(latent_pi, self.action_weight, self.action_bias)
            distribution, categoricals = self._fill_masked(mean_actions, masks)
        else:
            distribution = self._fill(latent_pi, masks)
        # sb3-contrib's log_prob (the same gather on the same logits); created before the entropy, as in SB3, so that
        # the gradients reaching the logits accumulate in the same order
        log_prob = distribution.log_prob(actions)
        values = F.linear(latent_vf, self.value_weight, self.value_bias)
        with th.set_grad_enabled(entropy_grad and th.is_grad_enabled()):
            entropy = distribution.entropy() if categoricals is None else self._masked_entropy(categoricals)
        assert entropy is not None  # both distributions have a closed form
        return values, log_prob, entropy, distribution

    def distribution(self, obs: th.Tensor, masks: th.Tensor | None = None) -> Distribution:
        """``policy.get_distribution(obs)`` (``action_masks=masks`` for a masked policy)."""
        return self._fill(self._latent_pi(self._features(obs)), masks)
