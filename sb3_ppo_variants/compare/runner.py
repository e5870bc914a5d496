"""
One training run of the study, and the random-policy reference score. Both are pure functions of their inputs (the
run's :class:`~sb3_ppo_variants.compare.specs.RunSpec`, or env settings and a seed) and return plain JSON-serialisable
dicts, so they run the same in a local worker process or as a Ray task on another machine.

A training run is one rl-zoo experiment (:func:`sb3_ppo_variants.zoo.experiment.experiment`): ``setup_experiment()``
builds its envs and model from the run's hyperparameters, ``learn()`` trains it with the episode recorder among its
callbacks, and its ``create_envs()`` gives the evaluation env.
"""

import importlib
import math
import platform
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import sync_envs_normalization

from sb3_ppo_variants.compare.hyperparams import zoo_entry
from sb3_ppo_variants.compare.metrics import SCORE_EPISODES, learning_curve, mean_of_last
from sb3_ppo_variants.compare.specs import RunSpec
from sb3_ppo_variants.update_stats import NonFiniteLossError
from sb3_ppo_variants.zoo.evaluation import evaluate_policy
from sb3_ppo_variants.zoo.experiment import experiment

#: Result format version, stored in every result file.
RESULT_SCHEMA = 1

#: ``report(run_id, timesteps)``: live progress of a run (called with 0 when it starts). Never affects results.
Reporter = Callable[[str, int], None]


def versions() -> dict[str, str]:
    """
    Versions of Python and of the installed packages a result depends on, and the processor: torch's CPU kernels
    (MKL's among them) sum in an order that depends on the processor, so a run can end elsewhere on another CPU.
    """
    found = {"python": platform.python_version()}
    for module in ("sb3_ppo_variants", "stable_baselines3", "gymnasium", "torch", "numpy", "sb3_contrib", "rl_zoo3", "mujoco"):
        try:
            found[module] = importlib.import_module(module).__version__
        except (ImportError, AttributeError):
            pass
    return {**found, "cpu": f"{_processor()}, torch {th.backends.cpu.get_cpu_capability()}"}


def _processor() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.partition(":")[2].strip() for line in cpuinfo if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def _import_gym_packages(spec: RunSpec) -> None:
    """Register the run's envs in this process (a worker starts from a clean interpreter), as rl-zoo does."""
    for module in spec.gym_packages:
        importlib.import_module(module)


class EpisodeRecorder(BaseCallback):
    """
    Record the return of every training episode (from the ``Monitor`` wrapper, so the raw environment reward) and
    report progress at most once per ``interval`` seconds.
    """

    def __init__(self, run_id: str, reporter: Reporter | None = None, interval: float = 1.0) -> None:
        super().__init__()
        self.run_id = run_id
        self.reporter = reporter
        self.interval = interval
        self.end_steps: list[int] = []
        self.returns: list[float] = []
        self._last_report = 0.0

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:
                self.end_steps.append(self.num_timesteps)
                self.returns.append(float(episode["r"]))
        if self.reporter is not None and time.monotonic() - self._last_report > self.interval:
            self._last_report = time.monotonic()
            self.reporter(self.run_id, self.num_timesteps)
        return True


