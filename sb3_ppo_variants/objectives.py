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
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import FloatSchedule

from sb3_ppo_variants.checks import check_choice, check_number, check_positive_or_schedule
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
        cls, *, clip_range: float | Schedule, kl_coef: float, kl_target: float | Schedule
    ) -> "SurrogateObjective":
        """Build the objective from ``PPOVariant``'s constructor arguments (used for ``objective="<name>"``)."""
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

    :param kl_coef: β >= 0
    """

    name = "fixed_kl"
    requires_kl = True

    def __init__(self, kl_coef: float = 1.0) -> None:
        check_number("kl_coef", kl_coef, low=0.0)
        self.kl_coef = float(kl_coef)

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
    cls.name: cls for cls in (ClippedSurrogate, AdaptiveKLPenalty, FixedKLPenalty, UnclippedSurrogate)
}

#: Members an objective object must have (see :class:`SurrogateObjective`).
OBJECTIVE_INTERFACE = ("requires_kl", "kl_coef", "begin_update", "loss", "end_update", "logs")


def register_objective(cls: type[SurrogateObjective]) -> type[SurrogateObjective]:
    """
    Make a :class:`SurrogateObjective` subclass available by name (e.g. from rl-zoo YAML). Usable as a decorator.
    The class must set ``name`` and implement :meth:`SurrogateObjective.from_hyperparameters`.
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


def make_objective(
    objective: "str | SurrogateObjective",
    *,
    clip_range: float | Schedule = 0.2,
    kl_coef: float = 1.0,
    kl_target: float | Schedule = 0.01,
) -> SurrogateObjective:
    """
    Resolve ``PPOVariant``'s ``objective`` argument: build a registered objective by name from the hyperparameters,
    or return an objective object unchanged (its own settings win).

    :param objective: a name in :data:`OBJECTIVES` or an objective object
    :param clip_range: ε for ``"clip"``
    :param kl_coef: β for ``"fixed_kl"``, initial β for ``"adaptive_kl"``
    :param kl_target: d_targ for ``"adaptive_kl"``
    """
    check_objective(objective)
    if isinstance(objective, str):
        return OBJECTIVES[objective].from_hyperparameters(clip_range=clip_range, kl_coef=kl_coef, kl_target=kl_target)
    return objective
