"""Every train/* key of SB3 PPO is logged with the same meaning, plus train/kl, train/kl_coef and diagnostics."""

import csv

import pytest
import torch as th
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
    assert {"train/kl_coef", "train/grad_norm"} <= set(ours)
    assert ours["train/kl_coef"] == 0.0  # the clipped objective has no penalty
    # clip does not pay for the exact KL unless asked (log_kl=True)
    assert "train/kl" not in ours


def test_log_kl_logs_the_kl_without_changing_training():
    plain = PPOVariant("MlpPolicy", "CartPole-v1", **KWARGS).learn(3 * 64)
    logged = PPOVariant("MlpPolicy", "CartPole-v1", log_kl=True, **KWARGS).learn(3 * 64)
    assert "train/kl" not in train_values(plain)
    assert train_values(logged)["train/kl"] > 0
    # Measuring d walks the buffer with its own minibatches: NumPy's random state is restored, so training is unchanged.
    for ours, theirs in zip(plain.policy.parameters(), logged.policy.parameters(), strict=True):
        assert th.equal(ours, theirs)


@pytest.mark.parametrize(
    "objective, expected_keys, absent_keys",
    [
        ("adaptive_kl", {"train/kl", "train/kl_penalty", "train/kl_target"}, set()),
        ("fixed_kl", {"train/kl", "train/kl_penalty"}, {"train/kl_target"}),
        ("none", set(), {"train/kl", "train/kl_penalty", "train/kl_target"}),
    ],
)
def test_objective_diagnostics(objective, expected_keys, absent_keys):
    values = train_values(PPOVariant("MlpPolicy", "Pendulum-v1", objective=objective, kl_coef=2.0, **KWARGS).learn(64))
    assert expected_keys <= set(values)
    assert not absent_keys & set(values)
    # β used by the update that was logged; 0 for the objective without a penalty
    assert values["train/kl_coef"] == (0.0 if objective == "none" else 2.0)
    if "train/kl_penalty" in expected_keys:
        assert values["train/kl_penalty"] > 0


def test_csv_and_tensorboard_outputs(tmp_path):
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", **KWARGS)
    model.set_logger(configure(str(tmp_path), ["csv", "tensorboard"]))
    model.learn(3 * 64)
    with open(tmp_path / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    assert {"train/kl", "train/kl_coef", "train/kl_penalty", "train/approx_kl", "train/clip_fraction"} <= set(rows[-1])
    assert any(row["train/kl"] for row in rows)
    assert list(tmp_path.glob("events.out.tfevents.*"))
