"""
Comparison study end to end: a tiny grid through the CLI (result files, CSV, report, PNGs), resume after SIGKILL, bad
input, missing packages, own envs (module:EnvId, --gym-packages, --env-kwargs), baselines, diverged and failed runs,
presets. The Ray backend is tested in test_compare_ray.py.
"""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_ppo_variants import ObjectiveOutput, PolicyBatch, SurrogateObjective
from sb3_ppo_variants.__main__ import main
from sb3_ppo_variants.compare import storage
from sb3_ppo_variants.compare.cli import config_from_args, make_parser
from sb3_ppo_variants.compare.hyperparams import SHARED_KEYS, method_hyperparams, zoo_entry, zoo_tuned_entry
from sb3_ppo_variants.compare.report import CSV_COLUMNS, write_report
from sb3_ppo_variants.compare.runner import train_run
from sb3_ppo_variants.compare.specs import Method, RunSpec, StudyError, parse_baselines, parse_method
from sb3_ppo_variants.compare.study import StudyConfig, plan_study, random_scores
from sb3_ppo_variants.objectives import OBJECTIVES
from sb3_ppo_variants.zoo import DEFAULT_HYPERPARAMS_FILE
from sb3_ppo_variants.zoo.experiment import experiment

#: Small rollouts so that ~2k steps are 8 updates, and a large step size so that clipping acts (clip ≠ none).
TINY_ENTRY = {"n_envs": 1, "n_steps": 256, "batch_size": 64, "n_epochs": 10, "learning_rate": 0.003}
TINY_YAML = "CartPole-v1:\n  n_envs: 1\n  n_steps: 256\n  batch_size: 64\n  n_epochs: 10\n  learning_rate: 0.003\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def preprocess(spec: RunSpec) -> tuple:
    """The run's rl-zoo experiment, its hyperparameters read and converted (the manager knows the env settings)."""
    with experiment(spec.algo, spec.env_id, zoo_entry(spec), spec.seed) as manager:
        return manager, manager.prepare(), manager.callbacks


