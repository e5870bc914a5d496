"""
Speed: PPOVariant (each objective) against SB3 PPO, same hyperparameters, runs interleaved in one process.

    python benchmarks/speed.py [--repeats 5]
    python benchmarks/speed.py --suite contrib [--repeats 3]

Reports env steps per second (median over repeats) and wall-clock ratios: clip / SB3 PPO (target <= 0.67) and each
KL objective / clip (target <= 1.05). Machines are noisy: compare the ratios, not the absolute times. A ratio is the
median over repeats of the ratio within one repeat, whose runs are interleaved: a shared machine's speed drifts by up to
2x over minutes, which a ratio of medians taken over the whole run would mix in.

Objectives that learn differently also collect different rollouts (episode lengths, hence resets, differ), which moves
the end-to-end time / clip by several percent either way (``none`` computes strictly less than clip, yet its runs can
take longer). ``train()`` is timed inside every run, so the table also gives each objective's update time and
"same-rollout" ratio: (clip's rollout time + the objective's update time) / clip's time, the cost of the objective
itself.
"sb3_ppo_foreach" is SB3 PPO given the multi-tensor Adam that PPOVariant selects on CPU: the like-for-like reference.
Each run is single-threaded, so its process CPU time is also reported: it is much less sensitive than wall-clock to
other jobs on the machine.

``--suite contrib``: MaskablePPOVariant against sb3-contrib's MaskablePPO, RecurrentPPOVariant and
MaskableRecurrentPPOVariant (``use_masking=False``) against RecurrentPPO, 20 updates per run at ``--scale 1`` (a
fraction of them otherwise); results in ``speed_contrib``. Targets: clip / sb3-contrib <= 0.5 (maskable), <= 0.33
(CartPoleNoVel-v1, rl-zoo's entry), <= 0.5 (PendulumNoVel-v1), <= 0.25 (RecurrentPPO's defaults), <= 0.4 (masked
LSTM); each KL objective / clip <= 1.05. ``--setups`` runs only the named setups (e.g. ``--setups
"CartPoleNoVel-v1 (defaults)" CartPoleNoVel-v1``).
"""

import argparse
import random
import sys
import time
from typing import Any

import numpy as np
import torch as th
from common import (
    CONTRIB_VARIANTS,
    VARIANTS,
    contrib_learn_kwargs,
    contrib_versions,
    make_contrib_model,
    make_model,
    package_hyperparams,
    save_results,
    versions,
    zoo_hyperparams,
    zoo_ppo_hyperparams,
)

#: SB3 PPO as shipped, SB3 PPO with the same (foreach) Adam as PPOVariant, then each PPOVariant objective.
SPEED_VARIANTS = ("sb3_ppo", "sb3_ppo_foreach", *VARIANTS[1:])
#: Run only when asked for (--variants): clip without FlatAdam, whose share of the wall time it measures.
EXTRA_VARIANTS = ("clip_torch_adam",)

SETUPS = {
    # rl-zoo's hyperparameters, 8 envs
    "CartPole-v1": (lambda: zoo_ppo_hyperparams("CartPole-v1"), 40_960),
    # the paper's MuJoCo hyperparameters (Table 3), which are SB3 PPO's defaults; 1 env
    "Hopper-v5": (lambda: {}, 20_480),
}


def paired_ratios(times: dict[str, list[float]], baseline: str = "sb3_ppo") -> dict[str, dict[str, float]]:
    """reference -> variant -> median over repeats of (variant's time / reference's time in the same repeat)."""
    return {
        reference: {
            variant: float(np.median(np.asarray(values) / np.asarray(times[reference]))) for variant, values in times.items()
        }
        for reference in (baseline, "clip")
    }


def time_updates(model: Any) -> list[float]:
    """Time every ``model.train()`` call from now on: returns a one-element list holding the total seconds so far."""
    total = [0.0]
    train = model.train

    def timed_train() -> None:
        start = time.perf_counter()
        train()
        total[0] += time.perf_counter() - start

    model.train = timed_train
    return total


#: Updates per run of the contrib suite (at --scale 1).
CONTRIB_UPDATES = 20


