"""
The study's report, rebuilt from the result files and the cached random-policy scores alone (``--report-only`` calls
only this; it runs no environment): ``runs.csv``, ``summary.json``, ``report.md`` with the Table-1-style table beside
the paper's published scores, and the plots.
"""

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markdown import Markdown

from sb3_ppo_variants.atomic import atomic_write_text
from sb3_ppo_variants.compare import storage
from sb3_ppo_variants.compare.metrics import (
    AGGREGATE_METRICS,
    SCORE_EPISODES,
    MethodSummary,
    Normalization,
    aggregate_intervals,
    family_ranking,
    normalization_constants,
    normalized_score,
    summarize,
)
from sb3_ppo_variants.compare.specs import Method, StudyError, parse_method

PAPER_SCORES_FILE = Path(__file__).with_name("paper_scores.json")
#: Columns of runs.csv.
CSV_COLUMNS = tuple(
    "run_id env_id method algo seed timesteps num_timesteps status score score_episodes normalized_score random_score "
    "best_score eval_mean eval_std final_kl_coef wall_time steps_per_second host fingerprint".split()
)
#: Headings that open and close the report's tables (what the terminal summary shows).
TABLES_HEADING = "## Average normalised score (Table 1 of the paper)"
PLOTS_HEADING = "## Plots"


def paper_scores() -> dict[str, Any]:
    """The paper's published numbers (Table 1 by spec, approximate Figure 3 end points of PPO clip by task)."""
    return json.loads(PAPER_SCORES_FILE.read_text())


def method_of(result: dict[str, Any]) -> Method:
    """The :class:`Method` of a stored result (an objective registered in another process keeps its bare name)."""
    label, algo = result["config"]["method"], result["config"]["algo"]
    if "objective" not in result["config"]["hyperparams"]:
        return Method(label=label, algo=algo)
    try:
        return parse_method(label, algo)
    except StudyError:
        return Method(label=label, algo=algo, objective=label.split(":")[0])


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _return(value: float, scale: float | None = None) -> str:
    """Returns of very different scales (Reacher −5, HalfCheetah 2000) with a precision that suits ``scale``."""
    return f"{value:.{1 if abs(value if scale is None else scale) >= 100 else 2}f}"


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "—"
    mean = float(np.mean(values))
    if len(values) == 1:
        return _return(mean)
    std = float(np.std(values))
    return f"{_return(mean, scale=max(abs(mean), std))} ± {_return(std, scale=max(abs(mean), std))}"


