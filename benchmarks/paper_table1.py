"""
Figures for docs/paper_table1.md, read from finished comparison studies (nothing is trained here).

    python benchmarks/paper_table1.py [--study benchmarks/results/paper_seven]
        [--settings benchmarks/results/paper_baselines benchmarks/results/paper_obs_norm ...]
        [--reference benchmarks/results/paper_reduced]

Prints Markdown:

- per task, each objective's score (mean return of the last 100 training episodes, mean over seeds) beside the
  paper's Figure 3 end point for clip;
- the step-budget check: each objective's score at half the budget and at the end, averaged over seeds (does the
  curve still climb at 300k steps, where the paper trained 1M?);
- the studies of other settings (ppo1's, `paper-baselines`, and single settings of it added to the `paper` preset with
  `-params`) beside the paper-preset study on their shared tasks: the ordering of the objectives on each task, and
  each objective's normalised score with constants shared by all these studies (random policy 0, best run of any
  setting 1), with rliable's IQM and its 95% CI; and how far runs end below the best point of their own curve;
- runs that the reference study also made (same env, objective and seed): whether their scores are identical;
- the cost: core-hours of the study, and of the full Table 1 (11 rows x 7 tasks x 3 seeds x 1M steps) at the measured
  seconds per step of each task.
"""

import argparse
import json
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


def settings_beside(tables: dict[str, dict[str, dict[str, list[dict[str, Any]]]]]) -> list[str]:
    """Per task shared by every study, each study's ordering of the objectives (mean score over seeds)."""
    lines = ["| task | settings | ordering (score, mean over seeds) | runs |", "|---|---|---|---|"]
    for env_id in sorted(set.intersection(*(set(table) for table in tables.values()))):
        for name, table in tables.items():
            scores = {m: float(np.mean([r["score"] for r in rs])) for m, rs in table[env_id].items()}
            runs = sum(len(rs) for rs in table[env_id].values())
            lines.append(f"| {env_id} | {name} | {ordering(scores)} | {runs} |")
    return lines


def random_scores(study: Path, envs: list[str]) -> dict[str, float]:
    """The random policy's score of each env, from the study's cached measurement."""
    return {env_id: storage.read_json(storage.random_path(study, env_id))["mean"] for env_id in envs}


def settings_normalized(studies: dict[str, Path]) -> list[str]:
    """
    Each objective's normalised score under each setting, on the tasks every study ran, with one set of constants for
    all of them (the random policy of the first study, the best run of any study), so that settings can be compared.
    """
    results = {name: storage.load_results(path) for name, path in studies.items()}
    envs = sorted(set.intersection(*({r["config"]["env_id"] for r in rs} for rs in results.values())))
    pooled = []
    for name, runs in results.items():
        for result in runs:
            if result["config"]["env_id"] in envs:
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
    back. Mean over the runs on the tasks every study ran, and how many runs end more than 10% below their best.
    """
    tables = {name: by_env_method(storage.load_results(path)) for name, path in studies.items()}
    envs = sorted(set.intersection(*(set(table) for table in tables.values())))
    random = random_scores(next(iter(studies.values())), envs)
    methods = sorted({method for table in tables.values() for env_id in envs for method in table[env_id]})
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
    args = parser.parse_args()
    study = storage.load_results(args.study)
    table = by_env_method(study)
    sections = [
        ("Scores per task (seed 0 / seed 1)", per_task(table)),
        ("Step budget", budget_check(table)),
        ("Cost", cost(study)),
    ]
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
    for title, lines in sections:
        print(f"\n## {title}\n")
        print("\n".join(lines))
    summary = json.loads((args.study / "summary.json").read_text()) if (args.study / "summary.json").exists() else None
    if summary:
        print("\n## Table 1 (from summary.json)\n")
        print("| method | ours | IQM [95% CI] | paper |\n|---|---|---|---|")
        for method, entry in summary["methods"].items():
            iqm = entry["aggregates"]["IQM"]
            print(
                f"| `{method}` | {entry['mean_normalized_score']:.2f} | {iqm[0]:.2f} [{iqm[1]:.2f}, {iqm[2]:.2f}] "
                f"| {entry.get('paper_table1')} |"
            )
        print("\n## Ranks against the paper's\n")
        print("\n".join(rank_agreement(summary["methods"])))


if __name__ == "__main__":
    main()
