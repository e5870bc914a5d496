"""
Learning quality of MaskablePPOVariant and RecurrentPPOVariant (every objective) against sb3-contrib's MaskablePPO and
RecurrentPPO, same hyperparameters and seeds, all in one run.

    python benchmarks/contrib_learning.py [--suite maskable|recurrent|all] [--workers 2] [--seeds 3] [--budget-scale 1]
        [--envs NAME ...] [--cache FOLDER]

maskable: InvalidActionEnvDiscrete(dim=40, n_invalid_actions=30) with MaskablePPO's defaults, and Taxi-v4 with its
info["action_mask"] (InfoActionMasker). recurrent: CartPoleNoVel-v1 and PendulumNoVel-v1 with rl-zoo's ppo_lstm.yml
hyperparameters and budget (100k steps; VecNormalize as rl-zoo), plus for the variants the objective keys that the
package's ppo_lstm_variant.yml adds to rl-zoo's entry (PendulumNoVel-v1's kl_target). Every variant gets the same
budget.
The figure of a run is its mean deterministic evaluation return over 10 episodes after training (with the action
masks for the maskable suite; unnormalised returns from the Monitor wrapper). Target: the clip objective equal to
sb3-contrib's algorithm seed by seed (identical or float noise), KL objectives within noise.
"""

import argparse
import itertools
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from common import (
    CONTRIB_VARIANTS,
    contrib_versions,
    make_contrib_model,
    package_hyperparams,
    save_results,
    zoo_hyperparams,
)
from stable_baselines3.common.callbacks import BaseCallback

from sb3_ppo_variants.atomic import atomic_write


def invalid_action_env() -> gym.Env:
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    return InvalidActionEnvDiscrete(dim=40, ep_length=100, n_invalid_actions=30)


def masked_taxi() -> gym.Env:
    from sb3_ppo_variants.wrappers import InfoActionMasker

    return InfoActionMasker(gym.make("Taxi-v4"))


def setups() -> dict[str, tuple[str, Any, dict[str, Any], int]]:
    """name -> (family, env factory or id, hyperparameters, timesteps)."""
    import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)

    return {
        # MaskablePPO's defaults (n_steps=2048, batch_size=64, 10 epochs); 1 env
        "InvalidActionEnvDiscrete": ("maskable", invalid_action_env, {}, 6_144),
        # 8 envs x 256 steps, 4 epochs of minibatches of 256, lr 1e-3, ent_coef 0.01 (MaskablePPO reaches ~8 in ~100k)
        "Taxi-v4": (
            "maskable",
            masked_taxi,
            dict(n_envs=8, n_steps=256, batch_size=256, n_epochs=4, learning_rate=1e-3, ent_coef=0.01),
            51_200,
        ),
        # rl-zoo ppo_lstm.yml, with its budget (n_timesteps 1e5): 390 updates / 24 updates
        "CartPoleNoVel-v1": ("recurrent", "CartPoleNoVel-v1", zoo_hyperparams("CartPoleNoVel-v1", "ppo_lstm.yml"), 100_000),
        "PendulumNoVel-v1": ("recurrent", "PendulumNoVel-v1", zoo_hyperparams("PendulumNoVel-v1", "ppo_lstm.yml"), 100_000),
    }


def package_objective_keys(name: str) -> dict[str, Any]:
    """
    The objective keys that the package's ``ppo_lstm_variant.yml`` entry of ``name`` sets beside rl-zoo's entry
    (``kl_target`` of PendulumNoVel-v1): the variants run with them, RecurrentPPO (which does not take them) without.
    """
    entry = package_hyperparams("ppo_lstm_variant", name)
    return {key: entry[key] for key in ("kl_coef", "kl_target") if key in entry}


def evaluate(model, family: str) -> float:
    env = model.get_env()
    if hasattr(env, "training"):  # VecNormalize: freeze the statistics, report raw rewards
        env.training, env.norm_reward = False, False
    if family == "maskable":
        from sb3_contrib.common.maskable.evaluation import evaluate_policy
    else:
        from stable_baselines3.common.evaluation import evaluate_policy
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)
    return float(mean_return)


class TrainingCurve(BaseCallback):
    """The mean return of the last 100 training episodes (SB3's ``ep_info_buffer``) at the end of every rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.model.ep_info_buffer:
            self.points.append((self.num_timesteps, float(np.mean([info["r"] for info in self.model.ep_info_buffer]))))


#: Fractions of the budget at which the report gives the training curve.
CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def curve_at(points: list[tuple[int, float]], fraction: float, budget: int) -> float:
    """The training curve's last point at or before ``fraction`` of the budget (NaN before the first episode ends)."""
    values = [value for steps, value in points if steps <= fraction * budget]
    return values[-1] if values else float("nan")


