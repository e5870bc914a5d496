import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_ppo_variants.atomic import atomic_save
from sb3_ppo_variants.checks import check_bool, check_number, check_optional, check_positive_or_schedule
from sb3_ppo_variants.kl import kl_between, sampled_kl
from sb3_ppo_variants.masking import masked_mean, normalize_advantages, zero_invalid_rows
from sb3_ppo_variants.objectives import PolicyBatch, SurrogateObjective, check_objective, make_objective
from sb3_ppo_variants.old_policy import OldDistributions, OldPolicy
from sb3_ppo_variants.rollout import collect_rollouts, fast_evaluation_unsupported_reason
from sb3_ppo_variants.update import (
    FastPolicyEvaluator,
    FlatAdam,
    fast_minibatches,
    fast_minibatches_supported,
    flat_adam_unsupported_reason,
    graph_reaches_all,
)
from sb3_ppo_variants.update_stats import NonFiniteLossError, UpdateStats

SelfPPOVariant = TypeVar("SelfPPOVariant", bound="PPOVariant")
#: π_old for one update: a frozen copy of the policy, or its distribution's parameters at every rollout sample.
OldPolicyLike = OldPolicy | OldDistributions
#: π_θ and V on a minibatch: values, log π_θ(a|s) of the taken actions, entropy (``None``: no closed form), π_θ itself.
Evaluation = tuple[th.Tensor, th.Tensor, th.Tensor | None, Distribution]


def is_recurrent(policy_class: type) -> bool:
    """Whether a policy class is one of sb3-contrib's recurrent (LSTM) policies."""
    try:
        from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    except ImportError:  # without sb3-contrib there are no recurrent policies
        return False
    return issubclass(policy_class, RecurrentActorCriticPolicy)


#: d (the mean KL over the rollout) is measured, and π_old's distribution computed, in chunks of at least this many
#: samples: big enough that per-call overhead does not matter, small enough that a rollout of images does not have to
#: fit in memory at once.
KL_CHUNK_SIZE = 1024


