"""
One rl-zoo experiment, as ``compare`` runs it: rl-zoo's experiment manager (the package's,
:class:`~sb3_ppo_variants.zoo.overrides.PPOVariantExperimentManager`) built as rl-zoo's ``train`` builds it from its
command line, the hyperparameters given as rl-zoo's ``--conf-file`` (one entry, for the run's env), in a temporary log
folder. A run is then ``setup_experiment()`` and ``learn()``, and its envs come from ``create_envs()``.
"""

import contextlib
import io
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sb3_ppo_variants.zoo.adapter import register
from sb3_ppo_variants.zoo.overrides import PPOVariantExperimentManager

#: Name of the ``--conf-file`` written in an experiment's log folder.
CONFIG_FILE = "hyperparams.yml"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """rl-zoo prints its settings and paths; the study prints its own progress instead."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def experiment_manager(
    algo: str, env_id: str, log_folder: str | Path, config: str | Path, seed: int = 0, n_timesteps: int = 0
) -> PPOVariantExperimentManager:
    """
    The manager rl-zoo's ``train`` builds for ``train --algo ALGO --env ENV_ID -f LOG_FOLDER --conf-file CONFIG
    --seed SEED -n N_TIMESTEPS --eval-freq -1 --device cpu --verbose 0`` (rl-zoo's defaults for every other option),
    with the package's algorithms registered.

    :param algo: rl-zoo algorithm key
    :param env_id: registered env id
    :param log_folder: rl-zoo's ``-f`` (the run folder is created in it by ``setup_experiment()``)
    :param config: rl-zoo's ``--conf-file``
    :param seed: seed of the model and the envs
    :param n_timesteps: budget (0: the entry's ``n_timesteps``)
    """
    register()
    # The options given on that command line, as train() passes them (it also keeps them in args: args.yml).
    args = Namespace(algo=algo, env=env_id, log_folder=str(log_folder), conf_file=str(config), seed=seed,
                     n_timesteps=n_timesteps, eval_freq=-1, log_interval=-1, device="cpu", verbose=0)  # fmt: skip
    with quiet():
        return PPOVariantExperimentManager(
            args,
            algo,
            env_id,
            args.log_folder,
            n_timesteps=n_timesteps,
            eval_freq=args.eval_freq,
            seed=seed,
            log_interval=args.log_interval,
            verbose=args.verbose,
            device=args.device,
            config=args.conf_file,
        )


def write_config(folder: str | Path, env_id: str, entry: dict[str, Any]) -> Path:
    """Write an rl-zoo hyperparameter file with ``entry`` for ``env_id`` in ``folder``; return its path."""
    path = Path(folder) / CONFIG_FILE
    path.write_text(yaml.safe_dump({env_id: entry}, sort_keys=False))
    return path


@contextlib.contextmanager
def experiment(algo: str, env_id: str, entry: dict[str, Any], seed: int = 0, n_timesteps: int = 0) -> Iterator[
    PPOVariantExperimentManager
]:  # fmt: skip
    """
    :func:`experiment_manager` for ``entry`` (an rl-zoo entry: ``policy`` and ``n_timesteps`` included), in a
    temporary log folder removed at the end of the block, with rl-zoo's printing silenced in it.
    """
    with tempfile.TemporaryDirectory(prefix="sb3-ppo-variants-experiment-") as folder, quiet():
        yield experiment_manager(algo, env_id, folder, write_config(folder, env_id, entry), seed, n_timesteps)


def read_entry(config: str | Path, env_id: str) -> dict[str, Any]:
    """
    The entry of ``env_id`` in an rl-zoo hyperparameter file, as rl-zoo's ``train`` looks it up: the env id, else
    ``atari`` for Atari games, else ``default``.

    :raises ValueError: rl-zoo's, when there is none
    """
    with tempfile.TemporaryDirectory(prefix="sb3-ppo-variants-experiment-") as folder:
        manager = experiment_manager("ppo_variant", env_id, folder, config)
        with quiet():
            hyperparams, _ = manager.read_hyperparameters()
    return dict(hyperparams)