def same_learning_lines(results: dict[str, Any]) -> list[str]:
    """
    Welch's t-test of equal means, per env: clip against sb3-contrib's algorithm, every other objective against clip,
    on the final evaluation returns and on the training return at the end of the budget (p above 0.05: within noise).
    """
    from scipy.stats import ttest_ind

    lines = [
        "",
        "Within noise? Welch's t-test p-values over the seeds: clip against sb3-contrib's algorithm, every other "
        "objective against clip (evaluation after training; last-100-episode training return at 100%).",
        "",
        "| env | variant | against | p (evaluation) | p (training, 100%) |",
        "|---|---|---|---|---|",
    ]
    for name, env in results["envs"].items():
        variants = env["variants"]
        reference = CONTRIB_VARIANTS[env["family"]][0]
        for variant in variants:
            against = reference if variant == "clip" else "clip"
            if variant == reference or len(variants[variant]["returns"]) < 2:
                continue
            p_values = [
                ttest_ind(ours, theirs, equal_var=False).pvalue
                for ours, theirs in (
                    (variants[variant]["returns"], variants[against]["returns"]),
                    (variants[variant]["training_curve"]["1"], variants[against]["training_curve"]["1"]),
                )
            ]
            lines.append(f"| {name} | {variant} | {against} | " + " | ".join(f"{p:.3f}" for p in p_values) + " |")
    return lines


