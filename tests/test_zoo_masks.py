"""
Maskable algorithms use their action masks wherever rl-zoo runs them: evaluation during training (curves, best model),
Optuna trials, enjoy and record-video. The env, StrictMaskEnv, raises on any illegal action, so anything played
without masks fails; its rewards say which legal actions were taken.
"""

import math
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
import rl_zoo3.utils
import yaml
from conftest import run_zoo
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.env_util import make_vec_env

from sb3_ppo_variants.envs import IllegalActionError, StrictMaskEnv
from sb3_ppo_variants.zoo import ZooConfigError, register
from sb3_ppo_variants.zoo.__main__ import main
from sb3_ppo_variants.zoo.adapter import algorithm_class, uses_action_masks
from sb3_ppo_variants.zoo.evaluation import evaluate_policy
from sb3_ppo_variants.zoo.overrides import masked_play

ENV_ID = "sb3_ppo_variants/StrictMask-v0"
RUN_NAME = "sb3_ppo_variants-StrictMask-v0"  # rl-zoo's folder name for the id
MASKABLE = ["ppo_mask_variant", "ppo_mask_lstm_variant", "ppo_mask"]
#: Tiny models: 32-step rollouts, one epoch
MODEL = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}
POLICY = {
    "ppo_mask_variant": ("MlpPolicy", {"net_arch": [16]}),
    "ppo_mask_lstm_variant": ("MlpLstmPolicy", {"net_arch": [16], "lstm_hidden_size": 16}),
    "ppo_mask": ("MlpPolicy", {"net_arch": [16]}),
}
#: Random-sampler seed of each -optimize test: two cheap trials (32-step rollouts, at most 5 epochs)
OPTIMIZE_SEEDS = {"ppo_mask_variant": 35, "ppo_mask_lstm_variant": 35, "ppo_mask": 15}


def test_the_algorithm_decides_whether_masks_are_used():
    assert all(uses_action_masks(key) for key in MASKABLE)
    assert not any(uses_action_masks(key) for key in ("ppo_variant", "ppo_lstm_variant", "ppo", "ppo_lstm", "trpo", "a2c"))


@pytest.mark.parametrize("algo", MASKABLE)
def test_masked_evaluation_returns_the_masked_policys_return(algo):
    policy, policy_kwargs = POLICY[algo]
    env = make_vec_env(StrictMaskEnv, n_envs=2, seed=0)
    model = algorithm_class(algo)(policy, env, seed=0, device="cpu", policy_kwargs=policy_kwargs, **MODEL)
    model.learn(64)  # a policy that prefers some legal actions over others

    env.seed(3)
    returns, lengths = evaluate_policy(model, env, algo, n_eval_episodes=4, deterministic=True, return_episode_rewards=True)

    # The same episodes played step by step: the env's masks and (recurrent) the LSTM state at every step.
    env.seed(3)
    observation, state, episode_start = env.reset(), None, np.ones(2, dtype=bool)
    played: list[list[float]] = [[], []]
    totals = np.zeros(2)
    while min(len(episodes) for episodes in played) < 2:
        masks = get_action_masks(env)
        action, state = model.predict(observation, state, episode_start, deterministic=True, action_masks=masks)
        observation, reward, episode_start, _ = env.step(action)
        totals += reward
        for index in np.flatnonzero(episode_start):
            played[index].append(totals[index])
            totals[index] = 0.0
    assert sorted(returns) == pytest.approx(sorted(played[0][:2] + played[1][:2]))
    assert list(lengths) == [StrictMaskEnv().length] * 4
    # Unmasked, the same policy takes an illegal action.
    with pytest.raises(IllegalActionError):
        evaluate_policy(model, env, "ppo_variant", n_eval_episodes=4, deterministic=True)


@pytest.mark.parametrize("optimize", [False, True])
def test_env_without_masks_is_an_error_before_training(tmp_path, capsys, optimize):
    arguments = ["train", "--algo", "ppo_mask_variant", "--env", "CartPole-v1", "-f", str(tmp_path), "-n", "64"]
    arguments += ["-optimize", "--n-trials", "1", "--no-optim-plots"] if optimize else ["--eval-freq", "32"]
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "ppo_mask_variant plays with action masks, but its" in error and "provides none" in error
    assert "ActionMasker" in error
    assert not list(tmp_path.glob("ppo_mask_variant/CartPole-v1_*"))  # no half-made run folder


