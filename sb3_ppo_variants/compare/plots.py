"""
Figures of the report (matplotlib, rliable's plotting helpers): learning curves per env (mean across seeds with a 95%
stratified-bootstrap band, one line per method) and rliable's aggregate metrics of the normalised scores.
Each figure is written atomically as a PNG.
"""

import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from sb3_ppo_variants.atomic import atomic_write
from sb3_ppo_variants.compare.metrics import AGGREGATE_METRICS, CurveBand, curve_band
from sb3_ppo_variants.compare.specs import Method

if "matplotlib.pyplot" not in sys.modules:  # batch plotting; leave an interactive session's backend alone
    matplotlib.use("Agg")

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

#: Colour map of each objective family (one shade per configuration); baselines get fixed colours.
FAMILY_COLORMAPS = {"clip": "Blues", "adaptive_kl": "Greens", "fixed_kl": "Oranges", "none": "Reds"}
BASELINE_COLORS = {"ppo": "#7f3b08", "trpo": "#c51b7d", "a2c": "#4d4d4d"}
DPI = 150
#: Height (inches) of one method's row in rliable's interval-estimate plot.
ROW_HEIGHT = 0.45


def method_colors(methods: Sequence[Method]) -> dict[str, Any]:
    """A colour per method: shades of one colour map per objective family, so families read as groups."""
    colors: dict[str, Any] = {}
    families: dict[str, list[Method]] = {}
    for method in methods:
        families.setdefault(method.family, []).append(method)
    other = iter(plt.get_cmap("tab10").colors)  # type: ignore[attr-defined]
    for family, members in families.items():
        for index, method in enumerate(members):
            if method.is_baseline:
                colors[method.label] = BASELINE_COLORS.get(method.label, next(other))
            elif family in FAMILY_COLORMAPS:
                shade = 0.75 if len(members) == 1 else 0.45 + 0.5 * index / (len(members) - 1)
                colors[method.label] = plt.get_cmap(FAMILY_COLORMAPS[family])(shade)
            else:
                colors[method.label] = next(other)
    return colors


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG atomically and free it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pil_kwargs={"optimize": True})
    plt.close(figure)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))


def _draw_curves(axis: Any, env_id: str, bands: dict[str, CurveBand], colors: dict[str, Any]) -> None:
    """Draw each method's curve band (:func:`~sb3_ppo_variants.compare.metrics.curve_band`) with rliable."""
    from rliable import plot_utils

    for label, (timesteps, mean, lower, upper) in bands.items():
        # One call per method: each method is drawn against its own curve points.
        plot_utils.plot_sample_efficiency_curve(
            timesteps,
            {label: mean},
            {label: np.stack([lower, upper])},
            algorithms=[label],
            colors=colors,
            ax=axis,
            marker=None,
            linewidth=1.5,
            labelsize="medium",
            ticklabelsize="small",
            xlabel="environment steps",
            ylabel="mean return, last 100 episodes",
            wrect=4,
            hrect=4,
        )
    axis.set_title(env_id, fontsize="medium")
    axis.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))


def learning_curve_figures(
    envs: Sequence[str],
    curves: dict[str, dict[str, list[dict[str, Any]]]],
    methods: Sequence[Method],
    colors: dict[str, Any],
    reps: int = 2000,
) -> dict[str, Figure]:
    """
    One figure per env and an overview of all envs: mean learning curve across seeds and its pointwise 95% CI
    (rliable's stratified bootstrap), one line per method.

    :param envs: env ids
    :param curves: env → method → the runs' stored curves
    :param methods: methods in table order
    :param colors: method label → colour
    :param reps: bootstrap resamples per curve
    :return: file stem → figure (``curves_<env>`` and ``learning_curves``)
    """
    figures: dict[str, Figure] = {}
    columns = min(3, len(envs))
    rows = math.ceil(len(envs) / columns)
    overview, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    for index, env_id in enumerate(envs):
        # Each band is bootstrapped once and drawn in both figures.
        runs = curves.get(env_id, {})
        bands = {method.label: curve_band(runs[method.label], reps=reps) for method in methods if runs.get(method.label)}
        bands = {label: band for label, band in bands.items() if len(band[0])}
        _draw_curves(axes.flat[index], env_id, bands, colors)
        single, axis = plt.subplots(figsize=(6, 4.2))
        _draw_curves(axis, env_id, bands, colors)
        axis.legend(fontsize="small", frameon=False, loc="best")
        figures[f"curves_{env_id}"] = single
    for axis in list(axes.flat)[len(envs) :]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    overview.legend(
        list(unique.values()), list(unique), loc="lower center", ncol=min(6, len(unique)), frameon=False, fontsize="small"
    )
    overview.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(unique) / 6), 1, 1))
    figures["learning_curves"] = overview
    return figures


def aggregate_figure(
    aggregates: dict[str, dict[str, tuple[float, float, float]]], methods: Sequence[Method], colors: dict[str, Any]
) -> Figure:
    """rliable's interval-estimate plot of IQM, mean and optimality gap of the normalised scores."""
    from rliable import plot_utils

    labels = [method.label for method in methods if method.label in aggregates]
    points = {label: np.array([aggregates[label][name][0] for name in AGGREGATE_METRICS]) for label in labels}
    intervals = {
        label: np.array([[aggregates[label][name][bound] for name in AGGREGATE_METRICS] for bound in (1, 2)])
        for label in labels
    }
    figure, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=list(AGGREGATE_METRICS),
        algorithms=labels,
        colors={label: colors[label] for label in labels},
        xlabel="normalised score",
        subfigure_width=3.6,
        row_height=ROW_HEIGHT,
        # rliable places the x label in figure coordinates: keep it ~0.5 inch below the axes whatever the row count.
        xlabel_y_coordinate=-0.5 / (ROW_HEIGHT * max(len(labels), 1)),
    )
    return figure
