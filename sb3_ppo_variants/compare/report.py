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
from dataclasses import dataclass, field
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
    SCORED_STATUSES,
    MethodSummary,
    Normalization,
    aggregate_intervals,
    family_ranking,
    is_objective_run,
    normalization_constants,
    normalized_score,
    summarize,
)
from sb3_ppo_variants.compare.specs import Method, StudyError, parse_method
from sb3_ppo_variants.compare.text import episode_return, interval, mean_std, number, table

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
    if not is_objective_run(result):
        return Method(label=label, algo=algo)
    try:
        return parse_method(label, algo)
    except StudyError:
        return Method(label=label, algo=algo, objective=label.split(":")[0])


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


@dataclass
class ReportData:
    """
    Everything the report shows, computed once from the study folder; the CSV, ``summary.json``, the plots and the
    Markdown are each written from it.

    :param out: study folder
    :param results: run results, by run id
    :param random: cached random-policy measurements by env id
    :param constants: normalisation constants by env id
    :param summaries: per-method summaries by label
    :param methods: the methods, in the paper's row order
    :param envs: env ids, sorted
    :param aggregates: rliable's aggregates per method label and metric
    :param published: the paper's numbers (:func:`paper_scores`)
    :param history: the commands recorded in ``study.json``
    :param figures: the written plots, relative to ``out``
    """

    out: Path
    results: list[dict[str, Any]]
    random: dict[str, dict[str, Any]]
    constants: dict[str, Normalization]
    summaries: dict[str, MethodSummary]
    methods: list[Method]
    envs: list[str]
    aggregates: dict[str, dict[str, tuple[float, float, float]]]
    published: dict[str, Any]
    history: list[dict[str, Any]]
    figures: list[str] = field(default_factory=list)


def report_data(out: Path, bootstrap_reps: int = 10_000, seed: int = 0) -> ReportData:
    """
    The report's data from the result files and cached random-policy scores of ``out``. An env without a
    random-policy score is not normalised.

    :param out: study folder
    :param bootstrap_reps: bootstrap resamples of the confidence intervals
    :param seed: bootstrap seed
    """
    results = sorted(storage.load_results(out), key=lambda result: result["run_id"])
    random = random_policy(out)
    constants = normalization_constants(results, {env_id: float(measured["mean"]) for env_id, measured in random.items()})
    summaries = summarize(results, constants)
    methods = sorted({result["config"]["method"]: method_of(result) for result in results}.values(), key=Method.sort_key)
    envs = sorted({result["config"]["env_id"] for result in results})
    aggregates = aggregate_intervals(
        {method.label: summaries[method.label].matrix(envs) for method in methods}, reps=bootstrap_reps, seed=seed
    )
    study_file = out / storage.STUDY
    history = storage.read_json(study_file)["commands"] if study_file.is_file() else []
    return ReportData(out, results, random, constants, summaries, methods, envs, aggregates, paper_scores(), history)


def write_report(out: Path, bootstrap_reps: int = 10_000, seed: int = 0) -> Path:
    """
    Rebuild every report file of the study folder (``runs.csv``, the plots, ``summary.json``, ``report.md``) from
    :func:`report_data`.

    :param out: study folder
    :param bootstrap_reps: bootstrap resamples of the confidence intervals
    :param seed: bootstrap seed
    :return: path of ``report.md``
    """
    data = report_data(Path(out), bootstrap_reps, seed)
    atomic_write_text(data.out / "runs.csv", _csv(data.results, data.constants))
    data.figures = _write_plots(data, bootstrap_reps)
    storage.write_json(data.out / "summary.json", _summary(data))
    return atomic_write_text(data.out / "report.md", markdown(data))


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


