"""
A faster ``RecurrentPPO.collect_rollouts`` for LSTM policies, with sb3-contrib's results.

sb3-contrib's recurrent rollout runs one policy forward per environment step: ``nn.Module`` calls around two LSTM
steps and the MLP heads, a torch ``Distribution`` object (with argument validation), ``RecurrentRolloutBuffer.add``
converting its inputs. The fast loop here runs one LSTM kernel call per LSTM and step, with the episode-start reset of
``RecurrentActorCriticPolicy._process_sequence`` (the states multiplied by ``1 - episode_start`` when an episode
starts in some env), then :class:`~sb3_ppo_variants.fast_policy.FastActorCritic`'s heads and sampling (the same
operations as SB3's distributions, the same random draws). The LSTM states are kept, stored in the buffer and carried
to the next rollout (``_last_lstm_states``) as sb3-contrib keeps them, and the timeout bootstrap and the last step's
value run sb3-contrib's own ``predict_values``.

The LSTM kernel: by default ``torch.lstm_cell`` (:func:`_cell_step`), values within 1e-6 of the oneDNN primitive that
``nn.LSTM`` runs on x86 CPUs at about a quarter of its cost per step; or ``torch.lstm``, the kernel ``nn.LSTM`` calls
(:func:`_kernel_step`), with which the rollout is bitwise sb3-contrib's (``RecurrentPPOVariant.rollout_lstm_cell``).

It covers sb3-contrib's ``MlpLstmPolicy`` and the package's masked ``MlpLstmPolicy`` exactly (see
:func:`plan_recurrent_rollout`); everything else runs ``RecurrentPPO.collect_rollouts``.
"""

from collections.abc import Callable, Sequence
from copy import deepcopy
from functools import partial
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

# _clip_ufunc is the package's own helper of the feed-forward fast loop (the same ufunc), shared rather than copied.
from sb3_ppo_variants.fast_policy import FastActorCritic, extractors_unsupported_reason, heads_unsupported_reason
from sb3_ppo_variants.rollout import _clip_ufunc

#: an LSTM's (hidden, cell) states, each (n_layers, n_envs, hidden size), as sb3-contrib's RNNStates holds them
LstmState = tuple[th.Tensor, ...]


def _lstm_unsupported_reason(lstm: Any) -> str | None:
    """Why :class:`FastLstmActorCritic` cannot run ``lstm``'s kernel itself, or ``None``."""
    if type(lstm) is not nn.LSTM:
        return f"LSTM module {type(lstm).__name__} (only torch.nn.LSTM)"
    if lstm.batch_first or lstm.bidirectional or lstm.proj_size != 0:
        return "an LSTM with batch_first, bidirectional or proj_size"
    return None


def lstm_policy_unsupported_reason(policy: Any, use_sde: bool, policies: tuple[type, ...]) -> str | None:
    """
    Why :class:`FastLstmActorCritic` cannot stand in for ``policy``'s rollout forward, or ``None`` when it can: the
    exact ``policies`` (sb3-contrib's ``MlpLstmPolicy``, the package's masked one) on the CPU, a non-image ``Box``
    observation space with ``FlattenExtractor``, SB3's ``MlpExtractor``, ``torch.nn.LSTM`` modules (seq-first,
    unidirectional, no projection), the critic's LSTM, the shared LSTM or a ``nn.Linear`` critic, a diagonal Gaussian
    (not squashed), categorical or masked categorical action distribution, no gSDE, no module hooks.

    :param policy: the algorithm's policy
    :param use_sde: whether the algorithm uses gSDE
    :param policies: the accepted policy classes (exact: a subclass may change the forward pass)
    :return: a short reason, or ``None``
    """
    if type(policy) not in policies:
        return f"policy class {type(policy).__name__} (only MlpLstmPolicy)"
    if use_sde:
        return "gSDE"
    if policy.device.type != "cpu":
        return f"device {policy.device}"
    observation_space = policy.observation_space
    if not isinstance(observation_space, spaces.Box) or (policy.normalize_images and is_image_space(observation_space)):
        return f"observation space {observation_space} (only non-image Box)"
    reason = extractors_unsupported_reason(policy)
    if reason is not None:
        return reason
    for lstm in (policy.lstm_actor, policy.lstm_critic):
        reason = None if lstm is None else _lstm_unsupported_reason(lstm)
        if reason is not None:
            return reason
    if policy.critic is not None and type(policy.critic) is not nn.Linear:
        return f"critic {type(policy.critic).__name__} (only nn.Linear)"
    return heads_unsupported_reason(
        policy, (DiagGaussianDistribution, CategoricalDistribution, MaskableCategoricalDistribution)
    )


