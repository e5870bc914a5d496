"""
The package's overrides of rl-zoo, all in this module: what ``ppo_variant`` and the maskable algorithms need where
rl-zoo has no public hook. Each was checked against rl-zoo 2.9.2 (``rl_zoo3/exp_manager.py``, ``train.py``,
``enjoy.py``); ``docs/zoo.md`` lists them. Everything else goes through what rl-zoo offers: its ``ALGOS``,
``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER`` registries, ``--conf-file``, ``--gym-packages``, the YAML's env
and callback wrappers.

:class:`PPOVariantExperimentManager` is rl-zoo's ``ExperimentManager`` (same arguments) with narrow overrides:

- ``__init__``: the default hyperparameter file is the one shipped in this package (rl-zoo looks for
  ``rl_zoo3/hyperparams/<algo>.yml``); the objectives an optimisation samples from;
- ``_preprocess_hyperparams``: ``kl_target``, ``ent_coef``, ``vf_coef`` and ``kl_coef`` accept rl-zoo's ``lin_<start>``
  schedule strings like ``learning_rate`` and ``clip_range``, ``learning_rate: kl_adaptive_<initial>_<kl_target>`` is a
  ``KLAdaptiveLR``, ``objective_kwargs`` strings are evaluated as ``policy_kwargs`` is, a malformed schedule string is
  reported by name, and the hyperparameters are checked against
  the algorithm's constructor before rl-zoo creates the run folder or any env (registered algorithms only);
- ``setup_experiment``: a run that fails while being set up leaves no half-made run folder; with ``-optimize`` the
  storage's tables are created first and the study's objective choices are checked;
- ``learn``: records whether training was interrupted (rl-zoo catches ``KeyboardInterrupt`` and returns normally);
- ``create_envs``: an env without action masks is an error for an algorithm that plays with them;
- ``create_callbacks``, ``hyperparameters_optimization``: masked evaluation callbacks for such algorithms;
- ``objective``: each trial records its worker and objective choices, and a non-finite loss prunes it.

Outside the manager: :func:`train` (rl-zoo's ``train()`` with this manager) and :func:`masked_play` (``enjoy`` and
``record_video`` with the env's masks).
"""

import difflib
import inspect
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import rl_zoo3.exp_manager
import rl_zoo3.utils
from optuna.storages.journal import JournalFileBackend
from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.objectives import check_objective
from sb3_ppo_variants.update_stats import NonFiniteLossError
from sb3_ppo_variants.zoo.adapter import (
    REGISTRY,
    ZooConfigError,
    algorithm_class,
    register,
    uses_action_masks,
    variant_keys,
)
from sb3_ppo_variants.zoo.evaluation import MaskedEvalCallback, MaskedPredictor, MaskedTrialEvalCallback, check_action_masks
from sb3_ppo_variants.zoo.exp_manager import (
    ZOO_CONSTRUCTOR_ARGS,
    ZOO_KEYS,
    accepted_hyperparameters,
    convert_variant_hyperparams,
    default_hyperparams_file,
    prepare_storage,
)
from sb3_ppo_variants.zoo.sampler import DEFAULT_OBJECTIVES, OBJECTIVE_CHOICES_ATTR


@contextmanager
def replaced(module: Any, name: str, value: Any) -> Iterator[None]:
    """``module.name`` is ``value`` inside the block (restored afterwards)."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


class TrainingEnd(BaseCallback):
    """Whether SB3's ``learn()`` reached its end: it calls ``on_training_end()`` then, and not on an exception."""

    reached = False

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.reached = True


class PPOVariantExperimentManager(ExperimentManager):
    """
    rl-zoo's experiment manager (same arguments), used by :func:`train` and by ``compare`` (one run is one experiment:
    :mod:`sb3_ppo_variants.zoo.experiment`). See the module docstring for what it adds; for unregistered algorithms it
    only adds the worker attribute of trials, the storage-table preparation, the clean-up of a run folder whose set-up
    failed and :attr:`interrupted`.
    """

    #: Whether the last :meth:`learn` ended on ``KeyboardInterrupt``.
    interrupted = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # rl-zoo 2.9.2 defaults ``config`` to rl_zoo3/hyperparams/<algo>.yml, where the variants have no file.
        super().__init__(*args, **kwargs)
        config = inspect.signature(ExperimentManager.__init__).bind(self, *args, **kwargs).arguments.get("config")
        if config is None and self.algo in variant_keys():
            self.config = str(default_hyperparams_file(self.algo))
        # Objectives an optimisation samples from: every built-in one unless the command line fixes some.
        fixed = (self.custom_hyperparams or {}).get("objective")
        self.objective_choices: list[Any] = list(DEFAULT_OBJECTIVES)
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
        # rl-zoo 2.9.2 creates the run folder before the envs and the model, and leaves it behind when they fail.
        folder_existed = os.path.exists(self.save_path)
        try:
            return super().setup_experiment()
        except BaseException:
            if not folder_existed:
                shutil.rmtree(self.save_path, ignore_errors=True)
            raise

    def prepare(self) -> dict[str, Any]:
        """
        The first step of rl-zoo's ``setup_experiment``, alone: read and pre-process the hyperparameters (checked),
        and set the env settings, so that :meth:`create_envs` works; no run folder, env or model is created.

        :return: the algorithm's keyword arguments (``policy`` included)
        :raises ZooConfigError: naming the bad hyperparameter
        """
        hyperparams, _ = self.read_hyperparameters()
        # rl-zoo 2.9.2 has no public method for this step (setup_experiment's first two lines).
        hyperparams, self.env_wrapper, self.callbacks, self.vec_env_wrapper = self._preprocess_hyperparams(hyperparams)
        return hyperparams

    def learn(self, model: BaseAlgorithm) -> None:
        """
        rl-zoo's ``learn``; :attr:`interrupted` says whether it ended on Ctrl-C. rl-zoo 2.9.2 catches
        ``KeyboardInterrupt`` in ``model.learn`` (so that ``train`` saves the model) and returns normally: a caller that
        must not take an interrupted run for a finished one reads :attr:`interrupted`.
        """
        self.interrupted = False
        end = TrainingEnd()
        callbacks = self.callbacks
        # rl-zoo 2.9.2's learn() also calls self.callbacks[0].on_training_end() in a finally: the sentinel is never
        # first (an empty CallbackList is a callback that does nothing).
        self.callbacks = [*(callbacks or [CallbackList([])]), end]
        try:
            super().learn(model)
        finally:
            self.callbacks = callbacks
        self.interrupted = not end.reached

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
        # rl-zoo 2.9.2 converts the schedule strings of its own keys only, and has no hook between reading the
        # hyperparameters and passing them to the constructor: the variants' own schedules, a KL-adaptive rate,
        # objective_kwargs strings and the check go here.
        held: dict[str, Any] = {}
        if self.algo in REGISTRY:
            # Schedule strings, checked (rl-zoo converts its own keys afterwards); the variants' converted here.
            held = convert_variant_hyperparams(hyperparams)
        hyperparams, env_wrapper, callbacks, vec_env_wrapper = super()._preprocess_hyperparams(hyperparams)
        hyperparams.update(held)
        if self.algo in REGISTRY:
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
        # rl-zoo 2.9.2's trial has no hook for user attributes, and stops the study on an exception other than NaN.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.algo in variant_keys():
            trial.set_user_attr(OBJECTIVE_CHOICES_ATTR, self.objective_choices)
        try:
            return super().objective(trial)
        except NonFiniteLossError as error:
            print(f"Trial {trial.number} pruned: {error}")
            raise optuna.TrialPruned() from error


