"""
A comparison study: check the input, plan the grid envs × methods × seeds, skip the runs already finished in the study
folder, execute the others (local pool or Ray), save each result as it arrives, then write the report.
"""

import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sb3_ppo_variants.compare import storage
from sb3_ppo_variants.compare.execution import RunLost, make_executor
from sb3_ppo_variants.compare.hyperparams import check_hyperparams, method_hyperparams, read_entry, resolve_hyperparams_file
from sb3_ppo_variants.compare.progress import GridProgress
from sb3_ppo_variants.compare.report import print_tables, write_report
from sb3_ppo_variants.compare.requirements import check_requirements
from sb3_ppo_variants.compare.runner import measure_random_policy, versions
from sb3_ppo_variants.compare.specs import Method, RunSpec, StudyError, parse_baselines, parse_method
from sb3_ppo_variants.zoo.adapter import ZooConfigError, check_env_id, variant_keys

#: Seed of the random-policy measurement (the same for every env and study).
RANDOM_POLICY_SEED = 0
#: Default number of episodes of the random-policy measurement.
RANDOM_EPISODES = 100


@dataclass
class StudyConfig:
    """
    Settings of a study (the CLI flags, after the preset is applied).

    :param out: study folder
    :param envs: Gymnasium ids, or ``module:EnvId`` (gymnasium's form: ``module`` is imported first)
    :param objectives: objective specs (``clip:0.2``...)
    :param seeds: number of seeds (0 .. seeds-1)
    :param timesteps: budget per run; ``None``: each env's ``n_timesteps`` from the hyperparameter file
    :param hyperparams: rl-zoo-style YAML (path or ``rl_zoo3:<algo>``); ``None``: the algorithms' defaults
    :param baselines: baseline algorithms to add (``ppo``, ``trpo``, ``a2c``); ``None``: none
    :param algo: the variant whose objectives are compared (rl-zoo key, see :mod:`sb3_ppo_variants.zoo.adapter`)
    :param gym_packages: modules to import so that the envs are registered (rl-zoo's ``--gym-packages``)
    :param env_kwargs: keyword arguments of every env, over the hyperparameter file's ``env_kwargs``
    :param overrides: hyperparameters set over every env's entry of the file (a preset's)
    :param workers: local processes in parallel
    :param ray_address: run on this Ray cluster instead of locally
    :param eval_episodes: episodes of the final deterministic evaluation
    :param random_episodes: episodes of the random-policy measurement (``None``: the cached measurement, whatever its
        number of episodes, else :data:`RANDOM_EPISODES`)
    :param curve_points: points of each stored learning curve
    :param bootstrap_reps: bootstrap resamples of rliable's confidence intervals
    :param retry_failed: run again the runs whose stored result is a failure
    :param preset: preset name, for the record
    :param command: the command line, for the record
    """

    out: Path
    envs: list[str]
    objectives: list[str]
    seeds: int
    timesteps: int | None = None
    hyperparams: str | None = None
    baselines: list[str] | None = None
    algo: str = "ppo_variant"
    gym_packages: list[str] = field(default_factory=list)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    ray_address: str | None = None
    eval_episodes: int = 10
    random_episodes: int | None = None
    curve_points: int = 100
    bootstrap_reps: int = 10_000
    retry_failed: bool = False
    preset: str | None = None
    command: str = field(default_factory=lambda: shlex.join(sys.argv))

    def __post_init__(self) -> None:
        self.out = Path(self.out)


@dataclass
class Plan:
    """The checked grid: its methods, its runs, and the env entries of the hyperparameter file."""

    methods: list[Method]
    specs: list[RunSpec]
    entries: dict[str, dict[str, Any]]
    hyperparams_file: Path | None
    gym_packages: list[str] = field(default_factory=list)


