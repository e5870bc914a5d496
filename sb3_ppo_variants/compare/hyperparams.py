"""
A run's hyperparameters, in rl-zoo's YAML form: read from an rl-zoo-style file (rl-zoo's lookup: env id, ``atari``,
``default``), with the method's settings applied. They stay in that form (JSON-serialisable) until the run's rl-zoo
experiment converts them (:mod:`sb3_ppo_variants.zoo.experiment`), so a run specification can be stored, hashed and
sent to another machine, and the study converts (``lin_`` strings, ``kl_target`` included) and checks them exactly as
``python -m sb3_ppo_variants.zoo train`` does.
"""

import copy
from pathlib import Path
from typing import Any

import yaml

from sb3_ppo_variants.compare.specs import Method, RunSpec, StudyError, apply_method
from sb3_ppo_variants.zoo.adapter import REGISTRY
from sb3_ppo_variants.zoo.exp_manager import zoo_hyperparams_file

#: Keys that describe the environment, the policy network and the problem (discount) rather than an algorithm's update
#: rule. Baselines without tuned rl-zoo hyperparameters for an env inherit these from the study's entry.
SHARED_KEYS = tuple(
    "n_envs normalize env_kwargs env_wrapper vec_env_wrapper frame_stack monitor_kwargs "
    "policy policy_kwargs gamma gae_lambda use_sde sde_sample_freq".split()
)
#: PPOVariant's own arguments, which SB3 PPO does not accept.
VARIANT_ONLY_KEYS = ("objective", "kl_coef", "kl_target", "log_kl", "objective_kwargs")
#: Prefix of ``--hyperparams`` values that name a file shipped with the installed rl_zoo3 (``rl_zoo3:ppo``).
ZOO_PREFIX = "rl_zoo3:"


def resolve_hyperparams_file(value: str | Path | None) -> Path | None:
    """
    The YAML file of ``--hyperparams``: a path, or ``rl_zoo3:<algo>`` for the file shipped with the installed rl_zoo3
    (e.g. ``rl_zoo3:ppo``, rl-zoo's tuned SB3 PPO hyperparameters).

    :raises StudyError: the file does not exist or is not an rl-zoo-style YAML mapping
    """
    if value is None:
        return None
    text = str(value)
    if text.startswith(ZOO_PREFIX):
        path = zoo_hyperparams_file(text.removeprefix(ZOO_PREFIX))
    else:
        path = Path(text).expanduser()
    if not path.is_file():
        raise StudyError(f"--hyperparams: file {str(value)!r} not found ({path})")
    if path.suffix not in (".yml", ".yaml"):
        raise StudyError(f"--hyperparams: {str(value)!r} must be an rl-zoo-style .yml/.yaml file")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise StudyError(f"--hyperparams: cannot parse {path}: {error}") from error
    if not isinstance(content, dict) or not all(isinstance(entry, dict) for entry in content.values()):
        raise StudyError(f"--hyperparams: {path} must map env ids (or 'default') to dicts of hyperparameters")
    return path


def read_entry(path: Path | None, env_id: str) -> dict[str, Any]:
    """
    The hyperparameters of ``env_id`` in an rl-zoo-style YAML file, looked up like rl-zoo does (the env id, else the
    ``atari`` entry for Atari games, else ``default``). No file: ``{}``, i.e. the algorithm's defaults (for
    PPOVariant these are SB3 PPO's, which are the paper's Table 3 settings).

    :raises StudyError: no entry for ``env_id`` and no ``default`` entry
    """
    if path is None:
        return {}
    from sb3_ppo_variants.zoo.experiment import read_entry as read_zoo_entry

    try:
        return read_zoo_entry(path, env_id)
    except ValueError as error:
        raise StudyError(f"--hyperparams: no entry for {env_id!r} in {path} and no 'default' entry") from error


def zoo_tuned_entry(algo: str, env_id: str) -> dict[str, Any] | None:
    """rl-zoo's tuned hyperparameters of ``algo`` for exactly ``env_id`` (not its ``default``), if it has some."""
    path = zoo_hyperparams_file(algo)
    if not path.is_file():
        return None
    entries = yaml.safe_load(path.read_text())
    entry = entries.get(env_id)
    return copy.deepcopy(dict(entry)) if isinstance(entry, dict) else None


def method_hyperparams(entry: dict[str, Any], method: Method, env_id: str, variant: str = "ppo_variant") -> dict[str, Any]:
    """
    A run's hyperparameters (YAML form, without ``n_timesteps``) from the env's entry of the study's file:

    - objective configurations: the entry, with ``objective`` and the spec's value (ε, d_targ or β) set;
    - the algorithm the variant extends (``ppo``, SB3 PPO, for ``ppo_variant``): the entry without the variant's own
      keys, i.e. exactly what ``clip`` runs use;
    - the other baselines (``trpo``, ``a2c``): rl-zoo's tuned hyperparameters for ``env_id`` if the installed rl_zoo3
      has them; otherwise the algorithm's defaults with the entry's environment, network and discount settings
      (:data:`SHARED_KEYS`).
    """
    hyperparams = copy.deepcopy(entry)
    hyperparams.pop("n_timesteps", None)
    if not method.is_baseline:
        apply_method(hyperparams, method)
        return hyperparams
    for key in VARIANT_ONLY_KEYS:
        hyperparams.pop(key, None)
    if method.algo == REGISTRY[variant].baselines[0]:
        return hyperparams
    tuned = zoo_tuned_entry(method.algo, env_id)
    if tuned is not None:
        tuned.pop("n_timesteps", None)
        return tuned
    return {key: hyperparams[key] for key in SHARED_KEYS if key in hyperparams}


def zoo_entry(spec: RunSpec) -> dict[str, Any]:
    """The run's entry of its rl-zoo hyperparameter file: its hyperparameters, budget and policy (``MlpPolicy``)."""
    return {"policy": "MlpPolicy", **copy.deepcopy(spec.hyperparams), "n_timesteps": spec.timesteps}


def check_hyperparams(spec: RunSpec) -> None:
    """
    Check a run's hyperparameters as its rl-zoo experiment reads them, without creating an environment or a network.

    :raises StudyError: naming the env, the method and the problem
    """
    from sb3_ppo_variants.zoo.experiment import experiment

    try:
        with experiment(spec.algo, spec.env_id, zoo_entry(spec), spec.seed) as manager:
            manager.prepare()
    except Exception as error:
        raise StudyError(
            f"--hyperparams/--params: the hyperparameters of {spec.method} on {spec.env_id} are not valid: "
            f"{type(error).__name__}: {error}"
        ) from error
