"""
Learning quality of each objective with rl-zoo's tuned hyperparameters (SB3 PPO in the same run as reference).

    python benchmarks/learning.py [--workers 2] [--seeds 3] [--timesteps 100000]

CartPole-v1: every objective. Target: clip, adaptive_kl and fixed_kl each >= 475 (mean over seeds).
Pendulum-v1 (gSDE): every objective and SB3 PPO. Target: clip within noise of SB3 PPO.
The figure of a run is its mean deterministic evaluation return over 10 episodes after training.
"""

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch as th
from common import VARIANTS, make_model, save_results, versions, zoo_ppo_hyperparams
from stable_baselines3.common.evaluation import evaluate_policy

ENVS = {"CartPole-v1": VARIANTS, "Pendulum-v1": VARIANTS}


def run(task: tuple[str, str, int, int]) -> tuple[str, str, int, float]:
    env_id, variant, seed, timesteps = task
    th.set_num_threads(1)
    model = make_model(variant, env_id, zoo_ppo_hyperparams(env_id), seed=seed)
    model.learn(timesteps)
    mean_return, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, deterministic=True)
    print(f"{env_id:12s} {variant:12s} seed {seed}: {mean_return:8.1f}", flush=True)
    return env_id, variant, seed, float(mean_return)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=100_000)
    args = parser.parse_args()
    tasks = [
        (env_id, variant, seed, args.timesteps)
        for env_id, variants in ENVS.items()
        for variant, seed in itertools.product(variants, range(args.seeds))
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        outcomes = list(pool.map(run, tasks))

    returns: dict = {}
    for env_id, variant, seed, mean_return in outcomes:
        returns.setdefault(env_id, {}).setdefault(variant, {})[seed] = mean_return
    lines = [
        "# Learning: each objective with rl-zoo's hyperparameters",
        "",
        f"`python benchmarks/learning.py --seeds {args.seeds} --timesteps {args.timesteps}`: mean deterministic "
        "evaluation return (10 episodes) after training, per seed and mean ± std over seeds.",
        "",
        "| env | variant | per seed | mean ± std |",
        "|---|---|---|---|",
    ]
    for env_id, by_variant in returns.items():
        for variant, by_seed in by_variant.items():
            values = [by_seed[seed] for seed in sorted(by_seed)]
            lines.append(
                f"| {env_id} | {variant} | {', '.join(f'{v:.1f}' for v in values)} | "
                f"{np.mean(values):.1f} ± {np.std(values):.1f} |"
            )
    lines += ["", f"Versions: {versions()}", ""]
    save_results("learning", {"timesteps": args.timesteps, "returns": returns, "versions": versions()}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