def contrib_setups() -> dict[str, tuple[str, Any, dict[str, Any], int]]:
    """name -> (family, env factory or id, hyperparameters, updates per run) of the contrib suite."""
    import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1 and PendulumNoVel-v1)
    from contrib_learning import masked_taxi
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    def invalid_80() -> Any:
        return InvalidActionEnvDiscrete(dim=80, n_invalid_actions=60)

    cartpole = zoo_hyperparams("CartPoleNoVel-v1", "ppo_lstm.yml")
    return {
        # MaskablePPO's defaults (1 env, n_steps=2048, batch_size=64, 10 epochs)
        "InvalidActionEnvDiscrete(80, 60)": ("maskable", invalid_80, {}, CONTRIB_UPDATES),
        # the package's shipped ppo_mask_variant.yml entry (8 envs, InfoActionMasker, Discrete(500) observations)
        "Taxi-v4": ("maskable", masked_taxi, package_hyperparams("ppo_mask_variant", "Taxi-v4"), CONTRIB_UPDATES),
        # rl-zoo ppo_lstm.yml (8 envs, n_steps=32, 20 epochs, LSTM 64, VecNormalize)
        "CartPoleNoVel-v1": ("recurrent", "CartPoleNoVel-v1", cartpole, CONTRIB_UPDATES),
        # rl-zoo ppo_lstm.yml (4 envs, n_steps=1024, gSDE: sb3-contrib's rollout, the fast update)
        "PendulumNoVel-v1": (
            "recurrent",
            "PendulumNoVel-v1",
            zoo_hyperparams("PendulumNoVel-v1", "ppo_lstm.yml"),
            CONTRIB_UPDATES,
        ),
        # RecurrentPPO's defaults (1 env, n_steps=128, batch_size=128, 10 epochs)
        "CartPoleNoVel-v1 (defaults)": ("recurrent", "CartPoleNoVel-v1", {}, CONTRIB_UPDATES),
        # MaskableRecurrentPPOVariant against RecurrentPPO, learn(use_masking=False), rl-zoo's CartPoleNoVel-v1 entry
        "CartPoleNoVel-v1 (masked LSTM)": ("maskable_recurrent", "CartPoleNoVel-v1", cartpole, CONTRIB_UPDATES),
    }


def rollout_size(family: str, hyperparams: dict[str, Any]) -> int:
    """Environment steps of one rollout: n_steps x n_envs (the algorithm's default n_steps where not given)."""
    default_n_steps = 2048 if family == "maskable" else 128
    return int(hyperparams.get("n_steps", default_n_steps)) * int(hyperparams.get("n_envs", 1))


