"""
Where the time goes: a per-phase breakdown of ``learn()`` for SB3 PPO and PPOVariant, in µs per environment step.

    python benchmarks/profile_phases.py [--repeats 3]
    python benchmarks/profile_phases.py --suite contrib [--repeats 3] [--updates 3]

(Not named ``profile.py``: this folder is first on ``sys.path`` when its scripts run, and a ``profile.py`` here would
shadow the standard library module that torch imports.)

Phases (wall-clock, medians over the repeats; runs interleaved in one process, 1 torch thread):

- ``rollout``: all of ``collect_rollouts``;
- ``env``: the environments' own ``step``/``reset`` (each ``DummyVecEnv`` sub-environment: Monitor and the gymnasium
  wrappers included);
- ``forward``: the policy's forward pass with action sampling (SB3's ``ActorCriticPolicy.forward``, or the fast loop's
  ``FastActorCritic.act``);
- ``bookkeeping``: the rest of the rollout (conversions, the VecEnv, buffer writes, callbacks, the info buffer,
  timeout bootstrapping, the advantage computation);
- ``update``: ``train()``;
- ``masks`` (contrib suite): the sub-environments' own ``action_masks()``, inside ``bookkeeping`` (the env's cost, the
  same for both algorithms).

"clip (SB3 loop)" is PPOVariant with ``fast_rollout=False``: SB3's ``collect_rollouts`` with PPOVariant's update;
"clip (SB3 update)" is PPOVariant with ``fast_update=False``: the fast rollout loop with SB3's minibatch sampling,
``evaluate_actions``, ``clip_grad_norm_`` and ``optimizer.step()`` in PPOVariant's update.
Machines are noisy: compare columns of one run, not runs. ``total CPU`` is the process CPU time of ``learn()``.

``--suite contrib``: sb3-contrib's MaskablePPO / RecurrentPPO against the package's variant with ``objective="clip"``
on the setups of ``speed.py --suite contrib`` (``--updates`` rollouts and updates per run), results in
``profile_phases_contrib``; ``forward`` there is the policy's forward pass in the rollout (sb3-contrib's, the masked
fast loop's ``FastActorCritic.act``, or the recurrent fast loop's ``FastLstmActorCritic.step``). ``--setups`` runs only
the named setups.
"""

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from common import (
    CONTRIB_VARIANTS,
    contrib_learn_kwargs,
    contrib_versions,
    make_contrib_model,
    make_model,
    save_results,
    versions,
    zoo_ppo_hyperparams,
)

from sb3_ppo_variants import recurrent_rollout, rollout

SETUPS = {
    # the paper's MuJoCo hyperparameters (Table 3), which are SB3 PPO's defaults; 1 env; 2 rollouts and updates
    "Hopper-v5": (lambda: {}, 4_096),
    # rl-zoo's hyperparameters, 8 envs
    "CartPole-v1": (lambda: zoo_ppo_hyperparams("CartPole-v1"), 20_480),
}
VARIANTS = ("sb3_ppo", "clip_sb3_loop", "clip_sb3_update", "clip")
LABELS = {
    "sb3_ppo": "SB3 PPO",
    "clip_sb3_loop": "clip (SB3 loop)",
    "clip_sb3_update": "clip (SB3 update)",
    "clip": "clip",
}
PHASES = ("rollout", "env", "forward", "bookkeeping", "update")
#: The contrib suite's phases: also the environments' own action_masks() (inside bookkeeping).
CONTRIB_PHASES = (*PHASES, "masks")


