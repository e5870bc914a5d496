"""The sb3-contrib variants in rl-zoo (train, enjoy, -optimize) and in the comparison study (--algo, --baselines)."""

import pytest
import yaml
from conftest import run_zoo

from sb3_ppo_variants.compare import RunSpec, train_run
from sb3_ppo_variants.compare.hyperparams import method_hyperparams
from sb3_ppo_variants.compare.specs import parse_baselines, parse_method
from sb3_ppo_variants.zoo.adapter import REGISTRY, variant_keys
from sb3_ppo_variants.zoo.exp_manager import default_hyperparams_file, zoo_hyperparams_file

#: (algo, env, extra rl-zoo arguments, tiny hyperparameters)
CASES = {
    "ppo_mask_variant": ("Taxi-v4", (), "n_envs:2 n_steps:32 batch_size:32"),
    "ppo_lstm_variant": ("CartPole-v1", (), "n_envs:2 n_steps:32 batch_size:32"),
    "ppo_mask_lstm_variant": (
        "sb3_ppo_variants/CueCorridor-v0",
        ("--gym-packages", "sb3_ppo_variants.envs"),
        "n_envs:2 n_steps:16 batch_size:32",
    ),
}


def test_every_variant_is_registered_with_its_baselines_and_file():
    assert set(variant_keys()) == {"ppo_variant", *CASES}
    assert REGISTRY["ppo_mask_variant"].baselines == ("ppo_mask",)
    assert REGISTRY["ppo_lstm_variant"].baselines == ("ppo_lstm",)
    for key in variant_keys():
        entries = yaml.safe_load(default_hyperparams_file(key).read_text())
        assert all(entry.get("objective") == "clip" for entry in entries.values()), key
        assert REGISTRY[key].load().__name__ == REGISTRY[key].title


def test_recurrent_entries_are_rl_zoo_ppo_lstm_plus_objective():
    """Each ppo_lstm_variant.yml entry is rl-zoo's ppo_lstm.yml entry with `objective: clip` and the documented changes."""
    shipped = yaml.safe_load(default_hyperparams_file("ppo_lstm_variant").read_text())
    zoo = yaml.safe_load(zoo_hyperparams_file("ppo_lstm").read_text())
    # default: RecurrentPPO's MLP policy is 'MlpLstmPolicy'; PendulumNoVel-v1: adaptive_kl's d_targ at clip's step
    changes = {"default": {"policy": "MlpLstmPolicy"}, "PendulumNoVel-v1": {"kl_target": 0.1}}
    assert set(shipped) == set(zoo)
    for key, entry in shipped.items():
        assert entry == {**zoo[key], "objective": "clip", **changes.get(key, {})}, key


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(CASES))
def test_train_enjoy_and_optimize(tmp_path, algo):
    env_id, extra, hyperparams = CASES[algo]
    common = ("--algo", algo, "--env", env_id, *extra)
    trained = run_zoo(
        "train", *common, "-n", "256", "-f", "logs", "--eval-freq", "-1", "--seed", "3",
        "--hyperparams", *hyperparams.split(), "objective:'adaptive_kl'", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert list((tmp_path / "logs" / algo).glob("*_1/*.zip"))
    played = run_zoo("enjoy", *common, "-f", "logs", "-n", "20", "--no-render", cwd=tmp_path)
    assert played.returncode == 0, played.stderr[-2000:]
    assert f"Loading logs/{algo}/" in played.stdout  # the trained model, not one from the hub
    optimized = run_zoo(
        "train", *common, "-optimize", "--n-trials", "1", "--n-jobs", "1", "-n", "128", "--n-evaluations", "1",
        "--eval-episodes", "1", "-f", "opt", "--sampler", "random", "--pruner", "none", "--seed", "3",
        "--hyperparams", "n_envs:1", cwd=tmp_path,
    )  # fmt: skip
    assert optimized.returncode == 0, optimized.stderr[-2000:]
    assert "objective:" in optimized.stdout  # the sampled objective is among the trial's parameters


@pytest.mark.parametrize("algo, baseline", [("ppo_mask_variant", "ppo_mask"), ("ppo_lstm_variant", "ppo_lstm")])
def test_compare_baseline_of_a_variant_equals_its_clip_runs(algo, baseline):
    """`compare --algo X --baselines` adds the sb3-contrib algorithm X extends, trained like X's clip runs."""
    env_id = "Taxi-v4" if algo == "ppo_mask_variant" else "CartPole-v1"
    entry = {"n_envs": 1, "n_steps": 64, "batch_size": 32, "n_epochs": 2}
    if algo == "ppo_mask_variant":
        entry["env_wrapper"] = "sb3_ppo_variants.wrappers.InfoActionMasker"
    else:
        entry["policy"] = "MlpLstmPolicy"
    results = {}
    for method in (parse_method("clip:0.2", algo=algo), parse_baselines([baseline], algo=algo)[0]):
        hyperparams = method_hyperparams(entry, method, env_id, variant=algo)
        spec = RunSpec(env_id, method.label, method.algo, seed=1, timesteps=128, hyperparams=hyperparams,
                       eval_episodes=1, curve_points=4)  # fmt: skip
        results[method.algo] = train_run(spec)
    variant, contrib = results[algo], results[baseline]
    assert variant["status"] == contrib["status"] == "ok", (variant["error"], contrib["error"])
    assert "objective" not in contrib["config"]["hyperparams"]
    assert variant["num_timesteps"] == contrib["num_timesteps"] == 128
    if algo == "ppo_mask_variant":  # bitwise the same training: the same evaluation, with masks
        assert variant["eval_returns"] == contrib["eval_returns"]
