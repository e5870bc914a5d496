"""
Stateful schedules: a learning rate that adapts to the KL of each update.

SB3 evaluates ``learning_rate`` (a number or a callable of the progress remaining) at the start of every update and
saves it with the model. :class:`KLAdaptiveLR` is such a callable whose value is moved by the update engine after each
update, so it needs no extra argument, is saved and loaded with the model, and is logged as ``train/learning_rate``.
"""

from typing import Any

from sb3_ppo_variants.checks import ArgumentValueError, check_number


class KLAdaptiveLR:
    """
    A learning rate that keeps the KL per update near a target: the rule of rsl_rl's PPO (Rudin et al. 2022,
    "Learning to Walk in Minutes Using Massively Parallel Deep RL", arXiv:2109.11978; also rl_games' adaptive
    schedule), driven by the exact mean KL[π_old ‖ π_θ] over the rollout after each update:

    - if d > ``tolerance`` × d_targ: lr ← max(lr / ``factor``, min)
    - if 0 < d < d_targ / ``tolerance``: lr ← min(lr × ``factor``, max)

    The new rate is used from the next update on. Pass it as ``learning_rate=KLAdaptiveLR(3e-4, kl_target=0.01)``.

    It adapts once per update, not per minibatch as rsl_rl does: d is the exact KL over the whole rollout, measured
    once (one host sync per update) and not the noisy KL of one minibatch; and the rate stays constant within an
    update, as SB3's schedules and the fast Adam step assume. The rate moves by at most one ``factor`` per update
    (rsl_rl's can move by one per minibatch), so a larger ``factor`` reacts faster.

    It cannot be combined with ``objective="adaptive_kl"``: two controllers adjusting β and the step size on the same
    d would each overshoot what the other corrects.

    :param initial_value: the first learning rate, within ``bounds``
    :param kl_target: d_targ > 0 (rsl_rl's ``desired_kl``, default 0.01)
    :param bounds: (min, max) of the rate, with 0 < min < max (rsl_rl: 1e-5, 1e-2)
    :param factor: multiplier applied when d leaves the band, > 1 (rsl_rl: 1.5)
    :param tolerance: width of the band around d_targ, > 1 (rsl_rl: 2)
    """

    def __init__(
        self,
        initial_value: float = 3e-4,
        kl_target: float = 0.01,
        bounds: tuple[float, float] = (1e-5, 1e-2),
        factor: float = 1.5,
        tolerance: float = 2.0,
    ) -> None:
        check_number("kl_target", kl_target, low=0.0, low_inclusive=False)
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise TypeError(f"bounds must be a (min, max) tuple, got {bounds!r}")
        check_number("bounds[0]", bounds[0], low=0.0, low_inclusive=False)
        check_number("bounds[1]", bounds[1])
        if not bounds[0] < bounds[1]:
            raise ArgumentValueError(f"bounds must be (min, max) with min < max, got {tuple(bounds)!r}")
        check_number("initial_value", initial_value, low=bounds[0], high=bounds[1])
        check_number("factor", factor, low=1.0, low_inclusive=False)
        check_number("tolerance", tolerance, low=1.0, low_inclusive=False)
        self.initial_value = float(initial_value)
        self.kl_target = float(kl_target)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.factor = float(factor)
        self.tolerance = float(tolerance)
        #: the current learning rate
        self.value = self.initial_value

    def __call__(self, progress_remaining: float) -> float:
        """The current rate (the schedule does not depend on the progress)."""
        return self.value

    def update(self, mean_kl: float) -> None:
        """
        Apply the rule after an update.

        :param mean_kl: d, the mean exact KL[π_old ‖ π_θ] over the rollout with the updated policy
        """
        low, high = self.bounds
        if mean_kl > self.kl_target * self.tolerance:
            self.value = max(self.value / self.factor, low)
        elif 0.0 < mean_kl < self.kl_target / self.tolerance:
            self.value = min(self.value * self.factor, high)

    def continue_from(self, saved: "KLAdaptiveLR") -> None:
        """Take over the current rate of ``saved`` (clamped to this schedule's bounds), e.g. when loading a model."""
        self.value = min(max(saved.value, self.bounds[0]), self.bounds[1])

    def __repr__(self) -> str:
        return (
            f"KLAdaptiveLR({self.initial_value!r}, kl_target={self.kl_target!r}, bounds={self.bounds!r}, "
            f"factor={self.factor!r}, tolerance={self.tolerance!r}; current value {self.value!r})"
        )


def check_kl_controllers(learning_rate: Any, objective: Any) -> None:
    """
    Reject a :class:`KLAdaptiveLR` with the adaptive KL penalty (see :class:`KLAdaptiveLR` for why).

    :raises ArgumentValueError: naming both arguments
    """
    adaptive_penalty = (objective if isinstance(objective, str) else getattr(objective, "name", None)) == "adaptive_kl"
    if isinstance(learning_rate, KLAdaptiveLR) and adaptive_penalty:
        raise ArgumentValueError(
            f"learning_rate={learning_rate!r} cannot be combined with objective='adaptive_kl': both would adapt to the "
            "same KL. Use one: a KL-adaptive rate with another objective, or adaptive_kl with a number or a schedule"
        )
