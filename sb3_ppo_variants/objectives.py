"""
The surrogate objectives of the PPO paper (Schulman et al. 2017, arXiv:1707.06347) as small swappable objects.

An objective turns one minibatch of ratios r = π_θ(a|s) / π_old(a|s), advantages Â and (if it asks for them) exact
KL[π_old(·|s) ‖ π_θ(·|s)] values into the policy loss to minimise (the negated surrogate) plus named diagnostics.
It never sees the optimizer, the value function or the rollout buffer, so any PPO-style ``train()`` can use it:

.. code-block:: python

    objective.begin_update(progress_remaining)             # once, before the epochs
    for minibatch in ...:                                  # all epochs
        out = objective.loss(PolicyBatch(ratio, advantages, kl, mask))
        loss = out.loss + ent_coef * entropy_loss + vf_coef * value_loss
        ...
    objective.end_update(mean_kl)                          # once, after the epochs (d of the adaptive rule)

- ``"clip"``, :class:`ClippedSurrogate`: loss -Ê[min(r Â, clip(r, 1-ε, 1+ε) Â)], ε = ``clip_range``
- ``"adaptive_kl"``, :class:`AdaptiveKLPenalty`: loss -Ê[r Â] + β Ê[KL], β adapted once per update towards
  d_targ = ``kl_target``, starting at ``kl_coef``
- ``"fixed_kl"``, :class:`FixedKLPenalty`: loss -Ê[r Â] + β Ê[KL], β = ``kl_coef``
- ``"none"``, :class:`UnclippedSurrogate`: loss -Ê[r Â] (L^CPI)

Variants since the paper, with their own parameters in ``objective_kwargs``:

- ``"dual_clip"``, :class:`DualClipSurrogate` (Ye et al. 2020): L^CLIP bounded below by c Â where Â < 0,
  ``objective_kwargs=dict(dual_clip=c)``
- ``"asymmetric_clip"``, :class:`AsymmetricClipSurrogate` (DAPO, Yu et al. 2025): clip(r, 1-ε_low, 1+ε_high),
  ε_low = ``clip_range``, ``objective_kwargs=dict(clip_range_high=ε_high)``
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import FloatSchedule

from sb3_ppo_variants.checks import (
    SCHEDULE_CHECK_POINTS,
    ArgumentValueError,
    check_choice,
    check_non_negative_or_schedule,
    check_number,
    check_positive_or_schedule,
)
from sb3_ppo_variants.masking import masked_mean


@dataclass(frozen=True)
class PolicyBatch:
    """
    What an objective sees for one minibatch. All tensors have shape (batch,).

    :param ratio: r = π_θ(a|s) / π_old(a|s)
    :param advantages: advantage estimates Â (already normalised if the algorithm normalises them)
    :param kl: exact KL[π_old(·|s) ‖ π_θ(·|s)] per sample; set only when the objective's ``requires_kl`` is true
    :param mask: optional validity mask (bool, or 0/1 float), e.g. for the padding of RecurrentPPO's sequences;
        ``None`` means every sample counts. Values at invalid rows never reach the result, even if they are inf or NaN
    """

    ratio: th.Tensor
    advantages: th.Tensor
    kl: th.Tensor | None = None
    mask: th.Tensor | None = None

    def mean(self, values: th.Tensor) -> th.Tensor:
        """Mean over the valid samples (see :func:`sb3_ppo_variants.masking.masked_mean`)."""
        return masked_mean(values, None if self.mask is None else self.mask.bool())


@dataclass(frozen=True)
class ObjectiveOutput:
    """
    :param loss: scalar policy loss to minimise (the negated surrogate objective)
    :param diagnostics: named 0-d tensors; the algorithm logs their mean over all minibatches as ``train/<name>``
    """

    loss: th.Tensor
    diagnostics: dict[str, th.Tensor] = field(default_factory=dict)


class SurrogateObjective(ABC):
    """
    Base class of the policy objectives. Subclass it (only :meth:`loss` is required), or implement the same members
    on any object: ``requires_kl``, ``kl_coef``, ``begin_update``, ``loss``, ``end_update`` and ``logs``.

    Objectives keep their own state (e.g. the adaptive β) and are saved with the model, so they must be picklable.
    """

    #: registered name (``objective="..."``); only needed for :func:`make_objective`
    name: ClassVar[str] = ""
    #: whether :meth:`loss` needs ``PolicyBatch.kl``; the exact KL is computed per minibatch only if true
    requires_kl: ClassVar[bool] = False
    #: the objective's own parameters that ``objective_kwargs`` may set (passed to :meth:`from_hyperparameters`)
    extra_parameters: ClassVar[tuple[str, ...]] = ()

    #: current KL-penalty coefficient β (0 when the objective has no penalty)
    kl_coef: float = 0.0

    def begin_update(self, progress_remaining: float) -> None:  # noqa: B027 (optional hook)
        """
        Called once before the epochs of each policy update, e.g. to evaluate schedules.

        :param progress_remaining: goes from 1 (start of training) to 0 (end)
        """

    @abstractmethod
    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        """Policy loss (the negated surrogate objective) and diagnostics for one minibatch."""

    def end_update(self, mean_kl: float | None) -> None:  # noqa: B027 (optional hook)
        """
        Called once after all epochs of an update.

        :param mean_kl: d = mean exact KL[π_old ‖ π_θ] over the valid samples of the rollout, measured with the updated
            policy; ``None`` when it was not measured (objectives with ``requires_kl = False``, unless the algorithm's
            ``log_kl`` is set)
        """

    def logs(self) -> dict[str, float]:
        """Values to log once per update as ``train/<name>`` (besides ``train/kl_coef``)."""
        return {}

    @classmethod
    def from_hyperparameters(
        cls, *, clip_range: float | Schedule, kl_coef: float | Schedule, kl_target: float | Schedule, **objective_kwargs: Any
    ) -> "SurrogateObjective":
        """
        Build the objective from ``PPOVariant``'s constructor arguments (used for ``objective="<name>"``).

        :param objective_kwargs: the keys of ``objective_kwargs``, each one of :attr:`extra_parameters`
        """
        raise NotImplementedError(f"{cls.__name__} cannot be built by name")

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in vars(self).items() if not key.startswith("_"))
        return f"{type(self).__name__}({settings})"


class ClippedSurrogate(SurrogateObjective):
    """
    L^CLIP (§3): Ê[min(r Â, clip(r, 1 - ε, 1 + ε) Â)]. Same computation as SB3 ``PPO``.

    :param clip_range: ε, a number > 0 or a schedule of the progress remaining
    """

    name = "clip"

    def __init__(self, clip_range: float | Schedule = 0.2) -> None:
        check_positive_or_schedule("clip_range", clip_range)
        self.clip_range = FloatSchedule(clip_range)
        self._epsilon = self.clip_range(1.0)

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target):  # type: ignore[no-untyped-def]
        return cls(clip_range=clip_range)

    def begin_update(self, progress_remaining: float) -> None:
        self._epsilon = self.clip_range(progress_remaining)

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        unclipped = batch.advantages * batch.ratio
        clipped = batch.advantages * th.clamp(batch.ratio, 1 - self._epsilon, 1 + self._epsilon)
        return ObjectiveOutput(-batch.mean(th.min(unclipped, clipped)))


class DualClipSurrogate(ClippedSurrogate):
    """
    Dual-clip PPO (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep Reinforcement Learning",
    arXiv:1912.09729, eq. 5): L^CLIP, bounded below by c Â where the advantage is negative,

        Ê[ max(min(r Â, clip(r, 1 - ε, 1 + ε) Â), c Â) ] for Â < 0,   Ê[ min(r Â, clip(r, 1 - ε, 1 + ε) Â) ] for Â >= 0.

    With Â < 0 and a large ratio r, L^CLIP's term r Â is unbounded below; the bound stops one sample's gradient
    from dominating. Logs ``train/dual_clip_fraction``, the fraction of samples where the bound is active.

    :param clip_range: ε, a number > 0 or a schedule of the progress remaining
    :param dual_clip: c > 1 (the paper uses 3)
    """

    name = "dual_clip"
    extra_parameters = ("dual_clip",)

    def __init__(self, clip_range: float | Schedule = 0.2, dual_clip: float = 3.0) -> None:
        super().__init__(clip_range)
        check_number("dual_clip", dual_clip, low=1.0, low_inclusive=False)
        self.dual_clip = float(dual_clip)

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target, **objective_kwargs):  # type: ignore[no-untyped-def]
        return cls(clip_range=clip_range, **objective_kwargs)

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        advantages = batch.advantages
        unclipped = advantages * batch.ratio
        clipped = advantages * th.clamp(batch.ratio, 1 - self._epsilon, 1 + self._epsilon)
        surrogate = th.min(unclipped, clipped)
        lower_bound = self.dual_clip * advantages
        negative = advantages < 0
        dual_clipped = th.where(negative, th.max(surrogate, lower_bound), surrogate)
        with th.no_grad():
            active = batch.mean((negative & (lower_bound > surrogate)).float())
        return ObjectiveOutput(-batch.mean(dual_clipped), {"dual_clip_fraction": active})


class AsymmetricClipSurrogate(ClippedSurrogate):
    """
    Asymmetric clipping, "clip-higher" (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at
    Scale", arXiv:2503.14476, §3.1): L^CLIP with separate bounds below and above 1,

        Ê[ min(r Â, clip(r, 1 - ε_low, 1 + ε_high) Â) ].

    A larger ε_high lets the probability of a good but unlikely action grow further in one update (DAPO: against
    entropy collapse); ε_high = ε_low is L^CLIP.

    :param clip_range: ε_low > 0, a number or a schedule of the progress remaining
    :param clip_range_high: ε_high >= ε_low, a number or a schedule (DAPO uses 0.28 with ε_low = 0.2)
    """

    name = "asymmetric_clip"
    extra_parameters = ("clip_range_high",)

    def __init__(self, clip_range: float | Schedule = 0.2, clip_range_high: float | Schedule = 0.28) -> None:
        super().__init__(clip_range)
        check_positive_or_schedule("clip_range_high", clip_range_high)
        self.clip_range_high = FloatSchedule(clip_range_high)
        for progress in SCHEDULE_CHECK_POINTS:
            self._check_order(self.clip_range(progress), self.clip_range_high(progress), progress)
        self._epsilon_high = self.clip_range_high(1.0)

    @staticmethod
    def _check_order(low: float, high: float, progress: float) -> None:
        if not low <= high:  # also catches NaN
            raise ArgumentValueError(
                f"clip_range_high (ε_high) must be >= clip_range (ε_low), got {high!r} < {low!r} at "
                f"progress_remaining={progress}"
            )

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target, **objective_kwargs):  # type: ignore[no-untyped-def]
        return cls(clip_range=clip_range, **objective_kwargs)

    def begin_update(self, progress_remaining: float) -> None:
        super().begin_update(progress_remaining)
        self._epsilon_high = self.clip_range_high(progress_remaining)
        self._check_order(self._epsilon, self._epsilon_high, progress_remaining)

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        unclipped = batch.advantages * batch.ratio
        clipped = batch.advantages * th.clamp(batch.ratio, 1 - self._epsilon, 1 + self._epsilon_high)
        return ObjectiveOutput(-batch.mean(th.min(unclipped, clipped)))

    def logs(self) -> dict[str, float]:
        return {"clip_range_high": self._epsilon_high}


class UnclippedSurrogate(SurrogateObjective):
    """L^CPI (§2.2, the "no clipping or penalty" row of Table 1): Ê[r Â]."""

    name = "none"

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target):  # type: ignore[no-untyped-def]
        return cls()

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        return ObjectiveOutput(-batch.mean(batch.ratio * batch.advantages))


class FixedKLPenalty(SurrogateObjective):
    """
    L^KLPEN (§4) with a constant β: Ê[r Â - β KL[π_old(·|s), π_θ(·|s)]].

    :param kl_coef: β >= 0, a number or a schedule of the progress remaining (evaluated once per update)
    """

    name = "fixed_kl"
    requires_kl = True

    def __init__(self, kl_coef: float | Schedule = 1.0) -> None:
        check_non_negative_or_schedule("kl_coef", kl_coef)
        #: β's schedule (``None``: constant β); ``kl_coef`` is always the current value, a number
        self.kl_coef_schedule = FloatSchedule(kl_coef) if callable(kl_coef) else None
        self.kl_coef = float(kl_coef(1.0) if callable(kl_coef) else kl_coef)

    def begin_update(self, progress_remaining: float) -> None:
        schedule = getattr(self, "kl_coef_schedule", None)  # absent in objectives saved before schedules existed
        if schedule is not None:
            self.kl_coef = schedule(progress_remaining)
            check_number("kl_coef", self.kl_coef, low=0.0)

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target):  # type: ignore[no-untyped-def]
        return cls(kl_coef=kl_coef)

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        if batch.kl is None:
            raise ValueError(f"{type(self).__name__} needs PolicyBatch.kl (requires_kl is True)")
        surrogate_loss = -batch.mean(batch.ratio * batch.advantages)
        kl_penalty = self.kl_coef * batch.mean(batch.kl)
        return ObjectiveOutput(surrogate_loss + kl_penalty, {"kl_penalty": kl_penalty.detach()})


class AdaptiveKLPenalty(FixedKLPenalty):
    """
    L^KLPEN (§4) with β adapted once per update. After all epochs, with d the mean exact KL[π_old ‖ π_θ] over the
    rollout measured with the updated policy:

    - if d < d_targ / ``tolerance``: β ← β / ``factor``
    - if d > d_targ × ``tolerance``: β ← β × ``factor``

    The new β is used for the next update. The paper's constants are ``tolerance = 1.5`` and ``factor = 2``.
    β is clamped to ``kl_coef_bounds`` so it can neither overflow nor get stuck at 0 (pitfall 1 of the paper notes).

    :param kl_target: d_targ > 0, a number or a schedule of the progress remaining
    :param kl_coef: initial β (the paper starts at 1), within ``kl_coef_bounds``
    :param kl_coef_bounds: (min, max) of β, with 0 < min < max
    :param tolerance: factor around d_targ within which β is kept, > 1
    :param factor: multiplier applied to β when d leaves the tolerance band, > 1
    """

    name = "adaptive_kl"
    DEFAULT_KL_COEF_BOUNDS: ClassVar[tuple[float, float]] = (1e-4, 1e4)

    def __init__(
        self,
        kl_target: float | Schedule = 0.01,
        kl_coef: float = 1.0,
        kl_coef_bounds: tuple[float, float] = DEFAULT_KL_COEF_BOUNDS,
        tolerance: float = 1.5,
        factor: float = 2.0,
    ) -> None:
        check_positive_or_schedule("kl_target", kl_target)
        if callable(kl_coef):
            raise TypeError(
                f"kl_coef of adaptive_kl is β's start value, a number (the adaptive rule changes β), got {kl_coef!r}; "
                "a schedule of β is for objective='fixed_kl'"
            )
        if not (isinstance(kl_coef_bounds, tuple) and len(kl_coef_bounds) == 2):
            raise TypeError(f"kl_coef_bounds must be a (min, max) tuple, got {kl_coef_bounds!r}")
        check_number("kl_coef_bounds[0]", kl_coef_bounds[0], low=0.0, low_inclusive=False)
        check_number("kl_coef_bounds[1]", kl_coef_bounds[1], low=kl_coef_bounds[0], low_inclusive=False)
        check_number("kl_coef", kl_coef, low=kl_coef_bounds[0], high=kl_coef_bounds[1])
        check_number("tolerance", tolerance, low=1.0, low_inclusive=False)
        check_number("factor", factor, low=1.0, low_inclusive=False)
        super().__init__(kl_coef)
        self.kl_target = FloatSchedule(kl_target)
        self.kl_coef_bounds = (float(kl_coef_bounds[0]), float(kl_coef_bounds[1]))
        self.tolerance = float(tolerance)
        self.factor = float(factor)
        self._current_kl_target = self.kl_target(1.0)

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target):  # type: ignore[no-untyped-def]
        return cls(kl_target=kl_target, kl_coef=kl_coef)

    def begin_update(self, progress_remaining: float) -> None:
        self._current_kl_target = self.kl_target(progress_remaining)

    def end_update(self, mean_kl: float | None) -> None:
        assert mean_kl is not None, "the adaptive rule needs d (requires_kl is True, so the algorithm measures it)"
        if mean_kl < self._current_kl_target / self.tolerance:
            self.kl_coef /= self.factor
        elif mean_kl > self._current_kl_target * self.tolerance:
            self.kl_coef *= self.factor
        low, high = self.kl_coef_bounds
        self.kl_coef = min(max(self.kl_coef, low), high)

    def logs(self) -> dict[str, float]:
        return {"kl_target": self._current_kl_target}


#: Objectives that ``objective="<name>"`` can build. :func:`register_objective` adds more.
OBJECTIVES: dict[str, type[SurrogateObjective]] = {
    cls.name: cls
    for cls in (
        ClippedSurrogate,
        AdaptiveKLPenalty,
        FixedKLPenalty,
        UnclippedSurrogate,
        DualClipSurrogate,
        AsymmetricClipSurrogate,
    )
}
#: Constructor arguments of the algorithms that an objective reads; ``objective_kwargs`` may not repeat them.
CONSTRUCTOR_PARAMETERS = ("clip_range", "kl_coef", "kl_target")

#: Members an objective object must have (see :class:`SurrogateObjective`).
OBJECTIVE_INTERFACE = ("requires_kl", "kl_coef", "begin_update", "loss", "end_update", "logs")


def register_objective(cls: type[SurrogateObjective]) -> type[SurrogateObjective]:
    """
    Make a :class:`SurrogateObjective` subclass available by name (e.g. from rl-zoo YAML). Usable as a decorator.
    The class must set ``name`` and implement :meth:`SurrogateObjective.from_hyperparameters`; the parameters that
    ``objective_kwargs`` may pass to it are listed in ``extra_parameters``.
    """
    if not (isinstance(cls, type) and issubclass(cls, SurrogateObjective)):
        raise TypeError(f"register_objective expects a SurrogateObjective subclass, got {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty string to register it")
    OBJECTIVES[cls.name] = cls
    return cls


def check_objective(objective: Any) -> None:
    """
    Check that ``objective`` is a known name or an object implementing the objective interface.

    :raises ValueError: unknown name (the message lists the valid ones)
    :raises TypeError: an object that lacks members of the interface
    """
    if isinstance(objective, str):
        check_choice("objective", objective, OBJECTIVES)
        return
    missing = [
        member
        for member in OBJECTIVE_INTERFACE
        if not hasattr(objective, member)
        or (member not in ("requires_kl", "kl_coef") and not callable(getattr(objective, member)))
    ]
    if missing:
        raise TypeError(
            f"objective={objective!r} is neither one of {sorted(OBJECTIVES)} nor an object implementing the objective "
            f"interface; missing or not callable: {', '.join(missing)} (subclass sb3_ppo_variants.SurrogateObjective)"
        )
    kl_coef = objective.kl_coef
    if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or not math.isfinite(kl_coef) or kl_coef < 0:
        raise ValueError(f"objective.kl_coef must be a finite number >= 0, got {kl_coef!r}")


def check_objective_kwargs(objective: Any, objective_kwargs: dict[str, Any] | None) -> None:
    """
    ``objective_kwargs`` holds only a registered objective's own parameters (its ``extra_parameters``).

    :raises TypeError: not a dict
    :raises ArgumentValueError: given with an objective object, a key that repeats a constructor argument, or a key
        the objective does not take
    """
    if objective_kwargs is None:
        return
    if not isinstance(objective_kwargs, dict):
        raise TypeError(f"objective_kwargs must be a dict or None, got {objective_kwargs!r}")
    if not objective_kwargs:
        return
    if not isinstance(objective, str):
        raise ArgumentValueError(
            f"objective_kwargs={objective_kwargs!r} cannot be given with the objective object {objective!r}: its own "
            "settings win; pass them to its constructor instead"
        )
    accepted = OBJECTIVES[objective].extra_parameters
    for key in objective_kwargs:
        if key in CONSTRUCTOR_PARAMETERS:
            raise ArgumentValueError(
                f"objective_kwargs key {key!r} repeats the constructor argument {key}: pass {key}=... instead"
            )
        if key not in accepted:
            raise ArgumentValueError(
                f"objective_kwargs: unknown key {key!r} for objective {objective!r}; it accepts "
                + (", ".join(map(repr, accepted)) if accepted else "no keys")
            )


def make_objective(
    objective: "str | SurrogateObjective",
    *,
    clip_range: float | Schedule = 0.2,
    kl_coef: float | Schedule = 1.0,
    kl_target: float | Schedule = 0.01,
    objective_kwargs: dict[str, Any] | None = None,
) -> SurrogateObjective:
    """
    Resolve ``PPOVariant``'s ``objective`` argument: build a registered objective by name from the hyperparameters,
    or return an objective object unchanged (its own settings win).

    :param objective: a name in :data:`OBJECTIVES` or an objective object
    :param clip_range: ε for ``"clip"``
    :param kl_coef: β for ``"fixed_kl"``, initial β for ``"adaptive_kl"``
    :param kl_target: d_targ for ``"adaptive_kl"``
    :param objective_kwargs: the named objective's own parameters (e.g. ``dict(dual_clip=3.0)``)
    """
    check_objective(objective)
    check_objective_kwargs(objective, objective_kwargs)
    if isinstance(objective, str):
        return OBJECTIVES[objective].from_hyperparameters(
            clip_range=clip_range, kl_coef=kl_coef, kl_target=kl_target, **(objective_kwargs or {})
        )
    return objective
