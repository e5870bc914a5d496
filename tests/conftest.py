"""
Tests run on CPU with one torch thread per process: deterministic, and two xdist workers fit two cores. Helpers shared
by several test modules are here (``from conftest import run_zoo``).
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

th.set_num_threads(1)


class KeepRolloutPolicy(BaseCallback):
    """Keeps a frozen copy of the policy that collected the last rollout: π_old of the update that follows it."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.policy = copy.deepcopy(self.model.policy)
        self.policy.set_training_mode(False)


def assert_same_training_state(ours, theirs) -> None:
    """Bitwise the same parameters and optimizer state (so continued training stays identical too)."""
    our_parameters, their_parameters = ours.policy.state_dict(), theirs.policy.state_dict()
    assert list(our_parameters) == list(their_parameters)
    for name, value in their_parameters.items():
        assert th.equal(our_parameters[name], value), name
    our_optimizer, their_optimizer = ours.policy.optimizer.state_dict(), theirs.policy.optimizer.state_dict()
    assert our_optimizer["state"].keys() == their_optimizer["state"].keys() and their_optimizer["state"]
    for index, state in their_optimizer["state"].items():
        assert state.keys() == our_optimizer["state"][index].keys()
        for key, value in state.items():
            assert th.equal(th.as_tensor(our_optimizer["state"][index][key]), th.as_tensor(value)), (index, key)
    for ours_group, theirs_group in zip(our_optimizer["param_groups"], their_optimizer["param_groups"], strict=True):
        assert ours_group["lr"] == theirs_group["lr"]


def assert_close_training_state(ours, theirs, atol: float = 1e-6) -> None:
    """Parameters and optimizer state equal to within ``atol`` (the same computation in another float order)."""
    our_parameters, their_parameters = ours.policy.state_dict(), theirs.policy.state_dict()
    assert list(our_parameters) == list(their_parameters)
    for name, value in their_parameters.items():
        th.testing.assert_close(our_parameters[name], value, atol=atol, rtol=0, msg=name)
    our_optimizer, their_optimizer = ours.policy.optimizer.state_dict(), theirs.policy.optimizer.state_dict()
    assert our_optimizer["state"].keys() == their_optimizer["state"].keys() and their_optimizer["state"]
    for index, state in their_optimizer["state"].items():
        assert state.keys() == our_optimizer["state"][index].keys()
        for key, value in state.items():
            th.testing.assert_close(
                th.as_tensor(our_optimizer["state"][index][key]), th.as_tensor(value), atol=atol, rtol=0, msg=str(key)
            )


def run_zoo(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the entry point like a user would, with one torch thread; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_ppo_variants.zoo", *arguments],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"exit code {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


#: rl-zoo's -optimize with tiny trials (512 steps, one evaluation) and a random sampler
OPTIMIZE = [
    "train",
    "--algo",
    "ppo_variant",
    "--env",
    "CartPole-v1",
    "-optimize",
    "-n",
    "512",
    "--n-evaluations",
    "1",
    "--eval-episodes",
    "2",
    "--sampler",
    "random",
    "--pruner",
    "none",
    "--no-optim-plots",
    "--num-threads",
    "1",
]


def optimize(storage: str, seed: int, *extra: str, cwd) -> subprocess.Popen:
    """One tuning worker: rl-zoo's -optimize on a shared study (tiny trials: 512 steps, one env)."""
    command = [
        sys.executable,
        "-m",
        "sb3_ppo_variants.zoo",
        *OPTIMIZE,
        "--storage",
        storage,
        "--study-name",
        "shared",
        "--seed",
        str(seed),  # the random sampler's seed: each worker draws its own trials
        "-f",
        str(cwd / "logs"),
        *extra,
        "--hyperparams",
        "n_envs:1",
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait(worker: subprocess.Popen) -> str:
    output, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, output[-3000:]
    return output
