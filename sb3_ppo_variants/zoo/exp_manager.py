"""
rl-zoo's ``ExperimentManager`` with the few additions ``ppo_variant`` needs, each a narrow override:

- the default hyperparameter file is the one shipped in this package (rl-zoo looks for ``rl_zoo3/hyperparams/<algo>.yml``);
- ``kl_target``, ``ent_coef``, ``vf_coef`` and ``kl_coef`` accept rl-zoo's ``lin_<start>`` schedule strings, like
  ``learning_rate`` and ``clip_range``, and a malformed schedule string is reported by name;
- ``learning_rate: kl_adaptive_<initial>_<kl_target>`` is a :class:`~sb3_ppo_variants.KLAdaptiveLR`, and
  ``objective_kwargs: "dict(dual_clip=3.0)"`` is evaluated as rl-zoo evaluates ``policy_kwargs`` (its values may be
  ``lin_<start>`` strings too);
- the hyperparameters are checked against the algorithm's constructor before rl-zoo creates the run folder or any env
  (for the algorithms registered in :mod:`sb3_ppo_variants.zoo.adapter`: the variants and compare's baselines);
- a run that fails while being set up leaves no half-made run folder;
- ``-optimize``: workers started together on a new database do not fail creating its tables,
  ``--hyperparams objective:...`` restricts the sampled objectives, each trial records the worker
  (host:pid) that ran it, and a trial whose loss went non-finite is pruned (as rl-zoo prunes NaN trials);
- algorithms that play with action masks (``ppo_mask_variant``, ``ppo_mask_lstm_variant``, ``ppo_mask``) are evaluated
  with the eval env's masks, in ``--eval-freq`` evaluations (curves, best model) and in Optuna trials (score,
  pruning), and an env without masks is an error before training starts (:mod:`sb3_ppo_variants.zoo.evaluation`).
"""

import difflib
import inspect
import os
import random
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import SimpleLinearSchedule
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.objectives import check_objective
from sb3_ppo_variants.ppo_variant import PPOVariant
from sb3_ppo_variants.schedules import KLAdaptiveLR
from sb3_ppo_variants.update_stats import NonFiniteLossError
from sb3_ppo_variants.zoo.adapter import ALGOS, ZooConfigError, algorithm_class, variant_keys
from sb3_ppo_variants.zoo.evaluation import check_action_masks, masked_zoo_callbacks
from sb3_ppo_variants.zoo.sampler import OBJECTIVE_CHOICES_ATTR, PAPER_OBJECTIVES

#: Name of the algorithm in rl-zoo (``--algo ppo_variant``).
ALGO = "ppo_variant"
#: Hyperparameter file used when no ``--conf-file`` is given.
DEFAULT_HYPERPARAMS_FILE = Path(__file__).resolve().parent.parent / "hyperparams" / f"{ALGO}.yml"


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


