"""
Masks and memory together: MaskableRecurrentPPOVariant (every objective) against the two single-feature algorithms
of sb3-contrib, MaskablePPO (masks, no memory) and RecurrentPPO (memory, no masks), on CueCorridorEnv.

    python benchmarks/maskable_recurrent.py [--workers 2] [--seeds 3] [--timesteps 20000] [--length 4]

CueCorridorEnv (sb3_ppo_variants.envs) is a T-maze whose goal side is shown only at the first step, with only some
moves legal in each cell. A run's figures come from deterministic evaluation episodes on a separate env (masked for
the masked algorithms): the success rate (goal reached) and the fraction of steps spent on illegal moves, measured
every --eval-freq steps (100 episodes) and after training (500 episodes).
Targets: the masked recurrent variant solves the task (success >= 0.95); MaskablePPO cannot (no memory: ~0.5);
RecurrentPPO without masks learns slower or takes illegal actions.
"""

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch as th
from common import save_results, versions
from sb3_contrib import MaskablePPO, RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_ppo_variants import MaskableRecurrentPPOVariant
from sb3_ppo_variants.envs import CueCorridorEnv

ALGORITHMS = ("mrppo_clip", "mrppo_adaptive_kl", "mrppo_fixed_kl", "mrppo_none", "maskable_ppo", "recurrent_ppo")
#: Shared by every algorithm (MaskablePPO has the same MLP without the LSTM).
HYPERPARAMS: dict[str, Any] = {
    "n_steps": 16,
    "batch_size": 128,
    "n_epochs": 4,
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "ent_coef": 0.01,
}
N_ENVS = 16
LSTM_KWARGS = {"lstm_hidden_size": 32, "net_arch": [32]}


def make_model(algorithm: str, length: int, seed: int) -> Any:
    env = make_vec_env(CueCorridorEnv, n_envs=N_ENVS, seed=seed, env_kwargs={"length": length})
    common = {"seed": seed, "device": "cpu", **HYPERPARAMS}
    if algorithm == "maskable_ppo":
        return MaskablePPO("MlpPolicy", env, policy_kwargs={"net_arch": [32]}, **common)
    if algorithm == "recurrent_ppo":
        return RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=LSTM_KWARGS, **common)
    objective = algorithm.removeprefix("mrppo_")
    return MaskableRecurrentPPOVariant("MlpLstmPolicy", env, objective=objective, policy_kwargs=LSTM_KWARGS, **common)


def evaluate(model: Any, length: int, n_episodes: int, seed: int) -> dict[str, float]:
    """Deterministic episodes on a fresh env: success rate, illegal-move rate per step, mean episode length."""
    env = CueCorridorEnv(length=length)
    masked = not isinstance(model, RecurrentPPO)
    recurrent = not isinstance(model, MaskablePPO)
    successes, illegal, steps = 0, 0, 0
    for episode in range(n_episodes):
        observation, _ = env.reset(seed=seed * 100_000 + episode)
        state, episode_start, done = None, np.ones((1,), dtype=bool), False
        while not done:
            kwargs: dict[str, Any] = {"deterministic": True}
            if masked:
                kwargs["action_masks"] = env.action_masks()
            if recurrent:
                kwargs.update(state=state, episode_start=episode_start)
            action, state = model.predict(observation, **kwargs)
            observation, _, terminated, truncated, info = env.step(action)
            episode_start = np.zeros((1,), dtype=bool)
            illegal += info["illegal_action"]
            steps += 1
            done = terminated or truncated
        successes += bool(info["is_success"])
    return {"success": successes / n_episodes, "illegal_rate": illegal / steps, "episode_length": steps / n_episodes}


class EvalCallback(BaseCallback):
    """Evaluate every ``eval_freq`` steps (between rollouts: training itself is unaffected, the eval env is separate)."""

    def __init__(self, length: int, eval_freq: int, seed: int) -> None:
        super().__init__()
        self.length, self.eval_freq, self.seed = length, eval_freq, seed
        self.curve: list[dict[str, float]] = []
        self._next = eval_freq

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps >= self._next:
            self._next += self.eval_freq
            figures = evaluate(self.model, self.length, 100, self.seed + 1000)
            self.curve.append({"timesteps": self.num_timesteps, **figures})