def plan_recurrent_rollout(
    model: OnPolicyAlgorithm, rollout_buffer: Any, policies: tuple[type, ...], buffers: tuple[type, ...]
) -> str | None:
    """
    Whether the fast loop applies to the rollout about to be collected: ``None`` where it runs, else the reason
    ``RecurrentPPO.collect_rollouts`` runs.

    :param model: a recurrent variant (its ``fast_rollout``, ``policy`` and ``use_sde``)
    :param rollout_buffer: the buffer it fills
    :param policies: the accepted policy classes (exact)
    :param buffers: the accepted buffer classes (exact: a subclass may change ``add()``)
    :return: the reason, or ``None``
    """
    if not getattr(model, "fast_rollout", True):
        return "fast_rollout = False"
    if type(rollout_buffer) not in buffers:
        return f"rollout buffer class {type(rollout_buffer).__name__}"
    return lstm_policy_unsupported_reason(model.policy, model.use_sde, policies)


LstmStep = Callable[[th.Tensor, LstmState], tuple[th.Tensor, LstmState]]


def _kernel_step(
    features: th.Tensor, state: LstmState, weights: list[th.Tensor], bias: bool, layers: int, dropout: float, training: bool
) -> tuple[th.Tensor, LstmState]:
    """
    ``_process_sequence``'s LSTM call for one step of ``n_envs`` sequences: ``torch.lstm``, the kernel that
    ``nn.LSTM.forward`` calls (``torch._VF.lstm`` is the same function) with the module's own arguments; on x86 CPUs
    it runs oneDNN's RNN primitive, as sb3-contrib's rollout does.
    """
    output, hidden, cell = th.lstm(features.unsqueeze(0), state, weights, bias, layers, dropout, training, False, False)
    return output[0], (hidden, cell)


def _cell_step(features: th.Tensor, state: LstmState, layers: Sequence[Sequence[th.Tensor]]) -> tuple[th.Tensor, LstmState]:
    """
    The same LSTM step with ``torch.lstm_cell`` per layer, the kernel of ``nn.LSTMCell`` (and of ``nn.LSTM`` where
    oneDNN is not used): the same gate arithmetic in another float order than oneDNN's RNN primitive, at about a
    quarter of its cost for one step (the primitive's set-up dominates). Dropout between layers only applies in
    training mode, and the rollout runs in evaluation mode.
    """
    if len(layers) == 1:
        hidden, cell = th.lstm_cell(features, (state[0][0], state[1][0]), *layers[0])
        return hidden, (hidden.unsqueeze(0), cell.unsqueeze(0))
    hiddens, cells = [], []
    for layer, hidden, cell in zip(layers, state[0], state[1], strict=True):
        features, cell = th.lstm_cell(features, (hidden, cell), *layer)
        hiddens.append(features)
        cells.append(cell)
    return features, (th.stack(hiddens), th.stack(cells))