def timed(function: Callable[..., Any], totals: dict[str, float], phase: str) -> Callable[..., Any]:
    """``function``, adding its wall-clock time to ``totals[phase]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[phase] += time.perf_counter() - start

    return wrapper


def profile_run(variant: str, env_id: str, hyperparams: dict[str, Any], steps: int, seed: int) -> dict[str, float]:
    """One ``learn(steps)``, instrumented: seconds per phase, and the total wall-clock and CPU time."""
    model = make_model("clip" if variant.startswith("clip") else variant, env_id, hyperparams, seed=seed)
    if variant == "clip_sb3_loop":
        model.fast_rollout = False
    if variant == "clip_sb3_update":
        model.fast_update = False
    return profile_learn(model, steps)


def profile_learn(model: Any, steps: int, **learn_kwargs: Any) -> dict[str, float]:
    """``model.learn(steps)``, instrumented: seconds per phase, and the total wall-clock and CPU time."""
    totals: dict[str, float] = defaultdict(float)
    vec_env = model.env
    while hasattr(vec_env, "venv"):  # VecNormalize and other wrappers
        vec_env = vec_env.venv
    for sub_env in vec_env.envs:  # DummyVecEnv: the environments themselves, Monitor included
        sub_env.step = timed(sub_env.step, totals, "env")
        sub_env.reset = timed(sub_env.reset, totals, "env")
        try:  # env_method("action_masks") finds it on the outermost wrapper first (get_wrapper_attr)
            sub_env.action_masks = timed(sub_env.get_wrapper_attr("action_masks"), totals, "masks")
        except AttributeError:  # no masks (the recurrent setups)
            pass
    model.collect_rollouts = timed(model.collect_rollouts, totals, "rollout")
    model.train = timed(model.train, totals, "update")
    model.policy.forward = timed(model.policy.forward, totals, "forward")  # SB3's loop calls policy(obs)
    fast_act, lstm_step = rollout.FastActorCritic.act, recurrent_rollout.FastLstmActorCritic.step
    rollout.FastActorCritic.act = timed(fast_act, totals, "forward")  # type: ignore[method-assign]
    # The recurrent fast loop's forward is the LSTM step, which calls act: its act is left untimed (counted once).
    recurrent_rollout.FastLstmActorCritic.act = fast_act  # type: ignore[method-assign]
    recurrent_rollout.FastLstmActorCritic.step = timed(lstm_step, totals, "forward")  # type: ignore[method-assign]
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        model.learn(steps, **learn_kwargs)
        totals["total"], totals["total CPU"] = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        rollout.FastActorCritic.act = fast_act  # type: ignore[method-assign]
        del recurrent_rollout.FastLstmActorCritic.act  # inherited again
        recurrent_rollout.FastLstmActorCritic.step = lstm_step  # type: ignore[method-assign]
    totals["bookkeeping"] = totals["rollout"] - totals["env"] - totals["forward"]
    return dict(totals)


def contrib_main(repeats: int, updates: int, names: list[str] | None = None) -> None:
    """sb3-contrib's algorithm and the variant (clip) on each setup of ``speed.py --suite contrib``, interleaved."""
    from speed import contrib_setups, rollout_size, select_setups

    order = random.Random(0)
    setups = select_setups(contrib_setups(), names)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for repeat in range(repeats):
        for name, (family, env_fn, hyperparams, _) in setups.items():
            variants = list(CONTRIB_VARIANTS[family][:2])  # sb3-contrib's algorithm, clip
            order.shuffle(variants)
            for variant in variants:
                model = make_contrib_model(family, variant, env_fn, hyperparams, seed=repeat)
                steps = updates * rollout_size(family, hyperparams)
                run = profile_learn(model, steps, **contrib_learn_kwargs(family, variant))
                run["steps"] = steps
                runs.setdefault(name, {}).setdefault(variant, []).append(run)
                print(f"repeat {repeat} {name:32s} {variant:14s} {run['total']:6.2f} s", flush=True)
    columns = (*CONTRIB_PHASES, "total", "total CPU")
    lines = [
        f"`python benchmarks/profile_phases.py --suite contrib --repeats {repeats} --updates {updates}`: µs per "
        "environment step (median over repeats)",
        "",
        "| setup | variant | " + " | ".join(columns) + " | total / sb3-contrib |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    for name, by_variant in runs.items():
        reference = CONTRIB_VARIANTS[setups[name][0]][0]
        medians = {
            variant: {c: float(np.median([run.get(c, 0.0) * 1e6 / run["steps"] for run in variant_runs])) for c in columns}
            for variant, variant_runs in by_variant.items()
        }
        for variant in (reference, "clip"):
            cells = " | ".join(f"{medians[variant][c]:.0f}" for c in columns)
            lines.append(f"| {name} | {variant} | {cells} | {medians[variant]['total'] / medians[reference]['total']:.3f} |")
    lines += ["", f"Versions: {contrib_versions()}", ""]
    results = {"repeats": repeats, "updates": updates, "versions": contrib_versions(), "runs": runs}
    save_results("profile_phases_contrib", results, "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suite", choices=("ppo", "contrib"), default="ppo", help="contrib: the sb3-contrib variants")
    parser.add_argument("--updates", type=int, default=3, help="contrib suite: rollouts and updates per run")
    parser.add_argument(
        "--setups", nargs="+", default=None, help="contrib suite: only these setups (names as in speed.py --suite contrib)"
    )
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.suite == "contrib":
        contrib_main(args.repeats, args.updates, args.setups)
        return
    order = random.Random(0)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {env: {v: [] for v in VARIANTS} for env in SETUPS}
    for repeat in range(args.repeats):
        for env_id, (hyperparams, steps) in SETUPS.items():
            variants = list(VARIANTS)
            order.shuffle(variants)  # interleaved, in a different order each repeat
            for variant in variants:
                runs[env_id][variant].append(profile_run(variant, env_id, hyperparams(), steps, seed=repeat))
                print(f"repeat {repeat} {env_id:12s} {variant:14s} {runs[env_id][variant][-1]['total']:6.2f} s", flush=True)

    columns = (*PHASES, "total", "total CPU")
    lines = [
        f"`python benchmarks/profile_phases.py --repeats {args.repeats}`: µs per environment step (median over repeats)",
        "",
        "| env | variant | " + " | ".join(columns) + " | total / SB3 PPO |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    for env_id, (_, steps) in SETUPS.items():
        medians = {
            variant: {c: float(np.median([run[c] for run in runs[env_id][variant]])) * 1e6 / steps for c in columns}
            for variant in VARIANTS
        }
        for variant in VARIANTS:
            cells = " | ".join(f"{medians[variant][c]:.0f}" for c in columns)
            ratio = medians[variant]["total"] / medians["sb3_ppo"]["total"]
            lines.append(f"| {env_id} | {LABELS[variant]} | {cells} | {ratio:.3f} |")
    lines += ["", f"Versions: {versions()}", ""]
    save_results("profile_phases", {"repeats": args.repeats, "versions": versions(), "runs": runs}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
