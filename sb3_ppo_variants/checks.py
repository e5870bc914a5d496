"""
Argument checks. Each error names the parameter, the value it got and the accepted range, and is raised before any
work starts (no environment stepped, no network built).
"""

import math
import numbers
from collections.abc import Callable
from typing import Any


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
    :raises ValueError: NaN, infinite or out of range
    """
    expected = _describe_range(low, high, low_inclusive, high_inclusive)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'} {expected}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
    value = float(value)
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if too_low or too_high:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_positive_or_schedule(name: str, value: Any) -> None:
    """
    Check a hyperparameter that is either a number > 0 or a schedule (a callable of the progress remaining).

    A schedule is evaluated at progress 1 (the start of training), where its value must be > 0 too.
    """
    if callable(value):
        start = value(1.0)
        if isinstance(start, bool) or not isinstance(start, numbers.Real) or not math.isfinite(start) or start <= 0:
            raise ValueError(f"{name} must be > 0; the schedule {value!r} gives {start!r} at the start of training")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number > 0 or a schedule (callable of progress remaining), got {value!r}")
    check_number(name, value, low=0.0, low_inclusive=False)


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