def _positive_integer(flag: str, value: Any) -> int:
    """Accept whole numbers written as floats (``1e6``) and reject the rest, naming the flag."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value != int(value) or value < 1:
        raise StudyError(f"{flag} must be a positive whole number, got {value!r}")
    return int(value)


def _env_ids(config: StudyConfig) -> tuple[list[str], list[str]]:
    """
    The registered ids of ``config.envs`` and the modules a worker imports to register them: ``--gym-packages`` and the
    module of each ``module:EnvId``.

    :raises StudyError: a module that cannot be imported, or an unknown id
    """
    packages = list(config.gym_packages)
    env_ids = []
    for env_id in config.envs:
        try:
            env_ids.append(check_env_id(env_id, config.gym_packages, flag="--envs"))
        except ZooConfigError as error:
            raise StudyError(str(error)) from None
        packages += [env_id.rpartition(":")[0]] if ":" in env_id else []
    return list(dict.fromkeys(env_ids)), list(dict.fromkeys(packages))


def plan_study(config: StudyConfig) -> Plan:
    """
    Check every input and build the grid, before anything runs.

    :raises StudyError: the first problem found, naming the flag, the value and what is accepted
    """
    seeds = _positive_integer("--seeds", config.seeds)
    for flag, value in (
        ("--workers", config.workers),
        ("--eval-episodes", config.eval_episodes),
        ("--random-episodes", RANDOM_EPISODES if config.random_episodes is None else config.random_episodes),
        ("--curve-points", config.curve_points),
        ("--bootstrap-reps", config.bootstrap_reps),
    ):
        _positive_integer(flag, value)
    if config.timesteps is not None:
        _positive_integer("--timesteps", config.timesteps)
    if config.algo not in variant_keys():
        raise StudyError(f"--algo: unknown algorithm {config.algo!r}; choose one of {', '.join(variant_keys())}")
    if not config.envs:
        raise StudyError("--envs: no environment given (or use --preset)")
    if not config.objectives and config.baselines is None:
        raise StudyError("--objectives: no objective spec given (e.g. clip:0.2 adaptive_kl:0.01 fixed_kl:1 none)")
    env_ids, gym_packages = _env_ids(config)
    methods = list(
        {method.label: method for method in (parse_method(spec, config.algo) for spec in config.objectives)}.values()
    )
    if config.baselines is not None:
        methods += parse_baselines(config.baselines, config.algo)
    hyperparams_file = resolve_hyperparams_file(config.hyperparams)
    entries = {env_id: {**read_entry(hyperparams_file, env_id), **config.overrides} for env_id in env_ids}
    for entry in entries.values():
        if config.env_kwargs:
            entry["env_kwargs"] = {**entry.get("env_kwargs", {}), **config.env_kwargs}

    specs = []
    # Seed-major order: the first seed of every (env, method) finishes first, so a partial study is already a table.
    for seed in range(seeds):
        for env_id, entry in entries.items():
            timesteps = config.timesteps if config.timesteps is not None else entry.get("n_timesteps")
            if timesteps is None:
                raise StudyError(f"--timesteps is required: the hyperparameters of {env_id} have no n_timesteps")
            timesteps = _positive_integer(f"--timesteps (n_timesteps of {env_id})", timesteps)
            for method in methods:
                hyperparams = method_hyperparams(entry, method, env_id, config.algo)
                specs.append(
                    RunSpec(env_id, method.label, method.algo, seed, timesteps, hyperparams, config.eval_episodes,
                            config.curve_points, gym_packages)
                )  # fmt: skip
    for spec in specs[: len(entries) * len(methods)]:  # hyperparameters do not depend on the seed
        check_hyperparams(spec)
    return Plan(methods, specs, entries, hyperparams_file, gym_packages)


#: Hyperparameters that change the environment the random policy acts in (the rest only concern training).
ENV_SETTINGS = ("env_kwargs", "env_wrapper", "vec_env_wrapper", "frame_stack", "monitor_kwargs")


def random_scores(
    out: Path,
    entries: dict[str, dict[str, Any]],
    episodes: int | None = None,
    console: Console | None = None,
    gym_packages: list[str] | None = None,
    algo: str = "ppo_variant",
) -> dict[str, float]:
    """
    The random-policy score of each env, measured once and cached in ``<out>/random_policy/<env>.json`` (the report
    reads it there); measured again if the env settings changed, or if ``episodes`` is given and differs from the
    cached measurement's.

    :param out: study folder
    :param entries: per env, the hyperparameters of the study (their env settings matter)
    :param episodes: number of episodes (``None``: any cached measurement, else :data:`RANDOM_EPISODES`)
    :param console: where to say that a measurement is made
    :param gym_packages: modules that register the envs
    :param algo: the study's variant (whose manager reads the env settings)
    """
    scores = {}
    for env_id, entry in entries.items():
        settings = {key: entry[key] for key in ENV_SETTINGS if key in entry}
        if gym_packages:  # only when given, so that earlier caches stay valid
            settings["gym_packages"] = gym_packages
        path = storage.random_path(out, env_id)
        if path.is_file():
            cached = storage.read_json(path)
            if cached.get("env_settings") == settings and episodes in (None, cached.get("episodes")):
                scores[env_id] = float(cached["mean"])
                continue
        count = episodes or RANDOM_EPISODES
        if console is not None:
            console.print(f"Measuring the random policy on {env_id} ({count} episodes)", soft_wrap=True)
        spec = RunSpec(env_id, "random", algo, RANDOM_POLICY_SEED, 1, entry, gym_packages=gym_packages or [])
        measured = measure_random_policy(spec, episodes=count)
        measured["env_settings"] = settings
        storage.write_json(path, measured)
        scores[env_id] = measured["mean"]
    return scores


def _record_command(config: StudyConfig, plan: Plan) -> None:
    """Add this invocation to ``study.json`` (the report quotes it)."""
    path = config.out / storage.STUDY
    study = storage.read_json(path) if path.is_file() else {"commands": []}
    study["commands"].append(
        {
            "command": config.command,
            "preset": config.preset,
            "envs": config.envs,
            "algo": config.algo,
            "gym_packages": plan.gym_packages,
            "env_kwargs": config.env_kwargs,
            "overrides": config.overrides,
            "methods": [method.label for method in plan.methods],
            "seeds": config.seeds,
            "timesteps": sorted({spec.timesteps for spec in plan.specs}),
            "hyperparams": str(plan.hyperparams_file) if plan.hyperparams_file else None,
            "backend": f"ray ({config.ray_address})" if config.ray_address else f"local pool, {config.workers} workers",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": versions(),
        }
    )
    storage.write_json(path, study)


def pending_runs(config: StudyConfig, specs: list[RunSpec]) -> list[RunSpec]:
    """
    The runs without a finished result in the study folder. A stored failure counts as finished (it is a deterministic
    outcome) unless ``retry_failed``.

    :raises StudyError: a stored result of a run id was made with different settings (budget, hyperparameters...)
    """
    stored = {result["run_id"]: result for result in storage.load_results(config.out)}
    conflicts = [
        spec.run_id for spec in specs if spec.run_id in stored and stored[spec.run_id].get("fingerprint") != spec.fingerprint
    ]
    if conflicts:
        raise StudyError(
            f"--out: {config.out} holds results of {len(conflicts)} run(s) of this grid made with other settings "
            f"(e.g. {conflicts[0]}: different budget, hyperparameters or evaluation); use another --out folder, or delete "
            "those result files to rerun them"
        )
    return [
        spec
        for spec in specs
        if spec.run_id not in stored or (config.retry_failed and stored[spec.run_id].get("status") == "failed")
    ]


def run_study(config: StudyConfig, console: Console | None = None) -> int:
    """
    Run the study and write its report.

    :return: 0 if every run of the grid has a result, 1 if some were lost (worker crash): rerun the same command
    :raises StudyError: bad input, a missing package or an unreachable Ray cluster, before any run starts
    """
    console = console or Console()
    check_requirements(ray=config.ray_address is not None)
    plan = plan_study(config)
    storage.check_writable(config.out)
    todo = pending_runs(config, plan.specs)
    executor = make_executor(config.workers, config.ray_address)
    _record_command(config, plan)
    random_scores(config.out, plan.entries, config.random_episodes, console, plan.gym_packages, config.algo)

    lost = 0
    with GridProgress(todo, skipped=len(plan.specs) - len(todo), console=console) as progress:
        for spec, outcome in executor.run(todo, progress.update):
            if isinstance(outcome, RunLost):
                lost += 1
                progress.lost(spec, outcome)
                continue
            storage.save_result(config.out, spec, outcome)
            progress.finished(spec, outcome)

    report = write_report(config.out, bootstrap_reps=config.bootstrap_reps)
    print_tables(report, console)
    console.print(f"Report: {report}")
    if lost:
        console.print(f"[red]{lost} run(s) lost (worker crash); run the same command again to run them[/red]")
    return 1 if lost else 0


def default_workers() -> int:
    """Number of CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
