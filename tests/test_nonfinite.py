"""A non-finite loss stops training with an error naming the term, and the last good parameters stay in place."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_ppo_variants import ClippedSurrogate, NonFiniteLossError, ObjectiveOutput, PPOVariant

KWARGS = dict(n_steps=64, batch_size=32, n_epochs=2, seed=0)


def snapshot(model):
    return [parameter.detach().clone() for parameter in model.policy.parameters()]


class NaNOnUpdate(ClippedSurrogate):
    """Returns a NaN loss from the 3rd minibatch of the given update on."""

    def __init__(self, bad_update: int):
        super().__init__(0.2)
        self.bad_update = bad_update
        self.update = -1
        self.calls = 0

    def begin_update(self, progress_remaining):
        super().begin_update(progress_remaining)
        self.update += 1
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        output = super().loss(batch)
        if self.update == self.bad_update and self.calls >= 3:
            return ObjectiveOutput(output.loss * th.tensor(float("nan")))
        return output


def test_nan_policy_loss_names_term_and_restores_parameters():
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective=NaNOnUpdate(bad_update=1), **KWARGS)
    model.learn(64)
    good = snapshot(model)
    good_optimizer_steps = model.policy.optimizer.state_dict()["state"][0]["step"].item()
    with pytest.raises(NonFiniteLossError, match=r"policy_gradient_loss.*epoch 1, minibatch 2") as error:
        model.learn(64, reset_num_timesteps=False)
    assert "value_loss" not in str(error.value)
    for before, after in zip(good, snapshot(model), strict=True):
        assert th.equal(before, after)
    assert model.policy.optimizer.state_dict()["state"][0]["step"].item() == good_optimizer_steps
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


class NaNReward(gym.Wrapper):
    def __init__(self, env, after_steps: int):
        super().__init__(env)
        self.steps, self.after_steps = 0, after_steps

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (np.nan if self.steps > self.after_steps else reward), terminated, truncated, info


def test_nan_reward_names_value_loss():
    env = NaNReward(gym.make("CartPole-v1"), after_steps=100)
    model = PPOVariant("MlpPolicy", env, **KWARGS)
    model.learn(64)
    good = snapshot(model)
    with pytest.raises(NonFiniteLossError, match="value_loss") as error:
        model.learn(64, reset_num_timesteps=False)
    assert "restored" in str(error.value)
    for before, after in zip(good, snapshot(model), strict=True):
        assert th.equal(before, after)
