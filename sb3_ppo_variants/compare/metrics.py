"""
The paper's metrics and rliable's aggregates, as pure functions of the run results.

- Score of a run: the mean return of its last 100 training episodes (:func:`mean_of_last`), and its learning curve.
- Normalisation, per env: (score − random) / (best − random), so a uniformly random policy scores 0 and the best result
  in the study scores 1. "Best result" is the highest single-run score on that env among the objective configurations
  of the study (the Table 1 rows); baselines are normalised with the same constants but do not set them, so adding
  ``--baselines`` does not change the objectives' numbers. (If a study has no objective runs on an env, its baselines
  set the best.)
- Table value of a method: the mean normalised score over all its runs (envs × seeds), as in Table 1.
- rliable's IQM, mean and optimality gap with stratified-bootstrap confidence intervals, over the (seeds × envs) matrix
  of normalised scores.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Number of last training episodes whose mean return is a run's score (the paper's Table 1 rule).
SCORE_EPISODES = 100
#: Statuses whose score counts. A diverged run (non-finite loss) is scored on its episodes before the divergence.
SCORED_STATUSES = ("ok", "diverged")
#: rliable aggregate metrics reported, in order.
AGGREGATE_METRICS = ("IQM", "Mean", "Optimality gap")
#: A mean learning curve across seeds with its confidence band: timesteps, mean, lower, upper.
CurveBand = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def mean_of_last(returns: list[float], count: int = SCORE_EPISODES) -> float | None:
    """Mean of the last ``count`` values (all of them if fewer), ``None`` if there are none."""
    if not returns:
        return None
    return float(np.mean(returns[-count:]))


def learning_curve(
    end_steps: list[int], returns: list[float], timesteps: int, points: int, window: int = SCORE_EPISODES
) -> dict[str, list[Any]]:
    """
    The learning curve at ``points`` evenly spaced budgets t_k = k·timesteps/points: at each, the mean return of the
    last ``window`` episodes finished by t_k (``None`` before the first episode) and how many had finished.
    The last point is the end of training, where the value is the run's score.

    :param end_steps: timestep at which each episode finished, non-decreasing
    :param returns: return of each episode
    :param timesteps: the training budget (the number of steps actually done, which may be a little more)
    :param points: number of points
    :param window: episodes averaged at each point
    """
    checkpoints = [round(timesteps * k / points) for k in range(1, points + 1)]
    # Episodes ending after the budget (the last rollout overshoots it) count at the last point.
    finished = np.searchsorted(np.asarray(end_steps), checkpoints, side="right")
    finished[-1] = len(returns)
    values = [mean_of_last(returns[:count], window) for count in finished]
    return {"timesteps": checkpoints, "mean_return": values, "episodes": [int(count) for count in finished]}


@dataclass(frozen=True)
class Normalization:
    """
    Per-env constants: ``normalized = (score - random) / (best - random)``.

    :param random: score of the uniformly random policy
    :param best: best single-run score of the study on this env
    :param best_run: run id of that run
    """

    random: float
    best: float
    best_run: str

    @property
    def valid(self) -> bool:
        """Whether the best result beats the random policy (else there is no scale to normalise with)."""
        return self.best > self.random

    def __call__(self, score: float) -> float:
        return (score - self.random) / (self.best - self.random) if self.valid else math.nan


def is_scored(result: dict[str, Any]) -> bool:
    """Whether a result has a score that counts (status ok or diverged, at least one finished episode)."""
    return result.get("status") in SCORED_STATUSES and result.get("score") is not None


def is_objective_run(result: dict[str, Any]) -> bool:
    """Whether a result is of an objective configuration: its hyperparameters set ``objective`` (a baseline's do not)."""
    return "objective" in result["config"]["hyperparams"]


def normalization_constants(results: Sequence[dict[str, Any]], random_scores: dict[str, float]) -> dict[str, Normalization]:
    """
    Normalisation constants of every env that has scored runs and a random-policy score.

    :param results: run results (``config.env_id``, ``config.algo``, ``score``, ``status``)
    :param random_scores: random-policy score per env
    """
    constants = {}
    for env_id, random_score in random_scores.items():
        scored = [result for result in results if result["config"]["env_id"] == env_id and is_scored(result)]
        candidates = [result for result in scored if is_objective_run(result)] or scored
        if candidates:
            best = max(candidates, key=lambda result: result["score"])
            constants[env_id] = Normalization(random_score, float(best["score"]), best["run_id"])
    return constants


def normalized_score(result: dict[str, Any], constants: dict[str, Normalization]) -> float | None:
    """A run's normalised score, ``None`` if it has no score or its env no valid constants."""
    normalization = constants.get(result["config"]["env_id"])
    if not is_scored(result) or normalization is None or not normalization.valid:
        return None
    return normalization(float(result["score"]))


@dataclass
class MethodSummary:
    """
    One row of the comparison table.

    :param method: method label
    :param normalized: normalised score per (env, seed)
    :param raw: score (mean return of the last 100 training episodes) per (env, seed)
    :param evaluation: final deterministic evaluation return per (env, seed)
    :param runs: number of results (any status)
    :param failed: run ids that failed (no score)
    :param diverged: run ids that stopped on a non-finite loss (scored on their episodes before it)
    """

    method: str
    normalized: dict[tuple[str, int], float] = field(default_factory=dict)
    raw: dict[tuple[str, int], float] = field(default_factory=dict)
    evaluation: dict[tuple[str, int], float] = field(default_factory=dict)
    runs: int = 0
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)

    @property
    def mean_normalized(self) -> float | None:
        """Table 1 value: the mean normalised score over all runs (envs × seeds)."""
        return float(np.mean(list(self.normalized.values()))) if self.normalized else None

    def per_env(self, values: dict[tuple[str, int], float], env_id: str) -> list[float]:
        """The values of one env, ordered by seed."""
        return [value for (env, _), value in sorted(values.items()) if env == env_id]

    def matrix(self, envs: Sequence[str]) -> np.ndarray:
        """
        rliable's (runs × tasks) matrix of normalised scores: one row per seed that has a normalised score on every env
        (an incomplete seed is left out, since rliable needs a full matrix).
        """
        seeds = sorted({seed for _, seed in self.normalized})
        complete = [seed for seed in seeds if all((env, seed) in self.normalized for env in envs)]
        return np.array([[self.normalized[(env, seed)] for env in envs] for seed in complete], dtype=float).reshape(
            len(complete), len(envs)
        )


