"""Shared helpers of the benchmark scripts: rl-zoo's hyperparameters, building SB3 PPO or PPOVariant, results I/O."""

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import rl_zoo3
import stable_baselines3
import torch as th
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_ppo_variants
from sb3_ppo_variants import PPOVariant
from sb3_ppo_variants.atomic import atomic_write_text

RESULTS = Path(__file__).parent / "results"
#: "sb3_ppo" is SB3's own PPO; the others are PPOVariant objectives.
VARIANTS = ("sb3_ppo", "clip", "adaptive_kl", "fixed_kl", "none")


def zoo_ppo_hyperparams(env_id: str) -> dict[str, Any]:
    """rl-zoo's tuned SB3 PPO hyperparameters for ``env_id``, read from the installed rl_zoo3 (schedules converted)."""
    with open(Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo.yml") as file:
        hyperparams = dict(yaml.safe_load(file)[env_id])
    for key in ("n_timesteps", "policy", "normalize"):
        hyperparams.pop(key, None)
    return ExperimentManager._preprocess_schedules(hyperparams)


def make_model(variant: str, env_id: str, hyperparams: dict[str, Any], seed: int):
    """SB3 PPO (``variant="sb3_ppo"``) or PPOVariant with ``objective=variant``, on ``n_envs`` copies of the env."""
    hyperparams = dict(hyperparams)
    env = make_vec_env(env_id, n_envs=hyperparams.pop("n_envs", 1), seed=seed)
    if variant == "sb3_ppo":
        return PPO("MlpPolicy", env, seed=seed, device="cpu", **hyperparams)
    if variant == "sb3_ppo_foreach":  # SB3 PPO with the multi-tensor Adam that PPOVariant uses on CPU
        policy_kwargs = {"optimizer_kwargs": {"foreach": True}}
        return PPO("MlpPolicy", env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **hyperparams)
    return PPOVariant("MlpPolicy", env, objective=variant, seed=seed, device="cpu", **hyperparams)


def versions() -> dict[str, str]:
    return {
        "sb3_ppo_variants": sb3_ppo_variants.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": th.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; 1 torch thread per training run",
    }


def save_results(name: str, results: dict[str, Any], markdown: str) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` atomically."""
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(RESULTS / f"{name}.md", markdown)
