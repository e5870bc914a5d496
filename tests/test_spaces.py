"""Every action space and Dict observations train with every objective."""

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)

from sb3_ppo_variants import OBJECTIVES, PPOVariant

ENVS = {
    "Discrete": lambda: IdentityEnv(4),
    "Box": lambda: IdentityEnvBox(-1.0, 1.0),
    "MultiDiscrete": lambda: IdentityEnvMultiDiscrete(3),
    "MultiBinary": lambda: IdentityEnvMultiBinary(3),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("space", sorted(ENVS))
def test_action_space(space, objective):
    model = PPOVariant(
        "MlpPolicy", ENVS[space](), objective=objective, n_steps=64, batch_size=32, n_epochs=2, seed=0, log_kl=True
    )
    model.learn(256)
    values = model.logger.name_to_value
    assert model._n_updates == 4 * 2
    # After an update the policy has moved: the exact KL is positive (a KL stuck at 0 means π_old = π_θ, pitfall 5).
    assert np.isfinite(values["train/kl"]) and values["train/kl"] > 0
    assert np.isfinite(values["train/loss"])
    action, _ = model.predict(model.observation_space.sample(), deterministic=True)
    assert model.action_space.contains(action.astype(model.action_space.dtype))


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_dict_observations(objective):
    env = SimpleMultiObsEnv(random_start=False)
    assert isinstance(env.observation_space, spaces.Dict)
    model = PPOVariant(
        "MultiInputPolicy", env, objective=objective, n_steps=64, batch_size=32, n_epochs=2, seed=0, log_kl=True
    )
    model.learn(256)
    assert np.isfinite(model.logger.name_to_value["train/kl"]) and model.logger.name_to_value["train/kl"] > 0


@pytest.mark.parametrize("objective", ["adaptive_kl", "fixed_kl"])
def test_gsde_box(objective):
    model = PPOVariant(
        "MlpPolicy", "Pendulum-v1", objective=objective, use_sde=True, n_steps=64, batch_size=32, n_epochs=2, seed=0
    )
    model.learn(128)
    assert model.logger.name_to_value["train/kl"] > 0
