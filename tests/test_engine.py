"""The update engine: real subclasses of sb3-contrib's algorithms, the public fast plan, the counterparts' exceptions."""

from pathlib import Path

import numpy as np
import pytest
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.evaluation import evaluate_policy as evaluate_masked_policy
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_ppo_variants import (
    AdaptiveKLPenalty,
    MaskablePPOVariant,
    MaskableRecurrentPPOVariant,
    PPOVariant,
    RecurrentPPOVariant,
)

SAVED_MODELS = Path(__file__).parent / "fixtures" / "saved_models"
SMALL = dict(n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
LSTM = dict(policy_kwargs=dict(lstm_hidden_size=8, net_arch=[8]))


def masked_env() -> InvalidActionEnvDiscrete:
    return InvalidActionEnvDiscrete(dim=8, n_invalid_actions=4)


def test_contrib_variants_are_subclasses_of_their_counterparts():
    assert isinstance(MaskablePPOVariant("MlpPolicy", masked_env(), **SMALL), MaskablePPO)
    assert isinstance(RecurrentPPOVariant("MlpLstmPolicy", "CartPole-v1", **LSTM, **SMALL), RecurrentPPO)
    combined = MaskableRecurrentPPOVariant("MlpLstmPolicy", masked_env(), **LSTM, **SMALL)
    assert isinstance(combined, RecurrentPPOVariant) and isinstance(combined, RecurrentPPO)
    # PPOVariant is the package's own PPO on SB3's OnPolicyAlgorithm, not SB3's PPO
    assert "PPO" not in {cls.__name__ for cls in PPOVariant.__mro__}


def test_sb3_contrib_masked_evaluation_works_as_with_maskable_ppo(tmp_path):
    """sb3-contrib's MaskableEvalCallback and masked evaluate_policy accept the variant as a MaskablePPO."""
    model = MaskablePPOVariant("MlpPolicy", masked_env(), **SMALL)
    callback = MaskableEvalCallback(masked_env(), eval_freq=32, n_eval_episodes=2, log_path=str(tmp_path), verbose=0)
    model.learn(64, callback=callback)
    evaluations = np.load(tmp_path / "evaluations.npz")
    assert evaluations["results"].shape == (2, 2)
    mean_reward, _ = evaluate_masked_policy(model, masked_env(), n_eval_episodes=3, use_masking=True)
    assert np.isfinite(mean_reward)


@pytest.mark.parametrize(
    "algorithm, policy, env",
    [
        (MaskablePPOVariant, ActorCriticPolicy, masked_env),  # sb3-contrib's MaskablePPO: ValueError
        (PPOVariant, "MlpLstmPolicy", lambda: "CartPole-v1"),
    ],
)
def test_wrong_policy_raises_both_type_and_value_error(algorithm, policy, env):
    for error in (TypeError, ValueError):
        with pytest.raises(error, match="policy="):
            algorithm(policy, env(), **SMALL)


@pytest.mark.parametrize("algorithm", [PPOVariant, MaskablePPOVariant])
def test_sb3s_assertions_are_also_value_errors(algorithm):
    """SB3's PPO asserts a positive clip_range_vf and a rollout of at least two samples; ours raise a ValueError too."""
    env = masked_env() if algorithm is MaskablePPOVariant else "CartPole-v1"
    for error in (AssertionError, ValueError):
        with pytest.raises(error, match="clip_range_vf"):
            algorithm("MlpPolicy", env, clip_range_vf=-0.1, **SMALL)
        with pytest.raises(error, match="n_steps \\* n_envs"):
            algorithm("MlpPolicy", env, **{**SMALL, "n_steps": 1, "batch_size": None})


def test_fast_path_of_each_setup():
    """The plan says which fast parts ran; every fallback names its reason."""
    hopper = PPOVariant("MlpPolicy", "Hopper-v5", **SMALL).learn(32).fast_path
    assert hopper.fallbacks() == {"old_policy": "no π_old: the objective uses no KL and log_kl=False"}
    assert hopper.rollout_loop is None and hopper.optimizer_step is None and hopper.sequence_lstm is None
    cartpole = PPOVariant("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8), objective="adaptive_kl", **SMALL)
    assert cartpole.learn(8 * 32).fast_path.fallbacks() == {}
    image = PPOVariant("CnnPolicy", FakeImageEnv(screen_height=36, screen_width=36), **SMALL).learn(32).fast_path
    assert (
        image.rollout_loop == image.policy_evaluation == "policy class ActorCriticCnnPolicy (only ActorCriticPolicy/MlpPolicy)"
    )
    assert image.minibatches is None  # SB3's own buffer: the fast minibatches still apply
    masked = MaskablePPOVariant("MlpPolicy", masked_env(), **SMALL).learn(32).fast_path
    assert masked.rollout_loop is masked.minibatches is masked.policy_evaluation is masked.optimizer_step is None
    recurrent = RecurrentPPOVariant("MlpLstmPolicy", "CartPole-v1", log_kl=True, **LSTM, **SMALL).learn(32).fast_path
    assert recurrent.old_policy is recurrent.minibatches is recurrent.sequence_lstm is recurrent.optimizer_step is None
    assert recurrent.rollout_loop is None


def test_verbose_2_prints_the_fast_path_when_it_changes(capsys):
    model = PPOVariant("MlpPolicy", "CartPole-v1", verbose=2, **SMALL)
    model.learn(3 * 32)
    printed = capsys.readouterr().out
    assert printed.count("Fast path of PPOVariant:") == 1 and "rollout_loop" in printed
    model.ent_coef = 0.01  # the entropy now has a gradient: the plan changes
    model.learn(32, reset_num_timesteps=False)
    assert "entropy_graph      fallback: ent_coef = 0.01" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, algorithm",
    [
        ("ppo_variant", PPOVariant),
        ("ppo_mask_variant", MaskablePPOVariant),
        ("ppo_lstm_variant", RecurrentPPOVariant),
        ("ppo_mask_lstm_variant", MaskableRecurrentPPOVariant),
    ],
)
def test_models_saved_by_an_earlier_version_load_and_train(name, algorithm):
    """tests/fixtures/saved_models holds models written before the engine existed (see make.py there)."""
    env = masked_env() if "mask" in name else make_vec_env("CartPole-v1")
    model = algorithm.load(SAVED_MODELS / f"{name}.zip", env=env, device="cpu")
    assert isinstance(model.objective, AdaptiveKLPenalty)
    assert model.kl_coef == 0.25
    updates = model._n_updates
    model.learn(32, reset_num_timesteps=False)
    assert model._n_updates == updates + model.n_epochs
    assert model.kl_coef in (0.125, 0.25, 0.5)  # one more application of the adaptive rule