def test_played_models_take_the_envs_masks(tmp_path):
    register()
    policy, policy_kwargs = POLICY["ppo_mask_lstm_variant"]
    model = algorithm_class("ppo_mask_lstm_variant")(policy, make_vec_env(StrictMaskEnv), policy_kwargs=policy_kwargs)
    model.save(tmp_path / "model")
    with masked_play("ppo_mask_lstm_variant"):
        loader = rl_zoo3.utils.ALGOS["ppo_mask_lstm_variant"]
        env = make_vec_env(StrictMaskEnv, seed=0)  # as rl-zoo's record_video passes it to load()
        played = loader.load(tmp_path / "model", env=env, device="cpu")
        observation, state, episode_start = env.reset(), None, np.ones(1, dtype=bool)
        for _ in range(2 * StrictMaskEnv().length):  # as rl-zoo's enjoy calls predict(): never an illegal action
            action, state = played.predict(observation, state=state, episode_start=episode_start, deterministic=True)
            observation, _, episode_start, _ = env.step(action)
        assert state is not None  # the LSTM state, passed back by enjoy
        with pytest.raises(ZooConfigError, match="ppo_mask_lstm_variant plays with action masks, but its test env"):
            loader.load(tmp_path / "model", env=make_vec_env("CartPole-v1"))
    assert rl_zoo3.utils.ALGOS["ppo_mask_lstm_variant"] is type(model)  # rl-zoo's loading is back


def zoo(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m sb3_ppo_variants.zoo ...` with the package's envs registered."""
    return run_zoo(*arguments, "--gym-packages", "sb3_ppo_variants.envs", cwd=cwd)


def write_config(folder: Path, algo: str) -> str:
    """A hyperparameter file with the tiny entry for the env (rl-zoo ships none for ppo_mask)."""
    policy, policy_kwargs = POLICY[algo]
    path = folder / f"{algo}.yml"
    entry = {"n_timesteps": 64, "n_envs": 1, **MODEL, "policy": policy, "policy_kwargs": repr(policy_kwargs)}
    path.write_text(yaml.safe_dump({ENV_ID: entry}))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("algo", MASKABLE)
def test_train_evaluates_and_enjoy_plays_with_masks(tmp_path, algo):
    common = ["--algo", algo, "--env", ENV_ID, "-f", str(tmp_path / "logs")]
    zoo("train", *common, "-conf", write_config(tmp_path, algo), "-n", "64", "--eval-freq", "32", "--eval-episodes", "2",
        "--seed", "0", "--num-threads", "1", cwd=tmp_path)  # fmt: skip
    run = tmp_path / "logs" / algo / f"{RUN_NAME}_1"
    evaluations = np.load(run / "evaluations.npz")
    np.testing.assert_array_equal(evaluations["timesteps"], [32, 64])
    np.testing.assert_array_equal(evaluations["ep_lengths"], np.full((2, 2), StrictMaskEnv().length))
    assert (run / "best_model.zip").is_file()

    played = zoo("enjoy", *common, "-n", "200", "--no-render", "--deterministic", cwd=tmp_path)
    assert "25 Episodes" in played.stdout  # 200 steps: 25 full episodes of 8 legal steps
    if algo != "ppo_mask_lstm_variant":
        return  # record-video loads every maskable algorithm the same way: checked once, on the recurrent one
    recorded = zoo("record-video", *common, "-n", "8", "-o", str(tmp_path / "videos"), "--load-best", cwd=tmp_path)
    assert "best_model" in recorded.stdout and len(list((tmp_path / "videos").glob("*.mp4"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("algo", MASKABLE)
def test_optimize_trials_complete_with_masks(tmp_path, algo):
    storage = tmp_path / "study.log"
    # rl-zoo prunes a trial whose training raises a ValueError (such as IllegalActionError): check the trials completed.
    zoo("train", "--algo", algo, "--env", ENV_ID, "-conf", write_config(tmp_path, algo), "-optimize", "--n-trials", "2",
        "-n", "64", "--n-evaluations", "1", "--eval-episodes", "2", "--sampler", "random", "--pruner", "none",
        "--seed", str(OPTIMIZE_SEEDS[algo]), "--storage", str(storage), "--study-name", "masks", "--no-optim-plots",
        "--num-threads", "1", "-f", str(tmp_path / "logs"), cwd=tmp_path)  # fmt: skip
    study = optuna.load_study(study_name="masks", storage=JournalStorage(JournalFileBackend(str(storage))))
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    # Each trial's score is the mean return of full episodes of legal actions: 8 steps, each worth 1/4 to 1.
    assert all(2.0 <= trial.value <= 8.0 and math.isfinite(trial.value) for trial in study.trials)
