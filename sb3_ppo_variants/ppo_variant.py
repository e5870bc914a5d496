"""
``PPOVariant``: the package's PPO, written on SB3's ``OnPolicyAlgorithm`` (not a subclass of SB3's ``PPO``), with
the update of :class:`~sb3_ppo_variants.engine.UpdateEngine` and the fast rollout loop of
:mod:`sb3_ppo_variants.rollout`.
"""

from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.engine import UpdateEngine
from sb3_ppo_variants.objectives import SurrogateObjective, make_objective
from sb3_ppo_variants.rollout import collect_rollouts, plan_rollout

SelfPPOVariant = TypeVar("SelfPPOVariant", bound="PPOVariant")


class PPOVariant(UpdateEngine, OnPolicyAlgorithm):
    """
    Proximal Policy Optimization with a selectable surrogate objective: every objective of the PPO paper
    (clipped, adaptive KL penalty, fixed KL penalty, no clipping or penalty) or a user-defined one.

    Paper: https://arxiv.org/abs/1707.06347. With ``objective="clip"`` (the default) training is the same as SB3's
    ``PPO`` for the same seed and hyperparameters. Every argument of SB3 ``PPO`` is accepted with the same name,
    meaning and default.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel)
    :param batch_size: Minibatch size
    :param n_epochs: Number of epochs when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: ε of the clipped objective, a number or a function of the current progress remaining.
        Also the threshold of the ``train/clip_fraction`` diagnostic for every objective.
    :param clip_range_vf: Clipping parameter for the value function, a number or a function of the progress
        remaining. ``None`` (default): no clipping. This clipping depends on the reward scaling.
    :param normalize_advantage: Whether to normalize the advantage per minibatch (note: this sets the scale of
        r·Â against which the KL penalty β·KL competes)
    :param ent_coef: Entropy coefficient for the loss calculation, a number or a function of the progress remaining
    :param vf_coef: Value function coefficient for the loss calculation, a number or a function of the progress
        remaining
    :param max_grad_norm: The maximum value for the gradient clipping
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param target_kl: SB3's early stopping: stop the epochs of an update when the approximate KL of a minibatch
        exceeds ``1.5 * target_kl``. ``None`` (default): no early stopping. Not the adaptive penalty's ``kl_target``.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param objective: The surrogate objective: ``"clip"`` (L^CLIP, default), ``"adaptive_kl"`` (L^KLPEN, adaptive β),
        ``"fixed_kl"`` (L^KLPEN, constant β), ``"none"`` (L^CPI), ``"dual_clip"`` (L^CLIP bounded below by c·Â for
        Â < 0, Ye et al. 2020), ``"asymmetric_clip"`` (clip(r, 1 - ε_low, 1 + ε_high), DAPO 2025), or an object implementing
        :class:`~sb3_ppo_variants.objectives.SurrogateObjective` (its own settings then win over the arguments below).
    :param kl_coef: β of ``"fixed_kl"`` (a number or a function of the progress remaining), and the initial β of
        ``"adaptive_kl"`` (a number; the paper starts at 1). Ignored by
        the other objectives. The current β is ``model.kl_coef``.
    :param kl_target: d_targ of ``"adaptive_kl"``: β is halved when the update's mean KL is below ``kl_target / 1.5``
        and doubled when above ``1.5 * kl_target``. A number or a function of the progress remaining. Ignored by the
        other objectives. Not SB3's ``target_kl`` (early stopping).
    :param log_kl: Also measure and log ``train/kl`` (the exact mean KL[π_old ‖ π_θ] over the rollout after each
        update) for objectives that do not use the KL (``"clip"``, ``"none"``). Off by default: it costs a frozen copy
        of the policy and one extra actor pass over the rollout per update. KL objectives always log it.
    :param objective_kwargs: The named objective's own parameters, passed to it (after the ``policy_kwargs``
        convention): ``dict(dual_clip=c)`` for ``"dual_clip"`` (c > 1, default 3), ``dict(clip_range_high=ε_high)``
        for ``"asymmetric_clip"`` (ε_high >= ``clip_range``, a number or a schedule, default 0.28). A key that repeats
        a constructor argument (``clip_range``, ``kl_coef``, ``kl_target``) is rejected, and so is ``objective_kwargs``
        with an objective object.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    #: Action spaces the algorithm (its policies and distributions) supports.
    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (
        spaces.Box,
        spaces.Discrete,
        spaces.MultiDiscrete,
        spaces.MultiBinary,
    )
    policy_base: ClassVar[type[BasePolicy]] = ActorCriticPolicy

    #: Collect rollouts with the fast loop of :mod:`sb3_ppo_variants.rollout` where it applies (same results as SB3's
    #: loop); ``False`` always runs SB3's ``collect_rollouts``. A class attribute, so it is not saved with a model.
    fast_rollout: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
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
        # Validate everything before SB3 creates environments or networks.
        self._check_arguments(locals())
        built_objective = make_objective(
            objective, clip_range=clip_range, kl_coef=kl_coef, kl_target=kl_target, objective_kwargs=objective_kwargs
        )
        super().__init__(
            policy,  # type: ignore[arg-type]  # sb3-contrib's maskable policies are not ActorCriticPolicy subclasses
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,  # type: ignore[arg-type]  # a schedule too: the engine evaluates it per update
            vf_coef=vf_coef,  # type: ignore[arg-type]
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=self.supported_action_spaces,
        )
        # SB3 PPO's own settings, as its constructor sets them.
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self._init_update(built_objective, kl_coef, kl_target, log_kl, normalize_advantage, objective_kwargs)

        if _init_setup_model:
            self._setup_model()

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's ``collect_rollouts``, same results, with less overhead where :mod:`sb3_ppo_variants.rollout` applies."""
        self._rollout_plan = plan_rollout(self, env, rollout_buffer)
        return collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps, self._rollout_plan)

    def learn(
        self: SelfPPOVariant,
        total_timesteps: int | float,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PPOVariant",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPPOVariant:
        """
        Train for ``total_timesteps`` environment steps (a float such as ``1e6`` is accepted).
        See ``OnPolicyAlgorithm.learn`` for the other arguments.
        """
        return super().learn(
            total_timesteps=self._check_learn_arguments(total_timesteps, log_interval),
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
