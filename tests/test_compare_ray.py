"""The comparison study on Ray: the tiny grid through a local Ray instance gives the same per-run results as the pool."""

import time

import pytest

from sb3_ppo_variants.__main__ import main
from sb3_ppo_variants.compare import storage

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

TINY_YAML = "CartPole-v1:\n  n_envs: 1\n  n_steps: 256\n  batch_size: 64\n  n_epochs: 10\n  learning_rate: 0.003\n"
#: What a run's result is a pure function of (the rest is wall time, host and date).
DETERMINISTIC = ("config", "fingerprint", "status", "score", "last_returns", "curve", "eval_returns", "num_timesteps")


def _ray_processes() -> list:
    """Ray's processes started by this test process (GCS, raylet, workers...)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "ray" in " ".join(process.cmdline()).lower():
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


# Starting Ray and its workers takes a while on a busy machine (the run itself is ~1 minute of CPU).
@pytest.mark.timeout(900)
def test_ray_gives_the_local_pool_results(tmp_path, capsys):
    hyperparams = tmp_path / "tiny.yml"
    hyperparams.write_text(TINY_YAML)
    grid = ["compare", "--envs", "CartPole-v1", "--objectives", "clip:0.2", "none", "--seeds", "2", "--timesteps", "2048"]
    grid += ["--hyperparams", str(hyperparams), "--eval-episodes", "3", "--random-episodes", "20", "--curve-points", "16"]
    grid += ["--bootstrap-reps", "200"]
    assert main([*grid, "--out", str(tmp_path / "local"), "--workers", "2"]) == 0

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*grid, "--out", str(tmp_path / "ray"), "--ray-address", "auto"]) == 0
    finally:
        ray.shutdown()
    local = {result["run_id"]: result for result in storage.load_results(tmp_path / "local")}
    remote = {result["run_id"]: result for result in storage.load_results(tmp_path / "ray")}
    assert len(local) == 4 and sorted(remote) == sorted(local)
    for run_id, result in local.items():
        assert {key: remote[run_id][key] for key in DETERMINISTIC} == {key: result[key] for key in DETERMINISTIC}
    assert "ray (auto)" in (tmp_path / "ray" / "study.json").read_text()
    assert (tmp_path / "ray" / "report.md").is_file() and len(list((tmp_path / "ray" / "plots").glob("*.png"))) == 4

    # ray.shutdown() stopped the local instance: nothing of it is left behind.
    deadline = time.monotonic() + 30
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_processes()
