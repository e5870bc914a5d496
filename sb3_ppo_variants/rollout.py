"""
A faster ``collect_rollouts`` for on-policy SB3 algorithms, with the same results as SB3's.

SB3's rollout loop spends more time on per-step Python overhead than on the policy's arithmetic: ``nn.Module``
calls, a torch ``Distribution`` object (with argument validation) per step, ``RolloutBuffer.add`` converting its
inputs, ``np.clip`` dispatch. The fast loop here runs
the same torch operations on tensors of the same shapes, in the same order, drawing the same random numbers from the
same generators, so the actions, values, log-probabilities, buffer contents and RNG streams are bitwise SB3's; it
only drops the overhead around them.

The fast loop covers the common case (see :func:`plan_rollout`): SB3's ``ActorCriticPolicy``
(``MlpPolicy``) on CPU with the default ``FlattenExtractor``, a flat (non-image) ``Box`` or a ``Discrete`` observation
space, ``Box`` (diagonal Gaussian, no squashing) or ``Discrete`` actions, no gSDE, SB3's own ``RolloutBuffer`` and no
module hooks; and the same for sb3-contrib's ``MaskablePPO`` (``MaskableActorCriticPolicy``, ``Discrete``,
``MultiDiscrete`` or ``MultiBinary`` actions, ``MaskableRolloutBuffer``), whose per-step masks are applied to the logits
as ``MaskableCategorical`` applies them.
Everything else runs the algorithm's own ``collect_rollouts``.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.fast_policy import FastActorCritic, fast_policy_unsupported_reason

# numpy's private umath module holds the clip ufunc itself; np.clip's public wrapper costs half the call (see below).
try:
    from numpy._core import umath as _umath  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import umath as _umath  # type: ignore[no-redef]

#: The ufunc that np.clip ends in for arrays with array bounds (same results), without np.clip's dispatch layers
#: (half its cost on a (1, 3) array).
_clip_ufunc: np.ufunc = _umath.clip  # type: ignore[attr-defined]

#: SB3 PPO's collect_rollouts (the general path, used for every case the fast loop does not cover).
sb3_collect_rollouts = OnPolicyAlgorithm.collect_rollouts


def plan_rollout(model: OnPolicyAlgorithm, env: VecEnv, rollout_buffer: RolloutBuffer) -> str | None:
    """
    Whether the fast loop applies to the rollout about to be collected: ``None`` where it runs, else the reason SB3's
    ``collect_rollouts`` runs. Any VecEnv works: the loop steps it with its own ``step``.

    :param model: the on-policy algorithm about to collect a rollout
    :param env: the training environment
    :param rollout_buffer: the buffer it fills
    :return: the reason, or ``None``
    """
    if not getattr(model, "fast_rollout", True):
        loop: str | None = "fast_rollout = False"
    elif type(rollout_buffer) not in (RolloutBuffer, MaskableRolloutBuffer):  # a subclass may change add()
        loop = f"rollout buffer class {type(rollout_buffer).__name__}"
    else:
        # The fast forward replays the policy's own layers: the same cases as the update's fast evaluation.
        loop = fast_policy_unsupported_reason(model.policy, model.use_sde)
    return loop


def collect_rollouts(
    model: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: RolloutBuffer,
    n_rollout_steps: int,
    plan: str | None,
    masks: Callable[[], np.ndarray] | None = None,
) -> bool:
    """
    ``OnPolicyAlgorithm.collect_rollouts`` with the same results: the fast loop where :func:`plan_rollout` accepts it,
    SB3's own loop otherwise.

    :param model: the on-policy algorithm
    :param env: The training environment
    :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
    :param rollout_buffer: Buffer to fill with rollouts
    :param n_rollout_steps: Number of experiences to collect per environment
    :param plan: :func:`plan_rollout`'s decision for this rollout (its loop must be fast for a masked policy)
    :param masks: the current step's action masks (sb3-contrib's ``get_action_masks(env)``), for a masked policy
    :return: True if function returned with at least `n_rollout_steps` collected, False if callback terminated
        rollout prematurely.
    """
    if plan is not None:
        return sb3_collect_rollouts(model, env, callback, rollout_buffer, n_rollout_steps)
    return _collect_rollouts_fast(model, env, callback, rollout_buffer, n_rollout_steps, masks)


def _collect_rollouts_fast(
    model: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: RolloutBuffer,
    n_rollout_steps: int,
    masks: Callable[[], np.ndarray] | None = None,
) -> bool:
    """
    The fast loop: SB3's ``collect_rollouts`` step for step (see there for the arguments), with the policy forward of
    :class:`~sb3_ppo_variants.fast_policy.FastActorCritic`, direct writes into the buffer's arrays (what
    ``RolloutBuffer.add`` stores) and the env's own ``step``. Callbacks see the same ``self.locals`` entries, at the
    same times, as in SB3. With ``masks`` (MaskablePPO's loop), each step's masks are read before the forward pass,
    applied to it and stored with the step, as ``MaskablePPO.collect_rollouts`` does. A hot per-step loop, kept in one
    function (longer than 60 lines): a split would add a Python call to every step.
    """
    # _last_obs, _last_episode_starts and _update_info_buffer are BaseAlgorithm's rollout state and episode statistics,
    # which every SB3 collect_rollouts uses: SB3 has no public accessor for them.
    assert model._last_obs is not None, "No previous observation was provided"
    policy = model.policy
    # Switch to eval mode (this affects batch norm / dropout)
    policy.set_training_mode(False)

    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()

    actor = FastActorCritic(policy)
    actor.start_rollout(env.num_envs)
    device, gamma = model.device, model.gamma
    box_actions = isinstance(model.action_space, spaces.Box)
    discrete_actions = isinstance(model.action_space, spaces.Discrete)
    if box_actions:
        low, high = model.action_space.low, model.action_space.high  # type: ignore[attr-defined]
    buffer_action_shape = (rollout_buffer.n_envs, rollout_buffer.action_dim)
    # RolloutBuffer.add reshapes Discrete observations to (n_envs, 1)
    buffer_obs_shape = (rollout_buffer.n_envs, *rollout_buffer.obs_shape)
    masked = isinstance(rollout_buffer, MaskableRolloutBuffer)
    mask_shape = (rollout_buffer.n_envs, getattr(rollout_buffer, "mask_dims", 0))
    action_masks = None
    # SB3 passes locals() to the callbacks: the same names, updated as its loop assigns them.
    frame: dict[str, Any] = {
        "self": model,
        "env": env,
        "callback": callback,
        "rollout_buffer": rollout_buffer,
        "n_rollout_steps": n_rollout_steps,
        "n_steps": n_steps,
    }
    if masked:  # MaskablePPO.collect_rollouts' own locals
        frame["use_masking"], frame["action_masks"] = masks is not None, None

    while n_steps < n_rollout_steps:
        with th.no_grad():
            # Convert to pytorch tensor (obs_as_tensor of an array)
            obs_tensor = th.as_tensor(model._last_obs, device=device)
            if masks is not None:
                action_masks = masks()
            actions_tensor, values, log_probs = actor.act(obs_tensor, action_masks)
        actions = actions_tensor.numpy()

        # Rescale and perform action
        clipped_actions = actions
        if box_actions:
            # Clip the actions to avoid out of bound error, as we are sampling from an unbounded Gaussian distribution
            # (what np.clip computes)
            clipped_actions = _clip_ufunc(actions, low, high)

        new_obs, rewards, dones, infos = env.step(clipped_actions)

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
        if masked:
            frame["action_masks"] = action_masks
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
        rollout_buffer.observations[pos] = model._last_obs.reshape(buffer_obs_shape)  # type: ignore[union-attr]
        if action_masks is not None:  # MaskableRolloutBuffer.add
            rollout_buffer.action_masks[pos] = action_masks.reshape(mask_shape)  # type: ignore[attr-defined]
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
