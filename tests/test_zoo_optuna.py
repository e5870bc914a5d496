"""Optuna tuning through rl-zoo's -optimize: the ppo_variant sampler, and several workers filling one shared study."""

import argparse

import optuna
import pytest
from conftest import OPTIMIZE, optimize, wait
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FixedTrial, TrialState

from sb3_ppo_variants.zoo import PPOVariantExperimentManager, ZooConfigError, register
from sb3_ppo_variants.zoo.__main__ import main
from sb3_ppo_variants.zoo.sampler import (
    CLIP_RANGE_HIGH_DELTA_RANGE,
    DEFAULT_OBJECTIVES,
    DUAL_CLIP_RANGE,
    KL_COEF_RANGE,
    KL_TARGET_RANGE,
    PAPER_OBJECTIVES,
    VARIANT_OBJECTIVES,
    convert_variant_params,
    sample_ppo_variant_params,
)

#: rl-zoo's PPO search space (sample_ppo_params) at fixed values
PPO_PARAMS = dict(
    batch_size_pow=6,
    n_steps_pow=8,
    one_minus_gamma=0.01,
    one_minus_gae_lambda=0.05,
    learning_rate=3e-4,
    ent_coef=1e-6,
    clip_range=0.3,
    n_epochs=5,
    max_grad_norm=0.5,
    net_arch="small",
    activation_fn="tanh",
)


@pytest.mark.parametrize(
    "objective, own_params",
    [
        ("clip", {}),
        ("adaptive_kl", {"kl_target": 0.02}),
        ("fixed_kl", {"kl_coef": 3.0}),
        ("none", {}),
        ("dual_clip", {"dual_clip": 2.0}),
        ("asymmetric_clip", {"clip_range_high_delta": 0.05}),
    ],
)
def test_sampler_samples_the_objective_and_its_parameters(objective, own_params):
    trial = FixedTrial({"objective": objective, **own_params, **PPO_PARAMS})
    hyperparams = sample_ppo_variant_params(trial, 1, 1, {})
    assert hyperparams["objective"] == objective
    for name in ("kl_target", "kl_coef"):
        assert hyperparams.get(name) == own_params.get(name)
    # the flat Optuna parameters of the newer objectives become objective_kwargs (ε_high = ε_low + the delta)
    expected_kwargs = {"dual_clip": {"dual_clip": 2.0}, "asymmetric_clip": {"clip_range_high": pytest.approx(0.35)}}
    assert hyperparams.get("objective_kwargs") == expected_kwargs.get(objective)
    # rl-zoo's PPO parameters, converted as for PPO
    assert hyperparams["clip_range"] == 0.3 and hyperparams["n_steps"] == 256 and hyperparams["batch_size"] == 64
    assert hyperparams["gamma"] == pytest.approx(0.99)
    assert hyperparams["policy_kwargs"]["net_arch"] == dict(pi=[64, 64], vf=[64, 64])


@pytest.mark.parametrize(
    "objective, own_params",
    [
        ("clip", {}),
        ("fixed_kl", {"kl_coef": 3.0}),
        ("dual_clip", {"dual_clip": 2.0}),
        ("asymmetric_clip", {"clip_range_high_delta": 0.05}),
    ],
)
def test_trial_id_converter_gives_the_sampled_hyperparameters(objective, own_params):
    # rl-zoo's --trial-id rebuilds a trial's hyperparameters from its flat Optuna parameters alone
    trial = FixedTrial({"objective": objective, **own_params, **PPO_PARAMS})
    sampled = sample_ppo_variant_params(trial, 1, 1, {})
    assert convert_variant_params(dict(trial.params)) == sampled
    assert ("objective_kwargs" in sampled) == (objective in VARIANT_OBJECTIVES)


def test_sampler_search_space():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        hyperparams = sample_ppo_variant_params(trial, 1, 1, {})
        seen.add(hyperparams["objective"])
        assert set(trial.params) >= {"objective", "clip_range", "learning_rate", "n_steps_pow"}
        if hyperparams["objective"] == "adaptive_kl":
            assert KL_TARGET_RANGE[0] <= hyperparams["kl_target"] <= KL_TARGET_RANGE[1]
        if hyperparams["objective"] == "fixed_kl":
            assert KL_COEF_RANGE[0] <= hyperparams["kl_coef"] <= KL_COEF_RANGE[1]
        if hyperparams["objective"] == "dual_clip":
            assert DUAL_CLIP_RANGE[0] <= hyperparams["objective_kwargs"]["dual_clip"] <= DUAL_CLIP_RANGE[1]
        if hyperparams["objective"] == "asymmetric_clip":
            delta = hyperparams["objective_kwargs"]["clip_range_high"] - hyperparams["clip_range"]
            assert CLIP_RANGE_HIGH_DELTA_RANGE[0] <= delta <= CLIP_RANGE_HIGH_DELTA_RANGE[1] + 1e-12
        study.tell(trial, 0.0)
    # by default every built-in objective is sampled: the paper's four and the variants since
    assert seen == set(DEFAULT_OBJECTIVES) == {*PAPER_OBJECTIVES, *VARIANT_OBJECTIVES}