def train_run(spec: RunSpec | dict[str, Any], reporter: Reporter | None = None) -> dict[str, Any]:
    """
    Train one run and measure it. Exceptions of the training itself do not propagate: a non-finite loss gives status
    ``"diverged"`` (scored on the episodes before it, with the policy restored to its last finite state), any other
    error status ``"failed"`` (with the traceback). Both are deterministic outcomes of the run.

    :param spec: the run (or its dict form)
    :param reporter: live progress callback (local queue or Ray queue); does not affect the result
    :return: the result: config, status, score (mean return of the last 100 training episodes), learning curve, final
        deterministic evaluation, versions, wall time
    """
    spec = spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)
    # One thread per run: runs are the unit of parallelism, and results do not depend on the thread count.
    th.set_num_threads(1)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "run_id": spec.run_id,
        "fingerprint": spec.fingerprint,
        "config": spec.to_dict(),
        "status": "ok",
        "error": None,
    }
    if reporter is not None:
        reporter(spec.run_id, 0)
    recorder = EpisodeRecorder(spec.run_id, reporter)
    model: Any = None
    eval_env = None
    try:
        _import_gym_packages(spec)
        with experiment(spec.algo, spec.env_id, zoo_entry(spec), spec.seed, spec.timesteps) as manager:
            model, _ = manager.setup_experiment()  # type: ignore[misc]  # None only with -optimize
            manager.callbacks.insert(0, recorder)
            try:
                manager.learn(model)  # closes the training env
            except NonFiniteLossError as error:
                result.update(status="diverged", error=str(error))
            if manager.interrupted:  # rl-zoo's learn() returns normally on Ctrl-C: this run has no result
                raise KeyboardInterrupt
            eval_env = manager.create_envs(1, eval_env=True)
        # Evaluate with the training env's observation statistics, frozen (as rl-zoo's EvalCallback does), and a
        # maskable algorithm with the env's masks.
        sync_envs_normalization(model.get_env(), eval_env)
        episode_returns, episode_lengths = evaluate_policy(
            model, eval_env, spec.algo, n_eval_episodes=spec.eval_episodes, deterministic=True, return_episode_rewards=True
        )
        eval_returns, eval_lengths = list(episode_returns), list(episode_lengths)  # type: ignore[arg-type]
    except Exception as error:  # a run that cannot train is a result too; the other runs go on
        result.update(status="failed", error=f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        eval_returns, eval_lengths = [], []
    finally:
        if eval_env is not None:
            eval_env.close()
    result.update(_measurements(spec, model, recorder, eval_returns, eval_lengths, time.perf_counter() - start))
    return result


def _measurements(
    spec: RunSpec, model: Any, recorder: EpisodeRecorder, eval_returns: list, eval_lengths: list, wall_time: float
) -> dict[str, Any]:
    """A finished (or failed) run's result fields: score, curve, evaluation, β, speed, host and versions."""
    num_timesteps = int(model.num_timesteps) if model is not None else 0
    return dict(
        score=mean_of_last(recorder.returns),
        score_episodes=min(len(recorder.returns), SCORE_EPISODES),
        episodes=len(recorder.returns),
        last_returns=recorder.returns[-SCORE_EPISODES:],
        curve=learning_curve(recorder.end_steps, recorder.returns, spec.timesteps, spec.curve_points),
        eval_mean=float(np.mean(eval_returns)) if len(eval_returns) else None,
        eval_std=float(np.std(eval_returns)) if len(eval_returns) else None,
        eval_returns=[float(value) for value in eval_returns],
        eval_lengths=[int(value) for value in eval_lengths],
        num_timesteps=num_timesteps,
        final_kl_coef=float(model.kl_coef) if model is not None and hasattr(model, "kl_coef") else None,
        wall_time=wall_time,
        steps_per_second=num_timesteps / wall_time if wall_time > 0 else None,
        host=socket.gethostname(),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        versions=versions(),
    )


def measure_random_policy(spec: RunSpec, episodes: int = 100, max_steps: int = 10_000_000) -> dict[str, Any]:
    """
    Score of a uniformly random policy: the mean return of ``episodes`` episodes with actions sampled uniformly from
    the action space, in the environment the runs train in (same env kwargs and wrappers; Monitor returns, i.e. raw
    rewards).

    :param spec: a run of the env (its env settings and seed are used; its algorithm is not)
    :param episodes: number of episodes
    :param max_steps: give up (error) if the episodes take more steps than this (an env that never ends)
    :return: ``{"mean", "std", "episodes", "returns", "seed", "versions"}``
    """
    _import_gym_packages(spec)
    with experiment(spec.algo, spec.env_id, zoo_entry(spec), spec.seed) as manager:
        manager.prepare()
        env = manager.create_envs(1, eval_env=True)
    env.action_space.seed(spec.seed)
    returns: list[float] = []
    steps = 0
    try:
        env.reset()
        while len(returns) < episodes:
            _, _, _, infos = env.step(np.array([env.action_space.sample()]))
            returns += [float(info["episode"]["r"]) for info in infos if "episode" in info]
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"{spec.env_id}: the random policy did not finish {episodes} episodes in {max_steps} steps")
    finally:
        env.close()
    mean = float(np.mean(returns))
    assert math.isfinite(mean)
    return {
        "env_id": spec.env_id,
        "mean": mean,
        "std": float(np.std(returns)),
        "episodes": episodes,
        "returns": returns,
        "seed": spec.seed,
        "versions": versions(),
    }