def _learning_curves(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """
    The scored runs' curves per env and method. A study folder may mix budgets on an env (e.g. a seed added later with
    another budget): only the most common (budget, curve points) of each env, so every averaged curve shares its x
    values.
    """
    grids: dict[str, Counter] = {}
    for result in results:
        config = result["config"]
        grids.setdefault(config["env_id"], Counter())[(config["timesteps"], config["curve_points"])] += 1
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for result in results:
        config = result["config"]
        shared_grid = grids[config["env_id"]].most_common(1)[0][0] == (config["timesteps"], config["curve_points"])
        if result.get("status") in SCORED_STATUSES and result.get("curve") and shared_grid:
            curves.setdefault(config["env_id"], {}).setdefault(config["method"], []).append(result["curve"])
    return curves


def _write_plots(data: ReportData, reps: int) -> list[str]:
    """Write the PNGs; return their paths relative to ``data.out``."""
    if not data.results:
        return []
    from sb3_ppo_variants.compare import plots  # matplotlib: imported when there is something to plot

    colors = plots.method_colors(data.methods)
    # Fewer resamples for the many pointwise curve intervals than for the table's.
    curves = _learning_curves(data.results)
    figures = plots.learning_curve_figures(data.envs, curves, data.methods, colors, reps=min(reps, 2000))
    if data.aggregates:
        figures["aggregate_metrics"] = plots.aggregate_figure(data.aggregates, data.methods, colors)
    # Overviews first, then one learning-curve figure per env.
    order = ["learning_curves", "aggregate_metrics"]
    written = []
    for stem, figure in sorted(figures.items(), key=lambda item: [*order, item[0]].index(item[0])):
        path = plots.save_figure(figure, data.out / storage.PLOTS / f"{stem}.png")
        written.append(str(path.relative_to(data.out)))
    return written


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _summary_row(data: ReportData, method: Method) -> dict[str, Any]:
    """One method's numbers in ``summary.json``."""
    summary = data.summaries[method.label]
    return {
        "title": method.title,
        "algo": method.algo,
        "mean_normalized_score": summary.mean_normalized,
        "paper_table1": data.published["table1"].get(method.label),
        "runs": summary.runs,
        "scored_runs": len(summary.raw),
        "failed": summary.failed,
        "diverged": summary.diverged,
        "aggregates": {name: list(values) for name, values in data.aggregates.get(method.label, {}).items()},
        "envs": {
            env_id: {  # per seed: runs.csv
                "mean_score": _mean(summary.per_env(summary.raw, env_id)),
                "mean_normalized": _mean(summary.per_env(summary.normalized, env_id)),
                "mean_eval_return": _mean(summary.per_env(summary.evaluation, env_id)),
            }
            for env_id in data.envs
        },
    }


def _summary(data: ReportData) -> dict[str, Any]:
    """The report's numbers in machine-readable form (``summary.json``)."""
    return {
        "definitions": {
            "score": f"mean return of the last {SCORE_EPISODES} training episodes",
            "normalized_score": "(score - random policy) / (best objective run of the study on the env - random policy)",
            "table_value": "mean normalized score over all runs of the method (envs x seeds)",
            "aggregates": "rliable IQM, mean, optimality gap (threshold 1) with 95% stratified-bootstrap CIs",
        },
        "normalization": {
            env_id: {"random": value.random, "best": value.best, "best_run": value.best_run, "valid": value.valid}
            for env_id, value in data.constants.items()
        },
        "methods": {method.label: _summary_row(data, method) for method in data.methods},
    }


def markdown(data: ReportData) -> str:
    """``report.md``: the commands, Table 1 beside the paper's, the per-env tables, the plots and the notes."""
    lines = ["# Objective comparison study", "", *_commands(data)]
    if not data.results:
        return "\n".join([*lines, "No finished runs yet.", ""])
    lines += [*_overview(data), *_table1(data), *_per_env(data)]
    if data.figures:
        lines += [PLOTS_HEADING, "", *(f"![{Path(figure).stem}]({figure})" for figure in data.figures), ""]
    return "\n".join([*lines, *_notes(data)])


def _commands(data: ReportData) -> list[str]:
    """The distinct commands that ran the study (a resumed study repeats its command) and their files."""
    commands = list(dict.fromkeys(entry["command"] for entry in data.history))
    if not commands:
        return []
    files = list(dict.fromkeys(_display_path(entry["hyperparams"]) for entry in data.history))
    return [
        "Command" + ("s" if len(commands) > 1 else "") + ":",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "Hyperparameters: " + ", ".join(files),
        "",
    ]


def _overview(data: ReportData) -> list[str]:
    """The grid, the statuses and the training time."""
    results = data.results
    seeds = sorted({int(result["config"]["seed"]) for result in results})
    budgets = sorted({int(result["config"]["timesteps"]) for result in results})
    statuses = {status: sum(result["status"] == status for result in results) for status in ("ok", "diverged", "failed")}
    wall_time = sum(result.get("wall_time") or 0.0 for result in results)
    return [
        f"{len(results)} runs: {len(data.envs)} env(s) × {len(data.methods)} method(s) × {len(seeds)} seed(s), "
        f"{' / '.join(f'{budget:,}' for budget in budgets)} steps per run; "
        f"{statuses['ok']} ok, {statuses['diverged']} diverged, {statuses['failed']} failed; "
        f"{wall_time / 3600:.2f} hours of training in total (sum of the runs' wall times, one core each). "
        f"Report written {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
    ]


def _table1(data: ReportData) -> list[str]:
    """Table 1: the mean normalised score of each method beside the paper's, rliable's aggregates, the ranking."""
    lines = [
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
    for method in data.methods:
        summary, aggregate = data.summaries[method.label], data.aggregates.get(method.label, {})
        rows.append(
            [
                method.title,
                f"`{method.label}`",
                f"**{number(summary.mean_normalized)}**",
                number(data.published["table1"].get(method.label)),
                *(interval(aggregate.get(name)) for name in AGGREGATE_METRICS),
                f"{len(summary.normalized)}/{summary.runs}",
            ]
        )
    header = ["Method", "Spec", "Ours", "Paper", "IQM [95% CI]", "Mean [95% CI]", "Optimality gap [95% CI]", "Runs"]
    lines += [*table(header, rows), ""]
    if any(method.is_baseline for method in data.methods):
        lines += [
            "Baselines are normalised with the objectives' constants (they do not set the best result), so they can "
            "exceed 1.",
            "",
        ]
    return lines + _ranking_lines(data.summaries, data.methods)


def _env_rows(data: ReportData, values: str, cell: Any) -> list[list[str]]:
    """One row per method: ``cell`` of the method's ``values`` (raw, normalized, evaluation) on each env."""
    rows = []
    for method in data.methods:
        summary = data.summaries[method.label]
        rows.append([f"`{method.label}`", *(cell(summary.per_env(getattr(summary, values), env)) for env in data.envs)])
    return rows


def _per_env(data: ReportData) -> list[str]:
    """Per env: the scores (with the normalisation constants and the paper's Figure 3), normalised, evaluation."""
    envs, constants, figure3 = data.envs, data.constants, data.published["figure3_clip"]
    scores = _env_rows(data, "raw", mean_std)
    scores.append(
        ["random policy (= 0)", *(episode_return(constants[env].random) if env in constants else "—" for env in envs)]
    )
    scores.append(["best run (= 1)", *(episode_return(constants[env].best) if env in constants else "—" for env in envs)])
    if any(env.split("-v")[0] in figure3 for env in envs):
        scores.append(
            ["paper Fig. 3, clip, 1M steps (≈, v1 tasks)", *(str(figure3.get(env.split("-v")[0], "—")) for env in envs)]
        )
    header = ["Method", *envs]
    return [
        "## Per environment",
        "",
        f"Score (mean return of the last {SCORE_EPISODES} training episodes), mean ± std over seeds.",
        "",
        *table(header, scores),
        "",
        "Normalised score, mean over seeds.",
        "",
        *table(header, _env_rows(data, "normalized", lambda values: number(_mean(values)))),
        "",
        "Final deterministic evaluation: mean return of the evaluation episodes after training (with the observation "
        "normalisation, if any, frozen), mean ± std over seeds.",
        "",
        *table(header, _env_rows(data, "evaluation", mean_std)),
        "",
    ]


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


def _notes(data: ReportData) -> list[str]:
    """Unnormalised envs, diverged, failed and short runs, where the numbers come from, the hyperparameters."""
    results, summaries, constants, random = data.results, data.summaries, data.constants, data.random
    lines = ["## Notes", ""]
    invalid = [env for env, value in constants.items() if not value.valid]
    if invalid:
        lines += [f"- No run beat the random policy on {', '.join(invalid)}: not normalised (left out of the table).", ""]
    unmeasured = sorted({result["config"]["env_id"] for result in results} - set(random))
    if unmeasured:
        lines += [f"- No random-policy score for {', '.join(unmeasured)} (rerun the study command): not normalised.", ""]
    episodes = " / ".join(str(count) for count in sorted({int(measured["episodes"]) for measured in random.values()}))
    for method in data.methods:
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