@pytest.mark.slow
def test_two_workers_fill_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # Two concurrent workers, as on two machines, two trials each.
    workers = [optimize(storage, seed, "--n-trials", "2", cwd=tmp_path) for seed in (2, 7)]
    for worker in workers:
        wait(worker)

    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert len(trials) == 4
    assert {trial.state for trial in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    # Each trial records the worker that ran it: both workers contributed two.
    pids = sorted(int(trial.user_attrs["worker"].rsplit(":", 1)[1]) for trial in trials)
    assert pids == sorted(2 * [worker.pid for worker in workers])
    for trial in trials:
        assert trial.params["objective"] in DEFAULT_OBJECTIVES
        assert ("kl_target" in trial.params) == (trial.params["objective"] == "adaptive_kl")
        assert ("kl_coef" in trial.params) == (trial.params["objective"] == "fixed_kl")

    # --max-total-trials bounds the whole study: this worker runs one trial and stops.
    output = wait(optimize(storage, 3, "--max-total-trials", "5", cwd=tmp_path))
    assert len(optuna.load_study(study_name="shared", storage=storage).get_trials()) == 5
    assert "Number of finished trials:  5" in output

    # A trial's hyperparameters train a model again with --trial-id (rl-zoo's converter; the objective included).
    register()  # rl-zoo's converter for ppo_variant
    trial = trials[1]
    experiment = PPOVariantExperimentManager(
        argparse.Namespace(), "ppo_variant", "CartPole-v1", str(tmp_path), storage=storage, study_name="shared", trial_id=1
    )
    hyperparams, _ = experiment.read_hyperparameters()
    assert hyperparams["objective"] == trial.params["objective"]
    assert hyperparams["clip_range"] == trial.params["clip_range"]
    experiment._preprocess_hyperparams(hyperparams)  # accepted by PPOVariant


def load_study(storage: str, name: str) -> optuna.Study:
    """A study from rl-zoo's --storage value: a database URL or a journal file (``*.log``)."""
    if storage.endswith(".log"):
        return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(storage)))
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_objective_fixed_on_the_command_line(tmp_path, capsys, kind):
    storage = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "optuna" / "study.log")
    arguments = [*OPTIMIZE, "--storage", storage, "--study-name", "beta", "--seed", "5", "-f", str(tmp_path / "logs")]
    main([*arguments, "--n-trials", "1", "--hyperparams", "n_envs:1", "objective:'fixed_kl'"])
    (trial,) = load_study(storage, "beta").get_trials()
    assert trial.params["objective"] == "fixed_kl" and "kl_coef" in trial.params
    assert trial.user_attrs["objective_choices"] == ["fixed_kl"]

    # Optuna cannot change the objective's choices within a study: a worker sampling others stops at start.
    with pytest.raises(SystemExit) as stop:
        main([*arguments, "--n-trials", "1", "--hyperparams", "n_envs:1"])
    assert stop.value.code == 2
    assert "study 'beta' samples objective among ['fixed_kl']" in capsys.readouterr().err
    assert len(load_study(storage, "beta").get_trials()) == 1


@pytest.mark.parametrize(
    "objective, choices",
    [(None, list(DEFAULT_OBJECTIVES)), ("fixed_kl", ["fixed_kl"]), (["adaptive_kl", "fixed_kl"], ["adaptive_kl", "fixed_kl"])],
)
def test_command_line_objective_sets_the_choices(tmp_path, objective, choices):
    custom = None if objective is None else {"objective": objective}
    experiment = PPOVariantExperimentManager(
        argparse.Namespace(), "ppo_variant", "CartPole-v1", str(tmp_path), hyperparams=custom, optimize_hyperparameters=True
    )
    assert experiment.objective_choices == choices
    hyperparams, _ = experiment.read_hyperparameters()
    experiment._preprocess_hyperparams(hyperparams)  # a list of valid names is accepted when optimizing

    # A trial samples among them.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        trial.set_user_attr("objective_choices", choices)
        assert sample_ppo_variant_params(trial, 1, 1, {})["objective"] in choices
        study.tell(trial, 0.0)


def test_bad_objective_choice_is_rejected(tmp_path):
    experiment = PPOVariantExperimentManager(
        argparse.Namespace(),
        "ppo_variant",
        "CartPole-v1",
        str(tmp_path),
        hyperparams={"objective": ["adaptive_kl", "klpen"]},
        optimize_hyperparameters=True,
    )
    hyperparams, _ = experiment.read_hyperparameters()
    with pytest.raises(ZooConfigError, match="objective='klpen' is not valid"):
        experiment._preprocess_hyperparams(hyperparams)
