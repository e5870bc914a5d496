"""
rl-baselines3-zoo integration: ``ppo_variant`` as an rl-zoo algorithm (train, enjoy, Optuna tuning), without a fork.

rl-zoo has no plugin hook (``--algo`` choices are fixed before ``--gym-packages`` is imported), so the entry points
``python -m sb3_ppo_variants.zoo train|enjoy ...`` (console script ``sb3-ppo-variants-zoo``) call :func:`register`
and then run rl-zoo's own ``train``/``enjoy`` with every rl-zoo argument. In your own script:

.. code-block:: python

    from sb3_ppo_variants.zoo import register

    register()
    from rl_zoo3.train import train

    train()  # parses sys.argv like `python -m rl_zoo3.train`, with --algo ppo_variant available
"""

try:
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER, convert_onpolicy_params
    from rl_zoo3.utils import ALGOS
except ImportError as error:  # pragma: no cover (the zoo extra is installed for the tests)
    raise ImportError(
        f"sb3_ppo_variants.zoo needs rl-baselines3-zoo and optuna ({error}): pip install 'sb3-ppo-variants[zoo]'"
    ) from error

from sb3_ppo_variants.ppo_variant import PPOVariant
from sb3_ppo_variants.zoo.exp_manager import (
    ALGO,
    DEFAULT_HYPERPARAMS_FILE,
    PPOVariantExperimentManager,
    ZooConfigError,
    accepted_hyperparameters,
)
from sb3_ppo_variants.zoo.sampler import sample_ppo_variant_params


def register() -> None:
    """
    Make ``ppo_variant`` an rl-zoo algorithm in this process (idempotent):

    - ``rl_zoo3.utils.ALGOS["ppo_variant"] = PPOVariant`` (``--algo`` choices, ``enjoy``'s loading);
    - ``HYPERPARAMS_SAMPLER["ppo_variant"]`` (``-optimize``) and ``HYPERPARAMS_CONVERTER["ppo_variant"]``
      (``--trial-id``: rl-zoo's on-policy converter, the objective's parameters pass through unchanged);
    - rl-zoo's ``train`` uses :class:`PPOVariantExperimentManager`, rl-zoo's manager with the shipped default
      hyperparameter file, ``kl_target`` schedules and early checks.
    """
    import rl_zoo3.train

    ALGOS[ALGO] = PPOVariant
    HYPERPARAMS_SAMPLER[ALGO] = sample_ppo_variant_params
    HYPERPARAMS_CONVERTER[ALGO] = convert_onpolicy_params
    rl_zoo3.train.ExperimentManager = PPOVariantExperimentManager  # type: ignore[misc]


__all__ = [
    "ALGO",
    "DEFAULT_HYPERPARAMS_FILE",
    "PPOVariantExperimentManager",
    "ZooConfigError",
    "accepted_hyperparameters",
    "register",
    "sample_ppo_variant_params",
]