class FastLstmActorCritic(FastActorCritic):
    """
    ``RecurrentActorCriticPolicy.forward`` for one rollout step (:meth:`step`), without module calls or distribution
    objects: one LSTM kernel call per LSTM, then :class:`~sb3_ppo_variants.fast_policy.FastActorCritic`'s MLP, heads
    and sampling.

    :class:`FastActorCritic.act` runs ``_features`` on its input, then the actor's and the critic's MLP on the result.
    Here its input is already the pair of LSTM outputs (actor, critic): ``_features`` passes it through and each MLP
    takes its own half, so ``act`` runs unchanged after the LSTM step.

    :param policy: a policy accepted by :func:`lstm_policy_unsupported_reason`
    :param lstm_cell: step the LSTMs with ``torch.lstm_cell`` (:func:`_cell_step`: values within 1e-6 of
        ``nn.LSTM``'s, faster); ``False``: with ``nn.LSTM``'s own kernel (:func:`_kernel_step`: bitwise sb3-contrib's)
    """

    def __init__(self, policy: Any, lstm_cell: bool = True) -> None:
        super().__init__(policy)
        self.lstm_actor: nn.LSTM = policy.lstm_actor
        self.lstm_critic: nn.LSTM | None = policy.lstm_critic
        self.shared_lstm: bool = policy.shared_lstm
        self.critic: nn.Linear | None = policy.critic
        self.lstm_cell = lstm_cell

    def _lstm_step(self, lstm: nn.LSTM) -> LstmStep:
        """One step of ``lstm`` bound to its parameter tensors (which do not change during a rollout)."""
        # all_weights: per layer w_ih, w_hh (and b_ih, b_hh), the order of the module's flat weights
        if self.lstm_cell:
            return partial(_cell_step, layers=lstm.all_weights)
        weights: list[th.Tensor] = [weight for layer in lstm.all_weights for weight in layer]
        return partial(
            _kernel_step,
            weights=weights,
            bias=lstm.bias,
            layers=lstm.num_layers,
            dropout=lstm.dropout,
            training=lstm.training,
        )

    @th.no_grad()
    def start_rollout(self, n_envs: int) -> None:
        """
        Before :meth:`step`: :meth:`FastActorCritic.start_rollout`, and each LSTM's step.

        :param n_envs: the batch size of every :meth:`step` call (the number of environments)
        """
        super().start_rollout(n_envs)
        self.actor_step = self._lstm_step(self.lstm_actor)
        self.critic_step = None if self.lstm_critic is None else self._lstm_step(self.lstm_critic)

    def step(
        self, obs: th.Tensor, episode_starts: th.Tensor, reset: bool, states: RNNStates, masks: np.ndarray | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, RNNStates]:
        """
        ``policy(obs, states, episode_starts)`` (call under ``th.no_grad()``, after :meth:`start_rollout`). A hot
        per-step function, kept in one piece.

        :param obs: a batch of ``n_envs`` observations, as ``obs_as_tensor`` gives them
        :param episode_starts: whether each env's episode starts at ``obs`` (float32, ``n_envs``)
        :param reset: whether any episode starts (``episode_starts`` is not all zero)
        :param states: the LSTM states before this step, as ``_last_lstm_states`` holds them
        :param masks: the legal actions (a masked policy)
        :return: actions, values, log-probabilities and the new LSTM states, as the policy's ``forward`` returns them
        """
        features = FastActorCritic._features(self, obs)  # the observations' features (the override below is for act)
        state_pi, state_vf = states
        if reset:
            # sb3-contrib's step loop (taken when an episode starts): the states times (1 - episode_start)
            keep = (1.0 - episode_starts).view(1, -1, 1)
            state_pi = (keep * state_pi[0], keep * state_pi[1])
            if self.critic_step is not None:
                state_vf = (keep * state_vf[0], keep * state_vf[1])
        latent_pi, new_pi = self.actor_step(features, state_pi)
        if self.critic_step is not None:
            latent_vf, new_vf = self.critic_step(features, state_vf)
        elif self.shared_lstm:  # the actor's LSTM output and states (sb3-contrib detaches them: no graph here anyway)
            latent_vf, new_vf = latent_pi, new_pi
        else:  # a feed-forward critic; the critic's states are the actor's
            assert self.critic is not None
            latent_vf, new_vf = F.linear(features, self.critic.weight, self.critic.bias), new_pi
        actions, values, log_prob = self.act((latent_pi, latent_vf), masks)  # type: ignore[arg-type]
        return actions, values, log_prob, RNNStates(new_pi, new_vf)

    # act(pair) with the pair of LSTM outputs: see the class docstring.
    def _features(self, obs: Any) -> Any:
        return obs

    def _latent_pi(self, features: Any) -> th.Tensor:
        return super()._latent_pi(features[0])

    def _latent_vf(self, features: Any) -> th.Tensor:
        return super()._latent_vf(features[1])


