"""
``RecurrentPPOVariant``: sb3-contrib's ``RecurrentPPO`` (LSTM policies) with every surrogate objective.

A subclass of ``RecurrentPPO`` with the package's update (:class:`~sb3_ppo_variants.engine.UpdateEngine`, first in
the bases, replaces ``RecurrentPPO.train``). Set-up, policies, buffers, rollout collection and ``learn`` are
``RecurrentPPO``'s own, inherited. What differs from ``PPOVariant`` is in three extension points:

- minibatches are RecurrentPPO's padded sequences, and only their valid rows count (:meth:`_valid_mask`): padding
  contributes nothing to the surrogate, the KL, the value loss, the entropy, the advantage normalisation,
  ``approx_kl``, ``clip_fraction`` or the adaptive rule's d, and padded rows are zeroed before use, so whatever they
  hold cannot turn a value or a gradient into NaN;
- π_θ and π_old run over each sequence from the LSTM state stored for its first step during the rollout. With π_old's
  parameters this replays the rollout exactly: π_old at every step is the distribution the action was drawn from.

The fast plan (``fast_path``) adds the recurrent parts of :mod:`sb3_ppo_variants.recurrent_fast` for ``MlpLstmPolicy``:
whole-sequence LSTM calls (``sequence_lstm``), the buffer's minibatches gathered with their rows (``minibatches``),
hence π_old as its distribution at every sample, replayed once per update from the stored states in rollout-order
sequences (``old_policy``), and the flat Adam step (``optimizer_step``).
"""

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.ppo_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.engine import UpdateEngine
from sb3_ppo_variants.loss import Evaluation
from sb3_ppo_variants.masking import zero_invalid_rows
from sb3_ppo_variants.objectives import SurrogateObjective, make_objective
from sb3_ppo_variants.recurrent_fast import (
    SEQUENCE_BUFFERS,
    SEQUENCE_POLICIES,
    recurrent_minibatches,
    recurrent_minibatches_unsupported_reason,
    sequence_lstm_unsupported_reason,
    whole_sequences,
)
from sb3_ppo_variants.recurrent_rollout import collect_recurrent_rollouts, plan_recurrent_rollout
from sb3_ppo_variants.update import flat_adam_unsupported_reason

SelfRecurrentPPOVariant = TypeVar("SelfRecurrentPPOVariant", bound="RecurrentPPOVariant")


