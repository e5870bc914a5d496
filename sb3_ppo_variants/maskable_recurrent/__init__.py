"""Invalid-action masking with LSTM policies: :class:`MaskableRecurrentPPOVariant`, its policies and buffers."""

from sb3_ppo_variants.maskable_recurrent.buffers import (
    MaskableRecurrentDictRolloutBuffer,
    MaskableRecurrentDictRolloutBufferSamples,
    MaskableRecurrentRolloutBuffer,
    MaskableRecurrentRolloutBufferSamples,
)
from sb3_ppo_variants.maskable_recurrent.policies import (
    CnnLstmPolicy,
    MaskableRecurrentActorCriticCnnPolicy,
    MaskableRecurrentActorCriticPolicy,
    MaskableRecurrentMultiInputActorCriticPolicy,
    MlpLstmPolicy,
    MultiInputLstmPolicy,
    StepMasks,
)
from sb3_ppo_variants.maskable_recurrent.ppo_mask_recurrent import MaskableRecurrentPPOVariant

__all__ = [
    "CnnLstmPolicy",
    "MaskableRecurrentActorCriticCnnPolicy",
    "MaskableRecurrentActorCriticPolicy",
    "MaskableRecurrentDictRolloutBuffer",
    "MaskableRecurrentDictRolloutBufferSamples",
    "MaskableRecurrentMultiInputActorCriticPolicy",
    "MaskableRecurrentPPOVariant",
    "MaskableRecurrentRolloutBuffer",
    "MaskableRecurrentRolloutBufferSamples",
    "MlpLstmPolicy",
    "MultiInputLstmPolicy",
    "StepMasks",
]
