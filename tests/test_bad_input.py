"""Bad input fails before any work, with an error naming the parameter, the value and the accepted range."""

import math

import pytest
import torch as th

from sb3_ppo_variants import AdaptiveKLPenalty, ClippedSurrogate, FixedKLPenalty, PPOVariant


class NotAnEnv:
    """Creating a PPOVariant with this env would fail; every check must fire before the env is touched."""


BAD_ARGUMENTS = [
    # (kwargs, exception, fragments that must appear in the message)
    ({"objective": "klpen"}, ValueError, ["objective", "'klpen'", "'clip'", "'adaptive_kl'", "'fixed_kl'", "'none'"]),
    ({"objective": 3}, TypeError, ["objective", "3", "loss"]),
    ({"objective": object()}, TypeError, ["objective", "begin_update", "end_update"]),
    ({"clip_range": 0.0}, ValueError, ["clip_range", "0.0", "> 0"]),
    ({"clip_range": -0.2}, ValueError, ["clip_range", "-0.2", "> 0"]),
    ({"clip_range": math.nan}, ValueError, ["clip_range", "nan"]),
    ({"clip_range": lambda progress: -1.0}, ValueError, ["clip_range", "-1.0", "> 0"]),
    ({"clip_range": "0.2"}, TypeError, ["clip_range", "'0.2'"]),
    ({"clip_range_vf": 0.0}, ValueError, ["clip_range_vf", "0.0", "> 0"]),
    ({"kl_coef": -1.0}, ValueError, ["kl_coef", "-1.0", ">= 0"]),
    ({"kl_coef": math.nan}, ValueError, ["kl_coef", "nan"]),
    ({"kl_coef": math.inf}, ValueError, ["kl_coef", "inf"]),
    ({"kl_target": 0.0}, ValueError, ["kl_target", "0.0", "> 0"]),
    ({"kl_target": -0.01}, ValueError, ["kl_target", "-0.01", "> 0"]),
    ({"objective": "adaptive_kl", "kl_coef": 0.0}, ValueError, ["kl_coef", "0.0", "[0.0001, 10000]"]),
    ({"n_epochs": 0}, ValueError, ["n_epochs", "0", ">= 1"]),
    ({"n_epochs": 2.5}, TypeError, ["n_epochs", "2.5", "integer"]),
    ({"batch_size": 0}, ValueError, ["batch_size", "0", ">= 1"]),
    ({"batch_size": 1}, ValueError, ["batch_size", "1", "normalize_advantage"]),
    ({"n_steps": 0}, ValueError, ["n_steps", "0", ">= 1"]),
    ({"gamma": 1.5}, ValueError, ["gamma", "1.5", "[0, 1]"]),
    ({"gamma": -0.1}, ValueError, ["gamma", "-0.1", "[0, 1]"]),
    ({"gae_lambda": 1.01}, ValueError, ["gae_lambda", "1.01", "[0, 1]"]),
    ({"ent_coef": -0.01}, ValueError, ["ent_coef", "-0.01", ">= 0"]),
    ({"vf_coef": -0.5}, ValueError, ["vf_coef", "-0.5", ">= 0"]),
    ({"max_grad_norm": 0.0}, ValueError, ["max_grad_norm", "0.0", "> 0"]),
    ({"learning_rate": 0.0}, ValueError, ["learning_rate", "0.0", "> 0"]),
    ({"target_kl": 0.0}, ValueError, ["target_kl", "0.0", "> 0"]),
    ({"normalize_advantage": 1}, TypeError, ["normalize_advantage", "1"]),
    ({"use_sde": "yes"}, TypeError, ["use_sde", "'yes'"]),
    ({"sde_sample_freq": -2}, ValueError, ["sde_sample_freq", "-2", ">= -1"]),
    ({"stats_window_size": 0}, ValueError, ["stats_window_size", "0", ">= 1"]),
    ({"seed": -1}, ValueError, ["seed", "-1"]),
    ({"rollout_buffer_class": dict}, TypeError, ["rollout_buffer_class", "RolloutBuffer"]),
    ({"policy_kwargs": [64, 64]}, TypeError, ["policy_kwargs", "[64, 64]", "dict"]),
]


@pytest.mark.parametrize(
    "kwargs, exception, fragments",
    BAD_ARGUMENTS,
    ids=[f"{index}-{'-'.join(case[0])}" for index, case in enumerate(BAD_ARGUMENTS)],
)
def test_bad_constructor_argument(kwargs, exception, fragments):
    with pytest.raises(exception) as error:
        PPOVariant("MlpPolicy", NotAnEnv(), **kwargs)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} missing from: {error.value}"


def test_rollout_too_small_for_advantage_normalisation():
    with pytest.raises(ValueError, match=r"n_steps \* n_envs must be >= 2.*n_steps=1"):
        PPOVariant("MlpPolicy", "CartPole-v1", n_steps=1, batch_size=2)


@pytest.mark.parametrize(
    "total_timesteps, exception, fragment",
    [
        (-1, ValueError, ">= 0"),
        (math.nan, ValueError, "nan"),
        (1e3 + 0.5, ValueError, "whole number"),
        ("1e4", TypeError, "'1e4'"),
    ],
)
def test_bad_learn_budget(total_timesteps, exception, fragment):
    model = PPOVariant("MlpPolicy", "CartPole-v1", n_steps=64)
    with pytest.raises(exception, match="total_timesteps") as error:
        model.learn(total_timesteps)
    assert fragment in str(error.value)
    assert model.num_timesteps == 0  # nothing ran


def test_float_budget_is_accepted():
    model = PPOVariant("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1).learn(1.28e2)
    assert model.num_timesteps == 128


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda: ClippedSurrogate(clip_range=0), ["clip_range", "0"]),
        (lambda: FixedKLPenalty(kl_coef=-2), ["kl_coef", "-2"]),
        (lambda: AdaptiveKLPenalty(kl_target=0), ["kl_target", "0"]),
        (lambda: AdaptiveKLPenalty(kl_coef_bounds=(1.0, 0.5)), ["kl_coef_bounds[1]", "0.5"]),
        (lambda: AdaptiveKLPenalty(kl_coef=100.0, kl_coef_bounds=(0.1, 10.0)), ["kl_coef", "100.0", "[0.1, 10]"]),
        (lambda: AdaptiveKLPenalty(tolerance=1.0), ["tolerance", "1.0", "> 1"]),
        (lambda: AdaptiveKLPenalty(factor=0.5), ["factor", "0.5", "> 1"]),
    ],
)
def test_bad_objective_argument(make, fragments):
    with pytest.raises(ValueError) as error:
        make()
    for fragment in fragments:
        assert fragment in str(error.value)


def test_kl_coef_setter_rejects_negative():
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="fixed_kl")
    with pytest.raises(ValueError, match="kl_coef"):
        model.kl_coef = -1.0
    model.kl_coef = 2.0
    assert model.kl_coef == 2.0 == model.objective.kl_coef


def test_optimizer_kwargs_none_is_accepted_like_sb3():
    """SB3's PPO accepts optimizer_kwargs=None (no extra arguments); so does PPOVariant, and it still picks foreach Adam."""
    model = PPOVariant(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=32,
        policy_kwargs=dict(optimizer_class=th.optim.AdamW, optimizer_kwargs=None),
    )
    assert isinstance(model.policy.optimizer, th.optim.AdamW)
    assert model.policy.optimizer.param_groups[0]["foreach"] is True
    model.learn(64)
