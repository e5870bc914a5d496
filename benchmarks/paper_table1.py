"""
Figures for docs/paper_table1.md, read from finished comparison studies (nothing is trained here).

    python benchmarks/paper_table1.py [--study benchmarks/results/paper_seven]
        [--settings benchmarks/results/paper_baselines benchmarks/results/paper_obs_norm ...]
        [--reference benchmarks/results/paper_reduced] [--rerun /tmp/repro]

Prints Markdown:

- per task, each objective's score (mean return of the last 100 training episodes, mean over seeds) beside the
  paper's Figure 3 end point for clip;
- the step-budget check: each objective's score at half the budget and at the end, averaged over seeds (does the
  curve still climb at 300k steps, where the paper trained 1M?); per row, the normalised gain over the last fifth of
  the budget, and per task the fraction of the budget clip (ε = 0.2) needed to reach the row's final score;
- the studies of other settings (ppo1's, `paper-baselines`, and single settings of it added to the `paper` preset with
  `-params`) beside the paper-preset study on their shared tasks and objectives: the ordering of the objectives on
  each task, and each objective's normalised score with constants shared by all these studies (random policy 0, best
  run of any setting 1), with rliable's IQM and its 95% CI; and how far runs end below the best point of their own
  curve;
- runs that the reference study also made (same env, objective and seed): whether their scores are identical; and
  with --rerun, runs of the study made again: score, evaluation and where their learning curves first differ;
- the cost: core-hours of the study (in all and per day the runs finished), and of the full Table 1 (11 rows x 7
  tasks x 3 seeds x 1M steps) at the measured seconds per step of each task;
- for a study extended with more rows: its first command's rows normalised among themselves and among all rows;
- Table 1 from `summary.json` beside the paper's, Spearman's rank correlation of our row means with the paper's (all
  rows, without `none`, each seed alone, a bootstrap over seeds, each row left out) and per family of settings
  whether the paper's best setting is ours.
"""

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sb3_ppo_variants.compare import storage
from sb3_ppo_variants.compare.metrics import aggregate_intervals, normalization_constants, summarize
from sb3_ppo_variants.compare.report import paper_scores

#: The full Table 1: its 11 objective configurations, 3 seeds, 1M steps per run.
FULL_ROWS, FULL_SEEDS, FULL_STEPS = 11, 3, 1_000_000


