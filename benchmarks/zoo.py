"""
Every objective through rl-zoo with the shipped hyperparameter file: ``python -m sb3_ppo_variants.zoo train``.

    python benchmarks/zoo.py [--envs CartPole-v1 Pendulum-v1 LunarLander-v3] [--seeds N] [--resume]

Runs one training at a time (each in its own process, 1 torch thread), with rl-zoo's defaults except
``--eval-episodes 10``. Figures of a run:

- ``final``: deterministic evaluation of the final saved model, 20 episodes, with the run's VecNormalize statistics
  (what ``enjoy --deterministic`` plays); the headline figure, as in rl-zoo's benchmark;
- ``eval_best`` / ``eval_last``: rl-zoo's EvalCallback mean reward (10 deterministic episodes every 25k steps),
  best and last evaluation.

Targets (rl-zoo benchmark, SB3 PPO): CartPole-v1 500 (100k steps), Pendulum-v1 >= -200 (100k), LunarLander-v3 >= 200
(1M, at least for clip). Results go to ``benchmarks/results/zoo.json`` and ``zoo.md`` after every run.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from common import RESULTS, save_results, versions
from rl_zoo3.utils import create_test_env, get_saved_hyperparams
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_ppo_variants import PPOVariant

OBJECTIVES = ("clip", "adaptive_kl", "fixed_kl", "none")
#: Seeds per env by default: more where a run is cheap.
DEFAULT_SEEDS = {"CartPole-v1": 3, "Pendulum-v1": 3, "LunarLander-v3": 1}
TARGETS = {"CartPole-v1": 500.0, "Pendulum-v1": -200.0, "LunarLander-v3": 200.0}
FINAL_EVAL_EPISODES = 20


def train(env_id: str, objective: str, seed: int, log_folder: Path, n_timesteps: int) -> tuple[Path, float]:
    """One zoo training run in a child process; returns its run folder and the CPU time it took."""
    command = [
        sys.executable,
        "-m",
        "sb3_ppo_variants.zoo",
        "train",
        "--algo",
        "ppo_variant",
        "--env",
        env_id,
        "--hyperparams",
        f"objective:'{objective}'",
        "--seed",
        str(seed),
        "-f",
        str(log_folder),
        "--num-threads",
        "1",
        "--eval-episodes",
        "10",
        "--verbose",
        "0",
        "-n",
        str(n_timesteps),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the child, not wall-clock: the machine is shared, and the run may be paused.
    return log_folder / "ppo_variant" / f"{env_id}_1", (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def evaluate(run_folder: Path, env_id: str) -> dict[str, Any]:
    """The run's figures: final-model deterministic evaluation (as enjoy plays it) and its EvalCallback log."""
    hyperparams, stats_path = get_saved_hyperparams(str(run_folder / env_id), test_mode=True)
    env = create_test_env(env_id, stats_path=stats_path, seed=10_000, should_render=False, hyperparams=hyperparams)
    model = PPOVariant.load(run_folder / f"{env_id}.zip", device="cpu")
    episode_returns, _ = evaluate_policy(
        model, env, n_eval_episodes=FINAL_EVAL_EPISODES, deterministic=True, return_episode_rewards=True
    )
    env.close()
    # No EvalCallback log when the run is shorter than one evaluation period.
    evaluations_file = run_folder / "evaluations.npz"
    eval_means = np.load(evaluations_file)["results"].mean(axis=1) if evaluations_file.is_file() else np.array([np.nan])
    return {
        "final": float(np.mean(episode_returns)),
        "final_std": float(np.std(episode_returns)),
        "eval_best": float(eval_means.max()),
        "eval_last": float(eval_means[-1]),
        "kl_coef": model.kl_coef,
        "timesteps": int(model.num_timesteps),
    }


def markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "# rl-zoo: every objective with the shipped hyperparameters",
        "",
        f"`{command}`",
        "",
        "Each run: `python -m sb3_ppo_variants.zoo train --algo ppo_variant --env <env> "
        "--hyperparams objective:\"'<objective>'\" --seed <seed> --eval-episodes 10` (shipped "
        "`sb3_ppo_variants/hyperparams/ppo_variant.yml`, rl-zoo defaults otherwise). **final**: deterministic "
        f"evaluation of the final model over {FINAL_EVAL_EPISODES} episodes with the run's VecNormalize statistics "
        "(mean ± std over seeds; then per seed). **eval best / last**: rl-zoo's EvalCallback mean reward "
        "(10 deterministic episodes every 25k steps), mean over seeds. **β**: `model.kl_coef` at the end (mean over "
        "seeds). **met**: mean final ≥ target (rl-zoo benchmark's SB3 PPO figure). **CPU time**: of the training "
        "process, one torch thread, on a shared 2-core machine.",
        "",
        "| env | steps | objective | final | per seed | eval best | eval last | β | target | met | CPU time / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, by_objective in results["runs"].items():
        for objective, by_seed in by_objective.items():
            runs = [by_seed[seed] for seed in sorted(by_seed, key=int)]
            finals = [run["final"] for run in runs]
            lines.append(
                f"| {env_id} | {runs[0]['timesteps']} | {objective} | {np.mean(finals):.1f} ± {np.std(finals):.1f} | "
                f"{', '.join(f'{value:.1f}' for value in finals)} | {np.mean([r['eval_best'] for r in runs]):.1f} | "
                f"{np.mean([r['eval_last'] for r in runs]):.1f} | {np.mean([r['kl_coef'] for r in runs]):.3g} | "
                f"{TARGETS.get(env_id, float('nan')):g} | {'met' if np.mean(finals) >= TARGETS.get(env_id, np.inf) else '-'}"
                f" | {np.mean([r['cpu_seconds'] for r in runs]):.0f} s |"
            )
    lines += ["", f"Versions: {results['versions']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per env (default: 3, LunarLander-v3: 1)")
    parser.add_argument("--log-folder", type=Path, default=None, help="rl-zoo log folder (default: a temporary one)")
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1, help="override the YAML's n_timesteps")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in results/zoo.json")
    args = parser.parse_args()
    th.set_num_threads(1)
    command = "python benchmarks/zoo.py " + " ".join(sys.argv[1:])

    results: dict[str, Any] = {"runs": {}}
    if args.resume and (RESULTS / "zoo.json").is_file():
        results = json.loads((RESULTS / "zoo.json").read_text())
        # The report names every command that produced its runs.
        if results.get("command") and command != results["command"]:
            command = f"{results['command']} && {command}"
    log_root = args.log_folder or Path(tempfile.mkdtemp(prefix="zoo-benchmark-"))
    for env_id in args.envs:
        for seed in range(args.seeds or DEFAULT_SEEDS.get(env_id, 1)):
            for objective in args.objectives:
                if str(seed) in results["runs"].get(env_id, {}).get(objective, {}):
                    continue
                run_folder, cpu_seconds = train(
                    env_id, objective, seed, log_root / env_id / objective / f"seed{seed}", args.n_timesteps
                )
                figures = {**evaluate(run_folder, env_id), "cpu_seconds": cpu_seconds}
                print(f"{env_id:16s} {objective:12s} seed {seed}: {figures}", flush=True)
                results["runs"].setdefault(env_id, {}).setdefault(objective, {})[str(seed)] = figures
                results.update(command=command, versions=versions())
                save_results("zoo", results, markdown(results, command))
    if results["runs"]:  # also rewrites the report of runs kept by --resume
        save_results("zoo", results, markdown(results, results["command"]))
        print(markdown(results, results["command"]))


if __name__ == "__main__":
    main()