def summarize(results: Sequence[dict[str, Any]], constants: dict[str, Normalization]) -> dict[str, MethodSummary]:
    """Per-method summaries of the results (in the order the methods first appear)."""
    summaries: dict[str, MethodSummary] = {}
    for result in results:
        config = result["config"]
        summary = summaries.setdefault(config["method"], MethodSummary(config["method"]))
        key = (config["env_id"], int(config["seed"]))
        summary.runs += 1
        if result.get("status") == "failed":
            summary.failed.append(result["run_id"])
            continue
        if result.get("status") == "diverged":
            summary.diverged.append(result["run_id"])
        if is_scored(result):
            summary.raw[key] = float(result["score"])
            normalized = normalized_score(result, constants)
            if normalized is not None:
                summary.normalized[key] = normalized
        if result.get("eval_mean") is not None:
            summary.evaluation[key] = float(result["eval_mean"])
    return summaries


def _interval_estimates(scores: dict[str, np.ndarray], aggregate: Any, reps: int, seed: int, confidence: float) -> Any:
    """
    rliable's stratified-bootstrap interval estimates, reproducible: rliable draws its resampling indices from NumPy's
    global generator whatever ``random_state`` it is given, so the generator is seeded for the call and restored.
    """
    from rliable import library  # imported on use: it pulls in arch and scipy

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return library.get_interval_estimates(scores, aggregate, reps=reps, confidence_interval_size=confidence)
    finally:
        np.random.set_state(state)


def _aggregates(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_optimality_gap(scores)])


def aggregate_intervals(
    matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """
    rliable's IQM, mean and optimality gap (threshold 1) with stratified-bootstrap confidence intervals.

    :param matrices: per method, normalised scores of shape (runs, tasks); methods with no complete run are skipped
    :param reps: bootstrap resamples
    :param seed: bootstrap seed (results are reproducible)
    :param confidence: coverage of the intervals
    :return: per method, per metric name: (point estimate, lower, upper)
    """
    usable = {method: matrix for method, matrix in matrices.items() if matrix.size > 0}
    if not usable:
        return {}
    points, intervals = _interval_estimates(usable, _aggregates, reps, seed, confidence)
    return {
        method: {
            name: (float(points[method][index]), float(intervals[method][0, index]), float(intervals[method][1, index]))
            for index, name in enumerate(AGGREGATE_METRICS)
        }
        for method in usable
    }


def curve_band(curves: Sequence[dict[str, list[Any]]], reps: int = 2000, seed: int = 0, confidence: float = 0.95) -> CurveBand:
    """
    Mean learning curve across seeds with a pointwise stratified-bootstrap confidence interval (rliable).

    :param curves: the runs' stored curves (same ``timesteps`` points); points before every run has finished an
        episode are dropped
    :return: timesteps, mean, lower, upper
    """
    timesteps = np.asarray(curves[0]["timesteps"], dtype=float)
    values = np.array([[np.nan if v is None else v for v in curve["mean_return"]] for curve in curves], dtype=float)
    keep = ~np.isnan(values).any(axis=0)
    timesteps, values = timesteps[keep], values[:, keep]
    if values.shape[1] == 0:
        empty = np.empty(0)
        return empty, empty, empty, empty
    # rliable's layout: (runs, tasks, points) with a single task; the aggregate is the mean over runs at each point.
    points, intervals = _interval_estimates(
        {"curve": values[:, None, :]}, lambda scores: scores.mean(axis=(0, 1)), reps, seed, confidence
    )
    return timesteps, points["curve"], intervals["curve"][0], intervals["curve"][1]


def family_ranking(summaries: dict[str, MethodSummary], families: dict[str, str]) -> list[tuple[str, str, float]]:
    """
    Each objective family's best configuration by mean normalised score, best family first (baselines excluded).

    :param summaries: per-method summaries
    :param families: method label → family (objective name, or ``"baseline"``)
    :return: (family, best method, its mean normalised score)
    """
    best: dict[str, tuple[str, float]] = {}
    for method, summary in summaries.items():
        family, value = families.get(method, "baseline"), summary.mean_normalized
        if family == "baseline" or value is None:
            continue
        if family not in best or value > best[family][1]:
            best[family] = (method, value)
    return sorted(((family, method, value) for family, (method, value) in best.items()), key=lambda row: -row[2])
