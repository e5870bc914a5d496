"""How the study writes numbers and tables (report and progress lines); parsing lives with the input (``cli.py``)."""

from collections.abc import Sequence

import numpy as np

#: Shown for a missing value.
MISSING = "—"


def number(value: float | None, digits: int = 2, missing: str = MISSING) -> str:
    """``value`` with ``digits`` decimals, ``missing`` for ``None`` or a non-finite value."""
    return missing if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def episode_return(value: float, scale: float | None = None) -> str:
    """Returns of very different scales (Reacher −5, HalfCheetah 2000) with a precision that suits ``scale``."""
    return f"{value:.{1 if abs(value if scale is None else scale) >= 100 else 2}f}"


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` of returns (the mean alone for one value)."""
    if not values:
        return MISSING
    mean = float(np.mean(values))
    if len(values) == 1:
        return episode_return(mean)
    std = float(np.std(values))
    scale = max(abs(mean), std)
    return f"{episode_return(mean, scale)} ± {episode_return(std, scale)}"


def interval(aggregate: tuple[float, float, float] | None) -> str:
    """``point [low, high]``."""
    if aggregate is None:
        return MISSING
    point, low, high = aggregate
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
