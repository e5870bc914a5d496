"""rl-zoo integration end to end: `python -m sb3_ppo_variants.zoo train|enjoy` in a child process, as a user runs it."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_zoo

from sb3_ppo_variants import AdaptiveKLPenalty, PPOVariant

ENV_ID = "CartPole-v1"


def train(log_folder: Path, *hyperparams: str, extra: tuple[str, ...] = (), n_timesteps: int = 2048):
    """rl-zoo training of ppo_variant on CartPole-v1 (shipped YAML: 8 envs x 32 steps per update)."""
    return run_zoo(
        "train",
        "--algo",
        "ppo_variant",
        "--env",
        ENV_ID,
        "-n",
        str(n_timesteps),
        "-f",
        str(log_folder),
        "--seed",
        "0",
        "--num-threads",
        "1",
        "--eval-freq",
        "1024",
        "--eval-episodes",
        "2",
        *(("--hyperparams", *hyperparams) if hyperparams else ()),
        *extra,
        cwd=log_folder,
    )


def enjoy(log_folder: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    """rl-zoo's enjoy of the ppo_variant CartPole-v1 run in the log folder, without rendering."""
    return run_zoo(
        "enjoy", "--algo", "ppo_variant", "--env", ENV_ID, "-f", str(log_folder), "--no-render", "-n", str(steps), *extra,
        cwd=log_folder,
    )  # fmt: skip


# (objective, extra --hyperparams, whether the run normalizes)
RUNS = [
    ("clip", ["clip_range:'lin_0.1'"], False),
    ("adaptive_kl", ["kl_target:'lin_0.02'", "kl_coef:2.0"], False),
    ("fixed_kl", ["kl_coef:3.0", "normalize:True"], True),
    ("none", [], False),
]


@pytest.mark.slow
@pytest.mark.parametrize("objective, hyperparams, normalized", RUNS)
def test_train_each_objective(tmp_path, objective, hyperparams, normalized):
    train(tmp_path, f"objective:'{objective}'", *hyperparams)

    # rl-zoo's log-folder layout
    run = tmp_path / "ppo_variant" / f"{ENV_ID}_1"
    params = run / ENV_ID
    for name in ("CartPole-v1.zip", "best_model.zip", "evaluations.npz", "0.monitor.csv", "7.monitor.csv"):
        assert (run / name).is_file(), name
    for name in ("config.yml", "args.yml", "command.txt"):
        assert (params / name).is_file(), name
    assert (params / "vecnormalize.pkl").is_file() == normalized
    # rl-zoo's EvalCallback ran at 1024 and 2048 steps
    np.testing.assert_array_equal(np.load(run / "evaluations.npz")["timesteps"], [1024, 2048])
    with open(params / "config.yml") as file:
        config = dict(yaml.load(file, Loader=yaml.UnsafeLoader))
    assert config["objective"] == objective
    assert config["n_envs"] == 8  # from the shipped YAML
    with open(params / "args.yml") as file:
        assert yaml.load(file, Loader=yaml.UnsafeLoader)["algo"] == "ppo_variant"

    # The zoo's model is a PPOVariant with the objective and its settings from the command line.
    model = PPOVariant.load(run / f"{ENV_ID}.zip", device="cpu")
    assert model.num_timesteps == 2048
    assert model.objective.name == objective
    if objective == "clip":  # lin_0.1: ε goes linearly from 0.1 to 0
        assert model.objective.clip_range(1.0) == pytest.approx(0.1)
        assert model.objective.clip_range(0.5) == pytest.approx(0.05)
    if objective == "adaptive_kl":
        assert model.objective.kl_target(1.0) == pytest.approx(0.02)
        assert model.objective.kl_target(0.25) == pytest.approx(0.005)
    if objective == "fixed_kl":
        assert model.kl_coef == 3.0
    assert PPOVariant.load(run / "best_model.zip", device="cpu").objective.name == objective


@pytest.mark.slow
def test_enjoy_plays_the_saved_run(tmp_path):
    train(tmp_path, "objective:'fixed_kl'", "normalize:True")
    played = enjoy(tmp_path, 100)
    assert f"Loading {tmp_path / 'ppo_variant' / f'{ENV_ID}_1' / f'{ENV_ID}.zip'}" in played.stdout
    assert "Loading running average" in played.stdout  # the run's VecNormalize statistics
    played = enjoy(tmp_path, 600, "--load-best", "--deterministic")
    assert "best_model.zip" in played.stdout
    assert re.search(r"Mean reward: [0-9.]+ \+/- [0-9.]+", played.stdout)  # at least one finished episode


@pytest.mark.slow
def test_continued_training_keeps_the_adapted_beta(tmp_path):
    # d_targ far below the KL of an update: β doubles after every update.
    hyperparams = ("objective:'adaptive_kl'", "kl_target:0.0001")
    train(tmp_path, *hyperparams)
    saved = tmp_path / "ppo_variant" / f"{ENV_ID}_1" / f"{ENV_ID}.zip"
    model = PPOVariant.load(saved, device="cpu")
    assert isinstance(model.objective, AdaptiveKLPenalty)
    beta = model.kl_coef
    assert beta > 1.0  # adapted, and saved by the zoo

    # rl-zoo's -i passes the YAML/--hyperparams (objective, kl_target) to load(): the saved objective and β are kept.
    resumed = train(tmp_path, *hyperparams, extra=("-i", str(saved)), n_timesteps=512)
    assert "Kept the saved objective" in resumed.stderr
    # The table dumped before the second update shows the β the first resumed update used.
    logged = [float(value) for value in re.findall(r"\|\s+kl_coef\s+\|\s+([0-9.e+-]+)\s+\|", resumed.stdout)]
    assert logged and logged[0] == pytest.approx(beta, rel=1e-3)
    # (a restart would have logged the initial β = 1)
    assert PPOVariant.load(tmp_path / "ppo_variant" / f"{ENV_ID}_2" / f"{ENV_ID}.zip").objective.name == "adaptive_kl"


CUSTOM_OBJECTIVE = """
import torch as th
from sb3_ppo_variants import ObjectiveOutput, SurrogateObjective, register_objective


@register_objective
class HalfClip(SurrogateObjective):
    name = "half_clip"

    def __init__(self, clip_range):
        self.clip_range = clip_range

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target):
        return cls(clip_range)

    def loss(self, batch):
        clipped = th.clamp(batch.ratio, 0.9, 1.1) * batch.advantages
        return ObjectiveOutput(-batch.mean(th.min(batch.ratio * batch.advantages, clipped)))
"""


@pytest.mark.slow
def test_objective_registered_by_a_gym_package(tmp_path):
    # --gym-packages imports the module (registering the objective) before rl-zoo reads the hyperparameters.
    (tmp_path / "my_objectives.py").write_text(CUSTOM_OBJECTIVE)
    package = ("--gym-packages", "my_objectives")
    train(tmp_path, "objective:'half_clip'", extra=package, n_timesteps=512)
    run = tmp_path / "ppo_variant" / f"{ENV_ID}_1"
    with open(run / ENV_ID / "config.yml") as file:
        assert dict(yaml.load(file, Loader=yaml.UnsafeLoader))["objective"] == "half_clip"
    played = enjoy(tmp_path, 50, *package)
    assert f"Loading {run / f'{ENV_ID}.zip'}" in played.stdout
