"""Every train/* key of SB3 PPO is logged with the same meaning, plus train/kl, train/kl_coef and diagnostics."""

import csv

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

from sb3_ppo_variants import PPOVariant

KWARGS = dict(n_steps=64, batch_size=32, n_epochs=3, seed=0, clip_range_vf=0.3)


def train_values(model) -> dict:
    return {key: value for key, value in model.logger.name_to_value.items() if key.startswith("train/")}


def test_sb3_keys_have_sb3_values_for_clip():
    sb3 = train_values(PPO("MlpPolicy", "Pendulum-v1", **KWARGS).learn(64))
    ours = train_values(PPOVariant("MlpPolicy", "Pendulum-v1", **KWARGS).learn(64))
    assert set(sb3) <= set(ours)
    for key, value in sb3.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert {"train/kl", "train/kl_coef", "train/grad_norm"} <= set(ours)
    assert ours["train/kl_coef"] == 0.0  # the clipped objective has no penalty


@pytest.mark.parametrize(
    "objective, extra_keys",
    [("adaptive_kl", {"train/kl_penalty", "train/kl_target"}), ("fixed_kl", {"train/kl_penalty"}), ("none", set())],
)
def test_objective_diagnostics(objective, extra_keys):
    values = train_values(PPOVariant("MlpPolicy", "Pendulum-v1", objective=objective, kl_coef=2.0, **KWARGS).learn(64))
    assert extra_keys <= set(values)
    if objective != "none":
        assert values["train/kl_coef"] == 2.0  # β used by the update that was logged


def test_csv_and_tensorboard_outputs(tmp_path):
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", **KWARGS)
    model.set_logger(configure(str(tmp_path), ["csv", "tensorboard"]))
    model.learn(3 * 64)
    with open(tmp_path / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    assert {"train/kl", "train/kl_coef", "train/kl_penalty", "train/approx_kl", "train/clip_fraction"} <= set(rows[-1])
    assert any(row["train/kl"] for row in rows)
    assert list(tmp_path.glob("events.out.tfevents.*"))