class RecurrentPPOVariant(UpdateEngine, RecurrentPPO):
    """
    PPO with an LSTM policy (sb3-contrib's ``RecurrentPPO``) and a selectable surrogate objective. With
    ``objective="clip"`` (the default) training is the same as ``RecurrentPPO``'s for the same seed (up to the
    floating-point order of the masked means: sb3-contrib selects the valid rows with boolean indexing, a host sync,
    this class sums them with ``where``).

    Every argument of ``RecurrentPPO`` is accepted with the same name, meaning and default; see
    :class:`~sb3_ppo_variants.PPOVariant` for ``objective``, ``kl_coef``, ``kl_target`` and ``log_kl``. The adaptive
    rule's d is measured over the valid samples, each sequence of the rollout starting from the LSTM states stored
    during the rollout (the same convention as the ratio r in training).

    :param policy: The policy model to use (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy)
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
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: once per rollout)
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
    policy_base = RecurrentActorCriticPolicy
    recurrent = True
    rollout_fallback = "sb3-contrib's RecurrentPPO.collect_rollouts"
    policy: RecurrentActorCriticPolicy  # type: ignore[assignment]
    #: The exact policy and buffer classes of the recurrent fast parts (:mod:`sb3_ppo_variants.recurrent_fast`).
    sequence_policies: ClassVar[tuple[type, ...]] = SEQUENCE_POLICIES
    sequence_buffers: ClassVar[tuple[type, ...]] = SEQUENCE_BUFFERS
    #: The buffer also stores action masks, which the fast minibatches then carry.
    masked_buffer: ClassVar[bool] = False
    #: Collect rollouts with the fast loop of :mod:`sb3_ppo_variants.recurrent_rollout` where it applies (same results
    #: as ``RecurrentPPO.collect_rollouts``); ``False`` always runs sb3-contrib's loop. A class attribute, not saved.
    fast_rollout: ClassVar[bool] = True
    #: The fast rollout loop steps each LSTM with ``torch.lstm_cell`` (``nn.LSTMCell``'s kernel): on x86 CPUs about a
    #: quarter of the cost of the oneDNN RNN primitive that ``nn.LSTM`` runs for one step, values within 1e-6 of it
    #: (float order). ``False``: ``nn.LSTM``'s own kernel, rollouts bitwise sb3-contrib's. A class attribute, not saved.
    rollout_lstm_cell: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
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
        # Validate everything before sb3-contrib creates environments or networks.
        self._check_arguments(locals())
        built_objective = make_objective(
            objective, clip_range=clip_range, kl_coef=kl_coef, kl_target=kl_target, objective_kwargs=objective_kwargs
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
            ent_coef=ent_coef,  # type: ignore[arg-type]  # a schedule too: the engine evaluates it per update
            vf_coef=vf_coef,  # type: ignore[arg-type]
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self._init_update(built_objective, kl_coef, kl_target, log_kl, normalize_advantage, objective_kwargs)
        if _init_setup_model:
            self._setup_model()

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """``RecurrentPPO.collect_rollouts``, same results, with less overhead where :mod:`.recurrent_rollout` applies."""
        reason = plan_recurrent_rollout(self, rollout_buffer, self.sequence_policies, self.sequence_buffers)
        self._rollout_plan = None if reason is None else f"{self.rollout_fallback}: {reason}"
        if reason is not None:
            return self._contrib_collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        return collect_recurrent_rollouts(
            self, env, callback, rollout_buffer, n_rollout_steps, self._step_masks(env), self.rollout_lstm_cell
        )

    def _contrib_collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """The rollout where the fast loop does not apply: ``RecurrentPPO.collect_rollouts``."""
        return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    def _step_masks(self, env: VecEnv) -> Callable[[], np.ndarray] | None:
        """The fast loop's source of each step's action masks (``None``: no masking)."""
        return None

    def train(self) -> None:
        # The whole update (π_old's replay, the epochs, d) runs the LSTM over whole sequences where the plan allows it.
        with whole_sequences(self.policy, enabled=self._sequence_lstm_unsupported_reason() is None):
            super().train()

    def _sequence_lstm_unsupported_reason(self) -> str | None:
        if not self.fast_update:
            return "fast_update = False"
        return sequence_lstm_unsupported_reason(
            self.policy, self.rollout_buffer, self.sequence_policies, self.sequence_buffers
        )

    def _plan_update(self) -> None:
        super()._plan_update()
        sequence_lstm = self._sequence_lstm_unsupported_reason()
        self._plan["sequence_lstm"] = sequence_lstm
        if sequence_lstm is None:  # the update's graph is sb3-contrib's: the first minibatch checks it reaches all
            self._plan["optimizer_step"] = flat_adam_unsupported_reason(self.policy.optimizer, list(self.policy.parameters()))

    def _fast_minibatches_unsupported_reason(self) -> str | None:
        return recurrent_minibatches_unsupported_reason(self.rollout_buffer, self.sequence_buffers)

    def _fast_minibatches(self, batch_size: int | None, shuffle: bool = True) -> Any:
        return recurrent_minibatches(
            self.rollout_buffer, batch_size, shuffle=shuffle, masked=self.masked_buffer  # type: ignore[arg-type]
        )

    def _old_distribution_rows(self, chunks: Iterator[Any]) -> Iterator[tuple[Distribution, th.Tensor]]:
        # π_old replayed once per update from the stored states, over the rollout's sequences; padding left out.
        for rollout_data in chunks:
            valid = self._valid_mask(rollout_data)
            rows = th.where(valid, rollout_data.rows, -1)
            yield self._distribution(self.policy, zero_invalid_rows(rollout_data, valid)), rows

    def _valid_mask(self, rollout_data: Any) -> th.Tensor:
        # RecurrentPPO pads sequences to a common length; its buffer marks the real rows with mask = 1.
        return rollout_data.mask > 1e-8

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> Evaluation:
        values, log_prob, entropy = self.policy.evaluate_actions(
            rollout_data.observations, actions, rollout_data.lstm_states, rollout_data.episode_starts
        )
        return values, log_prob, entropy, self.policy.action_dist

    def _distribution(self, policy: BasePolicy, rollout_data: Any) -> Distribution:
        distribution, _ = policy.get_distribution(  # type: ignore[operator]
            rollout_data.observations, rollout_data.lstm_states.pi, rollout_data.episode_starts
        )
        return distribution

    def learn(  # type: ignore[override]
        self: SelfRecurrentPPOVariant,
        total_timesteps: int | float,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "RecurrentPPOVariant",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRecurrentPPOVariant:
        """Train for ``total_timesteps`` environment steps, as ``RecurrentPPO.learn`` (a float such as ``1e6`` too)."""
        return super().learn(
            total_timesteps=self._check_learn_arguments(total_timesteps, log_interval),
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
