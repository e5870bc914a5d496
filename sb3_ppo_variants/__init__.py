"""PPO for Stable-Baselines3 with every surrogate objective of the PPO paper, selected by one argument."""

import os

from sb3_ppo_variants.kl import bernoulli_kl, categorical_kl, closed_form_kl, diag_gaussian_kl, sampled_kl
from sb3_ppo_variants.objectives import (
    OBJECTIVES,
    AdaptiveKLPenalty,
    ClippedSurrogate,
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
from sb3_ppo_variants.update_stats import NonFiniteLossError

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "OBJECTIVES",
    "AdaptiveKLPenalty",
    "ClippedSurrogate",
    "CnnPolicy",
    "FixedKLPenalty",
    "MlpPolicy",
    "MultiInputPolicy",
    "NonFiniteLossError",
    "ObjectiveOutput",
    "PPOVariant",
    "PolicyBatch",
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
