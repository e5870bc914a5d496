"""InfoActionMasker: action masks from info["action_mask"] (e.g. Taxi-v4) for the maskable algorithms."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

from sb3_ppo_variants.maskable import MaskablePPOVariant
from sb3_ppo_variants.wrappers import InfoActionMasker


class IllegalActionChecker(gym.Wrapper):
    """Fails the step if the action is not legal under the mask the env reported with the previous observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.steps = 0

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self.mask = info["action_mask"]
        return observation, info

    def step(self, action):
        assert self.mask[int(action)], f"illegal action {action} under mask {self.mask}"
        self.steps += 1
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.mask = info["action_mask"]
        return observation, reward, terminated, truncated, info


def make_taxi():
    return InfoActionMasker(IllegalActionChecker(gym.make("Taxi-v4")))


@pytest.mark.parametrize("objective", ["clip", "adaptive_kl"])
def test_taxi_trains_without_illegal_actions(objective):
    env = make_vec_env(make_taxi, n_envs=2, seed=0)
    model = MaskablePPOVariant("MlpPolicy", env, objective=objective, n_steps=64, batch_size=64, n_epochs=2, seed=0)
    model.learn(3 * 128)
    assert sum(env.get_attr("steps")) == 3 * 128  # every step went through the check
    # The masks stored with the rollout are the env's: each taken action is legal under its stored mask too.
    buffer = model.rollout_buffer
    actions = buffer.actions.reshape(-1).astype(int)
    masks = buffer.action_masks.reshape(len(actions), -1)
    assert masks[np.arange(len(actions)), actions].all() and not masks.all()
    # Prediction with the env's masks also only picks legal actions.
    observations = env.reset()
    env_masks = np.stack(env.env_method("action_masks"))
    for _ in range(20):
        actions, _ = model.predict(observations, action_masks=env_masks, deterministic=False)
        assert env_masks[np.arange(2), actions].all()


def test_masks_follow_info():
    env = make_taxi()
    _, info = env.reset(seed=0)
    np.testing.assert_array_equal(env.action_masks(), info["action_mask"].astype(bool))
    legal = int(np.flatnonzero(info["action_mask"])[0])
    *_, info = env.step(legal)
    np.testing.assert_array_equal(env.action_masks(), info["action_mask"].astype(bool))
    assert env.action_masks().dtype == bool


class NoMaskInfo(gym.Wrapper):
    """Drops the action mask from the info dict."""

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {key: value for key, value in info.items() if key != "action_mask"}


def test_missing_info_key_is_a_clear_error():
    env = InfoActionMasker(NoMaskInfo(gym.make("Taxi-v4")))
    with pytest.raises(KeyError, match=r"'action_mask'.*prob"):
        env.reset(seed=0)
    with pytest.raises(KeyError, match="'legal'"):
        InfoActionMasker(gym.make("Taxi-v4"), key="legal").reset(seed=0)


def test_masks_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before reset"):
        InfoActionMasker(gym.make("Taxi-v4")).action_masks()