def clone_tensors(state: Any) -> Any:
    """Copy of nested dicts/lists/tuples (state dicts) with every tensor cloned; ~4x faster than ``copy.deepcopy``."""
    if isinstance(state, th.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {key: clone_tensors(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(clone_tensors(value) for value in state)
    return state


class PPOVariant(OnPolicyAlgorithm):
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
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
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
        ``"fixed_kl"`` (L^KLPEN, constant β), ``"none"`` (L^CPI), or an object implementing
        :class:`~sb3_ppo_variants.objectives.SurrogateObjective` (its own settings then win over the arguments below).
    :param kl_coef: β of ``"fixed_kl"``, and the initial β of ``"adaptive_kl"`` (the paper starts at 1). Ignored by
        the other objectives. The current β is ``model.kl_coef``.
    :param kl_target: d_targ of ``"adaptive_kl"``: β is halved when the update's mean KL is below ``kl_target / 1.5``
        and doubled when above ``1.5 * kl_target``. A number or a function of the progress remaining. Ignored by the
        other objectives. Not SB3's ``target_kl`` (early stopping).
    :param log_kl: Also measure and log ``train/kl`` (the exact mean KL[π_old ‖ π_θ] over the rollout after each
        update) for objectives that do not use the KL (``"clip"``, ``"none"``). Off by default: it costs a frozen copy
        of the policy and one extra actor pass over the rollout per update. KL objectives always log it.
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
    #: Policies the algorithm accepts as classes (names: ``policy_aliases``), and whether they are recurrent.
    policy_base: ClassVar[type[BasePolicy]] = ActorCriticPolicy
    recurrent: ClassVar[bool] = False

    objective: SurrogateObjective
    #: Collect rollouts with the fast loop of :mod:`sb3_ppo_variants.rollout` where it applies (same results as SB3's
    #: loop); ``False`` always runs SB3's ``collect_rollouts``. A class attribute, so it is not saved with a model.
    fast_rollout: ClassVar[bool] = True
    #: Run the update with the fast paths of :mod:`sb3_ppo_variants.update` where they apply (same results as SB3's
    #: code); ``False`` always runs SB3's minibatch sampling, ``evaluate_actions``, ``clip_grad_norm_`` and
    #: ``optimizer.step()``. A class attribute, so it is not saved with a model.
    fast_update: ClassVar[bool] = True

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
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
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
        kl_coef: float = 1.0,
        kl_target: float | Schedule = 0.01,
        log_kl: bool = False,
        _init_setup_model: bool = True,
    ):
        # Validate everything before SB3 creates environments or networks.
        self._check_arguments(locals())
        built_objective = make_objective(objective, clip_range=clip_range, kl_coef=kl_coef, kl_target=kl_target)
        super().__init__(
            policy,  # type: ignore[arg-type]  # sb3-contrib's maskable policies are not ActorCriticPolicy subclasses
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
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
        if self.env is not None:
            self._check_rollout_size(batch_size, normalize_advantage)
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.objective = built_objective
        self._initial_kl_coef = float(kl_coef)
        self.kl_target = kl_target
        self.log_kl = log_kl

        if _init_setup_model:
            self._setup_model()

    @classmethod
    def _check_arguments(cls, arguments: dict[str, Any]) -> None:
        """Reject bad constructor arguments with an error naming the parameter, the value and the accepted range."""
        cls._check_policy(arguments["policy"])
        check_objective(arguments["objective"])
        check_positive_or_schedule("learning_rate", arguments["learning_rate"])
        for name in ("n_steps", "n_epochs", "stats_window_size"):
            check_number(name, arguments[name], low=1, integer=True)
        # None: the whole rollout is one minibatch (sb3-contrib's MaskablePPO and RecurrentPPO accept it too).
        check_optional(check_number, "batch_size", arguments["batch_size"], low=1, integer=True)
        for name in ("gamma", "gae_lambda"):
            check_number(name, arguments[name], low=0.0, high=1.0)
        for name in ("ent_coef", "vf_coef", "kl_coef"):
            check_number(name, arguments[name], low=0.0)
        check_number("max_grad_norm", arguments["max_grad_norm"], low=0.0, low_inclusive=False)
        check_positive_or_schedule("clip_range", arguments["clip_range"])
        check_optional(check_positive_or_schedule, "clip_range_vf", arguments["clip_range_vf"])
        check_positive_or_schedule("kl_target", arguments["kl_target"])
        check_optional(check_number, "target_kl", arguments["target_kl"], low=0.0, low_inclusive=False)
        for name in ("normalize_advantage", "use_sde", "log_kl"):
            check_bool(name, arguments[name])
        check_number("sde_sample_freq", arguments["sde_sample_freq"], low=-1, integer=True)
        check_number("verbose", arguments["verbose"], low=0, integer=True)
        check_optional(check_number, "seed", arguments["seed"], low=0, high=2**32 - 1, integer=True)
        if arguments["normalize_advantage"] and arguments["batch_size"] is not None and arguments["batch_size"] < 2:
            raise ValueError(
                f"batch_size must be >= 2 when normalize_advantage=True (got {arguments['batch_size']}), "
                "see https://github.com/DLR-RM/stable-baselines3/issues/440"
            )
        buffer_class = arguments["rollout_buffer_class"]
        if buffer_class is not None and not (isinstance(buffer_class, type) and issubclass(buffer_class, RolloutBuffer)):
            raise TypeError(f"rollout_buffer_class must be a subclass of RolloutBuffer or None, got {buffer_class!r}")
        for name in ("rollout_buffer_kwargs", "policy_kwargs"):
            if arguments[name] is not None and not isinstance(arguments[name], dict):
                raise TypeError(f"{name} must be a dict or None, got {arguments[name]!r}")

    @classmethod
    def _check_policy(cls, policy: Any) -> None:
        """The policy must be one of ``policy_aliases`` or a subclass of ``policy_base``, recurrent iff the algorithm is."""
        kind = "a recurrent (LSTM)" if cls.recurrent else "a non-recurrent"
        if isinstance(policy, str):
            if policy not in cls.policy_aliases:
                raise ValueError(
                    f"policy={policy!r} is not valid for {cls.__name__}, which needs {kind} policy; choose one of: "
                    f"{', '.join(map(repr, cls.policy_aliases))} (or a subclass of {cls.policy_base.__name__})"
                )
            return
        if not (isinstance(policy, type) and issubclass(policy, cls.policy_base)) or is_recurrent(policy) != cls.recurrent:
            raise TypeError(
                f"policy={policy!r} is not valid for {cls.__name__}, which needs {kind} policy: one of "
                f"{', '.join(map(repr, cls.policy_aliases))} or a subclass of {cls.policy_base.__name__}"
            )

    def _check_rollout_size(self, batch_size: int | None, normalize_advantage: bool) -> None:
        assert self.env is not None
        buffer_size = self.env.num_envs * self.n_steps
        batch_size = batch_size or buffer_size
        # Advantage normalisation of a single sample divides by a zero std (SB3 asserts the same).
        if normalize_advantage and buffer_size < 2:
            raise ValueError(
                f"n_steps * n_envs must be >= 2 when normalize_advantage=True, got n_steps={self.n_steps} "
                f"and n_envs={self.env.num_envs}"
            )
        if buffer_size % batch_size > 0:
            warnings.warn(
                f"batch_size={batch_size} does not divide the rollout size n_steps * n_envs = {buffer_size}: every "
                f"epoch ends with a truncated minibatch of {buffer_size % batch_size} samples.",
                stacklevel=3,
            )

    def _setup_model(self) -> None:
        super()._setup_model()
        self._setup_update()

    def _setup_update(self) -> None:
        """
        What the update needs beyond the counterpart's set-up (policy and buffer): schedules, the optimizer's
        implementation, the objective and π_old's slot. Variants call it after their counterpart's ``_setup_model``.
        """
        # Schedules for policy/value clipping, as in SB3 PPO.
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)
        # torch defaults to its single-tensor (for-loop) optimizer code on CPU. The multi-tensor (foreach) code gives
        # the same numbers (the parity tests check it) and is faster for the many small tensors of an MLP policy.
        if "foreach" not in (self.policy_kwargs.get("optimizer_kwargs") or {}):
            for group in self.policy.optimizer.param_groups:
                if "foreach" in group and group["foreach"] is None:
                    group["foreach"] = True
        # A loaded model carries its objective object (with its β); a name is only left after `load(objective=...)`.
        self.objective = make_objective(
            self.objective, clip_range=self.clip_range, kl_coef=self._initial_kl_coef, kl_target=self.kl_target
        )
        # Models saved before log_kl existed load without it: they keep the default.
        self.__dict__.setdefault("log_kl", False)
        # π_old's frozen copy is made at the first update that needs it (never saved: it is rebuilt from the policy).
        self._old_policy: OldPolicy | None = None
        self._kl_is_estimate = False
        # The update's fast paths (never saved): evaluators per policy, by id, for the current update; the flat Adam.
        self._evaluators: dict[int, FastPolicyEvaluator | None] = {}
        self._flat_adam: FlatAdam | None = None
        self._entropy_grad = True  # whether this update's graph includes the entropy (see _run_epochs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_old_policy", "_evaluators", "_flat_adam", "_entropy_grad"]

    @property
    def kl_coef(self) -> float:
        """Current β of the KL penalty: adapted after each update by ``"adaptive_kl"``, 0 for objectives without one."""
        objective = self.__dict__.get("objective")
        if objective is None or isinstance(objective, str):
            return self._initial_kl_coef
        return float(objective.kl_coef)

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        check_number("kl_coef", value, low=0.0)
        self.objective.kl_coef = float(value)

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's ``collect_rollouts``, same results, with less overhead where :mod:`sb3_ppo_variants.rollout` applies."""
        if not self.fast_rollout:
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        return collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)

    # ------------------------------------------------------------------------------------------------------------------
    # The update. train() is the same for every variant of this package; a variant (masks, recurrent policies, ...)
    # overrides only the extension points below it.
    # ------------------------------------------------------------------------------------------------------------------

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer: ``n_epochs`` passes of minibatch gradient steps on
        the objective's loss, then one end-of-update step of the objective (the adaptive β rule).

        The update is all-or-nothing: if it fails (a non-finite loss, or any exception) the policy and optimizer are
        restored to their state before it.
        """
        # Which fast paths apply is decided again at every update (the policy or optimizer may have been replaced).
        self._evaluators = {}
        # π_old, frozen for the whole update; only objectives (or the diagnostic) that use the KL pay for it.
        old_policy = self._capture_old_policy() if self._measures_kl else None
        last_good_state = clone_tensors((self.policy.state_dict(), self.policy.optimizer.state_dict()))

        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        progress_remaining = self._current_progress_remaining
        clip_range = self.clip_range(progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(progress_remaining)  # type: ignore[operator]
        self.objective.begin_update(progress_remaining)
        kl_coef = self.kl_coef  # β used by this update (the adaptive rule changes it at the end)
        stats = UpdateStats()
        try:
            self._run_epochs(stats, old_policy, clip_range, clip_range_vf)
            gradient_norm = th.stack(stats.gradient_norms).mean() if stats.gradient_norms else th.zeros(())
            if old_policy is None:
                table, (gradient_norm_value,) = stats.read(gradient_norm)  # the update's one host sync
                mean_kl_value = None
            else:
                # d of the adaptive rule: mean exact KL over the rollout, with the updated policy (paper §4).
                mean_kl = self._mean_kl(old_policy)
                table, (gradient_norm_value, mean_kl_value) = stats.read(gradient_norm, mean_kl)
            self._raise_if_nonfinite(stats, table, {"gradient norm": gradient_norm_value, "train/kl": mean_kl_value or 0.0})
        except BaseException as error:
            self._restore(last_good_state)
            # NaN parameters make torch's distribution checks raise before the end of the update: report the cause.
            if not isinstance(error, NonFiniteLossError) and len(stats) > 0:
                self._raise_if_nonfinite(stats, stats.read()[0], {}, cause=error)
            raise

        self.objective.end_update(mean_kl_value)  # type: ignore[arg-type]
        self._record(stats, table, clip_range, clip_range_vf, mean_kl_value, kl_coef, gradient_norm_value)

    @property
    def _measures_kl(self) -> bool:
        """Whether updates compute the exact KL: the objective uses it, or ``log_kl`` asks for ``train/kl``."""
        return bool(self.objective.requires_kl) or self.log_kl

    def _run_epochs(
        self, stats: UpdateStats, old_policy: OldPolicyLike | None, clip_range: float, clip_range_vf: float | None
    ) -> None:
        """The ``n_epochs`` passes of minibatch gradient steps, recording each minibatch's loss terms in ``stats``."""
        parameters = list(self.policy.parameters())  # once per update: parameters() walks every module
        flat_adam = self._prepare_flat_adam(parameters)
        # With ent_coef = 0 the entropy is only logged: the fast evaluation leaves it out of the graph, which changes
        # no gradient as long as every parameter is still reached through another term (checked below).
        self._entropy_grad = self.ent_coef != 0 or self._fast_evaluator(self.policy) is None
        check_graph = flat_adam is not None or not self._entropy_grad  # on the first minibatch
        continue_training = True
        for epoch in range(self.n_epochs):
            for rollout_data in self._minibatches(self.batch_size):
                loss, terms = self._minibatch_loss(rollout_data, old_policy, clip_range, clip_range_vf)
                if check_graph:
                    check_graph = False
                    if not self._entropy_grad and not graph_reaches_all(loss, parameters):
                        # A parameter reached only through the entropy gets a zero gradient in SB3 (not none): build
                        # this minibatch's graph again with the entropy, and keep it for the rest of the update.
                        self._entropy_grad = True
                        loss, terms = self._minibatch_loss(rollout_data, old_policy, clip_range, clip_range_vf)
                    if flat_adam is not None and not graph_reaches_all(loss, parameters):
                        flat_adam = None  # SB3 would skip parameters without a gradient
                stats.add(epoch, terms)

                # SB3's early stopping (see SB3 PPO and https://github.com/DLR-RM/stable-baselines3/issues/417).
                # Data-dependent control flow needs the value on the host, so this is the one per-minibatch sync, and
                # only when target_kl is set.
                if self.target_kl is not None and terms["approx_kl"].item() > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {terms['approx_kl'].item():.2f}")
                    break

                if flat_adam is not None:
                    flat_adam.zero_grad()
                    loss.backward()
                    stats.gradient_norms.append(flat_adam.clip_and_step(self.max_grad_norm))
                else:
                    self.policy.optimizer.zero_grad()
                    loss.backward()
                    stats.gradient_norms.append(th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm))
                    self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

    def _prepare_flat_adam(self, parameters: Sequence[th.Tensor]) -> FlatAdam | None:
        """
        :class:`~sb3_ppo_variants.update.FlatAdam` for this update, or ``None`` (SB3's ``clip_grad_norm_`` and
        ``optimizer.step()`` run): it needs the fast evaluation of the policy (whose graph reaches every parameter) and
        a plain Adam over exactly the policy's parameters.
        """
        optimizer = self.policy.optimizer
        if (
            not self.fast_update
            or self._fast_evaluator(self.policy) is None
            or flat_adam_unsupported_reason(optimizer, parameters) is not None
        ):
            return None
        flat_adam = self._flat_adam
        if (
            flat_adam is None
            or flat_adam.optimizer is not optimizer
            or [id(p) for p in flat_adam.params] != [id(p) for p in optimizer.param_groups[0]["params"]]
        ):
            flat_adam = self._flat_adam = FlatAdam(optimizer, parameters)  # type: ignore[arg-type]
        return flat_adam if flat_adam.prepare() else None

    def _fast_evaluator(self, policy: BasePolicy) -> FastPolicyEvaluator | None:
        """The fast evaluation of ``policy`` for this update, or ``None`` where SB3's own methods must run."""
        key = id(policy)
        if key not in self._evaluators:
            supported = self.fast_update and fast_evaluation_unsupported_reason(policy, self.use_sde) is None
            self._evaluators[key] = FastPolicyEvaluator(policy) if supported else None  # type: ignore[arg-type]
        return self._evaluators[key]

    def _minibatch_loss(
        self,
        rollout_data: Any,
        old_policy: OldPolicyLike | None,
        clip_range: float,
        clip_range_vf: float | None,
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """
        Total loss of one minibatch, and its named terms: SB3's ``train/*`` scalars, then the objective's diagnostics.
        Every per-sample term is averaged over the valid samples only (see :meth:`_valid_mask`).
        """
        valid = self._valid_mask(rollout_data)
        if valid is not None:
            # Padded rows hold arbitrary values: zero them *before* any non-linear operation, so that neither a value
            # nor a gradient can turn into NaN through inf * 0 (masking the outputs alone is not enough).
            rollout_data = zero_invalid_rows(rollout_data, valid)
        actions = rollout_data.actions
        if isinstance(self.action_space, spaces.Discrete):
            # Convert discrete action from float to long
            actions = rollout_data.actions.long().flatten()
        old_log_prob, advantages = rollout_data.old_log_prob, rollout_data.advantages
        returns, old_values = rollout_data.returns, rollout_data.old_values

        values, log_prob, entropy, new_distribution = self._evaluate_actions(rollout_data, actions)
        values = values.flatten()

        # Normalization does not make sense if mini batchsize == 1, see SB3 GH issue #325
        if self.normalize_advantage and len(advantages) > 1:
            advantages = normalize_advantages(advantages, valid)

        # ratio between old and new policy, should be one at the first iteration
        log_ratio = log_prob - old_log_prob
        if valid is not None:
            log_ratio = th.where(valid, log_ratio, 0.0)
        ratio = th.exp(log_ratio)
        kl = None
        if self.objective.requires_kl:
            assert old_policy is not None
            kl = self._kl(rollout_data, old_policy, new_distribution, old_log_prob, log_prob)
        objective_output = self.objective.loss(PolicyBatch(ratio=ratio, advantages=advantages, kl=kl, mask=valid))
        policy_loss = objective_output.loss

        if clip_range_vf is None:
            values_pred = values
        else:
            # Clip the difference between old and new value. NOTE: this depends on the reward scaling
            values_pred = old_values + th.clamp(values - old_values, -clip_range_vf, clip_range_vf)
        # Value loss using the TD(gae_lambda) target
        if valid is None:
            value_loss = F.mse_loss(returns, values_pred)
        else:
            value_loss = masked_mean((returns - values_pred) ** 2, valid)

        # Entropy loss favors exploration; approximate entropy when there is no analytical form
        entropy_loss = -masked_mean(-log_prob if entropy is None else entropy, valid)

        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

        with th.no_grad():
            # SB3's diagnostics: k3 estimate of KL[π_old ‖ π_θ] on the taken actions
            # (http://joschu.net/blog/kl-approx.html), and the fraction of ratios outside the clip range.
            approx_kl = masked_mean(th.expm1(log_ratio) - log_ratio, valid)
            clip_fraction = masked_mean((th.abs(ratio - 1) > clip_range).float(), valid)
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

    def _kl(
        self,
        rollout_data: Any,
        old_policy: OldPolicyLike,
        new_distribution: Distribution,
        old_log_prob: th.Tensor,
        new_log_prob: th.Tensor,
    ) -> th.Tensor:
        """
        KL[π_old(·|s) ‖ π_θ(·|s)] per sample: exact, from π_old's distribution on the same minibatch inputs (gathered
        by the minibatch's rows, or computed by the frozen copy), or the sample estimate (r - 1) - log r on the taken
        actions for a distribution without a closed form (with a warning and ``train/kl_is_estimate = 1``).
        """
        if isinstance(old_policy, OldDistributions):
            return old_policy.kl(rollout_data.rows, new_distribution)
        with th.no_grad():
            old_distribution = self._distribution(old_policy.policy, rollout_data)
        kl = kl_between(old_distribution, new_distribution)
        if kl is not None:
            return kl
        if not self._kl_is_estimate:
            self._kl_is_estimate = True
            warnings.warn(
                f"No closed-form KL for {type(new_distribution).__name__}: the KL penalty and train/kl use the sample "
                "estimate (r - 1) - log r on the rollout's actions instead of the exact KL.",
                stacklevel=2,
            )
        return sampled_kl(old_log_prob, new_log_prob)

    def _mean_kl(self, old_policy: OldPolicyLike) -> th.Tensor:
        """
        d: the mean KL[π_old ‖ π_θ] over the valid samples of the rollout, with π_θ the updated policy (both in
        evaluation mode), as a 0-d tensor (the caller decides when to sync).

        It walks the rollout with :meth:`_minibatches`, so each sample is evaluated with the inputs its minibatches
        give it (masks; for recurrent policies, the LSTM state stored at the start of its sequence). NumPy's global
        random state is restored afterwards: measuring d must not change the minibatches of later updates.
        """
        random_state = np.random.get_state()
        self.policy.set_training_mode(False)
        total = th.zeros((), device=self.device)
        count = th.zeros((), device=self.device)
        try:
            with th.no_grad():
                for rollout_data in self._minibatches(max(self.batch_size or 0, KL_CHUNK_SIZE)):
                    valid = self._valid_mask(rollout_data)
                    if valid is not None:
                        rollout_data = zero_invalid_rows(rollout_data, valid)
                    actions = rollout_data.actions
                    if isinstance(self.action_space, spaces.Discrete):
                        actions = actions.long().flatten()
                    new_distribution = self._distribution(self.policy, rollout_data)
                    new_log_prob = new_distribution.log_prob(actions)
                    kl = self._kl(rollout_data, old_policy, new_distribution, rollout_data.old_log_prob, new_log_prob)
                    total += kl.sum() if valid is None else th.where(valid, kl, 0.0).sum()
                    count += len(kl) if valid is None else valid.sum()
        finally:
            np.random.set_state(random_state)
            self.policy.set_training_mode(True)
        return total / count.clamp_min(1)

    def _capture_old_policy(self) -> OldPolicyLike:
        """
        Extension point: π_old for the update about to start, i.e. the policy that collected the rollout, frozen.

        Where the minibatches carry their rows (SB3's own buffers with the fast minibatches) and the distribution has a
        closed-form KL, π_old's distribution is computed once for every sample of the rollout
        (:class:`~sb3_ppo_variants.old_policy.OldDistributions`); otherwise it is a frozen copy of the policy, made once
        and refreshed in place at every update, evaluated on every minibatch.
        """
        if self.fast_update and fast_minibatches_supported(self.rollout_buffer):
            self.policy.set_training_mode(False)  # as when the policy collected the rollout
            try:
                with th.no_grad():
                    chunks = fast_minibatches(self.rollout_buffer, max(self.batch_size or 0, KL_CHUNK_SIZE), shuffle=False)
                    old_distributions = OldDistributions.capture(
                        self._distribution(self.policy, rollout_data) for rollout_data in chunks
                    )
            finally:
                self.policy.set_training_mode(True)
            if old_distributions is not None:
                return old_distributions
        if self._old_policy is None:
            self._old_policy = OldPolicy(self.policy)
        return self._old_policy.capture(self.policy)

    def _minibatches(self, batch_size: int) -> Iterator[Any]:
        """
        Extension point: the minibatches of one epoch, drawn from the full rollout buffer. The default is SB3's
        ``rollout_buffer.get(batch_size)`` (a new random permutation from NumPy's global generator each epoch), or the
        same minibatches with less overhead for SB3's own buffer classes (:func:`~sb3_ppo_variants.update.fast_minibatches`).
        """
        if self.fast_update and fast_minibatches_supported(self.rollout_buffer):
            return fast_minibatches(self.rollout_buffer, batch_size)
        return self.rollout_buffer.get(batch_size)

    def _valid_mask(self, rollout_data: Any) -> th.Tensor | None:
        """
        Extension point: which rows of a minibatch are real samples (a bool tensor of shape (batch,)), or ``None``
        when all are (the default). Rows that are not valid, e.g. the padding of a recurrent minibatch, contribute
        nothing to any loss term, to the advantage normalisation, to the diagnostics or to the adaptive rule's d.
        """
        return None

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> Evaluation:
        """
        Extension point: π_θ and V on one minibatch, with gradients: values, log π_θ(a|s) of the taken actions, the
        entropy (``None`` without a closed form) and π_θ's distribution.
        """
        evaluator = self._fast_evaluator(self.policy)
        if evaluator is not None:  # the same operations without module calls (sb3_ppo_variants.update)
            return evaluator.evaluate(rollout_data.observations, actions, entropy_grad=self._entropy_grad)
        values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
        # SB3 distributions are filled in place: evaluate_actions() left π_θ for this minibatch in policy.action_dist,
        # so the KL needs no second forward pass.
        return values, log_prob, entropy, self.policy.action_dist

    def _distribution(self, policy: BasePolicy, rollout_data: Any) -> Distribution:
        """
        Extension point: the action distribution of ``policy`` (π_old's frozen copy, or π_θ when d is measured) on
        one minibatch, with the same inputs as :meth:`_evaluate_actions`.
        """
        evaluator = self._fast_evaluator(policy)
        if evaluator is not None:
            return evaluator.distribution(rollout_data.observations)
        return policy.get_distribution(rollout_data.observations)  # type: ignore[attr-defined, operator]

    def _restore(self, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        policy_state, optimizer_state = state
        self.policy.load_state_dict(policy_state)
        self.policy.optimizer.load_state_dict(optimizer_state)

    def _raise_if_nonfinite(
        self, stats: UpdateStats, table: np.ndarray, others: dict[str, float], cause: BaseException | None = None
    ) -> None:
        """Raise :class:`NonFiniteLossError` naming the first non-finite loss term of the update, if any."""
        first_bad = stats.first_nonfinite(table)
        if first_bad is not None:
            epoch, minibatch, names = first_bad
            where = f"{', '.join(names)} in epoch {epoch}, minibatch {minibatch} of the update"
        else:
            bad_others = [name for name, value in others.items() if not np.isfinite(value)]
            if not bad_others:
                return
            where = ", ".join(bad_others)
        raise NonFiniteLossError(
            f"Non-finite value ({where}) at timestep {self.num_timesteps}, objective {self.objective!r}. "
            "Training stopped; the policy and optimizer were restored to their state before this update."
        ) from cause

    def _record(
        self,
        stats: UpdateStats,
        table: np.ndarray,
        clip_range: float,
        clip_range_vf: float | None,
        mean_kl: float | None,
        kl_coef: float,
        gradient_norm: float,
    ) -> None:
        """Log SB3 PPO's ``train/*`` keys (same meaning) and this package's."""
        means = stats.means(table, last_epoch_only=("approx_kl",))
        # SB3 logs the last minibatch's total loss, not the mean.
        last_loss = float(table[-1, stats.names.index("loss")])
        for name, value in means.items():
            self.logger.record(f"train/{name}", last_loss if name == "loss" else value)
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        if mean_kl is not None:
            self.logger.record("train/kl", mean_kl)
        self.logger.record("train/kl_coef", kl_coef)
        self.logger.record("train/grad_norm", gradient_norm)
        for name, value in self.objective.logs().items():
            self.logger.record(f"train/{name}", value)
        if self._kl_is_estimate:
            self.logger.record("train/kl_is_estimate", 1.0)

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
        total_timesteps = self._check_learn_arguments(total_timesteps, log_interval)
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @staticmethod
    def _check_learn_arguments(total_timesteps: int | float, log_interval: int) -> int:
        """Check ``learn()``'s budget (a whole number >= 0, e.g. ``1e6``) and ``log_interval``; return the budget as int."""
        check_number("total_timesteps", total_timesteps, low=0)
        if total_timesteps != int(total_timesteps):
            raise ValueError(f"total_timesteps must be a whole number of steps, got {total_timesteps!r}")
        check_optional(check_number, "log_interval", log_interval, low=1, integer=True)
        return int(total_timesteps)

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path | Any,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> "PPOVariant":
        """
        Load a model saved with :meth:`save` (see ``BaseAlgorithm.load``). The saved objective comes back with its
        state (β). Passing ``objective`` with the saved objective's name again, as rl-zoo does when it continues
        training a model, keeps it; a different name or an objective object replaces it, built from ``kl_coef``,
        ``kl_target`` and ``clip_range`` (given here or saved).
        """
        objective = kwargs.pop("objective", None)
        objective_settings = {key: kwargs.pop(key) for key in ("kl_coef", "kl_target") if key in kwargs}
        if objective is not None:
            check_objective(objective)
        if "kl_coef" in objective_settings:
            check_number("kl_coef", objective_settings["kl_coef"], low=0.0)
        if "kl_target" in objective_settings:
            check_positive_or_schedule("kl_target", objective_settings["kl_target"])
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        if objective is None or (isinstance(objective, str) and objective == model.objective.name):
            if objective_settings:
                warnings.warn(
                    f"Kept the saved objective {model.objective!r} with its state; {sorted(objective_settings)} given to "
                    "load() are not applied. Pass objective=<an objective object> to change its settings.",
                    stacklevel=2,
                )
            return model
        model._initial_kl_coef = float(objective_settings.get("kl_coef", model._initial_kl_coef))
        model.kl_target = objective_settings.get("kl_target", model.kl_target)
        model.objective = make_objective(
            objective, clip_range=model.clip_range, kl_coef=model._initial_kl_coef, kl_target=model.kl_target
        )
        return model

    def save(self, path: str | Path | Any, exclude: Any = None, include: Any = None) -> None:
        """
        Save like SB3 (same zip format, ``.zip`` added when the path has no suffix), but atomically: the file is
        written next to its destination and renamed, so a crash never leaves a half-written model.
        """
        atomic_save(lambda file: super(PPOVariant, self).save(file, exclude=exclude, include=include), path)
