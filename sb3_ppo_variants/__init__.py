"""PPO for Stable-Baselines3 with every surrogate objective of the PPO paper, selected by one argument."""

import importlib
import os
from typing import Any

from sb3_ppo_variants.kl import bernoulli_kl, categorical_kl, closed_form_kl, diag_gaussian_kl, sampled_kl
from sb3_ppo_variants.objectives import (
    OBJECTIVES,
    AdaptiveKLPenalty,
    AsymmetricClipSurrogate,
    ClippedSurrogate,
    DualClipSurrogate,
    FixedKLPenalty,
    ObjectiveOutput,
    PolicyBatch,
    SurrogateObjective,
    UnclippedSurrogate,
    make_objective,
    register_objective,
)
from sb3_ppo_variants.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_ppo_variants.ppo_variant import PPOVariant
from sb3_ppo_variants.schedules import KLAdaptiveLR
from sb3_ppo_variants.update_stats import NonFiniteLossError

#: Algorithms built on sb3-contrib (the ``contrib`` extra), imported when first used so that the package works without it.
CONTRIB_ALGORITHMS = {
    "MaskablePPOVariant": "sb3_ppo_variants.maskable",
    "MaskableRecurrentPPOVariant": "sb3_ppo_variants.maskable_recurrent",
    "RecurrentPPOVariant": "sb3_ppo_variants.recurrent",
}


def __getattr__(name: str) -> Any:
    if name in CONTRIB_ALGORITHMS:
        try:
            return getattr(importlib.import_module(CONTRIB_ALGORITHMS[name]), name)
        except ImportError as error:
            raise ImportError(
                f"{name} needs sb3-contrib ({error}): pip install 'sb3-ppo-variants[contrib]' (after a CPU build of torch)"
            ) from error
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "OBJECTIVES",
    "AdaptiveKLPenalty",
    "AsymmetricClipSurrogate",
    "ClippedSurrogate",
    "CnnPolicy",
    "DualClipSurrogate",
    "FixedKLPenalty",
    "KLAdaptiveLR",
    "MaskablePPOVariant",
    "MaskableRecurrentPPOVariant",
    "MlpPolicy",
    "MultiInputPolicy",
    "NonFiniteLossError",
    "ObjectiveOutput",
    "PPOVariant",
    "PolicyBatch",
    "RecurrentPPOVariant",
    "SurrogateObjective",
    "UnclippedSurrogate",
    "__version__",
    "bernoulli_kl",
    "categorical_kl",
    "closed_form_kl",
    "diag_gaussian_kl",
    "make_objective",
    "register_objective",
    "sampled_kl",
]
