"""
The package's rl-zoo settings: the shipped hyperparameter files, the hyperparameters an algorithm accepts, rl-zoo's
schedule strings (``kl_target`` included) and the Optuna storage preparation. Used by the overrides of
:mod:`sb3_ppo_variants.zoo.overrides`; nothing here changes rl-zoo.
"""

import inspect
import random
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from rl_zoo3.utils import SimpleLinearSchedule

from sb3_ppo_variants.ppo_variant import PPOVariant
from sb3_ppo_variants.schedules import KLAdaptiveLR
from sb3_ppo_variants.zoo.adapter import ZooConfigError

#: Name of the algorithm in rl-zoo (``--algo ppo_variant``).
ALGO = "ppo_variant"
#: Hyperparameter file used when no ``--conf-file`` is given.
DEFAULT_HYPERPARAMS_FILE = Path(__file__).resolve().parent.parent / "hyperparams" / f"{ALGO}.yml"


def zoo_hyperparams_file(algo: str) -> Path:
    """The hyperparameter file of ``algo`` shipped with the installed rl_zoo3 (it may not exist)."""
    import rl_zoo3

    return Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"


def default_hyperparams_file(algo: str) -> Path:
    """The hyperparameter file shipped for a variant (``hyperparams/<algo>.yml``), used when no --conf-file is given."""
    return DEFAULT_HYPERPARAMS_FILE.with_name(f"{algo}.yml")


#: Keys taking rl-zoo's ``lin_<start>`` schedule strings: rl-zoo's own and the variants' schedulable ones.
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std", "kl_target", "ent_coef", "vf_coef", "kl_coef")
#: The keys of SCHEDULE_KEYS that rl-zoo does not convert itself (converted here).
VARIANT_SCHEDULE_KEYS = ("kl_target", "ent_coef", "vf_coef", "kl_coef")
#: YAML form of a KL-adaptive learning rate: ``kl_adaptive_<initial rate>_<kl_target>``.
KL_ADAPTIVE_PREFIX = "kl_adaptive_"
#: Keys rl-zoo reads itself (they never reach the algorithm's constructor).
ZOO_KEYS = (
    "callback",
    "env_kwargs",
    "env_wrapper",
    "frame_stack",
    "monitor_kwargs",
    "n_envs",
    "n_timesteps",
    "normalize",
    "vec_env_wrapper",
)
#: Constructor arguments rl-zoo passes itself (a YAML key with one of these names is an error in rl-zoo too).
ZOO_CONSTRUCTOR_ARGS = ("env", "tensorboard_log", "seed", "verbose", "device")


def accepted_hyperparameters(algorithm: type = PPOVariant) -> list[str]:
    """Hyperparameters an algorithm accepts from a YAML file or ``--hyperparams``: its constructor's arguments."""
    parameters = inspect.signature(algorithm).parameters
    return sorted(name for name in parameters if name not in ("self", "_init_setup_model", *ZOO_CONSTRUCTOR_ARGS))


def schedule_from_string(key: str, value: str) -> SimpleLinearSchedule:
    """rl-zoo's ``lin_<start>`` schedule string, checked (rl-zoo would fail with an unpacking error or ignore a typo)."""
    kind, _, start = value.partition("_")
    try:
        if kind != "lin":
            raise ValueError
        return SimpleLinearSchedule(float(start))
    except ValueError:
        raise ZooConfigError(
            f"{key}={value!r} is not valid: use a number or a linear schedule 'lin_<initial value>', e.g. 'lin_0.001'"
        ) from None


def kl_adaptive_lr_from_string(value: str) -> KLAdaptiveLR:
    """``kl_adaptive_<initial>_<kl_target>`` (e.g. ``kl_adaptive_3e-4_0.01``) as a :class:`KLAdaptiveLR`."""
    parts = value.removeprefix(KL_ADAPTIVE_PREFIX).split("_")
    try:
        initial, kl_target = (float(part) for part in parts)
    except ValueError:
        raise ZooConfigError(
            f"learning_rate={value!r} is not valid: use '{KL_ADAPTIVE_PREFIX}<initial rate>_<kl_target>', "
            f"e.g. '{KL_ADAPTIVE_PREFIX}3e-4_0.01'"
        ) from None
    try:
        return KLAdaptiveLR(initial, kl_target=kl_target)
    except (TypeError, ValueError) as error:
        raise ZooConfigError(f"learning_rate={value!r} is not valid: {error}") from error


def convert_variant_hyperparams(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """
    Convert (in place) the YAML forms rl-zoo does not know: the variants' ``lin_`` schedules, a KL-adaptive
    ``learning_rate`` and an ``objective_kwargs`` string; check rl-zoo's own schedule strings.

    :return: the converted values rl-zoo would reject (``learning_rate``), removed from ``hyperparams`` until rl-zoo's
        pre-processing is done
    """
    held: dict[str, Any] = {}
    learning_rate = hyperparams.get("learning_rate")
    if isinstance(learning_rate, str) and learning_rate.startswith(KL_ADAPTIVE_PREFIX):
        held["learning_rate"] = kl_adaptive_lr_from_string(learning_rate)
    elif isinstance(learning_rate, KLAdaptiveLR):
        held["learning_rate"] = learning_rate
    if held:
        del hyperparams["learning_rate"]
    for key in SCHEDULE_KEYS:
        if isinstance(hyperparams.get(key), str):
            schedule = schedule_from_string(key, hyperparams[key])
            if key in VARIANT_SCHEDULE_KEYS:
                hyperparams[key] = schedule
    objective_kwargs = hyperparams.get("objective_kwargs")
    if isinstance(objective_kwargs, str):
        # As rl-zoo evaluates policy_kwargs (the YAML file is trusted code).
        objective_kwargs = eval(objective_kwargs)
    if isinstance(objective_kwargs, dict):
        hyperparams["objective_kwargs"] = {
            key: schedule_from_string(f"objective_kwargs[{key!r}]", value) if isinstance(value, str) else value
            for key, value in objective_kwargs.items()
        }
    return held


def prepare_storage(storage: str, attempts: int = 10) -> None:
    """
    Create the tables of a database storage (``sqlite:///...``, ``postgresql://...``) once, tolerating other workers
    doing the same at the same moment: workers started together on a new database race to create its tables and all
    but one fail with "table ... already exists" (optuna/optuna#1092, rl-baselines3-zoo#177). Journal files
    (``*.log``) need nothing.

    :param storage: rl-zoo's ``--storage`` value
    :param attempts: tries before the error is raised
    """
    if storage.endswith(".log"):
        return
    for attempt in range(attempts):
        try:
            optuna.storages.RDBStorage(storage)
            return
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.IntegrityError):
            if attempt == attempts - 1:
                raise
            # Another worker is creating the tables: let it finish, with jitter so retries do not collide again.
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.2)
