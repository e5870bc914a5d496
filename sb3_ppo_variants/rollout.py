"""
A faster ``collect_rollouts`` for on-policy SB3 algorithms, with the same results as SB3's.

SB3's rollout loop spends more time on per-step Python overhead than on the policy's arithmetic: ``nn.Module``
calls, a torch ``Distribution`` object (with argument validation) per step, ``RolloutBuffer.add`` converting its
inputs, ``DummyVecEnv`` deep-copying its observation buffer and infos, ``np.clip`` dispatch. The fast loop here runs
the same torch operations on tensors of the same shapes, in the same order, drawing the same random numbers from the
same generators, so the actions, values, log-probabilities, buffer contents and RNG streams are bitwise SB3's; it
only drops the overhead around them.

The fast loop covers the common case (see :func:`fast_rollout_unsupported_reason`): SB3's ``ActorCriticPolicy``
(``MlpPolicy``) on CPU with the default ``FlattenExtractor``, a flat (non-image) ``Box`` observation space, ``Box``
(diagonal Gaussian, no squashing) or ``Discrete`` actions, no gSDE, SB3's own ``RolloutBuffer`` and no module hooks.
Everything else runs SB3's general ``OnPolicyAlgorithm.collect_rollouts``.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as torch_module

try:
    from numpy._core import umath as _umath  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import umath as _umath  # type: ignore[no-redef]

#: The ufunc that np.clip ends in for arrays with array bounds (same results), without np.clip's dispatch layers
#: (half its cost on a (1, 3) array).
_clip_ufunc: np.ufunc = _umath.clip  # type: ignore[attr-defined]

#: torch.distributions.Normal.log_prob's constant, computed the same way.
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))

#: SB3 PPO's collect_rollouts (the general path, used for every case the fast loop does not cover).
sb3_collect_rollouts = OnPolicyAlgorithm.collect_rollouts

Layer = Callable[[th.Tensor], th.Tensor]


def _has_module_hooks(policy: nn.Module) -> bool:
    """Whether a forward or backward hook (global, or on a module of ``policy``) would run in ``nn.Module.__call__``."""
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


def fast_evaluation_unsupported_reason(policy: Any, use_sde: bool) -> str | None:
    """
    Why the fast forward (this module's rollout loop, and :class:`sb3_ppo_variants.update.FastPolicyEvaluator` in the
    update) cannot stand in for ``policy``'s own forward passes, or ``None`` when it can. The cases: SB3's
    ``ActorCriticPolicy`` itself on the CPU, a non-image ``Box`` observation space with ``FlattenExtractor``, SB3's
    ``MlpExtractor``, a diagonal Gaussian (not squashed) or categorical action distribution, no gSDE, no module hooks.

    :param policy: the policy (the one being trained, or π_old's frozen copy)
    :param use_sde: whether the algorithm uses gSDE
    :return: a short reason, or ``None``
    """
    if type(policy) is not ActorCriticPolicy:  # subclasses may change evaluate_actions()
        return f"policy class {type(policy).__name__} (only ActorCriticPolicy/MlpPolicy)"
    if use_sde:
        return "gSDE"
    if policy.device.type != "cpu":
        return f"device {policy.device}"
    observation_space = policy.observation_space
    if not isinstance(observation_space, spaces.Box) or (policy.normalize_images and is_image_space(observation_space)):
        return f"observation space {observation_space}"
    extractors = (
        [policy.features_extractor]
        if policy.share_features_extractor
        else [policy.pi_features_extractor, policy.vf_features_extractor]
    )
    if any(type(extractor) is not FlattenExtractor for extractor in extractors):
        return "features extractor other than FlattenExtractor"
    if type(policy.mlp_extractor) is not MlpExtractor:
        return f"mlp extractor {type(policy.mlp_extractor).__name__}"
    if type(policy.action_dist) not in (DiagGaussianDistribution, CategoricalDistribution):
        return f"action distribution {type(policy.action_dist).__name__}"
    if isinstance(policy.action_space, spaces.Box) and policy.squash_output:
        return "squashed actions"
    if not (isinstance(policy.action_net, nn.Linear) and isinstance(policy.value_net, nn.Linear)):
        return "action or value head other than nn.Linear"
    if _has_module_hooks(policy):
        return "module hooks on the policy"
    return None


def fast_rollout_unsupported_reason(model: OnPolicyAlgorithm, rollout_buffer: RolloutBuffer) -> str | None:
    """
    Why the fast rollout loop cannot run for ``model`` (SB3's general ``collect_rollouts`` runs instead), or ``None``
    when it can.

    :param model: the on-policy algorithm about to collect a rollout
    :param rollout_buffer: the buffer it fills
    :return: a short reason, or ``None`` when the fast loop gives SB3's results
    """
    if type(rollout_buffer) is not RolloutBuffer:  # a subclass may change add()
        return f"rollout buffer class {type(rollout_buffer).__name__}"
    # The fast forward replays the policy's own layers: the same cases as the update's fast evaluation.
    return fast_evaluation_unsupported_reason(model.policy, model.use_sde)


#: What these activation modules' forward calls (the functions themselves, without a Python method around them).
_ACTIVATIONS: dict[type[nn.Module], Layer] = {nn.Tanh: th.tanh, nn.ReLU: th.relu}


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


def _invalid_parameter(name: str, distribution: str, constraint: str, value: th.Tensor) -> ValueError:
    """The error of torch's distribution argument validation, which SB3's loop runs at every step (NaN parameters)."""
    return ValueError(
        f"Expected parameter {name} (Tensor of shape {tuple(value.shape)}) of distribution {distribution} "
        f"to satisfy the constraint {constraint}, but found invalid values:\n{value}"
    )


class FastActorCritic:
    """
    SB3 ``ActorCriticPolicy.forward`` for one rollout, without module calls or ``Distribution`` objects: the same
    torch operations on tensors of the same shapes, so the same numbers and the same random draws.

    The parameters do not change during a rollout, so what depends only on them (the Gaussian's standard deviation,
    its square and log, broadcast to the batch as ``Normal`` does) is computed once, with SB3's operations.

    :param policy: an ``ActorCriticPolicy`` accepted by :func:`fast_rollout_unsupported_reason`
    :param n_envs: the batch size of every call (the number of environments)
    """

    def __init__(self, policy: ActorCriticPolicy, n_envs: int):
        self.action_shape: tuple[int, ...] = policy.action_space.shape or ()
        self.flatten = len(policy.observation_space.shape or ()) != 1  # nn.Flatten of a (batch, n) tensor is the identity
        self.pi_layers = _layers(policy.mlp_extractor.policy_net)
        self.vf_layers = _layers(policy.mlp_extractor.value_net)
        value_net, action_net = policy.value_net, policy.action_net
        assert isinstance(value_net, nn.Linear) and isinstance(action_net, nn.Linear)
        self.value_weight, self.value_bias = value_net.weight, value_net.bias
        self.action_weight, self.action_bias = action_net.weight, action_net.bias
        action_dist = policy.action_dist
        self.gaussian = isinstance(action_dist, DiagGaussianDistribution)
        if isinstance(action_dist, DiagGaussianDistribution):
            with th.no_grad():
                # DiagGaussianDistribution.proba_distribution and Normal.log_prob, on a batch of n_envs rows
                ones = th.ones((n_envs, action_dist.action_dim), dtype=policy.log_std.dtype)
                self.scale = ones * policy.log_std.exp()
                # -(x / y) == (-x) / y == x / (-y) exactly in IEEE arithmetic: dividing by -2σ² saves the negation
                self.minus_two_var = -(2 * self.scale**2)
                self.log_scale = self.scale.log()
            if not bool((self.scale > 0).all()):
                raise _invalid_parameter("scale", "Normal", "GreaterThan(lower_bound=0.0)", self.scale)
            # Normal.rsample draws torch.empty(shape).normal_(): refilling one tensor of that shape draws the same numbers
            self.noise = th.empty_like(self.scale)

    def _latents(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        features = obs.float()  # preprocess_obs for a non-image Box
        if self.flatten:
            features = features.flatten(1)
        latent_pi = latent_vf = features
        for layer in self.pi_layers:
            latent_pi = layer(latent_pi)
        for layer in self.vf_layers:
            latent_vf = layer(latent_vf)
        return latent_pi, latent_vf

    def act(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        ``policy(obs)`` (call under ``th.no_grad()``).

        :param obs: a batch of ``n_envs`` observations, as ``obs_as_tensor`` gives them
        :return: actions, values and log-probabilities, as ``ActorCriticPolicy.forward`` returns them
        """
        latent_pi, latent_vf = self._latents(obs)
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
        else:
            # Categorical(logits=...): normalised logits, softmax probabilities, multinomial sample, gathered log-prob
            logits = mean_actions - mean_actions.logsumexp(dim=-1, keepdim=True)
            if th.isnan(logits).any():
                raise _invalid_parameter("logits", "Categorical", "IndependentConstraint(Real(), 1)", logits)
            samples = th.multinomial(F.softmax(logits, dim=-1), 1, True)
            log_prob = logits.gather(-1, samples).squeeze(-1)
            actions = samples.T.reshape(-1)
        return actions.reshape((-1, *self.action_shape)), values, log_prob


def _dummy_vec_env_step(env: DummyVecEnv, actions: np.ndarray) -> tuple[VecEnvObs, np.ndarray, np.ndarray, list[dict]]:
    """
    ``DummyVecEnv.step`` without its deep copies, which cost more than stepping a classic-control environment: the
    observations come back as a fresh copy of the observation buffer (what the deep copy of a single-array buffer is),
    the infos as shallow copies of the environments' info dicts (with a copied ``terminal_observation``).
    Only an environment that mutates, during a later step, an object it put in an earlier info would differ.

    :param env: a ``DummyVecEnv`` (exactly: subclasses run their own ``step``) with a non-Dict, non-Tuple space
    :param actions: the actions, as ``DummyVecEnv.step`` takes them
    :return: ``DummyVecEnv.step``'s ``(observations, rewards, dones, infos)``
    """
    env.actions = actions  # what step_async stores
    for env_idx, sub_env in enumerate(env.envs):
        obs, env.buf_rews[env_idx], terminated, truncated, info = sub_env.step(actions[env_idx])
        env.buf_infos[env_idx] = info
        # convert to SB3 VecEnv api
        env.buf_dones[env_idx] = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        if env.buf_dones[env_idx]:
            # save final observation where user can get it, then reset
            info["terminal_observation"] = obs
            obs, env.reset_infos[env_idx] = sub_env.reset()
        env._save_obs(env_idx, obs)
    infos = [dict(info) for info in env.buf_infos]
    for info in infos:
        if "terminal_observation" in info:
            info["terminal_observation"] = np.copy(info["terminal_observation"])
    new_obs = env.buf_obs[None].copy()  # type: ignore[index]
    return new_obs, np.copy(env.buf_rews), np.copy(env.buf_dones), infos


def _vec_env_step(env: VecEnv) -> Callable[[np.ndarray], tuple[VecEnvObs, np.ndarray, np.ndarray, list[dict]]]:
    """``env.step``, or its copy-free equivalent for a plain ``DummyVecEnv`` of single-array observations."""
    if type(env) is DummyVecEnv and list(env.keys) == [None]:
        return partial(_dummy_vec_env_step, env)
    return env.step


def collect_rollouts(
    model: OnPolicyAlgorithm, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
) -> bool:
    """
    ``OnPolicyAlgorithm.collect_rollouts`` with the same results: the fast loop when
    :func:`fast_rollout_unsupported_reason` accepts the model, SB3's own loop otherwise.

    :param model: the on-policy algorithm
    :param env: The training environment
    :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
    :param rollout_buffer: Buffer to fill with rollouts
    :param n_rollout_steps: Number of experiences to collect per environment
    :return: True if function returned with at least `n_rollout_steps` collected, False if callback terminated
        rollout prematurely.
    """
    if fast_rollout_unsupported_reason(model, rollout_buffer) is not None:
        return sb3_collect_rollouts(model, env, callback, rollout_buffer, n_rollout_steps)
    return _collect_rollouts_fast(model, env, callback, rollout_buffer, n_rollout_steps)


def _collect_rollouts_fast(
    model: OnPolicyAlgorithm, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
) -> bool:
    """
    The fast loop: SB3's ``collect_rollouts`` step for step (see there for the arguments), with the policy forward of
    :class:`FastActorCritic`, direct writes into the buffer's arrays (what ``RolloutBuffer.add`` stores) and the
    copy-free ``DummyVecEnv`` step. Callbacks see the same ``self.locals`` entries, at the same times, as in SB3.
    """
    assert model._last_obs is not None, "No previous observation was provided"
    policy = model.policy
    # Switch to eval mode (this affects batch norm / dropout)
    policy.set_training_mode(False)

    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()

    actor = FastActorCritic(policy, env.num_envs)
    step = _vec_env_step(env)
    device, gamma = model.device, model.gamma
    box_actions = isinstance(model.action_space, spaces.Box)
    discrete_actions = isinstance(model.action_space, spaces.Discrete)
    if box_actions:
        low, high = model.action_space.low, model.action_space.high  # type: ignore[attr-defined]
    buffer_action_shape = (rollout_buffer.n_envs, rollout_buffer.action_dim)
    # SB3 passes locals() to the callbacks: the same names, updated as its loop assigns them.
    frame: dict[str, Any] = {
        "self": model,
        "env": env,
        "callback": callback,
        "rollout_buffer": rollout_buffer,
        "n_rollout_steps": n_rollout_steps,
        "n_steps": n_steps,
    }

    while n_steps < n_rollout_steps:
        with th.no_grad():
            # Convert to pytorch tensor (obs_as_tensor of an array)
            obs_tensor = th.as_tensor(model._last_obs, device=device)
            actions_tensor, values, log_probs = actor.act(obs_tensor)
        actions = actions_tensor.numpy()

        # Rescale and perform action
        clipped_actions = actions
        if box_actions:
            # Clip the actions to avoid out of bound error, as we are sampling from an unbounded Gaussian distribution
            # (what np.clip computes)
            clipped_actions = _clip_ufunc(actions, low, high)

        new_obs, rewards, dones, infos = step(clipped_actions)

        model.num_timesteps += env.num_envs

        # Give access to local variables
        frame["n_steps"] = n_steps
        frame["obs_tensor"] = obs_tensor
        frame["actions"] = actions
        frame["values"] = values
        frame["log_probs"] = log_probs
        frame["clipped_actions"] = clipped_actions
        frame["new_obs"] = new_obs
        frame["rewards"] = rewards
        frame["dones"] = dones
        frame["infos"] = infos
        callback.update_locals(frame)
        if not callback.on_step():
            return False

        model._update_info_buffer(infos, dones)
        n_steps += 1

        if discrete_actions:
            # Reshape in case of discrete action
            actions = actions.reshape(-1, 1)

        # Handle timeout by bootstrapping with value function, see GitHub issue #633
        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                terminal_obs = policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    terminal_value = policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                rewards[idx] += gamma * terminal_value
                frame["terminal_obs"], frame["terminal_value"] = terminal_obs, terminal_value
        frame["idx"], frame["done"] = idx, done

        # rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs)
        pos = rollout_buffer.pos
        rollout_buffer.observations[pos] = model._last_obs
        rollout_buffer.actions[pos] = actions.reshape(buffer_action_shape)
        rollout_buffer.rewards[pos] = rewards
        rollout_buffer.episode_starts[pos] = model._last_episode_starts
        rollout_buffer.values[pos] = values.numpy().reshape(-1)
        rollout_buffer.log_probs[pos] = log_probs.numpy()
        rollout_buffer.pos = pos + 1
        if rollout_buffer.pos == rollout_buffer.buffer_size:
            rollout_buffer.full = True

        model._last_obs = new_obs  # type: ignore[assignment]
        model._last_episode_starts = dones

    with th.no_grad():
        # Compute value for the last timestep
        values = policy.predict_values(th.as_tensor(new_obs, device=device))

    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)

    frame["n_steps"], frame["actions"], frame["values"] = n_steps, actions, values
    callback.update_locals(frame)

    callback.on_rollout_end()

    return True
