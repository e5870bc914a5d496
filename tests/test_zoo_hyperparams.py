"""The shipped hyperparameter file: every entry parses, goes through rl-zoo's pre-processing and builds a PPOVariant."""

import argparse
from pathlib import Path

import gymnasium as gym
import pytest
import rl_zoo3
import yaml
from gymnasium.error import DependencyNotInstalled
from rl_zoo3.utils import SimpleLinearSchedule
from stable_baselines3.common.vec_env import unwrap_vec_normalize

from sb3_ppo_variants import PPOVariant
from sb3_ppo_variants.zoo import DEFAULT_HYPERPARAMS_FILE, PPOVariantExperimentManager

with open(DEFAULT_HYPERPARAMS_FILE) as file:
    SHIPPED = yaml.safe_load(file)
with open(Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo.yml") as file:
    ZOO_PPO = yaml.safe_load(file)

REQUIRED = [
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "Pendulum-v1",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "BipedalWalker-v3",
    "atari",
]
PAPER_MUJOCO = [
    f"{name}-v5"
    for name in ("HalfCheetah", "Hopper", "InvertedDoublePendulum", "InvertedPendulum", "Reacher", "Swimmer", "Walker2d")
]
#: An env each non-env entry applies to.
ENV_OF_ENTRY = {"atari": "PongNoFrameskip-v4", "default": "FrozenLake-v1"}


def manager(env_id: str, log_folder: Path, **hyperparams) -> PPOVariantExperimentManager:
    """The experiment manager as `train` creates it (no --conf-file: the shipped file)."""
    return PPOVariantExperimentManager(
        argparse.Namespace(), "ppo_variant", env_id, str(log_folder), hyperparams=hyperparams or None, seed=0, device="cpu"
    )


def env_installed(env_id: str) -> bool:
    if env_id not in gym.envs.registry:
        return False
    try:
        gym.make(env_id).close()
    except DependencyNotInstalled:
        return False
    return True


def test_required_entries_are_shipped():
    for key in REQUIRED + PAPER_MUJOCO:
        assert key in SHIPPED, key


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_entry_is_rl_zoo_ppo_plus_objective(key):
    entry = dict(SHIPPED[key])
    assert entry.pop("objective") == "clip"
    if key in PAPER_MUJOCO:
        # The paper's Table 3 and Table 1 policy (SB3's default MlpPolicy), 1M steps.
        table_3 = dict(n_steps=2048, learning_rate=3e-4, n_epochs=10, batch_size=64, gamma=0.99, gae_lambda=0.95)
        assert {name: entry[name] for name in table_3} == table_3
        assert entry["n_timesteps"] == 1e6 and entry["n_envs"] == 1 and entry["ent_coef"] == 0.0
        assert "policy_kwargs" not in entry
    else:
        # An existing PPO config works by adding the objective line: the rest is rl-zoo's entry.
        assert entry == ZOO_PPO[key]


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_entry_builds_a_ppo_variant(tmp_path, key):
    env_id = ENV_OF_ENTRY.get(key, key)
    if env_id in gym.envs.registry:
        experiment = manager(env_id, tmp_path)
        assert experiment.config == str(DEFAULT_HYPERPARAMS_FILE)
        raw, _ = experiment.read_hyperparameters()
        assert raw == SHIPPED[key]
    else:
        # rl-zoo cannot even pick the entry for an unregistered id (e.g. Atari without ale-py):
        # pre-process the entry itself through a manager for a registered env.
        experiment, raw = manager("CartPole-v1", tmp_path), dict(SHIPPED[key])
    # rl-zoo's pre-processing, then the check against PPOVariant's constructor (no env needed)
    hyperparams, experiment.env_wrapper, _, experiment.vec_env_wrapper = experiment._preprocess_hyperparams(raw)
    if not env_installed(env_id):
        model = PPOVariant(env=None, _init_setup_model=False, **hyperparams)
        assert model.objective.name == "clip"
        pytest.skip(f"{env_id} is not installed: checked the hyperparameters without building the model")

    env = experiment.create_envs(experiment.n_envs, no_log=True)
    try:
        model = PPOVariant(env=env, seed=0, device="cpu", **hyperparams)
        assert model.objective.name == "clip"
        assert model.n_envs == SHIPPED[key].get("n_envs", 1)
        assert (unwrap_vec_normalize(model.get_env()) is not None) == bool(SHIPPED[key].get("normalize", False))
        if key == "atari":  # AtariWrapper, 4 stacked frames, channel first
            assert model.observation_space.shape == (4, 84, 84)
    finally:
        env.close()
    assert not tmp_path.joinpath("ppo_variant").exists()


@pytest.mark.parametrize(
    "hyperparams, objective, kl_coef, halfway_learning_rate",
    [
        ({"objective": "adaptive_kl", "kl_target": "lin_0.02", "kl_coef": 2.0}, "adaptive_kl", 2.0, 1e-3),
        ({"objective": "fixed_kl", "kl_coef": 3.0}, "fixed_kl", 3.0, 1e-3),
        ({"objective": "none", "learning_rate": "lin_1e-3"}, "none", 0.0, 5e-4),
    ],
)
def test_objective_and_schedules_from_the_command_line(tmp_path, hyperparams, objective, kl_coef, halfway_learning_rate):
    experiment = manager("Pendulum-v1", tmp_path, **hyperparams)
    raw, saved = experiment.read_hyperparameters()
    assert saved["objective"] == objective  # what config.yml records
    processed, *_ = experiment._preprocess_hyperparams(raw)
    if "kl_target" in hyperparams:
        assert isinstance(processed["kl_target"], SimpleLinearSchedule)
        assert processed["kl_target"](0.5) == pytest.approx(0.01)
    model = PPOVariant(env="Pendulum-v1", device="cpu", **processed)
    assert model.objective.name == objective
    assert model.kl_coef == kl_coef
    assert model.lr_schedule(0.5) == pytest.approx(halfway_learning_rate)  # the YAML's 1e-3, or lin_1e-3


@pytest.mark.parametrize(
    "hyperparams",
    [
        {"objective": "dual_clip", "objective_kwargs": "dict(dual_clip=2.5)"},
        {"objective": "asymmetric_clip", "objective_kwargs": "dict(clip_range_high='lin_0.3')", "clip_range": "lin_0.1"},
        {"learning_rate": "kl_adaptive_3e-4_0.02"},
        {"objective": "fixed_kl", "kl_coef": "lin_2", "ent_coef": "lin_0.01", "vf_coef": "lin_0.5"},
    ],
    ids=["dual_clip", "asymmetric_clip", "kl_adaptive_lr", "coefficient_schedules"],
)
def test_variant_yaml_forms(tmp_path, hyperparams):
    experiment = manager("Pendulum-v1", tmp_path, **hyperparams)
    raw, _ = experiment.read_hyperparameters()
    processed, *_ = experiment._preprocess_hyperparams(raw)
    model = PPOVariant(env="Pendulum-v1", device="cpu", **processed)
    if "objective_kwargs" in hyperparams:
        assert model.objective.name == hyperparams["objective"]
    if hyperparams.get("objective") == "dual_clip":
        assert model.objective.dual_clip == 2.5
    if hyperparams.get("objective") == "asymmetric_clip":
        assert model.objective.clip_range_high(0.5) == pytest.approx(0.15)
    if "learning_rate" in hyperparams:
        assert model.learning_rate.kl_target == 0.02 and model.lr_schedule(0.5) == 3e-4
    if "ent_coef" in hyperparams:
        assert (model.ent_coef(0.5), model.vf_coef(0.5), model.objective.kl_coef_schedule(0.5)) == (0.005, 0.25, 1.0)