def by_env_method(results: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """env -> method -> results (finished runs only), seeds in order."""
    table: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for result in sorted(results, key=lambda r: r["run_id"]):
        if result.get("status") == "ok":
            config = result["config"]
            table[config["env_id"]][config["method"]].append(result)
    return table


def curve_score(result: dict[str, Any], fraction: float) -> float:
    """The curve's mean return (last 100 episodes) at the first point at or past ``fraction`` of the budget."""
    curve, budget = result["curve"], result["config"]["timesteps"]
    index = next(i for i, steps in enumerate(curve["timesteps"]) if steps >= fraction * budget)
    return float(curve["mean_return"][index])


def ordering(scores: dict[str, float]) -> str:
    return " > ".join(f"{method} ({score:.1f})" for method, score in sorted(scores.items(), key=lambda item: -item[1]))


def per_task(table: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    figure3 = paper_scores()["figure3_clip"]
    methods = sorted({method for methods in table.values() for method in methods})
    lines = [
        "| task | " + " | ".join(f"`{m}`" for m in methods) + " | paper Fig. 3, clip, 1M steps (v1) |",
        "|---" * (len(methods) + 2) + "|",
    ]
    for env_id in sorted(table):
        cells = []
        for method in methods:
            scores = [r["score"] for r in table[env_id].get(method, [])]
            cells.append(" / ".join(f"{s:.1f}" for s in scores) if scores else "—")
        lines.append(f"| {env_id} | " + " | ".join(cells) + f" | {figure3.get(env_id.split('-')[0], '—')} |")
    return lines


def budget_check(table: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    lines = ["| task | objective | score at 50% of the budget | at 100% | change |", "|---|---|---|---|---|"]
    for env_id in sorted(table):
        for method, results in sorted(table[env_id].items()):
            half = float(np.mean([curve_score(r, 0.5) for r in results]))
            full = float(np.mean([curve_score(r, 1.0) for r in results]))
            lines.append(f"| {env_id} | `{method}` | {half:.1f} | {full:.1f} | {full - half:+.1f} |")
    return lines


def shared_methods(results: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The objectives every study ran (the settings studies ran 4 of the paper study's 11 rows)."""
    return set.intersection(*({r["config"]["method"] for r in runs} for runs in results.values()))


def settings_beside(tables: dict[str, dict[str, dict[str, list[dict[str, Any]]]]]) -> list[str]:
    """Per task shared by every study, each study's ordering of the objectives they all ran (mean score over seeds)."""
    shared = set.intersection(*({m for methods in table.values() for m in methods} for table in tables.values()))
    lines = ["| task | settings | ordering (score, mean over seeds) | runs |", "|---|---|---|---|"]
    for env_id in sorted(set.intersection(*(set(table) for table in tables.values()))):
        for name, table in tables.items():
            rows = {m: rs for m, rs in table[env_id].items() if m in shared}
            scores = {m: float(np.mean([r["score"] for r in rs])) for m, rs in rows.items()}
            runs = sum(len(rs) for rs in rows.values())
            lines.append(f"| {env_id} | {name} | {ordering(scores)} | {runs} |")
    return lines


def random_scores(study: Path, envs: list[str]) -> dict[str, float]:
    """The random policy's score of each env, from the study's cached measurement."""
    return {env_id: storage.read_json(storage.random_path(study, env_id))["mean"] for env_id in envs}


def settings_normalized(studies: dict[str, Path]) -> list[str]:
    """
    Each objective's normalised score under each setting, on the tasks and objectives every study ran, with one set of
    constants for all of them (the random policy of the first study, the best of these runs), so that settings can be
    compared.
    """
    results = {name: storage.load_results(path) for name, path in studies.items()}
    envs = sorted(set.intersection(*({r["config"]["env_id"] for r in rs} for rs in results.values())))
    shared = shared_methods(results)
    pooled = []
    for name, runs in results.items():
        for result in runs:
            if result["config"]["env_id"] in envs and result["config"]["method"] in shared:
                config = {**result["config"], "method": f"{name}|{result['config']['method']}"}
                pooled.append({**result, "config": config, "run_id": f"{name}/{result['run_id']}"})
    constants = normalization_constants(pooled, random_scores(next(iter(studies.values())), envs))
    summaries = summarize(pooled, constants)
    intervals = aggregate_intervals({label: summary.matrix(envs) for label, summary in summaries.items()}, reps=10_000)
    methods = sorted({label.split("|")[1] for label in summaries})
    best = ", ".join(f"{env_id} {constants[env_id].best:.1f} ({constants[env_id].best_run})" for env_id in envs)
    lines = [
        f"Tasks: {', '.join(envs)}. Random policy 0, best run of any setting 1: {best}.",
        "Cells: mean normalised score over tasks x seeds (runs), then IQM [95% CI] over the complete seeds.",
        "",
        "| objective | " + " | ".join(studies) + " |",
        "|---" * (len(studies) + 1) + "|",
    ]
    for method in methods:
        cells = []
        for name in studies:
            label = f"{name}|{method}"
            summary, interval = summaries.get(label), intervals.get(label, {}).get("IQM")
            if summary is None or summary.mean_normalized is None:
                cells.append("—")
                continue
            cell = f"{summary.mean_normalized:.2f} ({len(summary.normalized)})"
            if interval is not None:
                cell += f", {interval[0]:.2f} [{interval[1]:.2f}, {interval[2]:.2f}]"
            cells.append(cell)
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return lines


def late_drop(studies: dict[str, Path]) -> list[str]:
    """
    How far each run ends below the best point of its own learning curve, as a fraction of that best point's distance
    from the random policy (0: the run ends at its best): an objective without a trust region tends to learn, then fall
    back. Mean over the runs on the tasks and objectives every study ran, and how many runs end more than 10% below
    their best.
    """
    results = {name: storage.load_results(path) for name, path in studies.items()}
    tables = {name: by_env_method(runs) for name, runs in results.items()}
    envs = sorted(set.intersection(*(set(table) for table in tables.values())))
    random = random_scores(next(iter(studies.values())), envs)
    methods = sorted(shared_methods(results))
    lines = ["| objective | " + " | ".join(studies) + " |", "|---" * (len(studies) + 1) + "|"]
    for method in methods:
        cells = []
        for table in tables.values():
            drops = [
                (max(r["curve"]["mean_return"]) - curve_score(r, 1.0)) / (max(r["curve"]["mean_return"]) - random[env_id])
                for env_id in envs
                for r in table[env_id].get(method, [])
            ]
            cells.append(f"{np.mean(drops):.2f} ({sum(d > 0.1 for d in drops)}/{len(drops)})" if drops else "—")
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return lines


def reproduction(study: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[str]:
    earlier = {r["run_id"]: r for r in reference if r.get("status") == "ok"}
    same = [r for r in study if r["run_id"] in earlier]
    identical = [r["run_id"] for r in same if r["score"] == earlier[r["run_id"]]["score"]]
    different = [
        f"{r['run_id']} ({r['score']:.3f} vs {earlier[r['run_id']]['score']:.3f})"
        for r in same
        if r["run_id"] not in identical
    ]
    lines = [f"{len(same)} runs of this study were also made by the reference study: {len(identical)} identical scores."]
    if different:
        lines.append("Different: " + ", ".join(different))
    return lines


def rerun_check(study: list[dict[str, Any]], rerun: list[dict[str, Any]]) -> list[str]:
    """
    Runs made again (same env, objective and seed, e.g. by later code into a throw-away ``--out``) against the study's:
    whether score, evaluation and learning curve are identical, and if not, where the curves first differ by more than
    the stored precision (relative 1e-6).
    """
    stored = {r["run_id"]: r for r in study if r.get("status") == "ok"}
    lines = [
        "| run | score, study / again | evaluation, study / again | curves | versions, study / again |",
        "|---|---|---|---|---|",
    ]
    for again in sorted((r for r in rerun if r["run_id"] in stored), key=lambda r: r["run_id"]):
        first = stored[again["run_id"]]
        ca, cb = first["curve"], again["curve"]
        differ = [
            i
            for i, (x, y, ex, ey) in enumerate(
                zip(ca["mean_return"], cb["mean_return"], ca["episodes"], cb["episodes"], strict=True)
            )
            if ex != ey or (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-6 * max(1.0, abs(x)))
        ]
        inexact = (
            next(i for i, (x, y) in enumerate(zip(ca["mean_return"], cb["mean_return"], strict=True)) if x != y)
            if ca != cb
            else None
        )
        if inexact is None:
            curves = "identical"
        elif not differ:
            curves = f"not identical from {ca['timesteps'][inexact]} steps, equal within 1e-6 (relative)"
        else:
            curves = (
                f"not identical from {ca['timesteps'][inexact]} steps, equal within 1e-6 (relative) up to "
                f"{ca['timesteps'][differ[0] - 1] if differ[0] else 0} steps, then diverge"
            )
        changed = sorted(
            k for k in set(first["versions"]) | set(again["versions"]) if first["versions"].get(k) != again["versions"].get(k)
        )
        versions = ", ".join(f"{k} {first['versions'].get(k)} / {again['versions'].get(k)}" for k in changed) or "same"
        lines.append(
            f"| {again['run_id']} | {first['score']:.2f} / {again['score']:.2f} | {first['eval_mean']:.1f} / "
            f"{again['eval_mean']:.1f} | {curves} | {versions} |"
        )
    return lines


def cost(results: list[dict[str, Any]]) -> list[str]:
    finished = [r for r in results if r.get("status") == "ok"]
    hours = sum(r["wall_time"] for r in finished) / 3600
    per_env: dict[str, list[float]] = defaultdict(list)
    for r in finished:
        per_env[r["config"]["env_id"]].append(r["wall_time"] / r["num_timesteps"])
    seconds_per_step = {env_id: float(np.mean(values)) for env_id, values in per_env.items()}
    full_hours = sum(FULL_ROWS * FULL_SEEDS * FULL_STEPS * s for s in seconds_per_step.values()) / 3600
    lines = [
        f"{len(finished)} runs, {hours:.2f} core-hours (sum of the runs' wall times, one core each).",
        "",
        "| task | µs per step (mean over runs) | full Table 1 on this task (33 runs x 1M steps), core-hours |",
        "|---|---|---|",
    ]
    for env_id, s in sorted(seconds_per_step.items()):
        lines.append(f"| {env_id} | {s * 1e6:.0f} | {FULL_ROWS * FULL_SEEDS * FULL_STEPS * s / 3600:.1f} |")
    lines.append(f"| all {len(seconds_per_step)} tasks | | **{full_hours:.1f}** |")
    return lines


def cost_by_day(results: list[dict[str, Any]]) -> list[str]:
    """
    The cost of the runs finished on each day (a study extended later, e.g. with more rows, ran in batches on
    different code and machine load): runs, core-hours and µs per step per task.
    """
    finished = [r for r in results if r.get("status") == "ok"]
    days = sorted({r["finished_at"][:10] for r in finished})
    envs = sorted({r["config"]["env_id"] for r in finished})
    lines = [
        "| finished on | runs | rows | core-hours | "
        + " | ".join(f"{e}, µs/step" for e in envs)
        + " | full Table 1 at these speeds, core-hours |",
        "|---" * (len(envs) + 5) + "|",
    ]
    for day in days:
        batch = [r for r in finished if r["finished_at"][:10] == day]
        rows = sorted({r["config"]["method"] for r in batch})
        cells, seconds = [], []
        for env_id in envs:
            steps = [r["wall_time"] / r["num_timesteps"] for r in batch if r["config"]["env_id"] == env_id]
            cells.append(f"{np.mean(steps) * 1e6:.0f}" if steps else "—")
            seconds.append(float(np.mean(steps)) if steps else math.nan)
        hours = sum(r["wall_time"] for r in batch) / 3600
        full = FULL_ROWS * FULL_SEEDS * FULL_STEPS * sum(seconds) / 3600
        lines.append(f"| {day} | {len(batch)} | {len(rows)} | {hours:.2f} | " + " | ".join(cells) + f" | {full:.1f} |")
    return lines


#: Table 1's three families of settings: the spec prefix of each.
FAMILIES = {"clip ε": "clip:", "adaptive KL d_targ": "adaptive_kl:", "fixed KL β": "fixed_kl:"}


def rank_agreement(methods: dict[str, dict[str, Any]]) -> list[str]:
    """
    Our row means against the paper's: Spearman's rank correlation with its p-value (all rows, and without ``none``,
    which alone can drive it), and per family whether the paper's best setting is ours and how wide each spread is.

    :param methods: ``summary.json``'s ``methods`` (mean normalised score and the paper's Table 1 value per row)
    """
    from scipy.stats import spearmanr

    rows = {
        name: (entry["mean_normalized_score"], entry["paper_table1"])
        for name, entry in methods.items()
        if entry.get("mean_normalized_score") is not None and entry.get("paper_table1") is not None
    }
    lines = []
    for label, names in (("all rows", list(rows)), ("without `none`", [name for name in rows if name != "none"])):
        if len(names) < 3:
            continue
        result = spearmanr([rows[name][0] for name in names], [rows[name][1] for name in names])
        lines.append(f"- Spearman ρ, {label} ({len(names)}): {result.statistic:.2f} (p = {result.pvalue:.3f})")
    for family, prefix in FAMILIES.items():
        members = {name: scores for name, scores in rows.items() if name.startswith(prefix)}
        if len(members) < 2:
            continue
        ours, paper = max(members, key=lambda n: members[n][0]), max(members, key=lambda n: members[n][1])
        spread = [max(v[i] for v in members.values()) - min(v[i] for v in members.values()) for i in (0, 1)]
        verdict = "the same" if ours == paper else "differs"
        lines.append(
            f"- {family}: best setting ours `{ours}`, paper's `{paper}` ({verdict}); spread over settings "
            f"ours {spread[0]:.2f}, paper's {spread[1]:.2f} ({len(members)} settings)"
        )
    return lines


def rank_robustness(results: list[dict[str, Any]], paper: dict[str, float], reps: int = 10_000) -> list[str]:
    """
    How much Spearman's ρ between our row means and the paper's rests on the seeds and on single rows: ρ of each seed
    alone; a bootstrap over seeds (in every task x row cell, the seeds are drawn with replacement, the normalisation
    constants kept), its median and 95% percentile interval; and ρ with each row left out in turn.

    :param results: the study's runs, with their ``normalized_score`` (from ``runs.csv``, the study's constants)
    :param paper: the paper's Table 1 value per row
    """
    from scipy.stats import spearmanr

    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(results, key=lambda r: r["run_id"]):
        if r["method"] in paper:
            cells[r["method"]][r["env_id"]].append(r["normalized_score"])
    rows = sorted(cells)
    envs = sorted({env_id for row in cells.values() for env_id in row})
    # array (rows, tasks, seeds) of normalised scores
    scores = np.array([[cells[row][env_id] for env_id in envs] for row in rows], dtype=float)
    paper_values = np.array([paper[row] for row in rows])
    rng = np.random.default_rng(0)
    lines = [
        "| rows | ρ, both seeds | ρ, seed 0 only | ρ, seed 1 only | seed bootstrap: median [95% interval] | ρ > 0 in |",
        "|---|---|---|---|---|---|",
    ]
    for label, keep in (("all 11", [True] * len(rows)), ("without `none`", [row != "none" for row in rows])):
        keep = np.array(keep)
        sub, ref = scores[keep], paper_values[keep]
        rho = spearmanr(sub.mean(axis=(1, 2)), ref).statistic
        per_seed = [spearmanr(sub[:, :, seed].mean(axis=1), ref).statistic for seed in range(sub.shape[2])]
        draws = rng.integers(0, sub.shape[2], size=(reps, *sub.shape))
        boot_means = np.take_along_axis(np.broadcast_to(sub, draws.shape), draws, axis=3).mean(axis=(2, 3))
        boot = np.array([spearmanr(means, ref).statistic for means in boot_means])
        low, mid, high = np.percentile(boot, [2.5, 50, 97.5])
        lines.append(
            f"| {label} ({keep.sum()}) | {rho:.2f} | "
            + " | ".join(f"{v:.2f}" for v in per_seed)
            + f" | {mid:.2f} [{low:.2f}, {high:.2f}] | {np.mean(boot > 0):.1%} |"
        )
    lines += ["", "Left out in turn (all 11 rows less one):", ""]
    means = scores.mean(axis=(1, 2))
    for index, row in enumerate(rows):
        keep = np.arange(len(rows)) != index
        result = spearmanr(means[keep], paper_values[keep])
        lines.append(f"- without `{row}`: ρ = {result.statistic:.2f} (p = {result.pvalue:.3f})")
    return lines


def earlier_rows_moved(study: Path, results: list[dict[str, Any]], reps: int = 10_000) -> list[str]:
    """
    The rows of the study's first command (a study extended later with more rows) normalised two ways: among
    themselves (the best run of these rows = 1, as the study's report was before the extension) and among all rows;
    and per task which run is the best (= 1) each way.
    """
    commands = storage.read_json(study / storage.STUDY)["commands"]
    first, last = commands[0]["methods"], commands[-1]["methods"]
    finished = [r for r in results if r.get("status") == "ok"]
    envs = sorted({r["config"]["env_id"] for r in finished})
    random = random_scores(study, envs)
    earlier = [r for r in finished if r["config"]["method"] in first]
    constants = {
        "among them": normalization_constants(earlier, random),
        "among all": normalization_constants(finished, random),
    }
    summaries = {
        "among them": summarize(earlier, constants["among them"]),
        "among all": summarize(finished, constants["among all"]),
    }
    # the rows in the order each report had them, so that the bootstrap draws (and intervals) are the reports'
    intervals = {
        name: aggregate_intervals({m: summaries[name][m].matrix(envs) for m in rows}, reps=reps)
        for name, rows in (("among them", first), ("among all", last))
    }
    lines = [
        f"Rows: {', '.join(f'`{m}`' for m in first)}. Cells: mean normalised score, IQM [95% CI].",
        "",
        "| row | normalised among these rows | among all rows | change of the mean |",
        "|---|---|---|---|",
    ]
    for m in first:
        cells = []
        for name in constants:
            iqm = intervals[name][m]["IQM"]
            cells.append(f"{summaries[name][m].mean_normalized:.2f}, {iqm[0]:.2f} [{iqm[1]:.2f}, {iqm[2]:.2f}]")
        change = summaries["among all"][m].mean_normalized - summaries["among them"][m].mean_normalized
        lines.append(f"| `{m}` | " + " | ".join(cells) + f" | {change:+.2f} |")
    lines += ["", "| task | random policy | best among these rows | best among all rows |", "|---|---|---|---|"]
    for env_id in envs:
        them, every = constants["among them"][env_id], constants["among all"][env_id]
        lines.append(
            f"| {env_id} | {random[env_id]:.1f} | {them.best:.1f} ({them.best_run}) | {every.best:.1f} ({every.best_run}) |"
        )
    return lines


def late_slope(study: Path, results: list[dict[str, Any]], reference: str = "clip:0.2") -> list[str]:
    """
    Is each row still climbing at the end of the budget? Per row, the normalised gain over the last fifth of the
    budget (curve at 100% minus at 80%, with the study's constants), mean over tasks x seeds; and per task, the
    fraction of the budget at which the ``reference`` row's mean curve first reaches the row's final score (mean over
    seeds; "> 1" if it never does): below 1, the row at 300k is where the reference was earlier.
    """
    finished = [r for r in results if r.get("status") == "ok"]
    envs = sorted({r["config"]["env_id"] for r in finished})
    constants = normalization_constants(finished, random_scores(study, envs))
    table = by_env_method(finished)
    methods = sorted({m for env_id in envs for m in table[env_id]})

    def mean_curve(env_id: str, method: str) -> tuple[np.ndarray, np.ndarray]:
        runs = table[env_id][method]
        steps = np.array(runs[0]["curve"]["timesteps"], dtype=float)
        values = np.array([[np.nan if v is None else v for v in r["curve"]["mean_return"]] for r in runs], dtype=float)
        return steps / runs[0]["config"]["timesteps"], values.mean(axis=0)

    lines = [
        f"Columns per task: the fraction of the budget at which `{reference}` (mean over seeds) first reaches the row's",
        "final score.",
        "",
        "| row | normalised gain over the last fifth (mean, min, max over runs) | " + " | ".join(envs) + " |",
        "|---" * (len(envs) + 2) + "|",
    ]
    for method in methods:
        gains = [
            constants[env_id](curve_score(r, 1.0)) - constants[env_id](curve_score(r, 0.8))
            for env_id in envs
            for r in table[env_id][method]
        ]
        cells = []
        for env_id in envs:
            final = mean_curve(env_id, method)[1][-1]
            fraction, reference_curve = mean_curve(env_id, reference)
            reached = np.flatnonzero(reference_curve >= final)
            cells.append(f"{fraction[reached[0]]:.2f}" if reached.size else "> 1")
        lines.append(
            f"| `{method}` | {np.mean(gains):+.3f} ({min(gains):+.2f}, {max(gains):+.2f}) | " + " | ".join(cells) + " |"
        )
    return lines


def read_runs_csv(study: Path) -> list[dict[str, Any]]:
    import csv

    with open(study / "runs.csv", newline="") as handle:
        return [
            {**row, "normalized_score": float(row["normalized_score"])}
            for row in csv.DictReader(handle)
            if row["status"] == "ok"
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=Path("benchmarks/results/paper_seven"))
    parser.add_argument(
        "--settings",
        type=Path,
        nargs="*",
        default=[
            Path("benchmarks/results", name)
            for name in ("paper_baselines", "paper_obs_norm", "paper_lr_anneal", "paper_baselines_constant_lr")
        ],
        help="studies of the same grid with other settings (those that exist are shown)",
    )
    parser.add_argument("--reference", type=Path, default=Path("benchmarks/results/paper_reduced"))
    parser.add_argument(
        "--rerun", type=Path, default=None, help="a study folder with runs of --study made again (e.g. by later code)"
    )
    args = parser.parse_args()
    study = storage.load_results(args.study)
    table = by_env_method(study)
    sections = [
        ("Scores per task (seed 0 / seed 1)", per_task(table)),
        ("Step budget", budget_check(table)),
        ("Cost", cost(study)),
        ("Cost by day", cost_by_day(study)),
        ("Still climbing at the end", late_slope(args.study, study)),
    ]
    if (args.study / storage.STUDY).exists() and len(storage.read_json(args.study / storage.STUDY)["commands"]) > 1:
        sections.append(
            ("Rows of the first command, normalised among themselves and among all", earlier_rows_moved(args.study, study))
        )
    settings = [path for path in args.settings if path.is_dir()]
    if settings:
        studies = {args.study.name: args.study, **{path.name: path for path in settings}}
        tables = {name: by_env_method(storage.load_results(path)) for name, path in studies.items()}
        sections.insert(2, ("Other settings beside the paper's", settings_beside(tables)))
        sections.insert(3, ("Other settings, normalised together", settings_normalized(studies)))
        sections.insert(4, ("Late drop below each run's best point", late_drop(studies)))
        for path in settings:
            sections.append((f"Cost of {path.name}", cost(storage.load_results(path))))
    if args.reference.is_dir():
        sections.append(("Reproduction", reproduction(study, storage.load_results(args.reference))))
    if args.rerun is not None:
        sections.append(("Runs made again", rerun_check(study, storage.load_results(args.rerun))))
    for title, lines in sections:
        print(f"\n## {title}\n")
        print("\n".join(lines))
    summary = json.loads((args.study / "summary.json").read_text()) if (args.study / "summary.json").exists() else None
    if summary:
        print("\n## Table 1 (from summary.json)\n")
        print(
            "| method | ours | mean [95% CI] | IQM [95% CI] | paper | paper outside the mean's CI by |\n"
            "|---|---|---|---|---|---|"
        )
        for method, entry in summary["methods"].items():
            iqm, mean, paper = entry["aggregates"]["IQM"], entry["aggregates"]["Mean"], entry.get("paper_table1")
            outside = "—" if paper is None else f"{max(mean[1] - paper, paper - mean[2], 0.0):.2f}"
            print(
                f"| `{method}` | {entry['mean_normalized_score']:.2f} | {mean[0]:.2f} [{mean[1]:.2f}, {mean[2]:.2f}] "
                f"| {iqm[0]:.2f} [{iqm[1]:.2f}, {iqm[2]:.2f}] | {paper} | {outside} |"
            )
        print("\n## Ranks against the paper's\n")
        print("\n".join(rank_agreement(summary["methods"])))
        paper = {m: e["paper_table1"] for m, e in summary["methods"].items() if e.get("paper_table1") is not None}
        if (args.study / "runs.csv").exists() and len(paper) >= 4:
            print("\n## Rank correlation: seeds and single rows\n")
            print("\n".join(rank_robustness(read_runs_csv(args.study), paper)))


if __name__ == "__main__":
    main()