def run(
    task: tuple[str, str, int, float, str | None],
) -> tuple[str, str, int, float, float, np.ndarray, list[tuple[int, float]]]:
    name, variant, seed, budget_scale, cache = task
    cached = Path(cache, f"{name}_{variant}_{seed}_{budget_scale:g}.pkl") if cache else None
    if cached is not None and cached.exists():  # a finished run of an interrupted benchmark
        return pickle.loads(cached.read_bytes())
    th.set_num_threads(1)
    family, env_fn, hyperparams, timesteps = setups()[name]
    if family == "recurrent" and variant != CONTRIB_VARIANTS[family][0]:
        hyperparams = {**hyperparams, **package_objective_keys(name)}
    model = make_contrib_model(family, variant, env_fn, hyperparams, seed=seed)
    curve = TrainingCurve()
    cpu_start = time.process_time()
    model.learn(int(timesteps * budget_scale), callback=curve)
    cpu_seconds = time.process_time() - cpu_start
    mean_return = evaluate(model, family)
    print(f"{name:24s} {variant:14s} seed {seed}: {mean_return:9.2f}  ({cpu_seconds:.0f} CPU s)", flush=True)
    parameters = th.cat([value.flatten().double() for value in model.policy.state_dict().values()]).numpy()
    outcome = name, variant, seed, mean_return, cpu_seconds, parameters, curve.points
    if cached is not None:
        atomic_write(cached, lambda file: pickle.dump(outcome, file))
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("maskable", "recurrent", "all"), default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget (same for all variants)")
    parser.add_argument("--envs", nargs="+", help="only these envs of the suite")
    parser.add_argument("--cache", help="folder keeping each finished run, so that a rerun skips them")
    args = parser.parse_args()
    names = [name for name, (family, *_) in setups().items() if args.suite in (family, "all")]
    if args.envs:
        names = [name for name in names if name in args.envs]
    tasks = [
        (name, variant, seed, args.budget_scale, args.cache)
        for name in names
        for variant, seed in itertools.product(CONTRIB_VARIANTS[setups()[name][0]], range(args.seeds))
    ]
    # The slow (recurrent) runs first, so that the two workers finish together.
    tasks.sort(key=lambda task: setups()[task[0]][0] != "recurrent")
    with ProcessPoolExecutor(min(args.workers, 2)) as pool:
        outcomes = list(pool.map(run, tasks))

    returns: dict = {}
    cpu: dict = {}
    parameters: dict = {}
    curves: dict = {}
    for name, variant, seed, mean_return, cpu_seconds, final_parameters, points in outcomes:
        returns.setdefault(name, {}).setdefault(variant, {})[seed] = mean_return
        cpu.setdefault(name, {}).setdefault(variant, {})[seed] = cpu_seconds
        parameters.setdefault(name, {}).setdefault(variant, {})[seed] = final_parameters
        curves.setdefault(name, {}).setdefault(variant, {})[seed] = points
    command = f"python benchmarks/contrib_learning.py --suite {args.suite} --seeds {args.seeds}"
    if args.budget_scale != 1.0:
        command += f" --budget-scale {args.budget_scale}"
    if args.envs:
        command += f" --envs {' '.join(args.envs)}"
    lines = [
        f"# Learning: contrib variants ({args.suite}) against sb3-contrib",
        "",
        f"`{command}`: mean deterministic evaluation return (10 episodes) after training, per seed and mean ± std over "
        "seeds; `= ref` marks a run whose return equals sb3-contrib's for the same seed; max |θ - θ_ref|: largest "
        "difference between the final policy parameters and sb3-contrib's (same seed), over parameters and seeds.",
        "",
        "| env | budget | variant | per seed | mean ± std | max \\|θ - θ_ref\\| | CPU s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    curve_lines = [
        "",
        "Training curves: the mean return of the last 100 training episodes (Monitor, unnormalised) at each fraction of "
        "the budget, mean ± std over seeds.",
        "",
        "| env | variant | " + " | ".join(f"{fraction:.0%}" for fraction in CURVE_FRACTIONS) + " |",
        "|---|---|" + "---|" * len(CURVE_FRACTIONS),
    ]
    results: dict[str, Any] = {"seeds": args.seeds, "budget_scale": args.budget_scale, "envs": {}}
    for name, by_variant in returns.items():
        family, _, hyperparams, timesteps = setups()[name]
        reference = CONTRIB_VARIANTS[family][0]
        budget = int(timesteps * args.budget_scale)
        results["envs"][name] = {"family": family, "timesteps": budget, "hyperparams": repr(hyperparams), "variants": {}}
        for variant in CONTRIB_VARIANTS[family]:
            by_seed = by_variant[variant]
            values = [by_seed[seed] for seed in sorted(by_seed)]
            same = [by_seed[seed] == by_variant[reference][seed] for seed in sorted(by_seed)]
            # largest |difference| between the final policy parameters and sb3-contrib's, same seed
            parameter_gap = [
                float(np.abs(parameters[name][variant][seed] - parameters[name][reference][seed]).max())
                for seed in sorted(by_seed)
            ]
            results["envs"][name]["variants"][variant] = {
                "returns": values,
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "equal_to_reference_per_seed": same,
                "max_parameter_difference_to_reference": parameter_gap,
                "cpu_seconds": [cpu[name][variant][seed] for seed in sorted(by_seed)],
            }
            at_fractions = [
                [curve_at(curves[name][variant][seed], fraction, budget) for seed in sorted(by_seed)]
                for fraction in CURVE_FRACTIONS
            ]
            results["envs"][name]["variants"][variant]["training_curve"] = {
                f"{fraction:g}": values_at for fraction, values_at in zip(CURVE_FRACTIONS, at_fractions, strict=True)
            }
            curve_lines.append(
                f"| {name} | {variant} | "
                + " | ".join(f"{np.mean(values_at):.1f} ± {np.std(values_at):.1f}" for values_at in at_fractions)
                + " |"
            )
            marks = [" = ref" if equal and variant != reference else "" for equal in same]
            per_seed = ", ".join(f"{value:.2f}{mark}" for value, mark in zip(values, marks, strict=True))
            lines.append(
                f"| {name} | {budget} | {variant} | {per_seed} | {np.mean(values):.2f} ± {np.std(values):.2f} | "
                f"{max(parameter_gap):.1e} | {np.mean(list(cpu[name][variant].values())):.0f} |"
            )
    lines += curve_lines + same_learning_lines(results)
    lines += [
        "",
        "Budgets (the same for every variant): InvalidActionEnvDiscrete 6,144 steps (3 updates, MaskablePPO defaults) "
        "and Taxi-v4 51,200 (25 updates; ~100k are needed to solve it), cut to fit a shared 2-core machine; "
        "CartPoleNoVel-v1 and PendulumNoVel-v1 100,000 with rl-zoo's ppo_lstm.yml hyperparameters (its budget); the "
        "variants also take the objective keys of the package's ppo_lstm_variant.yml entry: "
        + ", ".join(
            f"{name} {keys}" for name in returns if setups()[name][0] == "recurrent" and (keys := package_objective_keys(name))
        )
        + " (adaptive_kl's d_targ elsewhere: the paper's 0.01).",
        "",
        f"Versions: {contrib_versions()}",
        "",
    ]
    results["versions"] = contrib_versions()
    save_results(f"contrib_learning_{args.suite}", results, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
