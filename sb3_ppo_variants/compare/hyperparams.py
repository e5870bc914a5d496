"""
Hyperparameters from rl-zoo-style YAML files, and building the environments and the model of a run, through rl_zoo3's
own code (``ExperimentManager``): the same lookup (env id, then ``default``), the same preprocessing (``lin_``
schedules, ``normalize``, ``policy_kwargs`` strings, ``env_kwargs``, wrappers, frame stacking, callbacks) and the same
environments (``make_vec_env`` with ``Monitor``, then ``VecNormalize``) as ``python -m rl_zoo3.train``. The manager is
the zoo's :class:`~sb3_ppo_variants.zoo.exp_manager.PPOVariantExperimentManager`, so the study converts (``lin_``
strings, ``kl_target`` included) and checks hyperparameters exactly as ``python -m sb3_ppo_variants.zoo train`` does.

A run's hyperparameters stay in their YAML form (JSON-serialisable) until the worker converts them, so a run
specification can be stored, hashed and sent to another machine.
"""

import contextlib
import copy
import io
import os
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sb3_ppo_variants.compare.specs import Method, RunSpec, StudyError, apply_method

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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """rl_zoo3's ExperimentManager prints its settings; a study prints its own progress instead."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _manager(algo: str, env_id: str, seed: int = 0, config: str | None = None) -> Any:
    from sb3_ppo_variants.zoo.exp_manager import PPOVariantExperimentManager

    # Nothing is written: the log folder is only created by ExperimentManager.setup_experiment(), never called here.
    with _quiet():
        return PPOVariantExperimentManager(
            Namespace(), algo, env_id, log_folder=os.devnull, seed=seed, verbose=0, config=config or os.devnull
        )


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
        import rl_zoo3

        path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{text.removeprefix(ZOO_PREFIX)}.yml"
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
    manager = _manager("ppo_variant", env_id, config=str(path))
    try:
        with _quiet():
            hyperparams, _ = manager.read_hyperparameters()
    except ValueError as error:
        raise StudyError(f"--hyperparams: no entry for {env_id!r} in {path} and no 'default' entry") from error
    return copy.deepcopy(dict(hyperparams))


def zoo_tuned_entry(algo: str, env_id: str) -> dict[str, Any] | None:
    """rl-zoo's tuned hyperparameters of ``algo`` for exactly ``env_id`` (not its ``default``), if it has some."""
    import rl_zoo3

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"
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
    from sb3_ppo_variants.zoo.adapter import ALGOS

    if method.algo == ALGOS[variant].baselines[0]:
        return hyperparams
    tuned = zoo_tuned_entry(method.algo, env_id)
    if tuned is not None:
        tuned.pop("n_timesteps", None)
        return tuned
    return {key: hyperparams[key] for key in SHARED_KEYS if key in hyperparams}


def preprocess(spec: RunSpec) -> tuple[Any, dict[str, Any], list[Any]]:
    """
    Convert and check a run's YAML-form hyperparameters with the zoo's ``_preprocess_hyperparams`` (rl-zoo's, plus
    ``kl_target`` schedules and the check against the algorithm's constructor).

    :return: the configured ExperimentManager (it knows the env settings), the model's keyword arguments (including
        ``policy``) and the callbacks the YAML asks for
    """
    hyperparams = copy.deepcopy(spec.hyperparams)
    hyperparams["n_timesteps"] = spec.timesteps
    hyperparams.setdefault("policy", "MlpPolicy")
    manager = _manager(spec.algo, spec.env_id, seed=spec.seed)
    with _quiet():
        hyperparams, env_wrapper, callbacks, vec_env_wrapper = manager._preprocess_hyperparams(hyperparams)
    manager.env_wrapper, manager.vec_env_wrapper = env_wrapper, vec_env_wrapper
    return manager, hyperparams, callbacks


def check_hyperparams(spec: RunSpec) -> None:
    """
    Check a run's hyperparameters without creating an environment or a network (see :func:`preprocess`).

    :raises StudyError: naming the env, the method and the problem
    """
    try:
        preprocess(spec)
    except Exception as error:
        raise StudyError(
            f"--hyperparams/--params: the hyperparameters of {spec.method} on {spec.env_id} are not valid: "
            f"{type(error).__name__}: {error}"
        ) from error


def make_envs(manager: Any, n_envs: int, evaluation: bool = False) -> Any:
    """rl_zoo3's environments (Monitor first, so episode returns are the raw rewards) for a preprocessed manager."""
    with _quiet():
        return manager.create_envs(n_envs, eval_env=evaluation, no_log=True)
