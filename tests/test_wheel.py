"""
The built wheel works on its own: build it from a copy of the package's files, install it with the ``zoo`` and
``compare`` extras into a fresh virtualenv, and run the command lines and a short training from that virtualenv, in a
folder outside the source tree and without ``PYTHONPATH``, so that nothing is imported from the source tree.

The virtualenv gets the same torch as the one running the tests (``torch==<its version>``, from pip's configured
index: on the project's machines, Python 3.11 takes a local CPU wheel of torch 2.13.0).
"""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sb3_ppo_variants"
#: What a wheel is built from: the build configuration, the long description and the package.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", PACKAGE)


def run(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command outside the source tree, with no ``PYTHONPATH``; fail with its output if it fails."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{command}: exit code {result.returncode}\n{output}"
    return result


def package_files(folder: Path) -> set[str]:
    """The package's files, as paths in a wheel (``sb3_ppo_variants/...``), without compiled bytecode."""
    return {
        path.relative_to(folder).as_posix()
        for path in (folder / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the copy of the sources it was built from); the copy keeps build/ and *.egg-info out of the tree."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = base / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source, cwd=base)
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], source


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel and its zoo and compare extras installed; returns its bin folder."""
    wheel, _ = built
    folder = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", folder, cwd=folder.parent)
    bin_folder = folder / "bin"
    requirements = [f"torch=={torch.__version__}", f"{wheel}[zoo,compare]"]
    run(bin_folder / "python", "-m", "pip", "install", *requirements, cwd=folder.parent)
    return bin_folder


def test_wheel_holds_every_package_file(built):
    wheel, source = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        console_scripts = archive.read(entry_points).decode()
    missing = package_files(source) - names
    assert not missing, f"not in the wheel (setup.cfg's package_data?): {sorted(missing)}"
    assert {"sb3_ppo_variants/hyperparams/ppo_variant.yml", "sb3_ppo_variants/compare/presets.yml"} <= names
    assert "sb3-ppo-variants = sb3_ppo_variants.__main__:main" in console_scripts
    assert "sb3-ppo-variants-zoo = sb3_ppo_variants.zoo.__main__:main" in console_scripts


def test_compare_help(venv, tmp_path):
    result = run(venv / "python", "-m", PACKAGE, "compare", "--help", cwd=tmp_path)
    # the --preset help lists the presets read from the installed presets.yml
    for preset in ("quick", "learning", "paper"):
        assert preset in result.stdout
    assert "--objectives" in result.stdout
    assert run(venv / "sb3-ppo-variants", "compare", "--help", cwd=tmp_path).stdout == result.stdout


def test_zoo_train_help(venv, tmp_path):
    result = run(venv / "sb3-ppo-variants-zoo", "train", "--help", cwd=tmp_path)
    assert "--algo" in result.stdout
    assert "--hyperparams" in result.stdout


def test_training_from_the_installed_package(venv, tmp_path):
    """256 steps of PPOVariant with the shipped YAML (rl-zoo's train), then the presets and the model, all installed."""
    run(
        venv / "sb3-ppo-variants-zoo", "train", "--algo", "ppo_variant", "--env", "CartPole-v1", "-n", "256", "--seed", "0",
        "--num-threads", "1", "--eval-freq", "-1", "-f", tmp_path / "logs", cwd=tmp_path,
    )  # fmt: skip
    check = textwrap.dedent(f"""
        from pathlib import Path

        import yaml

        import sb3_ppo_variants
        from sb3_ppo_variants import PPOVariant
        from sb3_ppo_variants.compare.cli import presets
        from sb3_ppo_variants.zoo.adapter import variant_keys
        from sb3_ppo_variants.zoo.exp_manager import default_hyperparams_file

        installed = Path(sb3_ppo_variants.__file__).resolve().parent
        assert "site-packages" in installed.parts, installed
        assert not installed.is_relative_to({str(ROOT)!r}), installed
        # every variant's hyperparameter file and every preset's file, found as package data
        for algo in variant_keys():
            path = Path(default_hyperparams_file(algo)).resolve()
            assert path.is_relative_to(installed) and yaml.safe_load(path.read_text()), path
        for name, preset in presets().items():
            if not preset["hyperparams"].startswith("rl_zoo3:"):
                assert Path(preset["hyperparams"]).resolve().is_relative_to(installed), (name, preset)
                assert Path(preset["hyperparams"]).is_file(), (name, preset)
        # the zoo's run: the shipped YAML's CartPole-v1 entry (8 envs x 32 steps), clip
        model = PPOVariant.load("logs/ppo_variant/CartPole-v1_1/CartPole-v1.zip", device="cpu")
        assert model.num_timesteps == 256 and model.n_envs == 8 and model.n_steps == 32, model.num_timesteps
        assert model.objective.name == "clip"
        # and one directly, with another objective
        model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", n_steps=128, batch_size=64, n_epochs=2, seed=0)
        model.learn(256)
        assert model.num_timesteps == 256
        print("ok", installed)
        """)
    result = run(venv / "python", "-c", check, cwd=tmp_path)
    assert result.stdout.startswith("ok ")