def collect_recurrent_rollouts(
    model: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: Any,
    n_rollout_steps: int,
    masks: Callable[[], np.ndarray] | None = None,
    lstm_cell: bool = True,
) -> bool:
    """
    ``RecurrentPPO.collect_rollouts`` step for step (same arguments, same results; call it where
    :func:`plan_recurrent_rollout` accepts the rollout), with :meth:`FastLstmActorCritic.step`, direct writes into the
    buffer's arrays (what ``RecurrentRolloutBuffer.add`` stores) and the env's own ``step``. Callbacks see the same
    ``self.locals`` entries, at the same times, as in sb3-contrib's loop. With ``masks``, each step's masks are read
    before the forward pass, applied to the logits and stored with the step (the masked recurrent buffer's ``add``).
    A hot per-step loop, kept in one function (longer than 60 lines): a split would add a Python call to every step.

    :param model: a recurrent variant
    :param env: The training environment
    :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
    :param rollout_buffer: the ``RecurrentRolloutBuffer`` (or the masked recurrent buffer) to fill
    :param n_rollout_steps: Number of experiences to collect per environment
    :param masks: the current step's action masks (sb3-contrib's ``get_action_masks(env)``), for a masked policy
    :param lstm_cell: step the LSTMs with ``torch.lstm_cell`` (within 1e-6 of sb3-contrib's); ``False``: with
        ``nn.LSTM``'s own kernel (bitwise sb3-contrib's), see :class:`FastLstmActorCritic`
    :return: True if function returned with at least `n_rollout_steps` collected, False if callback terminated
        rollout prematurely.
    """
    # _last_obs, _last_episode_starts and _update_info_buffer are BaseAlgorithm's rollout state and episode statistics,
    # and _last_lstm_states RecurrentPPO's LSTM states between steps: every collect_rollouts of SB3 and sb3-contrib uses
    # them, and they have no public accessor.
    assert model._last_obs is not None, "No previous observation was provided"
    policy = cast(RecurrentActorCriticPolicy, model.policy)
    # Switch to eval mode (this affects batch norm / dropout)
    policy.set_training_mode(False)

    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()

    lstm_states = deepcopy(model._last_lstm_states)  # type: ignore[attr-defined]

    actor = FastLstmActorCritic(policy, lstm_cell)
    actor.start_rollout(env.num_envs)
    device, gamma = model.device, model.gamma
    box_actions = isinstance(model.action_space, spaces.Box)
    discrete_actions = isinstance(model.action_space, spaces.Discrete)
    if box_actions:
        low, high = model.action_space.low, model.action_space.high  # type: ignore[attr-defined]
    buffer_action_shape = (rollout_buffer.n_envs, rollout_buffer.action_dim)
    buffer_obs_shape = (rollout_buffer.n_envs, *rollout_buffer.obs_shape)
    mask_shape = (rollout_buffer.n_envs, getattr(rollout_buffer, "mask_dims", 0))
    action_masks = None
    # sb3-contrib passes locals() to the callbacks: the same names, updated as its loop assigns them.
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
            episode_starts = th.tensor(model._last_episode_starts, dtype=th.float32, device=device)
            if masks is not None:
                action_masks = masks()
            reset = bool(model._last_episode_starts.any())  # type: ignore[union-attr]
            actions_tensor, values, log_probs, lstm_states = actor.step(
                obs_tensor, episode_starts, reset, lstm_states, action_masks
            )
        actions = actions_tensor.numpy()

        # Rescale and perform action
        clipped_actions = actions
        if box_actions:
            # Clip the actions to avoid out of bound error (what np.clip computes)
            clipped_actions = _clip_ufunc(actions, low, high)

        new_obs, rewards, dones, infos = env.step(clipped_actions)

        model.num_timesteps += env.num_envs

        # Give access to local variables
        frame["n_steps"] = n_steps
        frame["lstm_states"] = lstm_states
        frame["obs_tensor"] = obs_tensor
        frame["episode_starts"] = episode_starts
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

        # Handle timeout by bootstrapping with value function (GitHub issue #633): sb3-contrib's own code, with the
        # critic's new state of the env that ended
        for idx, done_ in enumerate(dones):
            if done_ and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                terminal_obs = policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    terminal_lstm_state = (
                        lstm_states.vf[0][:, idx : idx + 1, :].contiguous(),
                        lstm_states.vf[1][:, idx : idx + 1, :].contiguous(),
                    )
                    episode_starts = th.tensor([False], dtype=th.float32, device=device)
                    terminal_value = policy.predict_values(
                        terminal_obs, terminal_lstm_state, episode_starts  # type: ignore[arg-type]  # a Box: a tensor
                    )[0]
                rewards[idx] += gamma * terminal_value
                frame["terminal_obs"], frame["terminal_lstm_state"] = terminal_obs, terminal_lstm_state
                frame["episode_starts"], frame["terminal_value"] = episode_starts, terminal_value
        frame["idx"], frame["done_"] = idx, done_

        # rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs,
        #                    lstm_states=self._last_lstm_states)
        pos = rollout_buffer.pos
        last_pi, last_vf = model._last_lstm_states  # type: ignore[attr-defined]
        rollout_buffer.hidden_states_pi[pos] = last_pi[0].numpy()
        rollout_buffer.cell_states_pi[pos] = last_pi[1].numpy()
        rollout_buffer.hidden_states_vf[pos] = last_vf[0].numpy()
        rollout_buffer.cell_states_vf[pos] = last_vf[1].numpy()
        rollout_buffer.observations[pos] = model._last_obs.reshape(buffer_obs_shape)  # type: ignore[union-attr]
        if action_masks is not None:  # the masked recurrent buffer's add(action_masks=...)
            rollout_buffer.action_masks[pos] = action_masks.reshape(mask_shape)
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
        model._last_lstm_states = lstm_states  # type: ignore[attr-defined]

    with th.no_grad():
        # Compute value for the last timestep
        episode_starts = th.tensor(dones, dtype=th.float32, device=device)
        values = policy.predict_values(th.as_tensor(new_obs, device=device), lstm_states.vf, episode_starts)

    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)

    callback.on_rollout_end()

    return True