def tiny_args(hyperparams: Path, out: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "--envs",
        "CartPole-v1",
        "--objectives",
        "clip:0.2",
        "none",
        "--seeds",
        "2",
        "--timesteps",
        "2048",
        "--hyperparams",
        str(hyperparams),
        "--out",
        str(out),
        "--workers",
        "2",
        "--eval-episodes",
        "3",
        "--random-episodes",
        "20",
        "--curve-points",
        "16",
        "--bootstrap-reps",
        "200",
        *extra,
    ]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny grid (2 objectives × CartPole × 2 seeds × 2048 steps) run once through the CLI with the local pool."""
    folder = tmp_path_factory.mktemp("tiny")
    hyperparams = folder / "tiny.yml"
    hyperparams.write_text(TINY_YAML)
    out = folder / "study"
    assert main(tiny_args(hyperparams, out)) == 0
    return hyperparams, out


def _results(out: Path) -> dict[str, dict]:
    return {result["run_id"]: result for result in storage.load_results(out)}


def test_tiny_grid_end_to_end(tiny_study):
    hyperparams, out = tiny_study
    results = _results(out)
    assert sorted(results) == [f"CartPole-v1/{method}/seed_{seed}" for method in ("clip_0.2", "none") for seed in (0, 1)]
    random = json.loads((out / "random_policy" / "CartPole-v1.json").read_text())
    assert (
        random["episodes"] == 20
        and len(random["returns"]) == 20
        and random["mean"] == pytest.approx(np.mean(random["returns"]))
    )
    for result in results.values():
        config = result["config"]
        spec = RunSpec.from_dict(config)
        assert result["fingerprint"] == spec.fingerprint and result["status"] == "ok"
        assert config["hyperparams"]["objective"] == config["method"].split(":")[0]
        assert config["hyperparams"]["n_steps"] == 256 and config["timesteps"] == 2048
        assert result["num_timesteps"] == 2048
        assert result["score"] == pytest.approx(np.mean(result["last_returns"]))
        assert len(result["last_returns"]) == min(result["episodes"], 100) > 0
        curve = result["curve"]
        assert curve["timesteps"] == [128 * k for k in range(1, 17)]
        assert curve["mean_return"][-1] == pytest.approx(result["score"]) and curve["episodes"][-1] == result["episodes"]
        assert len(result["eval_returns"]) == 3 and result["eval_mean"] == pytest.approx(np.mean(result["eval_returns"]))
        assert result["wall_time"] > 0 and result["versions"]["stable_baselines3"]
    # Same seed, different objective: same first rollout, then clipping changes the updates.
    clip, none = results["CartPole-v1/clip_0.2/seed_0"]["curve"], results["CartPole-v1/none/seed_0"]["curve"]
    assert clip["mean_return"][0] == none["mean_return"][0] and clip["mean_return"][-1] != none["mean_return"][-1]

    # CSV: one row per run, normalised with the random policy and the best objective run.
    with open(out / "runs.csv") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == CSV_COLUMNS and sorted(row["run_id"] for row in rows) == sorted(results)
    best = max(result["score"] for result in results.values())
    for row in rows:
        expected = (float(row["score"]) - random["mean"]) / (best - random["mean"])
        assert float(row["normalized_score"]) == pytest.approx(expected)
        assert float(row["best_score"]) == pytest.approx(best) and float(row["random_score"]) == pytest.approx(random["mean"])

    summary = json.loads((out / "summary.json").read_text())
    for method in ("clip:0.2", "none"):
        normalized = [float(row["normalized_score"]) for row in rows if row["method"] == method]
        assert summary["methods"][method]["mean_normalized_score"] == pytest.approx(np.mean(normalized))

    report = (out / "report.md").read_text()
    clip_value = summary["methods"]["clip:0.2"]["mean_normalized_score"]
    assert f"| Clipping, ε = 0.2 | `clip:0.2` | **{clip_value:.2f}** | 0.82 |" in report
    assert "| No clipping or penalty | `none` |" in report and "| -0.39 |" in report
    assert "python -m sb3_ppo_variants compare --envs CartPole-v1 --objectives clip:0.2 none" in report
    assert f"Hyperparameters: `{hyperparams}`\n" in report
    assert "random policy = mean return of 20 uniformly random episodes" in report  # --random-episodes, not 100
    for name in ("learning_curves", "curves_CartPole-v1", "aggregate_metrics"):
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and f"(plots/{name}.png)" in report
        import matplotlib.image

        assert matplotlib.image.imread(png).shape[0] > 100
    assert not list(out.rglob("*.tmp"))


def test_report_only_and_changed_settings(tiny_study, capsys):
    hyperparams, out = tiny_study
    before = {path: path.read_bytes() for path in (out / "runs").rglob("*.json")}
    report = (out / "report.md").read_text()
    (out / "report.md").unlink()
    for png in (out / "plots").glob("*.png"):
        png.unlink()
    capsys.readouterr()
    assert main(["compare", "--out", str(out), "--report-only", "--bootstrap-reps", "200"]) == 0
    # The terminal shows the tables: Table 1 with every method's spec, and the final evaluation returns.
    terminal = capsys.readouterr().out
    assert "Average normalised score" in terminal and "Final deterministic evaluation" in terminal
    for spec in {line.split("`")[1] for line in report.splitlines() if line.startswith("| ") and "`" in line}:
        assert spec in terminal
    # Same table (the report's time stamp aside), plots back, results untouched.
    table = [line for line in report.splitlines() if line.startswith("|")]
    assert [line for line in (out / "report.md").read_text().splitlines() if line.startswith("|")] == table
    assert len(list((out / "plots").glob("*.png"))) == 3  # learning_curves, curves_CartPole-v1, aggregate_metrics
    # The same grid with another budget in the same folder is refused before running anything.
    assert main(tiny_args(hyperparams, out, "--timesteps", "1024")) == 2
    assert "made with other settings" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (out / "runs").rglob("*.json")} == before


def test_report_runs_no_env(tiny_study, tmp_path, monkeypatch):
    # The report is built from the result files and the cached random-policy scores alone: without a cached score, the
    # env is not normalised (and nothing is measured).
    out = tmp_path / "copy"
    shutil.copytree(tiny_study[1], out)
    shutil.rmtree(out / "random_policy")
    monkeypatch.setattr("gymnasium.make", None)  # any env creation would fail
    write_report(out, bootstrap_reps=50)
    report = (out / "report.md").read_text()
    assert "No random-policy score for CartPole-v1" in report and "| **—** |" in report
    assert not (out / "random_policy").exists()


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return ["X", "0"]


def _children(parent: int) -> list[int]:
    """Linux: the pids whose parent is ``parent`` (field 4 of /proc/<pid>/stat)."""
    return [
        int(path.name) for path in Path("/proc").iterdir() if path.name.isdigit() and _stat(int(path.name))[1] == str(parent)
    ]


def test_resume_after_sigkill(tmp_path, capsys):
    hyperparams = tmp_path / "tiny.yml"
    hyperparams.write_text(TINY_YAML)
    out = tmp_path / "study"
    args = tiny_args(hyperparams, out, "--workers", "1")
    study = subprocess.Popen(
        [sys.executable, "-m", "sb3_ppo_variants", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not list((out / "runs").rglob("seed_*.json")):
            assert study.poll() is None, study.stderr.read().decode() if study.stderr else ""
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.2)
        workers = _children(study.pid)
        assert workers
        study.send_signal(signal.SIGKILL)
        study.wait()
    finally:
        if study.poll() is None:
            study.kill()
    # The driver's worker processes do not outlive it.
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _stat(pid)[2:3] for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the driver"
        time.sleep(0.2)
    finished = {path: path.read_bytes() for path in (out / "runs").rglob("seed_*.json")}
    assert 1 <= len(finished) < 4
    for content in finished.values():
        assert json.loads(content)["status"] == "ok"  # complete files only

    capsys.readouterr()
    assert main(args) == 0
    output = capsys.readouterr().out
    # Only the missing runs ran; the finished ones were kept byte for byte.
    assert f"{len(finished)} run(s) of this grid already finished" in output
    assert f"[{4 - len(finished)}/{4 - len(finished)}] done" in output
    assert all(path.read_bytes() == content for path, content in finished.items())
    assert len(_results(out)) == 4 and (out / "report.md").is_file()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--envs", "CartPol-v1"], "--envs CartPol-v1: unknown environment id 'CartPol-v1'"),
        (["--envs", "no_such_module:MyEnv-v0"], "--envs no_such_module: cannot import the module"),
        (["--gym-packages", "no_such_module"], "--gym-packages no_such_module: cannot import the module"),
        (
            ["--envs", "tiny_env:TinyCorridor-v9"],
            "unknown environment id 'TinyCorridor-v9' (not in gymnasium's registry after",
        ),
        (["--env-kwargs", "length:four"], "--env-kwargs length:four: the value 'four' is not a Python expression"),
        (["--env-kwargs", "length"], "--env-kwargs length: expected key:value"),
        (["--ray-address", "127.0.0.1:{free_port}"], "--ray-address: nothing answers at '127.0.0.1:{free_port}'"),
        (["--objectives", "clip:0.2", "klpen:1"], "--objectives: unknown objective 'klpen'"),
        (["--objectives", "fixed_kl:x"], "--objectives: the value of 'fixed_kl:x' (kl_coef) must be a number"),
        (["--preset", "huge"], "--preset: unknown preset 'huge'; choose one of quick, learning, paper, paper-baselines"),
        (["--seeds", "0"], "--seeds must be a positive whole number, got 0"),
        (["--timesteps", "0"], "--timesteps must be a positive whole number, got 0.0"),
        (["--timesteps", "-2000"], "--timesteps must be a positive whole number, got -2000.0"),
        (["--timesteps", "100.5"], "--timesteps must be a positive whole number, got 100.5"),
        (["--workers", "0"], "--workers must be a positive whole number, got 0"),
        (
            ["--baselines", "ppo", "sac"],
            "--baselines: unknown baseline 'sac' for --algo ppo_variant; choose from ppo, trpo, a2c",
        ),
        (["-params", "learning_rate:lin_3e-4"], "--params learning_rate:lin_3e-4: the value 'lin_3e-4' is not a Python"),
        (["--params", "policy_kwargs:dict(activation_fn=nn.ReLU)"], "--params policy_kwargs: the value {'activation_fn'"),
        (["--params", "objective:'none'"], "--params objective: each --objectives spec sets the objective"),
        (["--params", "learnin_rate:0.1"], "unknown hyperparameter 'learnin_rate' for ppo_variant on CartPole-v1"),
        (["--params", "kl_target:-1.0"], "kl_target must be > 0, got -1.0"),
        (["--hyperparams", "missing.yml"], "--hyperparams: file 'missing.yml' not found"),
        (["--hyperparams", "{no_entry}"], "--hyperparams: no entry for 'CartPole-v1'"),
        (["--hyperparams", "{bad_value}"], "kl_target must be > 0, got -1.0"),
        (["--out", "{unwritable}"], "--out: cannot write to the output folder"),
    ],
)
def test_bad_input_fails_before_any_run(tmp_path, capsys, flags, message):
    (tmp_path / "no_entry.yml").write_text("Pendulum-v1:\n  n_envs: 1\n")
    (tmp_path / "bad_value.yml").write_text("default:\n  kl_target: -1\n")
    (tmp_path / "a_file").write_text("")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        free_port = str(probe.getsockname()[1])
    flags = [flag.replace("{free_port}", free_port) for flag in flags]
    message = message.replace("{free_port}", free_port)
    values = {
        "{no_entry}": str(tmp_path / "no_entry.yml"),
        "{bad_value}": str(tmp_path / "bad_value.yml"),
        "{unwritable}": str(tmp_path / "a_file" / "study"),
    }
    out = tmp_path / "study"
    args = ["compare", "--envs", "CartPole-v1", "--objectives", "clip:0.2", "--seeds", "1", "--timesteps", "100"]
    args += ["--out", str(out), *(values.get(flag, flag) for flag in flags)]
    start = time.monotonic()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "done" not in captured.out
    assert not (out / "runs").exists() and time.monotonic() - start < 30


@pytest.mark.parametrize(
    "module, flags", [("rliable", []), ("matplotlib", []), ("rl_zoo3", []), ("ray", ["--ray-address", "auto"])]
)
def test_missing_package_names_the_extra(tmp_path, capsys, monkeypatch, module, flags):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    args = ["compare", "--envs", "CartPole-v1", "--objectives", "none", "--seeds", "1", "--out", str(tmp_path), *flags]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"the comparison study needs {module!r}" in error and "pip install 'sb3-ppo-variants[compare]'" in error
    assert not (tmp_path / "runs").exists()


def test_unknown_algo():
    with pytest.raises(StudyError, match="--algo: unknown algorithm 'ppo_nope'; choose one of ppo_variant"):
        plan_study(StudyConfig(out=Path("unused"), envs=["CartPole-v1"], objectives=["none"], seeds=1, algo="ppo_nope"))


def test_own_env_end_to_end(tmp_path, capsys):
    # gymnasium's module:EnvId form with rl-zoo's --env-kwargs: the env of a module of the tests, imported by the study
    # (checks, random policy) and by the worker processes; the report is built for it like for any env.
    out = tmp_path / "study"
    args = ["compare", "--envs", "tiny_env:TinyCorridor-v0", "--env-kwargs", "length:4", "--objectives", "clip:0.2", "none"]
    args += ["--seeds", "1", "--timesteps", "512", "--hyperparams", str(tmp_path / "tiny.yml"), "--out", str(out)]
    args += [
        "--workers",
        "2",
        "--eval-episodes",
        "2",
        "--random-episodes",
        "7",
        "--curve-points",
        "4",
        "--bootstrap-reps",
        "50",
    ]
    (tmp_path / "tiny.yml").write_text("default:\n  n_steps: 128\n  batch_size: 64\n  n_epochs: 2\n")
    assert main(args) == 0
    results = _results(out)
    assert sorted(results) == ["TinyCorridor-v0/clip_0.2/seed_0", "TinyCorridor-v0/none/seed_0"]
    for result in results.values():
        assert result["status"] == "ok" and result["num_timesteps"] == 512 and result["episodes"] > 0
        assert result["config"]["gym_packages"] == ["tiny_env"]
        assert result["config"]["hyperparams"]["env_kwargs"] == {"length": 4}
        assert max(result["last_returns"]) <= 1.0 - 0.01 * 2  # 3 steps at least in a corridor of 4 cells
    random = json.loads((out / "random_policy" / "TinyCorridor-v0.json").read_text())
    assert random["episodes"] == 7 and random["env_settings"] == {"env_kwargs": {"length": 4}, "gym_packages": ["tiny_env"]}
    report = (out / "report.md").read_text()
    assert "| TinyCorridor-v0 |" in report and "mean return of 7 uniformly random episodes" in report
    assert "| Clipping, ε = 0.2 | `clip:0.2` | **" in report


def test_gym_packages_and_env_kwargs_plan():
    plan = plan_study(
        StudyConfig(out=Path("unused"), envs=["TinyCorridor-v0"], objectives=["none"], seeds=1, timesteps=100,
                    gym_packages=["tiny_env"], env_kwargs={"length": 5}, hyperparams=None)
    )  # fmt: skip
    (spec,) = plan.specs
    assert spec.gym_packages == ["tiny_env"] and spec.hyperparams["env_kwargs"] == {"length": 5}
    assert spec.fingerprint != RunSpec.from_dict({**spec.to_dict(), "gym_packages": []}).fingerprint


def test_report_only_needs_results(tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path), "--report-only"]) == 2
    assert "holds no study results" in capsys.readouterr().err


def _preset_plan(*flags: str):
    return plan_study(config_from_args(make_parser().parse_args(list(flags))))


def test_presets_plan():
    plan = _preset_plan("--preset", "paper", "--baselines")
    assert len(plan.specs) == 7 * (11 + 3) * 3 and len(plan.methods) == 14
    clip = next(spec for spec in plan.specs if spec.method == "clip:0.3" and spec.env_id == "Hopper-v5")
    # The paper's settings are read from the zoo's file, the one place they are written: Table 3, no normalisation.
    zoo_entry = yaml.safe_load(DEFAULT_HYPERPARAMS_FILE.read_text())["Hopper-v5"]
    expected = {key: value for key, value in zoo_entry.items() if key != "n_timesteps"}
    assert clip.hyperparams == {**expected, "clip_range": 0.3}
    table3 = {"n_steps": 2048, "learning_rate": 3e-4, "n_epochs": 10, "batch_size": 64, "gamma": 0.99, "gae_lambda": 0.95}
    assert {key: clip.hyperparams[key] for key in table3} == table3
    assert clip.hyperparams["ent_coef"] == 0.0 and clip.hyperparams["normalize"] is False
    assert "policy_kwargs" not in clip.hyperparams and clip.timesteps == 1_000_000  # SB3's 2x64 tanh pi/vf networks
    trpo = next(spec for spec in plan.specs if spec.method == "trpo" and spec.env_id == "Hopper-v5")
    # No rl-zoo TRPO entry for the v5 tasks: TRPO's defaults with the study's env, network and discount settings.
    assert set(trpo.hyperparams) <= set(SHARED_KEYS) and trpo.hyperparams["normalize"] is False

    # The released implementation's settings over the same entries (VecNormalize, annealed step size, c1 = 1, no clipping).
    released = _preset_plan("--preset", "paper-baselines", "--seeds", "1")
    spec = next(spec for spec in released.specs if spec.method == "clip:0.3" and spec.env_id == "Hopper-v5")
    assert spec.hyperparams == {
        **expected,
        "clip_range": 0.3,
        "normalize": "dict(norm_obs=True, norm_reward=False, clip_obs=5.0)",
        "learning_rate": "lin_3e-4",
        "vf_coef": 1.0,
        "max_grad_norm": 1e10,
    }
    manager, model_kwargs, _ = preprocess(spec)
    assert manager.normalize_kwargs == {"norm_obs": True, "norm_reward": False, "clip_obs": 5.0, "gamma": 0.99}
    assert model_kwargs["learning_rate"](0.5) == pytest.approx(1.5e-4) and model_kwargs["learning_rate"](0.0) == 0.0

    # -params (rl-zoo's syntax) over the preset's overrides: the released settings without the annealing.
    constant = _preset_plan("--preset", "paper-baselines", "--seeds", "1", "-params", "learning_rate:3e-4", "n_epochs:5")
    spec_constant = next(s for s in constant.specs if s.method == "clip:0.3" and s.env_id == "Hopper-v5")
    assert spec_constant.hyperparams == {**spec.hyperparams, "learning_rate": 3e-4, "n_epochs": 5}
    assert spec_constant.fingerprint != spec.fingerprint
    # Over a file without overrides: the paper's settings with only the normalisation (a dict, as rl-zoo accepts it).
    normalised = _preset_plan("--preset", "paper", "--params", "normalize:dict(norm_obs=True, norm_reward=False)")
    spec_normalised = next(s for s in normalised.specs if s.method == "clip:0.3" and s.env_id == "Hopper-v5")
    normalize = {"norm_obs": True, "norm_reward": False}
    assert spec_normalised.hyperparams == {**expected, "clip_range": 0.3, "normalize": normalize}
    assert preprocess(spec_normalised)[0].normalize_kwargs == {"norm_obs": True, "norm_reward": False, "gamma": 0.99}

    learning = _preset_plan("--preset", "learning")
    assert {method.label for method in learning.methods} == {"clip", "adaptive_kl", "fixed_kl", "none", "ppo"}
    assert len(learning.specs) == 2 * 5 * 3

    plan = _preset_plan("--preset", "quick")
    assert len(plan.specs) == 2 * 4 * 2
    cartpole = next(spec for spec in plan.specs if spec.method == "adaptive_kl:0.01" and spec.env_id == "CartPole-v1")
    assert cartpole.hyperparams["n_envs"] == 8 and cartpole.hyperparams["kl_target"] == 0.01
    assert cartpole.hyperparams["learning_rate"] == "lin_0.001"  # converted by rl_zoo3 in the worker


def test_baselines_alone():
    plan = plan_study(
        StudyConfig(out=Path("unused"), envs=["CartPole-v1"], objectives=[], seeds=1, timesteps=10, baselines=["a2c"])
    )
    assert [(spec.method, spec.algo) for spec in plan.specs] == [("a2c", "a2c")]


def test_schedule_specs_are_converted_by_rl_zoo():
    plan = plan_study(
        StudyConfig(out=Path("unused"), envs=["CartPole-v1"], objectives=["clip:lin_0.3", "adaptive_kl:lin_0.02"], seeds=1,
                    timesteps=10)
    )  # fmt: skip
    assert [spec.hyperparams for spec in plan.specs] == [
        {"objective": "clip", "clip_range": "lin_0.3"},
        {"objective": "adaptive_kl", "kl_target": "lin_0.02"},
    ]
    _, clip, _ = preprocess(plan.specs[0])
    _, adaptive, _ = preprocess(plan.specs[1])
    # rl_zoo3's linear schedules: the start value at progress 1, half of it at progress 0.5.
    assert clip["clip_range"](1.0) == pytest.approx(0.3) and clip["clip_range"](0.5) == pytest.approx(0.15)
    assert adaptive["kl_target"](0.5) == pytest.approx(0.01)


def _tiny_spec(method: Method, timesteps: int = 1024, **entry) -> RunSpec:
    hyperparams = method_hyperparams({**TINY_ENTRY, **entry}, method, "CartPole-v1")
    return RunSpec("CartPole-v1", method.label, method.algo, seed=1, timesteps=timesteps, hyperparams=hyperparams,
                   eval_episodes=2, curve_points=8)  # fmt: skip


def test_sb3_ppo_baseline_equals_clip():
    clip = train_run(_tiny_spec(parse_method("clip:0.2")))
    ppo = train_run(_tiny_spec(parse_baselines(["ppo"])[0]))
    assert ppo["config"]["hyperparams"] == TINY_ENTRY  # no PPOVariant keys
    for key in ("score", "last_returns", "curve", "eval_returns", "num_timesteps"):
        assert ppo[key] == clip[key]


@pytest.mark.parametrize("algo", ["trpo", "a2c"])
def test_trpo_and_a2c_baselines(algo):
    method = parse_baselines([algo])[0]
    spec = _tiny_spec(method, timesteps=2048)
    # CartPole has tuned rl-zoo hyperparameters for both: they are used as they are.
    tuned = zoo_tuned_entry(algo, "CartPole-v1")
    assert tuned is not None
    tuned.pop("n_timesteps")
    assert spec.hyperparams == tuned
    result = train_run(spec)
    assert result["status"] == "ok" and result["episodes"] > 0 and result["num_timesteps"] >= 2048
    # Without tuned ones (CartPole-v0): the algorithm's defaults, with the study's shared settings only.
    assert method_hyperparams({**TINY_ENTRY, "gamma": 0.95}, method, "CartPole-v0") == {"n_envs": 1, "gamma": 0.95}


class NaNAfterSecondUpdate(SurrogateObjective):
    """L^CPI whose loss becomes NaN from the second update on, to exercise a diverging run."""

    name = "test_nan"

    def __init__(self) -> None:
        self.updates = 0

    @classmethod
    def from_hyperparameters(cls, *, clip_range, kl_coef, kl_target):
        return cls()

    def begin_update(self, progress_remaining: float) -> None:
        self.updates += 1

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        loss = -batch.mean(batch.ratio * batch.advantages)
        return ObjectiveOutput(loss * float("nan") if self.updates > 1 else loss)


def test_diverged_and_failed_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "test_nan", NaNAfterSecondUpdate)
    ok = train_run(_tiny_spec(parse_method("clip:0.2")))
    diverged = train_run(_tiny_spec(Method("test_nan", "ppo_variant", objective="test_nan")))
    failed = train_run(_tiny_spec(parse_method("none"), env_kwargs={"no_such_argument": 1}))

    # Diverged: stopped at the second update (2 rollouts of 256 steps), scored on the episodes before, evaluated.
    assert diverged["status"] == "diverged" and "Non-finite" in diverged["error"]
    assert diverged["num_timesteps"] == 512 and diverged["score"] is not None and len(diverged["eval_returns"]) == 2
    assert failed["status"] == "failed" and "no_such_argument" in failed["error"]
    assert failed["score"] is None and failed["eval_returns"] == []

    for result in (ok, diverged, failed):
        storage.save_result(tmp_path, RunSpec.from_dict(result["config"]), result)
    random_scores(tmp_path, {"CartPole-v1": TINY_ENTRY}, episodes=5)
    write_report(tmp_path, bootstrap_reps=100)
    report = (tmp_path / "report.md").read_text()
    assert "random policy = mean return of 5 uniformly random episodes" in report
    assert "`test_nan`: 1 run(s) stopped on a non-finite loss" in report
    assert "`none`: 1 run(s) failed (no score): CartPole-v1/none/seed_1" in report
    assert "| No clipping or penalty | `none` | **—** |" in report
    with open(tmp_path / "runs.csv") as file:
        statuses = {row["method"]: row["status"] for row in csv.DictReader(file)}
    assert statuses == {"clip:0.2": "ok", "test_nan": "diverged", "none": "failed"}


def test_interrupted_run_has_no_result():
    """rl-zoo's ExperimentManager.learn returns normally on Ctrl-C: the run must not come back as finished."""
    calls = []

    def interrupt(run_id: str, timesteps: int) -> None:
        calls.append(timesteps)
        if len(calls) > 1:  # the first call is the start, outside training; the second, training's first step
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(_tiny_spec(parse_method("clip:0.2")), reporter=interrupt)
    assert len(calls) == 2


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("sb3-ppo-variants")
    assert script.is_file() and os.access(script, os.X_OK)
    help_text = subprocess.run([str(script), "compare", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--envs", "--objectives", "--seeds", "--timesteps", "--workers", "--out", "--preset", "--hyperparams",
                 "--baselines", "--ray-address", "--report-only"):  # fmt: skip
        assert flag in help_text