def select_setups(setups: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    """The setups called ``names`` (all of them for ``None``), in the suite's order; an unknown name is an error."""
    if names is None:
        return setups
    unknown = sorted(set(names) - set(setups))
    if unknown:
        raise ValueError(f"--setups: unknown setups {unknown}; the contrib suite's setups are {list(setups)}")
    return {name: setup for name, setup in setups.items() if name in names}


def contrib_main(repeats: int, scale: float, names: list[str] | None = None, results_name: str = "speed_contrib") -> None:
    """Each contrib variant (clip and the KL objectives) against its sb3-contrib counterpart, interleaved."""
    order = random.Random(0)
    setups = select_setups(contrib_setups(), names)
    steps = {
        name: max(1, round(updates * scale)) * rollout_size(family, hyperparams)
        for name, (family, _, hyperparams, updates) in setups.items()
    }
    variants = {name: CONTRIB_VARIANTS[family][:4] for name, (family, *_) in setups.items()}  # reference, clip, KL x2
    seconds = {name: {variant: [] for variant in variants[name]} for name in setups}
    cpu_seconds = {name: {variant: [] for variant in variants[name]} for name in setups}
    for repeat in range(repeats):
        for name, (family, env_fn, hyperparams, _) in setups.items():
            shuffled = list(variants[name])
            order.shuffle(shuffled)  # interleaved, in a different order each repeat
            for variant in shuffled:
                model = make_contrib_model(family, variant, env_fn, hyperparams, seed=repeat)
                start, cpu_start = time.perf_counter(), time.process_time()
                model.learn(steps[name], **contrib_learn_kwargs(family, variant))
                seconds[name][variant].append(time.perf_counter() - start)
                cpu_seconds[name][variant].append(time.process_time() - cpu_start)
                steps_per_second = steps[name] / seconds[name][variant][-1]
                print(f"repeat {repeat} {name:32s} {variant:14s} {steps_per_second:7.0f} steps/s", flush=True)
    contrib_report(repeats, scale, setups, steps, seconds, cpu_seconds, results_name)


def contrib_report(
    repeats: int,
    scale: float,
    setups: dict[str, tuple[str, Any, dict[str, Any], int]],
    steps: dict[str, int],
    seconds: dict[str, dict[str, list[float]]],
    cpu_seconds: dict[str, dict[str, list[float]]],
    results_name: str = "speed_contrib",
) -> None:
    """``results/<results_name>.{json,md}``: steps/s and the medians of the within-repeat time ratios."""
    results: dict[str, Any] = {"repeats": repeats, "scale": scale, "versions": contrib_versions(), "envs": {}}
    lines = [
        "# Speed: MaskablePPOVariant / RecurrentPPOVariant / MaskableRecurrentPPOVariant vs sb3-contrib",
        "",
        f"`python benchmarks/speed.py --suite contrib --repeats {repeats} --scale {scale:g}"
        + "".join(f' --setups "{name}"' if index == 0 else f' "{name}"' for index, name in enumerate(setups))
        + (f" --results {results_name}" if results_name != "speed_contrib" else "")
        + "`; 1 torch thread; runs "
        "interleaved in one process; steps/s from the median wall-clock of `learn()`; each ratio is the median over "
        "repeats of the ratio within a repeat (wall-clock, and process CPU time).",
        "",
        "| env | steps | variant | steps/s | time / sb3-contrib | time / clip | CPU time / sb3-contrib | CPU time / clip |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (family, _, _, _) in setups.items():
        reference = CONTRIB_VARIANTS[family][0]
        wall, cpu = paired_ratios(seconds[name], reference), paired_ratios(cpu_seconds[name], reference)
        median = {variant: float(np.median(times)) for variant, times in seconds[name].items()}
        results["envs"][name] = {
            "family": family,
            "reference": reference,
            "steps": steps[name],
            "seconds": seconds[name],
            "cpu_seconds": cpu_seconds[name],
            "steps_per_second": {v: steps[name] / t for v, t in median.items()},
            "ratio_to_reference": wall[reference],
            "ratio_to_clip": wall["clip"],
            "cpu_ratio_to_reference": cpu[reference],
            "cpu_ratio_to_clip": cpu["clip"],
        }
        for variant in seconds[name]:
            lines.append(
                f"| {name} | {steps[name]} | {variant} | {steps[name] / median[variant]:.0f} | "
                f"{wall[reference][variant]:.3f} | {wall['clip'][variant]:.3f} | "
                f"{cpu[reference][variant]:.3f} | {cpu['clip'][variant]:.3f} |"
            )
    lines += ["", f"Versions: {results['versions']}", ""]
    save_results(results_name, results, "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=(*SPEED_VARIANTS, *EXTRA_VARIANTS),
        default=list(SPEED_VARIANTS),
        help="a subset (sb3_ppo and clip always run); clip_torch_adam: clip with torch's Adam step instead of FlatAdam",
    )
    parser.add_argument("--suite", choices=("ppo", "contrib"), default="ppo", help="contrib: the sb3-contrib variants")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of each setup's steps to run (shorter runs on a busy machine; learn() completes whole rollouts)",
    )
    parser.add_argument(
        "--results", help="results file under benchmarks/results/ (default: speed, or speed_contrib for --suite contrib)"
    )
    parser.add_argument(
        "--setups",
        nargs="+",
        default=None,
        help="contrib suite: only these setups (their names in the results table, e.g. 'CartPoleNoVel-v1 (defaults)')",
    )
    args = parser.parse_args()
    setups = {env_id: (hyperparams, max(1, round(steps * args.scale))) for env_id, (hyperparams, steps) in SETUPS.items()}
    th.set_num_threads(1)  # one core per run, as SB3 recommends for MLP policies on CPU
    if args.suite == "contrib":
        contrib_main(args.repeats, args.scale, args.setups, args.results or "speed_contrib")
        return
    speed_variants = [v for v in (*SPEED_VARIANTS, *EXTRA_VARIANTS) if v in {"sb3_ppo", "clip", *args.variants}]
    order = random.Random(0)
    seconds: dict[str, dict[str, list[float]]] = {env: {v: [] for v in speed_variants} for env in SETUPS}
    cpu_seconds: dict[str, dict[str, list[float]]] = {env: {v: [] for v in speed_variants} for env in SETUPS}
    update_seconds: dict[str, dict[str, list[float]]] = {env: {v: [] for v in speed_variants} for env in SETUPS}
    for repeat in range(args.repeats):
        for env_id, (hyperparams, steps) in setups.items():
            variants = list(speed_variants)
            order.shuffle(variants)  # interleaved, in a different order each repeat
            for variant in variants:
                model = make_model(variant, env_id, hyperparams(), seed=repeat)
                update_time = time_updates(model)
                start, cpu_start = time.perf_counter(), time.process_time()
                model.learn(steps)
                seconds[env_id][variant].append(time.perf_counter() - start)
                cpu_seconds[env_id][variant].append(time.process_time() - cpu_start)
                update_seconds[env_id][variant].append(update_time[0])
                print(f"repeat {repeat} {env_id:12s} {variant:12s} {steps / seconds[env_id][variant][-1]:7.0f} steps/s")

    results = {"repeats": args.repeats, "scale": args.scale, "versions": versions(), "envs": {}}
    lines = [
        "# Speed: PPOVariant vs SB3 PPO",
        "",
        f"`python benchmarks/speed.py {' '.join(sys.argv[1:])}`; 1 torch thread; steps/s from the "
        "median wall-clock of `learn()`; each ratio is the median over repeats of the ratio within a repeat (the runs "
        "of a repeat are interleaved, minutes apart at most); update s: median seconds in `train()` per run; "
        "same-rollout: (clip's rollout time + the variant's update time) / clip's time.",
        "",
        "| env | steps | variant | steps/s | time / SB3 PPO | time / clip | CPU time / SB3 PPO | CPU time / clip "
        "| update s | same-rollout time / clip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, (_, steps) in setups.items():
        median = {variant: float(np.median(times)) for variant, times in seconds[env_id].items()}
        update = {variant: float(np.median(times)) for variant, times in update_seconds[env_id].items()}
        # Ratios are medians of the ratios within each repeat (runs minutes apart can differ by 2x on a shared machine)
        wall_ratio = paired_ratios(seconds[env_id])
        cpu_ratio = paired_ratios(cpu_seconds[env_id])
        # clip's rollouts (its learn() time less its updates) with each variant's updates
        clip_rollouts = np.subtract(seconds[env_id]["clip"], update_seconds[env_id]["clip"])
        same_rollout = {
            v: float(np.median((clip_rollouts + times) / np.asarray(seconds[env_id]["clip"])))
            for v, times in update_seconds[env_id].items()
        }
        results["envs"][env_id] = {
            "steps": steps,
            "seconds": seconds[env_id],
            "median_seconds": median,
            "steps_per_second": {v: steps / t for v, t in median.items()},
            "ratio_to_sb3_ppo": wall_ratio["sb3_ppo"],
            "ratio_to_clip": wall_ratio["clip"],
            "cpu_seconds": cpu_seconds[env_id],
            "cpu_ratio_to_sb3_ppo": cpu_ratio["sb3_ppo"],
            "cpu_ratio_to_clip": cpu_ratio["clip"],
            "update_seconds": update_seconds[env_id],
            "median_update_seconds": update,
            "same_rollout_ratio_to_clip": same_rollout,
        }
        for variant in speed_variants:
            lines.append(
                f"| {env_id} | {steps} | {variant} | {steps / median[variant]:.0f} | "
                f"{wall_ratio['sb3_ppo'][variant]:.3f} | {wall_ratio['clip'][variant]:.3f} | "
                f"{cpu_ratio['sb3_ppo'][variant]:.3f} | {cpu_ratio['clip'][variant]:.3f} | "
                f"{update[variant]:.2f} | {same_rollout[variant]:.3f} |"
            )
    lines += ["", f"Versions: {results['versions']}", ""]
    save_results(args.results or "speed", results, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
