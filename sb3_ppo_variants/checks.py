"""
Argument checks. Each error names the parameter, the value it got and the accepted range, and is raised before any
work starts (no environment stepped, no network built).
"""

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.buffers import RolloutBuffer


class ArgumentValueError(ValueError, AssertionError):
    """
    An argument with a bad value. A ``ValueError``, and also an ``AssertionError``: SB3's ``PPO`` and sb3-contrib's
    algorithms reject some of the same values (a negative ``clip_range_vf``, a rollout of one sample with advantage
    normalisation) with an ``assert``, so code written for them catches it too.
    """


class PolicyTypeError(TypeError, ValueError):
    """
    A policy the algorithm cannot use. A ``TypeError``, and also a ``ValueError``, which sb3-contrib's ``MaskablePPO``
    and ``RecurrentPPO`` raise for a policy of the wrong kind.
    """


def _describe_range(low: float | None, high: float | None, low_inclusive: bool, high_inclusive: bool) -> str:
    if low is not None and high is not None:
        return f"in {'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {low:g}"
    if high is not None:
        return f"{'<=' if high_inclusive else '<'} {high:g}"
    return "finite"


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """
    Check that ``value`` is a finite real number (or integer) within the given bounds.

    :param name: parameter name, used in the error message
    :param value: value to check
    :param low: lower bound (``None``: unbounded)
    :param high: upper bound (``None``: unbounded)
    :param low_inclusive: whether ``low`` itself is accepted
    :param high_inclusive: whether ``high`` itself is accepted
    :param integer: require an integer (``bool`` is rejected)
    :raises TypeError: wrong type
    :raises ArgumentValueError: NaN, infinite or out of range (a ``ValueError``)
    """
    expected = _describe_range(low, high, low_inclusive, high_inclusive)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'} {expected}, got {value!r}")
    if not math.isfinite(value):
        raise ArgumentValueError(f"{name} must be a finite number {expected}, got {value!r}")
    value = float(value)
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if too_low or too_high:
        raise ArgumentValueError(f"{name} must be {expected}, got {value!r}")


#: Progress values at which a schedule is evaluated before training (from the start, 1, to the end, 0).
SCHEDULE_CHECK_POINTS = (1.0, 0.75, 0.5, 0.25, 0.0)


def check_schedule_values(name: str, schedule: Callable[[float], Any], low: float = 0.0) -> None:
    """
    Evaluate a schedule at :data:`SCHEDULE_CHECK_POINTS`: each value must be a finite number >= ``low``.

    :raises ArgumentValueError: naming the schedule, the progress and the value
    """
    for progress in SCHEDULE_CHECK_POINTS:
        value = schedule(progress)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < low:
            raise ArgumentValueError(
                f"{name} must be a finite number >= {low:g} at every progress; the schedule {schedule!r} gives "
                f"{value!r} at progress_remaining={progress}"
            )


def check_positive_or_schedule(name: str, value: Any) -> None:
    """
    Check a hyperparameter that is either a number > 0 or a schedule (a callable of the progress remaining).

    A schedule is evaluated at progress 1 (the start of training), where its value must be > 0, and at the other
    :data:`SCHEDULE_CHECK_POINTS`, where it must be finite and >= 0 (a linear schedule ends at 0).
    """
    if callable(value):
        start = value(1.0)
        if isinstance(start, bool) or not isinstance(start, numbers.Real) or not math.isfinite(start) or start <= 0:
            raise ArgumentValueError(f"{name} must be > 0; the schedule {value!r} gives {start!r} at the start of training")
        check_schedule_values(name, value)
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number > 0 or a schedule (callable of progress remaining), got {value!r}")
    check_number(name, value, low=0.0, low_inclusive=False)


def check_non_negative_or_schedule(name: str, value: Any) -> None:
    """A coefficient that is a number >= 0 or a schedule whose values are finite and >= 0 (``ent_coef``, ...)."""
    if callable(value):
        check_schedule_values(name, value)
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number >= 0 or a schedule (callable of progress remaining), got {value!r}")
    check_number(name, value, low=0.0)


def check_bool(name: str, value: Any) -> None:
    """Check that ``value`` is a bool (``0``/``1`` are not accepted, to catch swapped arguments)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: Any, choices: dict[str, Any] | list[str]) -> None:
    """Check that ``value`` is one of ``choices`` and list them in the error."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(repr, choices))}")


def check_optional(check: Callable[..., None], name: str, value: Any, **kwargs: Any) -> None:
    """Run ``check`` unless ``value`` is ``None``."""
    if value is not None:
        check(name, value, **kwargs)


def is_recurrent(policy_class: type) -> bool:
    """Whether a policy class is one of sb3-contrib's recurrent (LSTM) policies."""
    try:
        from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    except ImportError:  # without sb3-contrib there are no recurrent policies
        return False
    return issubclass(policy_class, RecurrentActorCriticPolicy)


