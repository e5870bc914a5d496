"""
rl-baselines3-zoo integration: ``ppo_variant`` as an rl-zoo algorithm (train, enjoy, record-video, Optuna tuning),
without a fork. Maskable algorithms use the env's action masks in all of them (:mod:`sb3_ppo_variants.zoo.evaluation`).

rl-zoo has no plugin hook (``--algo`` choices are fixed before ``--gym-packages`` is imported), so the entry points
``python -m sb3_ppo_variants.zoo train|enjoy|record-video ...`` (console script ``sb3-ppo-variants-zoo``) call
:func:`register` and then run rl-zoo's own ``train``/``enjoy``/``record_video`` with every rl-zoo argument. In your
own script:

.. code-block:: python

    from sb3_ppo_variants.zoo import train

    train()  # parses sys.argv like `python -m rl_zoo3.train`, with --algo ppo_variant available

Where rl-zoo has no public hook, the package overrides it in one module, :mod:`sb3_ppo_variants.zoo.overrides`.
"""

try:
    import optuna  # noqa: F401 (rl-zoo's tuning)
    import rl_zoo3.utils  # noqa: F401
except ImportError as error:  # pragma: no cover (the zoo extra is installed for the tests)
    raise ImportError(
        f"sb3_ppo_variants.zoo needs rl-baselines3-zoo and optuna ({error}): pip install 'sb3-ppo-variants[zoo]'"
    ) from error

from sb3_ppo_variants.zoo.adapter import Algo, ZooConfigError, register, register_algo
from sb3_ppo_variants.zoo.exp_manager import ALGO, DEFAULT_HYPERPARAMS_FILE, accepted_hyperparameters
from sb3_ppo_variants.zoo.overrides import PPOVariantExperimentManager, train
from sb3_ppo_variants.zoo.sampler import sample_ppo_variant_params

__all__ = [
    "ALGO",
    "DEFAULT_HYPERPARAMS_FILE",
    "Algo",
    "PPOVariantExperimentManager",
    "ZooConfigError",
    "accepted_hyperparameters",
    "register",
    "register_algo",
    "sample_ppo_variant_params",
    "train",
]
