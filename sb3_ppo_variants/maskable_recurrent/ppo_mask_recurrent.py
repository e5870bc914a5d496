"""
``MaskableRecurrentPPOVariant``: invalid-action masking (sb3-contrib's ``MaskablePPO``) and LSTM policies
(sb3-contrib's ``RecurrentPPO``) in one algorithm, with every surrogate objective.

It is :class:`~sb3_ppo_variants.RecurrentPPOVariant` (sb3-contrib's recurrent set-up and rollouts, PPOVariant's update
with padded rows excluded) plus masks:

- the policy (:mod:`.policies`) is sb3-contrib's recurrent policy with sb3-contrib's masked distributions;
- the buffer (:mod:`.buffers`) is sb3-contrib's recurrent buffer that also stores each step's masks and returns them
  in the padded sequence layout;
- rollouts are ``RecurrentPPO.collect_rollouts`` itself: while it runs, the policy reads each step's masks from the
  env when it acts and the buffer stores the same masks with the step (:class:`~.policies.StepMasks`);
- π_θ and π_old are evaluated with the masks stored with each sample, so both are the masked distributions, the
  exact KL runs over the legal actions only, and padded rows (all actions legal) contribute nothing.
"""

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.checks import check_bool
from sb3_ppo_variants.loss import Evaluation
from sb3_ppo_variants.maskable_recurrent.buffers import MaskableRecurrentDictRolloutBuffer, MaskableRecurrentRolloutBuffer
from sb3_ppo_variants.maskable_recurrent.policies import (
    CnnLstmPolicy,
    MaskableRecurrentActorCriticPolicy,
    MlpLstmPolicy,
    MultiInputLstmPolicy,
    StepMasks,
)
from sb3_ppo_variants.objectives import SurrogateObjective
from sb3_ppo_variants.recurrent import RecurrentPPOVariant

SelfMaskableRecurrentPPOVariant = TypeVar("SelfMaskableRecurrentPPOVariant", bound="MaskableRecurrentPPOVariant")


