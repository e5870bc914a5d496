"""
The update engine: the ``train()`` of every algorithm of the package, written once.

:class:`UpdateEngine` is a mixin placed before the counterpart in each algorithm's bases: ``PPOVariant(UpdateEngine,
OnPolicyAlgorithm)``, ``MaskablePPOVariant(UpdateEngine, MaskablePPO)``, ``RecurrentPPOVariant(UpdateEngine,
RecurrentPPO)``. Its ``train()`` replaces the counterpart's; everything else (set-up, rollouts, prediction, ``learn``)
is the counterpart's own, reached through the normal method resolution order. A variant changes what differs in the
extension points at the bottom of the class: the minibatches, which rows are samples, and how π_θ and π_old are
evaluated on a minibatch.

One update: plan the fast parts (:class:`~sb3_ppo_variants.fast_path.FastPath`) → capture π_old → ``n_epochs`` passes
of minibatches → :func:`~sb3_ppo_variants.loss.ppo_loss` → gradient step → the adaptive rule's d → one host sync →
the objective's end-of-update step → the logger. The update is all-or-nothing: on a non-finite loss, or any
exception, the policy and optimizer are restored to their state before it.
"""

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import FloatSchedule

from sb3_ppo_variants.atomic import atomic_save
from sb3_ppo_variants.checks import (
    ArgumentValueError,
    check_learn_arguments,
    check_non_negative_or_schedule,
    check_number,
    check_policy,
    check_positive_or_schedule,
    check_ppo_arguments,
    check_rollout_size,
)
from sb3_ppo_variants.fast_path import FastPath
from sb3_ppo_variants.fast_policy import FastActorCritic, fast_policy_unsupported_reason
from sb3_ppo_variants.loss import Evaluation, LossCoefficients, ppo_loss
from sb3_ppo_variants.masking import zero_invalid_rows
from sb3_ppo_variants.objectives import SurrogateObjective, check_objective, check_objective_kwargs, make_objective
from sb3_ppo_variants.old_policy import OldDistributions, OldPolicy
from sb3_ppo_variants.schedules import KLAdaptiveLR, check_kl_controllers
from sb3_ppo_variants.update import (
    FlatAdam,
    fast_minibatches,
    fast_minibatches_unsupported_reason,
    flat_adam_unsupported_reason,
    graph_reaches_all,
)
from sb3_ppo_variants.update_stats import NonFiniteLossError, UpdateStats, UpdateSummary, record_update

SelfUpdateEngine = TypeVar("SelfUpdateEngine", bound="UpdateEngine")
#: π_old for one update: a frozen copy of the policy, or its distribution's parameters at every rollout sample.
OldPolicyLike = OldPolicy | OldDistributions

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