def _schedule_from_string(key: str, value: str) -> SimpleLinearSchedule:
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
            schedule = _schedule_from_string(key, hyperparams[key])
            if key in VARIANT_SCHEDULE_KEYS:
                hyperparams[key] = schedule
    objective_kwargs = hyperparams.get("objective_kwargs")
    if isinstance(objective_kwargs, str):
        # As rl-zoo evaluates policy_kwargs (the YAML file is trusted code).
        objective_kwargs = eval(objective_kwargs)
    if isinstance(objective_kwargs, dict):
        hyperparams["objective_kwargs"] = {
            key: _schedule_from_string(f"objective_kwargs[{key!r}]", value) if isinstance(value, str) else value
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


class PPOVariantExperimentManager(ExperimentManager):
    """
    rl-zoo's experiment manager (same arguments), used by ``python -m sb3_ppo_variants.zoo train`` and by ``compare``
    (hyperparameter conversion and check). See the module docstring for what it adds; for unregistered algorithms it
    only adds the worker attribute of trials, the storage-table
    preparation and the clean-up of a run folder whose set-up failed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = inspect.signature(ExperimentManager.__init__).bind(self, *args, **kwargs).arguments.get("config")
        if config is None and self.algo in variant_keys():
            self.config = str(default_hyperparams_file(self.algo))
        # Objectives an optimisation samples from: all of the paper's unless the command line fixes some.
        fixed = (self.custom_hyperparams or {}).get("objective")
        self.objective_choices: list[Any] = list(PAPER_OBJECTIVES)
        if self.algo in variant_keys() and self.optimize_hyperparameters and fixed is not None:
            self.objective_choices = list(fixed) if isinstance(fixed, (list, tuple)) else [fixed]

    def setup_experiment(self) -> tuple[BaseAlgorithm, dict[str, Any]] | None:
        """
        rl-zoo's set-up; if it fails, the run folder it started is removed (the error is re-raised). With ``-optimize``
        and ``--storage``, the storage's tables are created first (see :func:`prepare_storage`) and the study's
        objective choices are checked.
        """
        if self.optimize_hyperparameters and self.storage is not None:
            prepare_storage(self.storage)
            if self.algo in variant_keys() and self.study_name is not None:
                self.check_study_objectives()
        folder_existed = os.path.exists(self.save_path)
        try:
            return super().setup_experiment()
        except BaseException:
            if not folder_existed:
                shutil.rmtree(self.save_path, ignore_errors=True)
            raise

    def create_callbacks(self) -> None:
        """rl-zoo's callbacks; for an algorithm that uses action masks, its ``EvalCallback`` evaluates with them."""
        with masked_zoo_callbacks(self.algo):
            super().create_callbacks()

    def hyperparameters_optimization(self) -> None:
        """rl-zoo's tuning; for an algorithm that uses action masks, each trial is evaluated (and pruned) with them."""
        with masked_zoo_callbacks(self.algo):
            super().hyperparameters_optimization()

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        """rl-zoo's envs; for an algorithm that uses action masks, an env without masks is an error (before training)."""
        env = super().create_envs(n_envs, eval_env=eval_env, no_log=no_log)
        try:
            check_action_masks(self.algo, env, "evaluation" if eval_env else "training")
        except ZooConfigError:
            env.close()
            raise
        return env

    def _preprocess_hyperparams(
        self, hyperparams: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable | None, list[BaseCallback], Callable | None]:
        held: dict[str, Any] = {}
        if self.algo in ALGOS:
            # Schedule strings, checked (rl-zoo converts its own keys afterwards); the variants' converted here.
            held = convert_variant_hyperparams(hyperparams)
        hyperparams, env_wrapper, callbacks, vec_env_wrapper = super()._preprocess_hyperparams(hyperparams)
        hyperparams.update(held)
        if self.algo in ALGOS:
            self.check_hyperparameters(hyperparams)
        return hyperparams, env_wrapper, callbacks, vec_env_wrapper

    def check_hyperparameters(self, hyperparams: dict[str, Any]) -> None:
        """
        Check the algorithm's hyperparameters (what rl-zoo passes to the constructor) without creating an env or a
        network: unknown keys, and every value PPOVariant validates (objective, ε, β, d_targ, ...).

        :param hyperparams: hyperparameters left after rl-zoo's pre-processing
        :raises ZooConfigError: naming the key, the value and the accepted ones
        """
        source = f"{self.config} or --hyperparams"
        algorithm = algorithm_class(self.algo)
        accepted = accepted_hyperparameters(algorithm)
        for key in hyperparams:
            if key in ZOO_CONSTRUCTOR_ARGS:
                raise ZooConfigError(
                    f"hyperparameter {key!r} (from {source}) cannot be set there: rl-zoo passes it itself "
                    "(use the command-line options --seed, --verbose, --device, -tb)"
                )
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted + list(ZOO_KEYS), n=1)
                raise ZooConfigError(
                    f"unknown hyperparameter {key!r} for {self.algo} on {self.env_name.gym_id} (from {source})"
                    + (f"; did you mean {close[0]!r}?" if close else "")
                    + f"\n{algorithm.__name__} accepts: {', '.join(accepted)}\nrl-zoo also reads: {', '.join(ZOO_KEYS)}"
                )
        arguments = dict(hyperparams)
        objective = arguments.get("objective")
        if self.optimize_hyperparameters and isinstance(objective, (list, tuple)):
            # -optimize: a list restricts the sampled objectives; each must be valid.
            if not objective:
                raise ZooConfigError("objective=[] is not valid: give at least one objective to sample from")
            for name in objective:
                self._raise_config_error(check_objective, name)
            arguments["objective"] = objective[0]
        # The same call rl-zoo makes, minus the env and the network.
        self._raise_config_error(
            algorithm,
            env=None,
            tensorboard_log=self.tensorboard_log,
            seed=self.seed,
            device=self.device,
            verbose=0,
            _init_setup_model=False,
            **arguments,
        )

    def _raise_config_error(self, check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise ZooConfigError(
                f"invalid hyperparameters for {self.algo} on {self.env_name.gym_id} (from {self.config} or --hyperparams): "
                f"{error}"
            ) from error

    def check_study_objectives(self) -> None:
        """
        Check that this worker samples the objective among the same choices as the study's earlier trials: Optuna
        does not allow a parameter's choices to change within a study (and would fail in the middle of a trial).

        :raises ZooConfigError: naming both sets of choices
        """
        assert self.storage is not None and self.study_name is not None
        storage: str | optuna.storages.BaseStorage = self.storage
        if self.storage.endswith(".log"):
            if not os.path.isfile(self.storage):  # a new journal
                return
            storage = optuna.storages.JournalStorage(JournalFileBackend(self.storage))
        try:
            study = optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:  # a new study
            return
        for trial in study.get_trials(deepcopy=False):
            distribution = trial.distributions.get("objective")
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                if list(distribution.choices) != list(self.objective_choices):
                    raise ZooConfigError(
                        f"study {self.study_name!r} samples objective among {list(distribution.choices)}, this worker "
                        f"among {self.objective_choices} (--hyperparams objective:...): Optuna cannot change a "
                        "parameter's choices within a study. Use the same objective choices, or another --study-name."
                    )
                return

    def objective(self, trial: optuna.Trial) -> float:
        """rl-zoo's trial, which records its worker, samples among ``objective_choices`` and prunes non-finite losses."""
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.algo in variant_keys():
            trial.set_user_attr(OBJECTIVE_CHOICES_ATTR, self.objective_choices)
        try:
            return super().objective(trial)
        except NonFiniteLossError as error:
            print(f"Trial {trial.number} pruned: {error}")
            raise optuna.TrialPruned() from error
