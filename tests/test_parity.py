"""With objective="clip", PPOVariant must train exactly like SB3 PPO for the same seed and hyperparameters."""

import pytest
from conftest import assert_same_training_state
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_ppo_variants import PPOVariant

CASES = {
    "cartpole": ("CartPole-v1", dict(n_steps=128, batch_size=32, n_epochs=3)),
    "pendulum_gsde_vf_clip": (
        "Pendulum-v1",
        dict(n_steps=128, batch_size=32, n_epochs=3, use_sde=True, sde_sample_freq=4, clip_range_vf=0.2, ent_coef=0.01),
    ),
    "cartpole_target_kl": ("CartPole-v1", dict(n_steps=128, batch_size=32, n_epochs=10, learning_rate=3e-3, target_kl=0.002)),
    "acrobot_schedules": (
        "Acrobot-v1",
        dict(n_steps=64, n_epochs=2, batch_size=64, n_envs=2, learning_rate=lambda p: 1e-3 * p, clip_range=lambda p: 0.3 * p),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_clip_matches_sb3_ppo(case):
    env_id, kwargs = CASES[case]
    kwargs = dict(kwargs)
    n_envs = kwargs.pop("n_envs", 1)
    models = []
    for algo in (PPO, PPOVariant):
        env = make_vec_env(env_id, n_envs=n_envs, seed=7) if n_envs > 1 else env_id
        model = algo("MlpPolicy", env, seed=7, device="cpu", **kwargs)
        models.append(model.learn(3 * kwargs["n_steps"] * n_envs))  # 3 updates
    sb3_ppo, variant = models
    assert variant._n_updates == sb3_ppo._n_updates >= 2
    assert_same_training_state(variant, sb3_ppo)
