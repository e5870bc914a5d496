"""
The package's rl-zoo settings: the shipped hyperparameter files, the hyperparameters an algorithm accepts, rl-zoo's
schedule strings (``kl_target`` included) and the Optuna storage preparation. Used by the overrides of
:mod:`sb3_ppo_variants.zoo.overrides`; nothing here changes rl-zoo.
"""

import inspect
import random
import time
from pathlib import Path

import optuna
import sqlalchemy.exc
from rl_zoo3.utils import SimpleLinearSchedule

from sb3_ppo_variants.ppo_variant import PPOVariant
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


#: Keys taking rl-zoo's ``lin_<start>`` schedule strings: rl-zoo's own and PPOVariant's schedulable d_targ.
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std", "kl_target")
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
