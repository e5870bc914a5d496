"""Bad rl-zoo input stops the run at start, with a message naming the problem, and leaves no run folder behind."""

import pytest

from sb3_ppo_variants.zoo.__main__ import main

TRAIN = ["train", "--algo", "ppo_variant", "--env", "CartPole-v1", "-n", "256", "--eval-freq", "-1"]

BAD_TRAIN_ARGUMENTS = [
    # (extra arguments, fragments that must appear in the message)
    (["--hyperparams", "objective:'klpen'"], ["objective='klpen'", "'clip'", "'adaptive_kl'", "'fixed_kl'", "'none'"]),
    (["--hyperparams", "objective:3"], ["objective=3"]),
    (["--hyperparams", "objective:adaptive_kl"], ["--hyperparams objective:adaptive_kl", "objective:\"'adaptive_kl'\""]),
    (["--hyperparams", "kl_target:-0.01"], ["kl_target", "-0.01", "> 0"]),
    (["--hyperparams", "kl_target:'lin-0.02'"], ["kl_target='lin-0.02'", "lin_<initial value>"]),
    (["--hyperparams", "clip_range:'cos_0.2'"], ["clip_range='cos_0.2'", "lin_<initial value>"]),
    (["--hyperparams", "kl_coef:'big'"], ["kl_coef", "'big'", "number"]),
    (["--hyperparams", "objective:'adaptive_kl'", "kl_coef:0.0"], ["kl_coef", "0.0", "[0.0001, 10000]"]),
    (["--hyperparams", "kl_targt:0.02"], ["unknown hyperparameter 'kl_targt'", "did you mean 'kl_target'", "ppo_variant.yml"]),
    (["--hyperparams", "seed:3"], ["'seed'", "--seed"]),
    (["--hyperparams", "learning_rate:'kl_adaptive_3e-4'"], ["learning_rate='kl_adaptive_3e-4'", "<kl_target>"]),
    (["--hyperparams", "learning_rate:'kl_adaptive_3e-4_0'"], ["kl_target must be > 0, got 0.0"]),
    (
        ["--hyperparams", "objective:'dual_clip'", 'objective_kwargs:"dict(c=3.0)"'],
        ["unknown key 'c' for objective 'dual_clip'", "'dual_clip'"],
    ),
    (["--hyperparams", "objective:'dual_clip'", 'objective_kwargs:"dict(dual_clip=1)"'], ["dual_clip must be > 1"]),
    (["--hyperparams", "ent_coef:'exp_0.01'"], ["ent_coef='exp_0.01'", "lin_<initial value>"]),
    (["--env", "CartPol-v1"], ["--env CartPol-v1", "unknown environment id", "'CartPole-v1'"]),
]


@pytest.mark.parametrize("arguments, fragments", BAD_TRAIN_ARGUMENTS)
def test_bad_train_input_stops_at_start(tmp_path, capsys, arguments, fragments):
    with pytest.raises(SystemExit) as stop:
        main([*TRAIN, "-f", str(tmp_path / "logs"), *arguments])
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("sb3-ppo-variants-zoo train: error: ")
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "logs").exists()  # found before rl-zoo created anything


def test_unknown_yaml_key_names_the_file(tmp_path, capsys):
    config = tmp_path / "mine.yml"
    config.write_text("CartPole-v1:\n  policy: MlpPolicy\n  n_timesteps: 1000\n  objective: clip\n  clip_rnage: 0.1\n")
    with pytest.raises(SystemExit):
        main([*TRAIN, "-f", str(tmp_path / "logs"), "--conf-file", str(config)])
    message = capsys.readouterr().err
    assert f"unknown hyperparameter 'clip_rnage' for ppo_variant on CartPole-v1 (from {config}" in message
    assert "did you mean 'clip_range'" in message
    assert not (tmp_path / "logs").exists()


def test_failure_while_setting_up_removes_the_run_folder(tmp_path):
    # Valid for PPOVariant's constructor, but SB3 rejects gSDE for a discrete action space once the env exists,
    # after rl-zoo created the run folder and the envs.
    with pytest.raises(ValueError, match="gSDE"):
        main([*TRAIN, "-f", str(tmp_path / "logs"), "--hyperparams", "use_sde:True"])
    assert list((tmp_path / "logs" / "ppo_variant").iterdir()) == []


def test_earlier_runs_are_kept_when_a_run_fails(tmp_path):
    earlier = tmp_path / "logs" / "ppo_variant" / "CartPole-v1_1"
    earlier.mkdir(parents=True)
    with pytest.raises(ValueError, match="gSDE"):
        main([*TRAIN, "-f", str(tmp_path / "logs"), "--hyperparams", "use_sde:True"])
    assert sorted(path.name for path in earlier.parent.iterdir()) == ["CartPole-v1_1"]


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (["--env", "CartPol-v1", "-f", "."], ["--env CartPol-v1", "'CartPole-v1'"]),
        (["--env", "CartPole-v1", "-f", "nowhere"], ["-f nowhere", "no ppo_variant runs"]),
        (["--env", "CartPole-v1"], ["-f rl-trained-agents", "no ppo_variant runs"]),  # rl-zoo would try the hub
    ],
)
def test_bad_enjoy_input_stops_at_start(tmp_path, monkeypatch, capsys, arguments, fragments):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["enjoy", "--algo", "ppo_variant", "--no-render", *arguments])
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("sb3-ppo-variants-zoo enjoy: error: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("argv", [["bogus"], []])
def test_unknown_command(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert "usage: sb3-ppo-variants-zoo {train,enjoy,record-video}" in out + err


def test_algo_choices_include_ppo_variant(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--algo", "ppo_varient"])
    assert stop.value.code == 2  # argparse's error, listing the choices
    message = capsys.readouterr().err
    assert "invalid choice: 'ppo_varient'" in message and "'ppo_variant'" in message
