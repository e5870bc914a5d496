"""
``MaskablePPOVariant``: sb3-contrib's ``MaskablePPO`` (invalid-action masking) with every surrogate objective.

A subclass of ``MaskablePPO`` with the package's update (:class:`~sb3_ppo_variants.engine.UpdateEngine`, first in the
bases, replaces ``MaskablePPO.train``). Set-up, policies, buffers, rollout collection, ``predict`` and ``learn`` are
``MaskablePPO``'s own, inherited. Only two extension points differ from ``PPOVariant``: π_θ and π_old are evaluated
with the action masks stored with each sample, so both are the *masked* distributions and their KL runs over the valid
actions only (finite with sb3-contrib's ``-1e8`` masked logits and with ``-inf``).

The fast plan covers sb3-contrib's ``MlpPolicy`` with ``Discrete``, ``MultiDiscrete`` or ``MultiBinary`` actions (``Box``,
``Discrete``, ``MultiDiscrete`` or ``MultiBinary`` observations): the rollout loop of :mod:`sb3_ppo_variants.rollout`
with each step's masks applied to the logits as ``MaskableCategorical`` applies them, ``MaskableRolloutBuffer``'s
minibatches with their rows, :class:`~sb3_ppo_variants.fast_policy.FastActorCritic`'s layers and masked
distributions (no ``MaskableCategorical`` objects, in the rollout or the update), π_old once per update and the flat
Adam step: the same numbers as ``MaskablePPO``.
"""

from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from sb3_contrib.ppo_mask.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.checks import check_bool
from sb3_ppo_variants.engine import UpdateEngine
from sb3_ppo_variants.loss import Evaluation
from sb3_ppo_variants.objectives import SurrogateObjective, make_objective
from sb3_ppo_variants.rollout import collect_rollouts, plan_rollout

SelfMaskablePPOVariant = TypeVar("SelfMaskablePPOVariant", bound="MaskablePPOVariant")


class MaskablePPOVariant(UpdateEngine, MaskablePPO):
    """
    PPO with invalid-action masking (sb3-contrib's ``MaskablePPO``) and a selectable surrogate objective. With
    ``objective="clip"`` (the default) training is the same as ``MaskablePPO``'s for the same seed.

    The environment must provide action masks (an ``action_masks()`` method, e.g. through sb3-contrib's
    ``ActionMasker`` or :class:`~sb3_ppo_variants.wrappers.InfoActionMasker`) unless ``learn(use_masking=False)``.
    Every argument of ``MaskablePPO`` is accepted with the same name, meaning and default; see
    :class:`~sb3_ppo_variants.PPOVariant` for ``objective``, ``kl_coef``, ``kl_target`` and ``log_kl``.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy: sb3-contrib's maskable policies)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
    :param batch_size: Minibatch size (``None``: the whole rollout)
    :param n_epochs: Number of epochs when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: ε of the clipped objective (number or schedule); the ``train/clip_fraction`` threshold
    :param clip_range_vf: Clipping parameter for the value function (``None``: no clipping)
    :param normalize_advantage: Whether to normalize the advantage per minibatch
    :param ent_coef: Entropy coefficient for the loss calculation, a number or a function of the progress remaining
    :param vf_coef: Value function coefficient for the loss calculation, a number or a function of the progress
        remaining
    :param max_grad_norm: The maximum value for the gradient clipping
    :param rollout_buffer_class: Rollout buffer class to use (``None``: sb3-contrib's maskable buffers)
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
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
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    supported_action_spaces = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
    policy_base = MaskableActorCriticPolicy
    rollout_fallback = "sb3-contrib's MaskablePPO.collect_rollouts (masks)"
    policy: MaskableActorCriticPolicy  # type: ignore[assignment]
    #: Collect rollouts with the fast loop of :mod:`sb3_ppo_variants.rollout` where it applies (same results as
    #: MaskablePPO's); ``False`` always runs ``MaskablePPO.collect_rollouts``. A class attribute, not saved.
    fast_rollout: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[MaskableActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int | None = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float | Schedule = 0.0,
        vf_coef: float | Schedule = 0.5,
        max_grad_norm: float = 0.5,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
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
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
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

    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
        use_masking: bool = True,
    ) -> bool:
        """``MaskablePPO.collect_rollouts``, same results, with less overhead where :mod:`sb3_ppo_variants.rollout` applies."""
        self._rollout_plan = plan_rollout(self, env, rollout_buffer)
        if self._rollout_plan is not None:
            self._rollout_plan = f"{self.rollout_fallback}: {self._rollout_plan}"
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps, use_masking)
        if use_masking and not is_masking_supported(env):  # MaskablePPO's check, before any step
            raise ValueError("Environment does not support action masking. Consider using ActionMasker wrapper")
        masks = (lambda: get_action_masks(env)) if use_masking else None
        return collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps, self._rollout_plan, masks)

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> Evaluation:
        fast_policy = self._fast_policy(self.policy)
        if fast_policy is not None:
            return fast_policy.evaluate(
                rollout_data.observations, actions, entropy_grad=self._entropy_grad, masks=rollout_data.action_masks
            )
        values, log_prob, entropy = self.policy.evaluate_actions(
            rollout_data.observations, actions, action_masks=rollout_data.action_masks
        )
        return values, log_prob, entropy, self.policy.action_dist

    def _distribution(self, policy: BasePolicy, rollout_data: Any) -> Distribution:
        # π_old is the masked distribution the sample was collected with: the mask stored with the sample.
        fast_policy = self._fast_policy(policy)
        if fast_policy is not None:
            return fast_policy.distribution(rollout_data.observations, masks=rollout_data.action_masks)
        return policy.get_distribution(rollout_data.observations, action_masks=rollout_data.action_masks)  # type: ignore[operator]

    def learn(  # type: ignore[override]
        self: SelfMaskablePPOVariant,
        total_timesteps: int | float,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "MaskablePPOVariant",
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfMaskablePPOVariant:
        """
        Train for ``total_timesteps`` environment steps, as ``MaskablePPO.learn``.

        :param use_masking: whether to use the env's action masks; ``True`` needs an env with ``action_masks()``
        :raises ValueError: ``use_masking=True`` on an env that provides no masks (before any step is taken)
        """
        total_timesteps = self._check_learn_arguments(total_timesteps, log_interval)
        check_bool("use_masking", use_masking)
        if use_masking and self.env is not None and not is_masking_supported(self.env):
            raise ValueError(
                "use_masking=True, but the environment provides no action masks (no action_masks() method). Wrap it with "
                "sb3_contrib's ActionMasker, or with sb3_ppo_variants.wrappers.InfoActionMasker if it reports "
                "info['action_mask'], or pass use_masking=False."
            )
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            use_masking=use_masking,
            progress_bar=progress_bar,
        )
