"""
Speed: PPOVariant (each objective) against SB3 PPO, same hyperparameters, runs interleaved in one process.

    python benchmarks/speed.py [--repeats 5]

Reports env steps per second (median over repeats) and wall-clock ratios: clip / SB3 PPO (target <= 1) and each
KL objective / clip (target <= 1.10). Machines are noisy: compare the ratios, not the absolute times.
"sb3_ppo_foreach" is SB3 PPO given the multi-tensor Adam that PPOVariant selects on CPU: the like-for-like reference.
Each run is single-threaded, so its process CPU time is also reported: it is much less sensitive than wall-clock to
other jobs on the machine.
"""

import argparse
import random
import time

import numpy as np
import torch as th
from common import VARIANTS, make_model, save_results, versions, zoo_ppo_hyperparams

#: SB3 PPO as shipped, SB3 PPO with the same (foreach) Adam as PPOVariant, then each PPOVariant objective.
SPEED_VARIANTS = ("sb3_ppo", "sb3_ppo_foreach", *VARIANTS[1:])

SETUPS = {
    # rl-zoo's hyperparameters, 8 envs
    "CartPole-v1": (lambda: zoo_ppo_hyperparams("CartPole-v1"), 40_960),
    # the paper's MuJoCo hyperparameters (Table 3), which are SB3 PPO's defaults; 1 env
    "Hopper-v5": (lambda: {}, 20_480),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=SPEED_VARIANTS,
        default=list(SPEED_VARIANTS),
        help="a subset (sb3_ppo and clip always run)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of each setup's steps to run (shorter runs on a busy machine; learn() completes whole rollouts)",
    )
    args = parser.parse_args()
    setups = {env_id: (hyperparams, max(1, round(steps * args.scale))) for env_id, (hyperparams, steps) in SETUPS.items()}
    speed_variants = [v for v in SPEED_VARIANTS if v in {"sb3_ppo", "clip", *args.variants}]
    th.set_num_threads(1)  # one core per run, as SB3 recommends for MLP policies on CPU
    order = random.Random(0)
    seconds: dict[str, dict[str, list[float]]] = {env: {v: [] for v in speed_variants} for env in SETUPS}
    cpu_seconds: dict[str, dict[str, list[float]]] = {env: {v: [] for v in speed_variants} for env in SETUPS}
    for repeat in range(args.repeats):
        for env_id, (hyperparams, steps) in setups.items():
            variants = list(speed_variants)
            order.shuffle(variants)  # interleaved, in a different order each repeat
            for variant in variants:
                model = make_model(variant, env_id, hyperparams(), seed=repeat)
                start, cpu_start = time.perf_counter(), time.process_time()
                model.learn(steps)
                seconds[env_id][variant].append(time.perf_counter() - start)
                cpu_seconds[env_id][variant].append(time.process_time() - cpu_start)
                print(f"repeat {repeat} {env_id:12s} {variant:12s} {steps / seconds[env_id][variant][-1]:7.0f} steps/s")

    results = {"repeats": args.repeats, "scale": args.scale, "versions": versions(), "envs": {}}
    lines = [
        "# Speed: PPOVariant vs SB3 PPO",
        "",
        f"`python benchmarks/speed.py --repeats {args.repeats} --scale {args.scale}`; 1 torch thread; median wall-clock "
        "of `learn()` per run.",
        "",
        "| env | steps | variant | steps/s | time / SB3 PPO | time / clip | CPU time / SB3 PPO | CPU time / clip |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env_id, (_, steps) in setups.items():
        median = {variant: float(np.median(times)) for variant, times in seconds[env_id].items()}
        cpu = {variant: float(np.median(times)) for variant, times in cpu_seconds[env_id].items()}
        results["envs"][env_id] = {
            "steps": steps,
            "seconds": seconds[env_id],
            "median_seconds": median,
            "steps_per_second": {v: steps / t for v, t in median.items()},
            "ratio_to_sb3_ppo": {v: t / median["sb3_ppo"] for v, t in median.items()},
            "ratio_to_clip": {v: t / median["clip"] for v, t in median.items()},
            "cpu_seconds": cpu_seconds[env_id],
            "cpu_ratio_to_sb3_ppo": {v: t / cpu["sb3_ppo"] for v, t in cpu.items()},
            "cpu_ratio_to_clip": {v: t / cpu["clip"] for v, t in cpu.items()},
        }
        for variant in speed_variants:
            lines.append(
                f"| {env_id} | {steps} | {variant} | {steps / median[variant]:.0f} | "
                f"{median[variant] / median['sb3_ppo']:.3f} | {median[variant] / median['clip']:.3f} | "
                f"{cpu[variant] / cpu['sb3_ppo']:.3f} | {cpu[variant] / cpu['clip']:.3f} |"
            )
    lines += ["", f"Versions: {results['versions']}", ""]
    save_results("speed", results, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