class MaskableRecurrentPPOVariant(RecurrentPPOVariant):
    """
    PPO with an LSTM policy and invalid-action masking, and a selectable surrogate objective. Without masks
    (``learn(use_masking=False)``, or masks that allow every action) and with ``objective="clip"`` it trains as
    sb3-contrib's ``RecurrentPPO`` for the same seed (Discrete and MultiDiscrete actions).

    The environment must provide action masks (an ``action_masks()`` method, e.g. through sb3-contrib's
    ``ActionMasker`` or :class:`~sb3_ppo_variants.wrappers.InfoActionMasker`) unless ``learn(use_masking=False)``.
    Every argument of ``RecurrentPPO`` is accepted with the same name, meaning and default; see
    :class:`~sb3_ppo_variants.PPOVariant` for ``objective``, ``kl_coef``, ``kl_target`` and ``log_kl``.

    :param policy: The policy model to use (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy: LSTM policies with
        masked distributions, or a subclass of ``MaskableRecurrentActorCriticPolicy``)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
    :param batch_size: Minibatch size (``None``: the whole rollout)
    :param n_epochs: Number of epochs when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: ε of the clipped objective (number or schedule); the ``train/clip_fraction`` threshold
    :param clip_range_vf: Clipping parameter for the value function (``None``: no clipping)
    :param normalize_advantage: Whether to normalize the advantage per minibatch (over its valid samples)
    :param ent_coef: Entropy coefficient for the loss calculation, a number or a function of the progress remaining
    :param vf_coef: Value function coefficient for the loss calculation, a number or a function of the progress
        remaining
    :param max_grad_norm: The maximum value for the gradient clipping
    :param use_sde: Accepted for ``RecurrentPPO``'s signature; must be False (masked distributions are discrete)
    :param sde_sample_freq: Accepted for ``RecurrentPPO``'s signature; unused
    :param target_kl: SB3's early stopping of the epochs (not the adaptive penalty's ``kl_target``)
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param objective: The surrogate objective (``"clip"``, ``"adaptive_kl"``, ``"fixed_kl"``, ``"none"``,
        ``"dual_clip"``, ``"asymmetric_clip"`` or an object)
    :param kl_coef: β of ``"fixed_kl"`` (number or schedule), initial β of ``"adaptive_kl"`` (number)
    :param kl_target: d_targ of ``"adaptive_kl"`` (number or schedule)
    :param log_kl: also measure and log ``train/kl`` for objectives that do not use the KL
    :param objective_kwargs: the named objective's own parameters (``dict(dual_clip=3.0)``,
        ``dict(clip_range_high=0.28)``), see :class:`~sb3_ppo_variants.PPOVariant`
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
    supported_action_spaces = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
    policy_base = MaskableRecurrentActorCriticPolicy
    sequence_policies = (MlpLstmPolicy,)
    sequence_buffers = (MaskableRecurrentRolloutBuffer,)
    masked_buffer = True
    policy: MaskableRecurrentActorCriticPolicy  # type: ignore[assignment]
    #: whether the rollouts of the current learn() read the env's masks (learn's use_masking)
    _use_masking: bool = True

    def __init__(
        self,
        policy: str | type[MaskableRecurrentActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 128,
        batch_size: int | None = 128,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float | Schedule = 0.0,
        vf_coef: float | Schedule = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        objective: "str | SurrogateObjective" = "clip",
        kl_coef: float | Schedule = 1.0,
        kl_target: float | Schedule = 0.01,
        log_kl: bool = False,
        objective_kwargs: dict[str, Any] | None = None,
        _init_setup_model: bool = True,
    ):
        if use_sde:
            raise ValueError(
                f"use_sde=True is not supported by {type(self).__name__}: masked action distributions are discrete"
            )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=sde_sample_freq,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            objective=objective,
            kl_coef=kl_coef,
            kl_target=kl_target,
            log_kl=log_kl,
            objective_kwargs=objective_kwargs,
            _init_setup_model=_init_setup_model,
        )

    def _setup_model(self) -> None:
        super()._setup_model()
        # RecurrentPPO._setup_model hard-codes sb3-contrib's recurrent buffers: replace the one it built by the masked
        # buffer of the same geometry (building a buffer draws no random numbers, so seeding is unaffected).
        buffer = self.rollout_buffer
        buffer_class = (
            MaskableRecurrentDictRolloutBuffer
            if isinstance(self.observation_space, spaces.Dict)
            else MaskableRecurrentRolloutBuffer
        )
        self.rollout_buffer = buffer_class(
            buffer.buffer_size,
            buffer.observation_space,
            buffer.action_space,
            buffer.hidden_state_shape,  # type: ignore[attr-defined]
            buffer.device,
            gamma=buffer.gamma,
            gae_lambda=buffer.gae_lambda,
            n_envs=buffer.n_envs,
        )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_use_masking"]

    def _contrib_collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """
        ``RecurrentPPO.collect_rollouts``, run unchanged. With masking, the policy reads each step's masks from
        ``env`` when it acts, and the buffer stores those masks with the step (see
        :class:`~sb3_ppo_variants.maskable_recurrent.policies.StepMasks`).
        """
        if not self._use_masking:
            return super()._contrib_collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        step_masks = StepMasks(env)
        self.policy.step_masks = rollout_buffer.step_masks = step_masks  # type: ignore[attr-defined]
        try:
            return super()._contrib_collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        finally:
            self.policy.step_masks = rollout_buffer.step_masks = None  # type: ignore[attr-defined]

    def _step_masks(self, env: VecEnv) -> Callable[[], np.ndarray] | None:
        # The fast loop reads the masks before each forward pass, as StepMasks does inside sb3-contrib's loop.
        return (lambda: get_action_masks(env)) if self._use_masking else None

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        The policy's action (and next LSTM state), as ``RecurrentPPO.predict``, with ``MaskablePPO.predict``'s
        ``action_masks`` (``None``: every action legal).

        :param observation: the input observation
        :param state: the last LSTM states (``None``: the initial state)
        :param episode_start: whether each env's episode starts at this observation (its LSTM state is reset)
        :param deterministic: whether to return the most likely legal action
        :param action_masks: the legal actions, as the env's ``action_masks()`` gives them
        :return: the action and the next LSTM states
        """
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)

    def _action_masks(self, rollout_data: Any) -> th.Tensor:
        # PPOVariant zeroes padded rows before use (masks too); give them back all-legal masks, so that every padded
        # row holds an ordinary distribution rather than one with no legal action.
        return rollout_data.action_masks.bool() | ~self._valid_mask(rollout_data).unsqueeze(-1)

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> Evaluation:
        values, log_prob, entropy = self.policy.evaluate_actions(
            rollout_data.observations,
            actions,
            rollout_data.lstm_states,
            rollout_data.episode_starts,
            action_masks=self._action_masks(rollout_data),
        )
        return values, log_prob, entropy, self.policy.action_dist

    def _distribution(self, policy: BasePolicy, rollout_data: Any) -> Distribution:
        # π_old (and π_θ when d is measured) with the masks stored with each sample: the distribution it acted with.
        distribution, _ = policy.get_distribution(  # type: ignore[operator]
            rollout_data.observations,
            rollout_data.lstm_states.pi,
            rollout_data.episode_starts,
            action_masks=self._action_masks(rollout_data),
        )
        return distribution

    def learn(  # type: ignore[override]
        self: SelfMaskableRecurrentPPOVariant,
        total_timesteps: int | float,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "MaskableRecurrentPPOVariant",
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfMaskableRecurrentPPOVariant:
        """
        Train for ``total_timesteps`` environment steps, as ``RecurrentPPO.learn``, with ``MaskablePPO.learn``'s
        ``use_masking``.

        :param use_masking: whether to use the env's action masks; ``True`` needs an env with ``action_masks()``
        :raises ValueError: ``use_masking=True`` on an env that provides no masks (before any step is taken)
        """
        check_bool("use_masking", use_masking)
        if use_masking and self.env is not None and not is_masking_supported(self.env):
            raise ValueError(
                "use_masking=True, but the environment provides no action masks (no action_masks() method). Wrap it with "
                "sb3_contrib's ActionMasker, or with sb3_ppo_variants.wrappers.InfoActionMasker if it reports "
                "info['action_mask'], or pass use_masking=False."
            )
        self._use_masking = use_masking
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