class UpdateEngine(OnPolicyAlgorithm):
    """
    The objective machinery shared by the package's algorithms (a mixin: not instantiated itself). See the module
    docstring for where it sits in each algorithm's bases.
    """

    #: Policies the algorithm accepts as classes (names: ``policy_aliases``), and whether they are recurrent.
    policy_base: ClassVar[type[BasePolicy]]
    recurrent: ClassVar[bool] = False
    #: Run the update with the fast parts of :mod:`sb3_ppo_variants.update` and :mod:`sb3_ppo_variants.fast_policy`
    #: where they apply (same results as SB3's code); ``False`` always runs SB3's minibatch sampling,
    #: ``evaluate_actions``, ``clip_grad_norm_`` and ``optimizer.step()``. A class attribute, not saved with a model.
    fast_update: ClassVar[bool] = True
    #: What collects the rollouts when the algorithm has no fast rollout loop of its own (``fast_path``).
    rollout_fallback: ClassVar[str] = "the counterpart's collect_rollouts"

    # Set by each algorithm's constructor (SB3 PPO's and sb3-contrib's names and meanings).
    batch_size: int | None
    n_epochs: int
    clip_range: Any
    clip_range_vf: Any
    normalize_advantage: bool
    target_kl: float | None
    kl_target: Any
    log_kl: bool
    objective_kwargs: dict[str, Any]
    ent_coef: Any  # a number or a schedule of the progress remaining (see current_coefficient)
    vf_coef: Any
    _initial_kl_coef: Any

    objective: SurrogateObjective
    #: The fast parts of the last rollout and update, and the reason for each part that fell back.
    fast_path: FastPath

    # ------------------------------------------------------------------------------------------------------------------
    # Construction, set-up, save and load
    # ------------------------------------------------------------------------------------------------------------------

    @classmethod
    def _check_arguments(cls, arguments: dict[str, Any]) -> None:
        """Reject bad constructor arguments with an error naming the parameter, the value and the accepted range."""
        check_policy(cls, arguments["policy"])
        check_objective(arguments["objective"])
        check_objective_kwargs(arguments["objective"], arguments.get("objective_kwargs"))
        check_ppo_arguments(arguments)
        check_kl_controllers(arguments["learning_rate"], arguments["objective"])

    def _init_update(
        self,
        objective: SurrogateObjective,
        kl_coef: Any,
        kl_target: Any,
        log_kl: bool,
        normalize_advantage: bool,
        objective_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """The package's own constructor arguments, after the counterpart's constructor (which built no model yet)."""
        supported = getattr(type(self), "supported_action_spaces", None)
        if self.env is not None and supported is not None and not isinstance(self.action_space, supported):
            # The counterpart's constructor checks its own action spaces (RecurrentPPO's include Box); a variant's may
            # be narrower. An ArgumentValueError is also the AssertionError that SB3 raises for the same mistake.
            raise ArgumentValueError(
                f"{type(self).__name__} only supports {supported} as action spaces but {self.action_space} was provided"
            )
        if self.env is not None:
            check_rollout_size(self.n_steps, self.env.num_envs, self.batch_size, normalize_advantage)
        self.objective = objective
        self._initial_kl_coef = kl_coef  # a number, or fixed_kl's schedule of β
        self.kl_target = kl_target
        self.log_kl = log_kl
        self.objective_kwargs = dict(objective_kwargs or {})

    def _setup_model(self) -> None:
        super()._setup_model()  # the counterpart's policy, buffer and schedules
        self._setup_update()

    def _setup_update(self) -> None:
        """What the update needs beyond the counterpart's set-up: schedules, the optimizer's code, the objective."""
        # Schedules for policy/value clipping, as in SB3 PPO (a FloatSchedule of a FloatSchedule is the same schedule).
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
        # Models saved before objective_kwargs existed load without it.
        self.objective = make_objective(
            self.objective,
            clip_range=self.clip_range,
            kl_coef=self._initial_kl_coef,
            kl_target=self.kl_target,
            objective_kwargs=self.__dict__.setdefault("objective_kwargs", {}) if isinstance(self.objective, str) else None,
        )
        # Models saved before log_kl existed load without it: they keep the default.
        self.__dict__.setdefault("log_kl", False)
        # Never saved: π_old's frozen copy (made at the first update that needs it), the flat Adam, the plan.
        self._old_policy: OldPolicy | None = None
        self._flat_adam: FlatAdam | None = None
        self._fast_policies: dict[int, FastActorCritic | None] = {}
        self._plan: dict[str, str | None] = {}
        self._entropy_grad = True
        self._rollout_plan: str | None = self.rollout_fallback
        self.fast_path = FastPath()

    def _excluded_save_params(self) -> list[str]:
        own = ["_old_policy", "_flat_adam", "_fast_policies", "_plan", "_entropy_grad", "_rollout_plan", "fast_path"]
        return [*super()._excluded_save_params(), *own]

    @property
    def kl_coef(self) -> float:
        """Current β of the KL penalty: adapted after each update by ``"adaptive_kl"``, 0 for objectives without one."""
        objective = self.__dict__.get("objective")
        if objective is None or isinstance(objective, str):
            initial = self._initial_kl_coef
            return float(initial(1.0) if callable(initial) else initial)
        return float(objective.kl_coef)

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        check_number("kl_coef", value, low=0.0)
        self.objective.kl_coef = float(value)

    @staticmethod
    def _check_learn_arguments(total_timesteps: int | float, log_interval: int) -> int:
        return check_learn_arguments(total_timesteps, log_interval)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfUpdateEngine],
        path: str | Path | Any,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfUpdateEngine:
        """
        Load a model saved with :meth:`save` (see ``BaseAlgorithm.load``). The saved objective comes back with its
        state (β). Passing ``objective`` with the saved objective's name again, as rl-zoo does when it continues
        training a model, keeps it; a different name or an objective object replaces it, built from ``kl_coef``,
        ``kl_target`` and ``clip_range`` (given here or saved) and ``objective_kwargs`` (given here). A
        ``KLAdaptiveLR`` given as ``learning_rate`` continues from the saved KL-adaptive rate.
        """
        objective = kwargs.pop("objective", None)
        settings = {key: kwargs.pop(key) for key in ("kl_coef", "kl_target", "objective_kwargs") if key in kwargs}
        if objective is not None:
            check_objective(objective)
            check_objective_kwargs(objective, settings.get("objective_kwargs"))
        if "kl_coef" in settings:
            check_non_negative_or_schedule("kl_coef", settings["kl_coef"])
        if "kl_target" in settings:
            check_positive_or_schedule("kl_target", settings["kl_target"])
        learning_rate = kwargs.pop("learning_rate", None)
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        if learning_rate is not None:
            model._replace_learning_rate(learning_rate)
        if objective is None or (isinstance(objective, str) and objective == model.objective.name):
            if settings:
                warnings.warn(
                    f"Kept the saved objective {model.objective!r} with its state; {sorted(settings)} given to "
                    "load() are not applied. Pass objective=<an objective object> to change its settings.",
                    stacklevel=2,
                )
            return model
        model._initial_kl_coef = settings.get("kl_coef", model._initial_kl_coef)
        model.kl_target = settings.get("kl_target", model.kl_target)
        # The saved objective_kwargs belong to the saved objective: a new one gets only those given here.
        model.objective_kwargs = dict(settings.get("objective_kwargs") or {})
        model.objective = make_objective(
            objective,
            clip_range=model.clip_range,
            kl_coef=model._initial_kl_coef,
            kl_target=model.kl_target,
            objective_kwargs=model.objective_kwargs,
        )
        check_kl_controllers(model.learning_rate, model.objective)
        return model

    def _replace_learning_rate(self, learning_rate: Any) -> None:
        """
        ``load(learning_rate=...)``: a :class:`~sb3_ppo_variants.schedules.KLAdaptiveLR` continues from the saved
        KL-adaptive rate (rl-zoo passes the file's learning rate again when it continues training a model).
        """
        check_positive_or_schedule("learning_rate", learning_rate)
        if isinstance(learning_rate, KLAdaptiveLR) and isinstance(self.learning_rate, KLAdaptiveLR):
            learning_rate.continue_from(self.learning_rate)
        check_kl_controllers(learning_rate, self.objective)
        self.learning_rate = learning_rate
        self._setup_lr_schedule()  # SB3's hook that turns learning_rate into lr_schedule

    def save(self, path: str | Path | Any, exclude: Any = None, include: Any = None) -> None:
        """
        Save like SB3 (same zip format, ``.zip`` added when the path has no suffix), but atomically: the file is
        written next to its destination and renamed, so a crash never leaves a half-written model.
        """
        save = super().save
        atomic_save(lambda file: save(file, exclude=exclude, include=include), path)

    # ------------------------------------------------------------------------------------------------------------------
    # The update
    # ------------------------------------------------------------------------------------------------------------------

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer: ``n_epochs`` passes of minibatch gradient steps on
        the objective's loss, then one end-of-update step of the objective (the adaptive β rule).

        The update is all-or-nothing: if it fails (a non-finite loss, or any exception) the policy and optimizer are
        restored to their state before it.
        """
        # Which fast parts apply is decided again at every update (the policy or optimizer may have been replaced).
        self._plan_update()
        # π_old, frozen for the whole update; only objectives (or the diagnostic) that use the KL pay for it.
        old_policy = self._capture_old_policy() if self._measures_kl else None
        last_good_state = clone_tensors((self.policy.state_dict(), self.policy.optimizer.state_dict()))

        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # BaseAlgorithm's protected schedule helpers, as SB3 PPO.train() uses them (no public equivalent).
        self._update_learning_rate(self.policy.optimizer)
        progress_remaining = self._current_progress_remaining
        coefficients = LossCoefficients(
            clip_range=self.clip_range(progress_remaining),  # type: ignore[operator]
            clip_range_vf=None if self.clip_range_vf is None else self.clip_range_vf(progress_remaining),  # type: ignore[operator]
            ent_coef=self.current_coefficient("ent_coef"),
            vf_coef=self.current_coefficient("vf_coef"),
            normalize_advantage=self.normalize_advantage,
        )
        self.objective.begin_update(progress_remaining)
        kl_coef = self.kl_coef  # β used by this update (the adaptive rule changes it at the end)
        stats = UpdateStats()
        try:
            self._run_epochs(stats, old_policy, coefficients)
            gradient_norm = th.stack(stats.gradient_norms).mean() if stats.gradient_norms else th.zeros(())
            # d of the adaptive rule: mean exact KL over the rollout, with the updated policy (paper §4).
            extra = [gradient_norm] if old_policy is None else [gradient_norm, self._mean_kl(old_policy)]
            table, values = stats.read(*extra)  # the update's one host sync
            gradient_norm_value, mean_kl_value = values[0], (values[1] if old_policy is not None else None)
            self._raise_if_nonfinite(stats, table, {"gradient norm": gradient_norm_value, "train/kl": mean_kl_value or 0.0})
        except BaseException as error:
            self._restore(last_good_state)
            # NaN parameters make torch's distribution checks raise before the end of the update: report the cause.
            if not isinstance(error, NonFiniteLossError) and len(stats) > 0:
                self._raise_if_nonfinite(stats, stats.read()[0], {}, cause=error)
            raise
        finally:
            self._publish_fast_path()

        self.objective.end_update(mean_kl_value)  # type: ignore[arg-type]
        if isinstance(self.learning_rate, KLAdaptiveLR):  # the next update's rate (SB3 applies it in train())
            self.learning_rate.update(mean_kl_value)  # type: ignore[arg-type]
        kl_is_estimate = old_policy is not None and old_policy.kl_is_estimate
        summary = UpdateSummary(
            coefficients.clip_range,
            coefficients.clip_range_vf,
            mean_kl_value,
            kl_coef,
            gradient_norm_value,
            kl_is_estimate,
            coefficients.ent_coef,
            coefficients.vf_coef,
        )
        record_update(self, stats, table, summary)

    def current_coefficient(self, name: str) -> float:
        """
        The value of the loss coefficient ``name`` (``"ent_coef"``, ``"vf_coef"``) for the current progress: the
        number itself, or its schedule evaluated at ``_current_progress_remaining``.

        :raises ArgumentValueError: a schedule that gives a non-finite or negative value
        """
        value = getattr(self, name)
        if callable(value):
            value = value(self._current_progress_remaining)
            check_number(f"{name} (schedule at progress_remaining={self._current_progress_remaining})", value, low=0.0)
        return float(value)

    @property
    def _measures_kl(self) -> bool:
        """
        Whether updates compute the exact KL: the objective uses it, a :class:`~sb3_ppo_variants.schedules.KLAdaptiveLR`
        follows it, or ``log_kl`` asks for ``train/kl``.
        """
        return bool(self.objective.requires_kl) or isinstance(self.learning_rate, KLAdaptiveLR) or self.log_kl

    def _run_epochs(self, stats: UpdateStats, old_policy: OldPolicyLike | None, coefficients: LossCoefficients) -> None:
        """The ``n_epochs`` passes of minibatch gradient steps, recording each minibatch's loss terms in ``stats``."""
        parameters = list(self.policy.parameters())  # once per update: parameters() walks every module
        flat_adam = self._prepare_flat_adam(parameters)
        check_graph = flat_adam is not None or not self._entropy_grad  # on the first minibatch
        continue_training = True
        for epoch in range(self.n_epochs):
            for rollout_data in self._minibatches(self.batch_size):
                loss, terms = self._minibatch_loss(rollout_data, old_policy, coefficients)
                if check_graph:
                    check_graph = False
                    if not self._entropy_grad and not graph_reaches_all(loss, parameters):
                        # A parameter reached only through the entropy gets a zero gradient in SB3 (not none): build
                        # this minibatch's graph again with the entropy, and keep it for the rest of the update.
                        self._entropy_grad = True
                        self._plan["entropy_graph"] = "a parameter is reached only through the entropy"
                        loss, terms = self._minibatch_loss(rollout_data, old_policy, coefficients)
                    if flat_adam is not None and not graph_reaches_all(loss, parameters):
                        flat_adam = None  # SB3 would skip parameters without a gradient
                        self._plan["optimizer_step"] = "a parameter gets no gradient (SB3's Adam skips it)"
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

            self._n_updates += 1  # BaseAlgorithm's update counter (protected), as SB3 PPO.train() counts it
            if not continue_training:
                break

    def _minibatch_loss(
        self, rollout_data: Any, old_policy: OldPolicyLike | None, coefficients: LossCoefficients
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """The loss of one minibatch and its named terms (:func:`~sb3_ppo_variants.loss.ppo_loss`)."""
        valid = self._valid_mask(rollout_data)
        if valid is not None:
            # Padded rows hold arbitrary values: zero them *before* any non-linear operation, so that neither a value
            # nor a gradient can turn into NaN through inf * 0 (masking the outputs alone is not enough).
            rollout_data = zero_invalid_rows(rollout_data, valid)
        evaluation = self._evaluate_actions(rollout_data, self._actions(rollout_data))
        return ppo_loss(rollout_data, evaluation, self.objective, old_policy, coefficients, valid)

    def _actions(self, rollout_data: Any) -> th.Tensor:
        """The minibatch's actions as the policy's ``evaluate_actions`` takes them."""
        if isinstance(self.action_space, spaces.Discrete):
            # Convert discrete action from float to long
            return rollout_data.actions.long().flatten()
        return rollout_data.actions

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
                    new_distribution = self._distribution(self.policy, rollout_data)
                    new_log_prob = new_distribution.log_prob(self._actions(rollout_data))
                    kl = old_policy.kl(rollout_data, new_distribution, new_log_prob)
                    total += kl.sum() if valid is None else th.where(valid, kl, 0.0).sum()
                    count += len(kl) if valid is None else valid.sum()
        finally:
            np.random.set_state(random_state)
            self.policy.set_training_mode(True)
        return total / count.clamp_min(1)

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

    # ------------------------------------------------------------------------------------------------------------------
    # The fast plan
    # ------------------------------------------------------------------------------------------------------------------

    def _plan_update(self) -> None:
        """
        Decide which fast parts the update about to start uses (``None``) and why the others fall back. The optimizer
        step and the entropy graph can still fall back at the first minibatch (see :meth:`_run_epochs`).
        """
        self._fast_policies = {}
        off = "fast_update = False" if not self.fast_update else None
        minibatches = off or self._fast_minibatches_unsupported_reason()
        evaluation = off or fast_policy_unsupported_reason(self.policy, self.use_sde)
        if evaluation is not None:
            optimizer_step: str | None = "needs the fast policy evaluation (its graph reaches every parameter)"
        else:
            optimizer_step = flat_adam_unsupported_reason(self.policy.optimizer, list(self.policy.parameters()))
        if evaluation is not None:
            entropy: str | None = "needs the fast policy evaluation"
        else:
            ent_coef = self.current_coefficient("ent_coef")  # this update's value (ent_coef may be a schedule)
            entropy = None if ent_coef == 0 else f"ent_coef = {ent_coef} (the entropy has a gradient)"
        self._entropy_grad = entropy is not None
        if not self._measures_kl:
            old_policy: str | None = "no π_old: the objective uses no KL and log_kl=False"
        else:
            old_policy = None if minibatches is None else "frozen copy: the minibatches do not carry their rows"
        self._plan = {
            "minibatches": minibatches,
            "policy_evaluation": evaluation,
            "optimizer_step": optimizer_step,
            "entropy_graph": entropy,
            "old_policy": old_policy,
            "sequence_lstm": None,  # no LSTM: nothing runs step by step
        }

    def _publish_fast_path(self) -> None:
        """``fast_path`` for the last rollout and update, printed at ``verbose=2`` when it changes."""
        fast_path = dataclasses.replace(FastPath(), rollout_loop=self._rollout_plan, **self._plan)
        if self.verbose >= 2 and fast_path != self.fast_path:
            print(f"Fast path of {type(self).__name__}:\n{fast_path}")
        self.fast_path = fast_path

    def _fast_policy(self, policy: BasePolicy) -> FastActorCritic | None:
        """The fast forward of ``policy`` for this update, or ``None`` where the policy's own methods must run."""
        key = id(policy)
        if key not in self._fast_policies:
            supported = self.fast_update and fast_policy_unsupported_reason(policy, self.use_sde) is None
            self._fast_policies[key] = FastActorCritic(policy) if supported else None  # type: ignore[arg-type]
        return self._fast_policies[key]

    def _prepare_flat_adam(self, parameters: Sequence[th.Tensor]) -> FlatAdam | None:
        """:class:`~sb3_ppo_variants.update.FlatAdam` for this update, or ``None`` (the optimizer's own step runs)."""
        if self._plan["optimizer_step"] is not None:
            return None
        optimizer = self.policy.optimizer
        flat_adam = self._flat_adam
        if (
            flat_adam is None
            or flat_adam.optimizer is not optimizer
            or [id(p) for p in flat_adam.params] != [id(p) for p in optimizer.param_groups[0]["params"]]
        ):
            flat_adam = self._flat_adam = FlatAdam(optimizer, parameters)  # type: ignore[arg-type]
        if flat_adam.prepare():
            return flat_adam
        self._plan["optimizer_step"] = "the optimizer's state is not one flat layout can hold (e.g. different step counts)"
        return None

    # ------------------------------------------------------------------------------------------------------------------
    # Extension points: what a variant (masks, recurrent policies, ...) overrides
    # ------------------------------------------------------------------------------------------------------------------

    def _capture_old_policy(self) -> OldPolicyLike:
        """
        π_old for the update about to start, i.e. the policy that collected the rollout, frozen.

        Where the minibatches carry their rows (SB3's own buffers with the fast minibatches) and the distribution has a
        closed-form KL, π_old's distribution is computed once for every sample of the rollout
        (:class:`~sb3_ppo_variants.old_policy.OldDistributions`); otherwise it is a frozen copy of the policy, made once
        and refreshed in place at every update, evaluated on every minibatch.
        """
        if self._plan["old_policy"] is None:
            self.policy.set_training_mode(False)  # as when the policy collected the rollout
            try:
                with th.no_grad():
                    chunks = self._fast_minibatches(max(self.batch_size or 0, KL_CHUNK_SIZE), shuffle=False)
                    old_distributions = OldDistributions.capture(self._old_distribution_rows(chunks))
            finally:
                self.policy.set_training_mode(True)
            if old_distributions is not None:
                return old_distributions
            self._plan["old_policy"] = f"frozen copy: no closed-form KL for {type(self.policy.action_dist).__name__}"
        if self._old_policy is None:
            self._old_policy = OldPolicy(self.policy, self._distribution)
        return self._old_policy.capture(self.policy)

    def _minibatches(self, batch_size: int | None) -> Iterator[Any]:
        """
        The minibatches of one epoch, drawn from the full rollout buffer: SB3's ``rollout_buffer.get(batch_size)`` (a
        new random permutation from NumPy's global generator each epoch), or the same minibatches with less overhead
        for SB3's own buffer classes (:func:`~sb3_ppo_variants.update.fast_minibatches`).
        """
        if self._plan["minibatches"] is None:
            return self._fast_minibatches(batch_size)
        return self.rollout_buffer.get(batch_size)

    def _old_distribution_rows(self, chunks: Iterator[Any]) -> Iterator[tuple[Distribution, th.Tensor]]:
        """
        π_old's distribution on each chunk of :meth:`_fast_minibatches` in rollout order, with each row's row of the
        rollout (-1: a padded row, left out).
        """
        for rollout_data in chunks:
            yield self._distribution(self.policy, rollout_data), rollout_data.rows

    def _fast_minibatches_unsupported_reason(self) -> str | None:
        """Why :meth:`_fast_minibatches` cannot give the rollout buffer's own minibatches, or ``None``."""
        return fast_minibatches_unsupported_reason(self.rollout_buffer)

    def _fast_minibatches(self, batch_size: int | None, shuffle: bool = True) -> Iterator[Any]:
        """The buffer's ``get(batch_size)`` minibatches with their ``rows`` (``shuffle=False``: in rollout order)."""
        return fast_minibatches(self.rollout_buffer, batch_size, shuffle=shuffle)

    def _valid_mask(self, rollout_data: Any) -> th.Tensor | None:
        """
        Which rows of a minibatch are real samples (a bool tensor of shape (batch,)), or ``None`` when all are (the
        default). Rows that are not valid, e.g. the padding of a recurrent minibatch, contribute nothing to any loss
        term, to the advantage normalisation, to the diagnostics or to the adaptive rule's d.
        """
        return None

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> Evaluation:
        """
        π_θ and V on one minibatch, with gradients: values, log π_θ(a|s) of the taken actions, the entropy (``None``
        without a closed form) and π_θ's distribution.
        """
        fast_policy = self._fast_policy(self.policy)
        if fast_policy is not None:  # the same operations without module calls (sb3_ppo_variants.fast_policy)
            return fast_policy.evaluate(rollout_data.observations, actions, entropy_grad=self._entropy_grad)
        values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)  # type: ignore[operator]
        # SB3 distributions are filled in place: evaluate_actions() left π_θ for this minibatch in policy.action_dist,
        # so the KL needs no second forward pass.
        return values, log_prob, entropy, self.policy.action_dist  # type: ignore[attr-defined]

    def _distribution(self, policy: BasePolicy, rollout_data: Any) -> Distribution:
        """
        The action distribution of ``policy`` (π_old's frozen copy, or π_θ when d is measured) on one minibatch, with
        the same inputs as :meth:`_evaluate_actions`.
        """
        fast_policy = self._fast_policy(policy)
        if fast_policy is not None:
            return fast_policy.distribution(rollout_data.observations)
        return policy.get_distribution(rollout_data.observations)  # type: ignore[attr-defined, operator]
