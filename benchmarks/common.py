"""
Shared helpers of the benchmark scripts: rl-zoo's hyperparameters, building SB3 PPO or PPOVariant (and the contrib
variants against sb3-contrib's MaskablePPO / RecurrentPPO), results I/O.
"""

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


def zoo_hyperparams(env_id: str, file: str) -> dict[str, Any]:
    """
    rl-zoo's hyperparameters for ``env_id`` from ``hyperparams/<file>`` of the installed rl_zoo3 (e.g. ``ppo_lstm.yml``):
    schedules converted, ``policy_kwargs`` evaluated as rl-zoo does; ``n_envs`` and ``normalize`` are kept for the
    caller, ``n_timesteps`` and ``policy`` dropped.
    """
    with open(Path(rl_zoo3.__file__).parent / "hyperparams" / file) as file_handle:
        hyperparams = dict(yaml.safe_load(file_handle)[env_id])
    for key in ("n_timesteps", "policy"):
        hyperparams.pop(key, None)
    if isinstance(hyperparams.get("policy_kwargs"), str):
        hyperparams["policy_kwargs"] = eval(hyperparams["policy_kwargs"], {"nn": th.nn, "dict": dict})
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
    if variant == "clip_torch_adam":  # clip with torch's own zero_grad / clip_grad_norm_ / Adam.step (no FlatAdam)
        model = PPOVariant("MlpPolicy", env, objective="clip", seed=seed, device="cpu", **hyperparams)
        # FlatAdam stands in for an optimizer without step hooks only (update.flat_adam_unsupported_reason): this
        # empty hook makes the update run the optimizer's own code, one extra Python call per minibatch.
        model.policy.optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: None)
        return model
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


#: The contrib families: sb3-contrib's algorithm (reference), its variant here, and their default policy.
CONTRIB_FAMILIES = {
    "maskable": ("maskable_ppo", "MlpPolicy"),
    "recurrent": ("recurrent_ppo", "MlpLstmPolicy"),
    # MaskableRecurrentPPOVariant against RecurrentPPO, trained with learn(use_masking=False)
    "maskable_recurrent": ("recurrent_ppo", "MlpLstmPolicy"),
}
#: Variants of each contrib family: sb3-contrib's algorithm, then each objective.
CONTRIB_VARIANTS = {family: (reference, *VARIANTS[1:]) for family, (reference, _) in CONTRIB_FAMILIES.items()}


def make_contrib_model(family: str, variant: str, env_fn: Any, hyperparams: dict[str, Any], seed: int):
    """
    sb3-contrib's ``MaskablePPO``/``RecurrentPPO`` (``variant="maskable_ppo"``/``"recurrent_ppo"``) or
    ``MaskablePPOVariant``/``RecurrentPPOVariant``/``MaskableRecurrentPPOVariant`` with ``objective=variant``, on
    ``n_envs`` copies of ``env_fn`` (an env id or a callable), wrapped in ``VecNormalize`` (rl-zoo's way: ``gamma`` of
    the algorithm) if ``normalize``.
    """
    from sb3_contrib import MaskablePPO, RecurrentPPO
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_ppo_variants import MaskablePPOVariant, MaskableRecurrentPPOVariant, RecurrentPPOVariant

    hyperparams = dict(hyperparams)
    env = make_vec_env(env_fn, n_envs=hyperparams.pop("n_envs", 1), seed=seed)
    if hyperparams.pop("normalize", False):
        env = VecNormalize(env, gamma=hyperparams.get("gamma", 0.99))
    reference, policy = CONTRIB_FAMILIES[family]
    if variant == reference:
        algo = MaskablePPO if family == "maskable" else RecurrentPPO
        return algo(policy, env, seed=seed, device="cpu", **hyperparams)
    algo = {"maskable": MaskablePPOVariant, "recurrent": RecurrentPPOVariant}.get(family, MaskableRecurrentPPOVariant)
    return algo(policy, env, objective=variant, seed=seed, device="cpu", **hyperparams)


def contrib_learn_kwargs(family: str, variant: str) -> dict[str, Any]:
    """``learn()``'s extra arguments: the masked recurrent variant runs without masks (its envs have none)."""
    return {"use_masking": False} if family == "maskable_recurrent" and variant != "recurrent_ppo" else {}


def package_hyperparams(algorithm: str, env_id: str) -> dict[str, Any]:
    """The package's shipped hyperparameters (``sb3_ppo_variants/hyperparams/<algorithm>.yml``), minus rl-zoo's keys."""
    with open(Path(sb3_ppo_variants.__file__).parent / "hyperparams" / f"{algorithm}.yml") as file_handle:
        hyperparams = dict(yaml.safe_load(file_handle)[env_id])
    for key in ("n_timesteps", "policy", "objective", "env_wrapper"):
        hyperparams.pop(key, None)
    return hyperparams


def contrib_versions() -> dict[str, str]:
    import sb3_contrib

    return {**versions(), "sb3_contrib": sb3_contrib.__version__}