def run(task: tuple[str, int, int, int, int]) -> dict[str, Any]:
    algorithm, seed, timesteps, length, eval_freq = task
    th.set_num_threads(1)
    start = time.process_time()
    model = make_model(algorithm, length, seed)
    callback = EvalCallback(length, eval_freq, seed)
    model.learn(timesteps, callback=callback)
    train_cpu = time.process_time() - start
    final = evaluate(model, length, 500, seed + 2000)
    solved_at = next((point["timesteps"] for point in callback.curve if point["success"] >= 0.95), None)
    print(
        f"{algorithm:18s} seed {seed}: success {final['success']:.3f}, illegal {final['illegal_rate']:.3f}, "
        f"solved at {solved_at}, {train_cpu:.0f} s CPU",
        flush=True,
    )
    return {
        "algorithm": algorithm,
        "seed": seed,
        "final": final,
        "curve": callback.curve,
        "solved_at": solved_at,
        "train_cpu_s": train_cpu,
    }


def markdown(args: argparse.Namespace, runs: list[dict[str, Any]]) -> str:
    lines = [
        "# Masks and memory: MaskableRecurrentPPOVariant vs MaskablePPO and RecurrentPPO",
        "",
        f"`python benchmarks/maskable_recurrent.py --seeds {args.seeds} --timesteps {args.timesteps} "
        f"--length {args.length} --eval-freq {args.eval_freq}` on `CueCorridorEnv(length={args.length})` "
        f"({N_ENVS} envs, {HYPERPARAMS}, LSTM {LSTM_KWARGS}).",
        "",
        "Deterministic evaluation after training (500 episodes per seed; masked for the masked algorithms). "
        "*success*: goal reached; *illegal*: fraction of steps spent on illegal moves; *solved at*: first evaluation "
        "(100 episodes, every --eval-freq steps) with success >= 0.95, per seed (— = never).",
        "",
        "| algorithm | success per seed | success mean | illegal mean | solved at (steps) | CPU s / run |",
        "|---|---|---|---|---|---|",
    ]
    for algorithm in ALGORITHMS:
        mine = sorted((r for r in runs if r["algorithm"] == algorithm), key=lambda r: r["seed"])
        if not mine:
            continue
        success = [r["final"]["success"] for r in mine]
        illegal = [r["final"]["illegal_rate"] for r in mine]
        solved = ", ".join("—" if r["solved_at"] is None else str(r["solved_at"]) for r in mine)
        lines.append(
            f"| {algorithm} | {', '.join(f'{s:.2f}' for s in success)} | {np.mean(success):.2f} | "
            f"{np.mean(illegal):.3f} | {solved} | {np.mean([r['train_cpu_s'] for r in mine]):.0f} |"
        )
    points = sorted({p["timesteps"] for r in runs for p in r["curve"]})
    for figure, title in (("success", "Success rate"), ("illegal_rate", "Fraction of steps on illegal moves")):
        lines += ["", f"{title} during training (deterministic, mean over seeds, 100 episodes per point):", ""]
        lines += ["| algorithm | " + " | ".join(str(t) for t in points) + " |", "|---|" + "---|" * len(points)]
        for algorithm in ALGORITHMS:
            mine = [r for r in runs if r["algorithm"] == algorithm]
            if not mine:
                continue
            cells = []
            for t in points:
                values = [p[figure] for r in mine for p in r["curve"] if p["timesteps"] == t]
                cells.append(f"{np.mean(values):.2f}" if values else "")
            lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Without memory the goal side is a coin flip, worth 0 in expectation, the same as wandering until the time limit: "
        "MaskablePPO's deterministic policy does not go to the junction (its episodes end at the time limit), so it "
        "scores 0 rather than the 0.5 a memoryless policy could reach. An illegal move costs 0.1 and a step; "
        "RecurrentPPO must learn to avoid them, which the masked algorithms never face.",
    ]
    lines += ["", f"Versions: {versions()}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--length", type=int, default=4)
    parser.add_argument("--eval-freq", type=int, default=2_500)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--no-save", action="store_true", help="print only (for trying settings)")
    args = parser.parse_args()
    tasks = [
        (algorithm, seed, args.timesteps, args.length, args.eval_freq)
        for algorithm, seed in itertools.product(args.algorithms, range(args.seeds))
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run, tasks))
    text = markdown(args, runs)
    if not args.no_save:
        results = {
            "args": vars(args),
            "hyperparams": HYPERPARAMS,
            "n_envs": N_ENVS,
            "lstm": LSTM_KWARGS,
            "runs": runs,
            "versions": versions(),
        }
        save_results("maskable_recurrent", results, text)
    print(text)


if __name__ == "__main__":
    main()
