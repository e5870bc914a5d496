"""
The comparison study on a Ray cluster of two nodes on this machine, set up as docs/compare.md says: a head started with
token authentication and a second node joined with ``ray start --address`` and the shared token. The tiny grid of an
env of the tests' own (``module:EnvId`` with ``--env-kwargs``) gives the same per-run results as the local pool.
The test stops only the Ray processes it started (those with its token in their environment).
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sb3_ppo_variants.__main__ import main
from sb3_ppo_variants.compare import storage

pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")
TESTS = Path(__file__).resolve().parent
#: What a run's result is a pure function of (the rest is wall time, host and date).
DETERMINISTIC = ("config", "fingerprint", "status", "score", "last_returns", "curve", "eval_returns", "num_timesteps")
GRID = ["compare", "--envs", "tiny_env:TinyCorridor-v0", "--env-kwargs", "length:4", "--objectives", "clip:0.2", "none"]
GRID += ["--seeds", "2", "--timesteps", "512", "--eval-episodes", "2", "--random-episodes", "7", "--curve-points", "4"]
GRID += ["--bootstrap-reps", "50"]
HYPERPARAMS = "default:\n  n_steps: 128\n  batch_size: 64\n  n_epochs: 2\n"


def _free_ports(count: int) -> list[str]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [str(probe.getsockname()[1]) for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _ray_processes(token: str) -> set[int]:
    """
    The processes of the cluster with this token: those with the token in their environment, their descendants, and
    the agents of their raylets (whose environment Ray filters but which name their raylet's pid).
    """
    environments, parents = {}, {}
    for path in Path("/proc").iterdir():
        try:
            if path.name.isdigit() and int(path.name) != os.getpid():
                environments[int(path.name)] = (path / "environ").read_bytes().split(b"\0")
                parents[int(path.name)] = int((path / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            pass
    found = {pid for pid, environ in environments.items() if f"RAY_AUTH_TOKEN={token}".encode() in environ}
    while True:
        raylets = {f"RAY_RAYLET_PID={pid}".encode() for pid in found}
        more = {pid for pid, environ in environments.items() if parents.get(pid) in found or raylets & set(environ)}
        if more <= found:
            return found
        found |= more


def _node_ports() -> list[str]:
    """Ports of one node's agents (two nodes on one machine must not share them)."""
    names = [
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    ]
    return [item for pair in zip(names, _free_ports(len(names)), strict=True) for item in pair]


@pytest.fixture
def two_nodes():
    """A head (no CPU, so every run goes to the second node) and a node with 2 CPUs, both on 127.0.0.1."""
    # Short: Ray's unix socket paths are limited to 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    # Ray's workers import the tests' env module, as a user's nodes would import an installed package.
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    gcs_port, client_port = _free_ports(2)
    common = ["--node-ip-address", "127.0.0.1", "--object-store-memory", "100000000", "--disable-usage-stats"]
    head = [str(RAY), "start", "--head", "--port", gcs_port, "--num-cpus", "0", "--include-dashboard", "false"]
    head += ["--temp-dir", temp_dir, "--ray-client-server-port", client_port, *common, *_node_ports()]
    node = [str(RAY), "start", "--address", f"127.0.0.1:{gcs_port}", "--num-cpus", "2", *common, *_node_ports()]
    try:
        for command in (head, node):
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
            assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{gcs_port}", env
    finally:
        processes = _ray_processes(token)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in processes:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while (processes := {pid for pid in processes if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
                time.sleep(0.5)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not processes


# Starting two Ray nodes and their workers takes a while on a busy 2-core machine.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_node_cluster_gives_the_local_pool_results(tmp_path, two_nodes):
    address, env = two_nodes
    (tmp_path / "tiny.yml").write_text(HYPERPARAMS)
    grid = [*GRID, "--hyperparams", str(tmp_path / "tiny.yml")]
    # Without the token (a machine that was not given it), the cluster refuses the driver before any run.
    tokenless = {key: value for key, value in env.items() if key != "RAY_AUTH_TOKEN"} | {"HOME": str(tmp_path)}
    command = [sys.executable, "-m", "sb3_ppo_variants", *grid, "--out", str(tmp_path / "ray"), "--ray-address", address]
    refused = subprocess.run(command, env=tokenless, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and f"--ray-address: cannot connect to Ray at '{address}'" in refused.stderr
    assert not (tmp_path / "ray" / "runs").exists()

    assert main([*grid, "--out", str(tmp_path / "local"), "--workers", "2"]) == 0

    # The driver as a user runs it: its own process, with the cluster's token in its environment.
    study = subprocess.run(command, env=env, capture_output=True, text=True, timeout=480)
    assert study.returncode == 0, study.stdout[-3000:] + study.stderr[-3000:]

    local = {result["run_id"]: result for result in storage.load_results(tmp_path / "local")}
    remote = {result["run_id"]: result for result in storage.load_results(tmp_path / "ray")}
    assert len(local) == 4 and sorted(remote) == sorted(local)
    for run_id, result in local.items():
        assert {key: remote[run_id][key] for key in DETERMINISTIC} == {key: result[key] for key in DETERMINISTIC}
    assert f"ray ({address})" in (tmp_path / "ray" / "study.json").read_text()
    report = (tmp_path / "ray" / "report.md").read_text()
    assert "| TinyCorridor-v0 |" in report and "mean return of 7 uniformly random episodes" in report