def check_policy(algorithm: Any, policy: Any) -> None:
    """
    The policy must be one of the algorithm's ``policy_aliases`` or a subclass of its ``policy_base``, recurrent iff
    the algorithm is.

    :param algorithm: the algorithm class (its ``policy_aliases``, ``policy_base`` and ``recurrent``)
    :param policy: the ``policy`` argument
    :raises PolicyTypeError: otherwise
    """
    kind = "a recurrent (LSTM)" if algorithm.recurrent else "a non-recurrent"
    choices = ", ".join(map(repr, algorithm.policy_aliases))
    if isinstance(policy, str):
        if policy not in algorithm.policy_aliases:
            raise PolicyTypeError(
                f"policy={policy!r} is not valid for {algorithm.__name__}, which needs {kind} policy; choose one of: "
                f"{choices} (or a subclass of {algorithm.policy_base.__name__})"
            )
        return
    if (
        not (isinstance(policy, type) and issubclass(policy, algorithm.policy_base))
        or is_recurrent(policy) != algorithm.recurrent
    ):
        raise PolicyTypeError(
            f"policy={policy!r} is not valid for {algorithm.__name__}, which needs {kind} policy: one of "
            f"{choices} or a subclass of {algorithm.policy_base.__name__}"
        )


def check_ppo_arguments(arguments: dict[str, Any]) -> None:
    """
    The constructor arguments that every PPO of the package shares with SB3's ``PPO`` (those a variant lacks, e.g.
    ``use_sde`` for the maskable one, are skipped). The policy and the objective are checked by their own functions.

    :param arguments: the constructor's ``locals()``
    """
    check_positive_or_schedule("learning_rate", arguments["learning_rate"])
    for name in ("n_steps", "n_epochs", "stats_window_size"):
        check_number(name, arguments[name], low=1, integer=True)
    # None: the whole rollout is one minibatch (sb3-contrib's MaskablePPO and RecurrentPPO accept it too).
    check_optional(check_number, "batch_size", arguments["batch_size"], low=1, integer=True)
    for name in ("gamma", "gae_lambda"):
        check_number(name, arguments[name], low=0.0, high=1.0)
    # Coefficients may be schedules; adaptive_kl's start β must be a number (AdaptiveKLPenalty checks it).
    for name in ("ent_coef", "vf_coef", "kl_coef"):
        check_non_negative_or_schedule(name, arguments[name])
    check_number("max_grad_norm", arguments["max_grad_norm"], low=0.0, low_inclusive=False)
    check_positive_or_schedule("clip_range", arguments["clip_range"])
    check_optional(check_positive_or_schedule, "clip_range_vf", arguments["clip_range_vf"])
    check_positive_or_schedule("kl_target", arguments["kl_target"])
    check_optional(check_number, "target_kl", arguments["target_kl"], low=0.0, low_inclusive=False)
    for name in ("normalize_advantage", "use_sde", "log_kl"):
        if name in arguments:
            check_bool(name, arguments[name])
    if "sde_sample_freq" in arguments:
        check_number("sde_sample_freq", arguments["sde_sample_freq"], low=-1, integer=True)
    check_number("verbose", arguments["verbose"], low=0, integer=True)
    check_optional(check_number, "seed", arguments["seed"], low=0, high=2**32 - 1, integer=True)
    if arguments["normalize_advantage"] and arguments["batch_size"] is not None and arguments["batch_size"] < 2:
        raise ArgumentValueError(
            f"batch_size must be >= 2 when normalize_advantage=True (got {arguments['batch_size']}), "
            "see https://github.com/DLR-RM/stable-baselines3/issues/440"
        )
    buffer_class = arguments.get("rollout_buffer_class")
    if buffer_class is not None and not (isinstance(buffer_class, type) and issubclass(buffer_class, RolloutBuffer)):
        raise TypeError(f"rollout_buffer_class must be a subclass of RolloutBuffer or None, got {buffer_class!r}")
    for name in ("rollout_buffer_kwargs", "policy_kwargs", "objective_kwargs"):
        if arguments.get(name) is not None and not isinstance(arguments[name], dict):
            raise TypeError(f"{name} must be a dict or None, got {arguments[name]!r}")


def check_rollout_size(n_steps: int, n_envs: int, batch_size: int | None, normalize_advantage: bool) -> None:
    """
    Once the env is known: a rollout of one sample cannot be normalised, and a ``batch_size`` that does not divide the
    rollout leaves a truncated minibatch (a warning, as SB3 gives).
    """
    buffer_size = n_envs * n_steps
    batch_size = batch_size or buffer_size
    # Advantage normalisation of a single sample divides by a zero std (SB3 asserts the same).
    if normalize_advantage and buffer_size < 2:
        raise ArgumentValueError(
            f"n_steps * n_envs must be >= 2 when normalize_advantage=True, got n_steps={n_steps} and n_envs={n_envs}"
        )
    if buffer_size % batch_size > 0:
        warnings.warn(
            f"batch_size={batch_size} does not divide the rollout size n_steps * n_envs = {buffer_size}: every "
            f"epoch ends with a truncated minibatch of {buffer_size % batch_size} samples.",
            stacklevel=4,
        )


def check_learn_arguments(total_timesteps: int | float, log_interval: int) -> int:
    """Check ``learn()``'s budget (a whole number >= 0, e.g. ``1e6``) and ``log_interval``; return the budget as int."""
    check_number("total_timesteps", total_timesteps, low=0)
    if total_timesteps != int(total_timesteps):
        raise ArgumentValueError(f"total_timesteps must be a whole number of steps, got {total_timesteps!r}")
    check_optional(check_number, "log_interval", log_interval, low=1, integer=True)
    return int(total_timesteps)