@contextmanager
def masked_zoo_callbacks(algo: str) -> Iterator[None]:
    """
    Inside the block, the evaluation callbacks rl-zoo's ``ExperimentManager`` creates (``EvalCallback`` in
    ``create_callbacks``, ``TrialEvalCallback`` in ``objective``) evaluate with the env's masks, for an algorithm that
    uses them.
    """
    if not uses_action_masks(algo):
        yield
        return
    # Module attributes of rl_zoo3/exp_manager.py (rl-zoo 2.9.2), which imports both callback classes by name and
    # builds them inside create_callbacks() and objective(): replacing them there is the narrow way to change the class
    # without copying those methods. The replacements take the same arguments.
    with replaced(rl_zoo3.exp_manager, "EvalCallback", MaskedEvalCallback):
        with replaced(rl_zoo3.exp_manager, "TrialEvalCallback", MaskedTrialEvalCallback):
            yield


def train() -> None:
    """
    rl-zoo's ``train()`` (it parses ``sys.argv`` like ``python -m rl_zoo3.train``) with :class:`PPOVariantExperimentManager`
    and the package's algorithms registered (:func:`~sb3_ppo_variants.zoo.adapter.register`).
    """
    import rl_zoo3.train

    register()
    # rl-zoo 2.9.2's train() builds ``ExperimentManager`` (the name it imports from rl_zoo3.exp_manager) inline and
    # has no option for another class: it is replaced for this call only.
    with replaced(rl_zoo3.train, "ExperimentManager", PPOVariantExperimentManager):
        rl_zoo3.train.train()


@contextmanager
def masked_play(algo: str) -> Iterator[None]:
    """
    Inside the block, rl-zoo's ``enjoy`` and ``record_video`` play a model of ``algo`` with the env's masks at every
    step (for an algorithm that uses them; otherwise nothing changes). Both scripts load the model with
    ``ALGOS[algo].load(...)`` and call ``model.predict(obs, state=..., episode_start=..., deterministic=...)``; the
    loaded model is wrapped in a :class:`~sb3_ppo_variants.zoo.evaluation.MaskedPredictor` reading the env's masks.
    ``record_video`` passes the env to ``load``; ``enjoy`` does not, so its env is taken from its ``create_test_env``
    call.
    """
    if not uses_action_masks(algo):
        yield
        return
    import rl_zoo3.enjoy

    algorithm: Any = algorithm_class(algo)
    test_envs: list[VecEnv] = []

    def create_test_env(*args: Any, **kwargs: Any) -> VecEnv:
        env = rl_zoo3.utils.create_test_env(*args, **kwargs)
        test_envs.append(env)
        return env

    class MaskedLoader:
        """``ALGOS[algo]`` for ``enjoy`` and ``record_video``: only ``load`` is used there."""

        @staticmethod
        def load(*args: Any, env: VecEnv | None = None, **kwargs: Any) -> MaskedPredictor:
            played_env = env if env is not None else test_envs[-1]
            check_action_masks(algo, played_env, "test")
            return MaskedPredictor(algorithm.load(*args, env=env, **kwargs), played_env)

    # rl_zoo3.enjoy.create_test_env is the name enjoy() calls (imported from rl_zoo3.utils by rl_zoo3/enjoy.py, rl-zoo
    # 2.9.2); it is not part of rl-zoo's documented API, but it is the only way to learn which env enjoy plays in.
    # enjoy() and record_video load the model with ALGOS[algo].load, with no hook for a wrapper: the entry is replaced
    # for the block.
    with replaced(rl_zoo3.enjoy, "create_test_env", create_test_env):
        saved = rl_zoo3.utils.ALGOS[algo]
        rl_zoo3.utils.ALGOS[algo] = MaskedLoader  # type: ignore[assignment]
        try:
            yield
        finally:
            rl_zoo3.utils.ALGOS[algo] = saved