def _interval(aggregate: tuple[float, float, float] | None) -> str:
    if aggregate is None:
        return "—"
    point, low, high = aggregate
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _csv(results: Sequence[dict[str, Any]], constants: dict[str, Normalization]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        config = result["config"]
        normalization = constants.get(config["env_id"])
        row = {column: result.get(column) for column in CSV_COLUMNS}
        row.update(
            env_id=config["env_id"],
            method=config["method"],
            algo=config["algo"],
            seed=config["seed"],
            timesteps=config["timesteps"],
            normalized_score=normalized_score(result, constants),
            random_score=normalization.random if normalization else None,
            best_score=normalization.best if normalization else None,
        )
        writer.writerow(row)
    return buffer.getvalue()


def random_policy(out: Path) -> dict[str, dict[str, Any]]:
    """The cached random-policy measurements of the study folder by env id (written by the study before its runs)."""
    measurements = (storage.read_json(path) for path in sorted((out / storage.RANDOM).rglob("*.json")))
    return {measured["env_id"]: measured for measured in measurements}


def write_report(out: Path, bootstrap_reps: int = 10_000, seed: int = 0) -> Path:
    """
    Rebuild every report file of the study folder from its result files and cached random-policy scores. An env without
    a random-policy score is not normalised.

    :param out: study folder
    :param bootstrap_reps: bootstrap resamples of the confidence intervals
    :param seed: bootstrap seed
    :return: path of ``report.md``
    """
    out = Path(out)
    results = sorted(storage.load_results(out), key=lambda result: result["run_id"])
    random = random_policy(out)
    constants = normalization_constants(results, {env_id: float(measured["mean"]) for env_id, measured in random.items()})
    summaries = summarize(results, constants)
    methods = sorted({result["config"]["method"]: method_of(result) for result in results}.values(), key=Method.sort_key)
    envs = sorted({result["config"]["env_id"] for result in results})
    aggregates = aggregate_intervals(
        {method.label: summaries[method.label].matrix(envs) for method in methods}, reps=bootstrap_reps, seed=seed
    )
    published = paper_scores()

    atomic_write_text(out / "runs.csv", _csv(results, constants))
    figures = _write_plots(out, results, envs, methods, summaries, aggregates, published, bootstrap_reps)
    summary = _summary(envs, methods, summaries, constants, aggregates, published)
    storage.write_json(out / "summary.json", summary)
    markdown = _markdown(out, results, envs, methods, summaries, constants, aggregates, published, figures, random)
    return atomic_write_text(out / "report.md", markdown)


def print_tables(report: Path, console: Console) -> None:
    """
    Show the tables of a written report in the terminal: Table 1, per-env scores and final evaluation returns.

    :param report: path of ``report.md``
    :param console: where to print
    """
    text = Path(report).read_text()
    start = text.find(TABLES_HEADING)
    if start < 0:  # no finished runs yet
        return
    end = text.find(PLOTS_HEADING, start)
    console.print(Markdown(text[start : end if end >= 0 else len(text)]))


def _write_plots(
    out: Path,
    results: Sequence[dict[str, Any]],
    envs: Sequence[str],
    methods: Sequence[Method],
    summaries: dict[str, MethodSummary],
    aggregates: dict[str, dict[str, tuple[float, float, float]]],
    published: dict[str, Any],
    reps: int,
) -> list[str]:
    """Write the PNGs; return their paths relative to ``out``."""
    if not results:
        return []
    from sb3_ppo_variants.compare import plots  # matplotlib: imported when there is something to plot

    colors = plots.method_colors(methods)
    # A study folder may mix budgets on an env (e.g. a seed added later with another budget): plot the most common
    # (budget, curve points) of each env, so every averaged curve shares its x values.
    grids: dict[str, Counter] = {}
    for result in results:
        config = result["config"]
        grids.setdefault(config["env_id"], Counter())[(config["timesteps"], config["curve_points"])] += 1
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for result in results:
        config = result["config"]
        shared_grid = grids[config["env_id"]].most_common(1)[0][0] == (config["timesteps"], config["curve_points"])
        if result.get("status") in ("ok", "diverged") and result.get("curve") and shared_grid:
            curves.setdefault(config["env_id"], {}).setdefault(config["method"], []).append(result["curve"])
    # Fewer resamples for the many pointwise curve intervals than for the table's.
    figures = plots.learning_curve_figures(envs, curves, methods, colors, reps=min(reps, 2000))
    values: dict[str, float] = {}
    for method, summary in summaries.items():
        if summary.mean_normalized is not None:
            values[method] = summary.mean_normalized
    if values:
        intervals = {method: (aggregate["Mean"][1], aggregate["Mean"][2]) for method, aggregate in aggregates.items()}
        figures["normalized_scores"] = plots.normalized_score_figure(methods, values, intervals, published["table1"], colors)
    if aggregates:
        figures["aggregate_metrics"] = plots.aggregate_figure(aggregates, methods, colors)
    written = []
    # Overviews first, then one learning-curve figure per env.
    order = ["learning_curves", "normalized_scores", "aggregate_metrics"]
    for stem, figure in sorted(figures.items(), key=lambda item: [*order, item[0]].index(item[0])):
        path = plots.save_figure(figure, out / storage.PLOTS / f"{stem}.png")
        written.append(str(path.relative_to(out)))
    return written


def _summary(
    envs: Sequence[str],
    methods: Sequence[Method],
    summaries: dict[str, MethodSummary],
    constants: dict[str, Normalization],
    aggregates: dict[str, dict[str, tuple[float, float, float]]],
    published: dict[str, Any],
) -> dict[str, Any]:
    """The report's numbers in machine-readable form."""

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    rows = {}
    for method in methods:
        summary = summaries[method.label]
        rows[method.label] = {
            "title": method.title,
            "algo": method.algo,
            "mean_normalized_score": summary.mean_normalized,
            "paper_table1": published["table1"].get(method.label),
            "runs": summary.runs,
            "scored_runs": len(summary.raw),
            "failed": summary.failed,
            "diverged": summary.diverged,
            "aggregates": {name: list(values) for name, values in aggregates.get(method.label, {}).items()},
            "envs": {
                env_id: {
                    "scores": summary.per_env(summary.raw, env_id),
                    "normalized": summary.per_env(summary.normalized, env_id),
                    "eval_returns": summary.per_env(summary.evaluation, env_id),
                    "mean_score": mean(summary.per_env(summary.raw, env_id)),
                    "mean_normalized": mean(summary.per_env(summary.normalized, env_id)),
                    "mean_eval_return": mean(summary.per_env(summary.evaluation, env_id)),
                }
                for env_id in envs
            },
        }
    return {
        "definitions": {
            "score": f"mean return of the last {SCORE_EPISODES} training episodes",
            "normalized_score": "(score - random policy) / (best objective run of the study on the env - random policy)",
            "table_value": "mean normalized score over all runs of the method (envs x seeds)",
            "aggregates": "rliable IQM, mean, optimality gap (threshold 1) with 95% stratified-bootstrap CIs",
        },
        "normalization": {
            env_id: {"random": value.random, "best": value.best, "best_run": value.best_run, "valid": value.valid}
            for env_id, value in constants.items()
        },
        "methods": rows,
    }


def _markdown(
    out: Path,
    results: Sequence[dict[str, Any]],
    envs: Sequence[str],
    methods: Sequence[Method],
    summaries: dict[str, MethodSummary],
    constants: dict[str, Normalization],
    aggregates: dict[str, dict[str, tuple[float, float, float]]],
    published: dict[str, Any],
    figures: Sequence[str],
    random: dict[str, dict[str, Any]],
) -> str:
    study_file = out / storage.STUDY
    history = storage.read_json(study_file)["commands"] if study_file.is_file() else []
    # A resumed study repeats its command: show each distinct command once.
    commands = list(dict.fromkeys(entry["command"] for entry in history))
    files = list(dict.fromkeys(_display_path(entry["hyperparams"]) for entry in history))
    lines = ["# Objective comparison study", ""]
    if commands:
        lines += ["Command" + ("s" if len(commands) > 1 else "") + ":", "", "```bash", *commands, "```", ""]
        lines += ["Hyperparameters: " + ", ".join(files), ""]
    if not results:
        return "\n".join([*lines, "No finished runs yet.", ""])

    seeds = sorted({int(result["config"]["seed"]) for result in results})
    budgets = sorted({int(result["config"]["timesteps"]) for result in results})
    statuses = {status: sum(result["status"] == status for result in results) for status in ("ok", "diverged", "failed")}
    wall_time = sum(result.get("wall_time") or 0.0 for result in results)
    lines += [
        f"{len(results)} runs: {len(envs)} env(s) × {len(methods)} method(s) × {len(seeds)} seed(s), "
        f"{' / '.join(f'{budget:,}' for budget in budgets)} steps per run; "
        f"{statuses['ok']} ok, {statuses['diverged']} diverged, {statuses['failed']} failed; "
        f"{wall_time / 3600:.2f} hours of training in total (sum of the runs' wall times, one core each). "
        f"Report written {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        TABLES_HEADING,
        "",
        f"Score of a run: mean return of its last {SCORE_EPISODES} training episodes. Per env, normalised so that a "
        "uniformly random policy scores 0 and the best objective run of this study scores 1. **Ours** is the mean over "
        "all runs (envs × seeds), as in the paper's Table 1; beside it the paper's published value (7 MuJoCo tasks × 3 "
        "seeds, 1M steps — comparable only on that grid). IQM, mean and optimality gap (of the same normalised scores, "
        "threshold 1) are rliable's, with 95% stratified-bootstrap confidence intervals.",
        "",
    ]
    rows = []
    for method in methods:
        summary = summaries[method.label]
        aggregate = aggregates.get(method.label, {})
        runs = f"{len(summary.normalized)}/{summary.runs}"
        rows.append(
            [
                method.title,
                f"`{method.label}`",
                f"**{_number(summary.mean_normalized)}**",
                _number(published["table1"].get(method.label)),
                *(_interval(aggregate.get(name)) for name in AGGREGATE_METRICS),
                runs,
            ]
        )
    header = ["Method", "Spec", "Ours", "Paper", "IQM [95% CI]", "Mean [95% CI]", "Optimality gap [95% CI]", "Runs"]
    lines += [*_table(header, rows), ""]
    if any(method.is_baseline for method in methods):
        lines += [
            "Baselines are normalised with the objectives' constants (they do not set the best result), so they can "
            "exceed 1.",
            "",
        ]
    lines += _ranking_lines(summaries, methods)

    figure3 = published["figure3_clip"]
    lines += [
        "## Per environment",
        "",
        f"Score (mean return of the last {SCORE_EPISODES} training episodes), mean ± std over seeds.",
        "",
    ]

    def env_rows(values: str, cell: Any) -> list[list[str]]:
        """One row per method: ``cell`` of the method's ``values`` (raw, normalized, evaluation) on each env."""
        summary = {method.label: summaries[method.label] for method in methods}
        return [
            [f"`{label}`", *(cell(summary[label].per_env(getattr(summary[label], values), env)) for env in envs)]
            for label in summary
        ]

    scores = env_rows("raw", _mean_std)
    scores.append(["random policy (= 0)", *(_return(constants[env].random) if env in constants else "—" for env in envs)])
    scores.append(["best run (= 1)", *(_return(constants[env].best) if env in constants else "—" for env in envs)])
    if any(env.split("-v")[0] in figure3 for env in envs):
        scores.append(
            ["paper Fig. 3, clip, 1M steps (≈, v1 tasks)", *(str(figure3.get(env.split("-v")[0], "—")) for env in envs)]
        )
    lines += [*_table(["Method", *envs], scores), "", "Normalised score, mean over seeds.", ""]
    lines += [*_table(["Method", *envs], env_rows("normalized", lambda values: _number(_mean(values)))), ""]
    lines += [
        "Final deterministic evaluation: mean return of the evaluation episodes after training (with the observation "
        "normalisation, if any, frozen), mean ± std over seeds.",
        "",
        *_table(["Method", *envs], env_rows("evaluation", _mean_std)),
        "",
    ]

    if figures:
        lines += [PLOTS_HEADING, ""]
        lines += [f"![{Path(figure).stem}]({figure})" for figure in figures] + [""]
    lines += _notes(results, summaries, methods, constants, random)
    return "\n".join(lines)


def _display_path(path: str | None) -> str:
    """A hyperparameter file as the report shows it: files shipped with this package or rl_zoo3 by their package path."""
    if path is None:
        return "the algorithms' defaults (the paper's Table 3 for PPO)"
    import rl_zoo3

    import sb3_ppo_variants

    for package in (sb3_ppo_variants, rl_zoo3):
        folder = Path(str(package.__file__)).parent
        if Path(path).is_relative_to(folder):
            return f"`{Path(path).relative_to(folder.parent)}` (installed {package.__name__} {package.__version__})"
    return f"`{path}`"


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _ranking_lines(summaries: dict[str, MethodSummary], methods: Sequence[Method]) -> list[str]:
    """The objective families ranked by their best configuration, and whether the paper's ordering holds."""
    families = {method.label: method.family for method in methods}
    ranking = family_ranking(summaries, families)
    if len(ranking) < 2:
        return []
    order = " > ".join(f"{family} (best `{method}`: {value:.2f})" for family, method, value in ranking)
    lines = ["Objective families ranked by their best configuration: " + order + "."]
    best = {family: value for family, _, value in ranking}
    if all(family in best for family in ("clip", "adaptive_kl", "fixed_kl", "none")):
        holds = (
            best["clip"] > max(best["adaptive_kl"], best["fixed_kl"])
            and min(best["adaptive_kl"], best["fixed_kl"]) > best["none"]
        )
        lines.append(
            "The paper's ordering (clipping > adaptive KL and fixed KL > no clipping or penalty) "
            + ("**holds**" if holds else "**does not hold**")
            + " here."
        )
    return [*lines, ""]


def _notes(
    results: Sequence[dict[str, Any]],
    summaries: dict[str, MethodSummary],
    methods: Sequence[Method],
    constants: dict[str, Normalization],
    random: dict[str, dict[str, Any]],
) -> list[str]:
    lines = ["## Notes", ""]
    invalid = [env for env, value in constants.items() if not value.valid]
    if invalid:
        lines += [f"- No run beat the random policy on {', '.join(invalid)}: not normalised (left out of the table).", ""]
    unmeasured = sorted({result["config"]["env_id"] for result in results} - set(random))
    if unmeasured:
        lines += [f"- No random-policy score for {', '.join(unmeasured)} (rerun the study command): not normalised.", ""]
    episodes = " / ".join(str(count) for count in sorted({int(measured["episodes"]) for measured in random.values()}))
    for method in methods:
        summary = summaries[method.label]
        if summary.diverged:
            lines.append(
                f"- `{method.label}`: {len(summary.diverged)} run(s) stopped on a non-finite loss, scored on their episodes "
                f"before it: {', '.join(summary.diverged)}"
            )
        if summary.failed:
            lines.append(f"- `{method.label}`: {len(summary.failed)} run(s) failed (no score): {', '.join(summary.failed)}")
    short = [result["run_id"] for result in results if 0 < (result.get("score_episodes") or 0) < SCORE_EPISODES]
    if short:
        lines.append(f"- {len(short)} run(s) finished fewer than {SCORE_EPISODES} episodes; scored on all of them.")
    lines += [
        f"- Normalisation constants per env: random policy = mean return of {episodes} uniformly random episodes "
        "(`random_policy/<env>.json`); best = best single run among the objective configurations (`summary.json`).",
        "- Per-run results (config, learning curve, metrics, versions, wall time): `runs/<env>/<method>/seed_<n>.json`; "
        "all runs: `runs.csv`.",
        "",
        "<details><summary>Hyperparameters of each method (rl-zoo form; first env shown per distinct setting)</summary>",
        "",
    ]
    seen: dict[str, str] = {}
    for result in results:
        config = result["config"]
        text = json.dumps(config["hyperparams"], sort_keys=True)
        if seen.get(config["method"] + text) is None:
            seen[config["method"] + text] = config["env_id"]
            lines.append(f"- `{config['method']}` on {config['env_id']}: `{text}`")
    versions = results[-1].get("versions", {})
    lines += ["", "</details>", "", "Versions: " + ", ".join(f"{key} {value}" for key, value in versions.items()), ""]
    return lines
