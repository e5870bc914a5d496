"""Command line of the comparison study: ``python -m sb3_ppo_variants compare ...``."""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from sb3_ppo_variants.compare import storage
from sb3_ppo_variants.compare.hyperparams import ZOO_PREFIX
from sb3_ppo_variants.compare.report import print_tables, write_report
from sb3_ppo_variants.compare.requirements import check_requirements
from sb3_ppo_variants.compare.specs import StudyError
from sb3_ppo_variants.compare.study import RANDOM_EPISODES, StudyConfig, default_workers, run_study
from sb3_ppo_variants.zoo.adapter import REGISTRY, ZooConfigError, evaluate_key_values, variant_keys

PRESETS_FILE = Path(__file__).with_name("presets.yml")

DESCRIPTION = """\
Compare surrogate objectives (and optionally baseline algorithms) on a grid of envs x objective configurations x seeds
at a timestep budget; write one result file per run, a CSV, a Markdown report with the paper's Table 1 beside ours,
and plots. Rerunning the same command skips the finished runs; --report-only rebuilds the report.

Objective specs: clip:<epsilon>, adaptive_kl:<d_targ>, fixed_kl:<beta>, none (e.g. clip:0.2 adaptive_kl:0.01 fixed_kl:1
none), dual_clip:<epsilon>[,<c>], asymmetric_clip:<epsilon_low>[,<epsilon_high>]; any but adaptive_kl + kl_lr:<d_targ>
for a KL-adaptive learning rate (clip:0.2+kl_lr:0.01). All but fixed_kl also take an rl-zoo schedule (clip:lin_0.2); a
bare name keeps the hyperparameter file's value. Envs: Gymnasium ids, or module:EnvId (the module is imported first; see
also --gym-packages).
Presets: {presets}.
"""

EXAMPLES = """\
examples:
  python -m sb3_ppo_variants compare --preset quick
  python -m sb3_ppo_variants compare --envs CartPole-v1 Acrobot-v1 --objectives clip:0.2 none --seeds 3 \\
      --timesteps 1e5 --hyperparams rl_zoo3:ppo --baselines
  python -m sb3_ppo_variants compare --preset paper --ray-address auto --out results/paper
  python -m sb3_ppo_variants compare --envs mypkg.envs:MyEnv-v0 --env-kwargs size:8 --objectives clip:0.2 none \
      --seeds 3 --timesteps 1e5
  python -m sb3_ppo_variants compare --preset paper -params learning_rate:"'lin_3e-4'" --out results/paper_annealed
  python -m sb3_ppo_variants compare --out results/paper --report-only
"""


def parse_budget(text: str) -> float:
    """A budget such as 1e6 or 300000 (checked to be a positive whole number when the study is planned)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e6 or 300000, got {text!r}") from None


def presets() -> dict[str, dict[str, Any]]:
    """
    The presets of ``presets.yml`` by name: ``envs``, ``objectives``, ``seeds``, ``timesteps``, ``hyperparams`` (a path
    or ``rl_zoo3:<algo>``), optionally ``overrides`` (hyperparameters over every env's entry) and ``baselines``.
    """
    found = yaml.safe_load(PRESETS_FILE.read_text())
    for preset in found.values():
        if not preset["hyperparams"].startswith(ZOO_PREFIX):
            preset["hyperparams"] = str((PRESETS_FILE.parent / preset["hyperparams"]).resolve())
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compare`` flags."""
    grid = parser.add_argument_group("grid (defaults: the preset's)")
    grid.add_argument("--preset", help=f"a predefined study: {', '.join(presets())}")
    grid.add_argument("--envs", nargs="+", metavar="ENV", help="Gymnasium env ids, or module:EnvId")
    grid.add_argument("--gym-packages", nargs="+", default=[], metavar="MODULE", help="modules that register envs (rl-zoo's)")
    grid.add_argument(
        "--env-kwargs", nargs="+", default=[], metavar="KEY:VALUE", help="env keyword arguments, rl-zoo's syntax (size:8)"
    )
    grid.add_argument("--algo", default="ppo_variant", choices=variant_keys(), help="the variant compared (ppo_variant)")
    grid.add_argument("--objectives", nargs="+", metavar="SPEC", help="objective specs, e.g. clip:0.2 adaptive_kl:0.01 none")
    grid.add_argument("--seeds", type=int, metavar="N", help="number of seeds per env and method (seeds 0..N-1)")
    grid.add_argument("--timesteps", type=parse_budget, metavar="N", help="budget per run (default: the YAML's n_timesteps)")
    grid.add_argument(
        "--hyperparams",
        metavar="FILE",
        help="rl-zoo-style YAML (env id -> hyperparameters), or rl_zoo3:<algo> for rl-zoo's own file "
        "(default: the preset's, else the algorithms' defaults = the paper's Table 3)",
    )
    grid.add_argument(
        "-params",
        "--params",
        nargs="+",
        default=[],
        metavar="KEY:VALUE",
        help="hyperparameters set over every env's entry, rl-zoo's syntax (learning_rate:\"'lin_3e-4'\"); "
        "merged over the preset's overrides",
    )
    grid.add_argument(
        "--baselines",
        nargs="*",
        metavar="ALGO",
        help="add baseline rows on the same grid: for ppo_variant "
        f"{', '.join(REGISTRY['ppo_variant'].baselines)} (all of them if none is named)",
    )
    execution = parser.add_argument_group("execution")
    execution.add_argument("--workers", type=int, default=default_workers(), help="local worker processes (default: cores)")
    execution.add_argument("--ray-address", metavar="ADDRESS", help="run each training run as a task on this Ray cluster")
    execution.add_argument("--out", type=Path, help="study folder (default: runs/compare/<preset or 'study'>)")
    execution.add_argument("--report-only", action="store_true", help="rebuild the report from the results in --out")
    execution.add_argument("--retry-failed", action="store_true", help="rerun runs whose stored result is a failure")
    metrics = parser.add_argument_group("measurement")
    metrics.add_argument("--eval-episodes", type=int, default=10, help="final deterministic evaluation episodes (10)")
    metrics.add_argument(
        "--random-episodes",
        type=int,
        help=f"episodes of the random-policy score (default {RANDOM_EPISODES}, or as many as the cached measurement)",
    )
    metrics.add_argument("--curve-points", type=int, default=100, help="points per stored learning curve (100)")
    metrics.add_argument("--bootstrap-reps", type=int, default=10_000, help="bootstrap resamples of the CIs (10000)")


def config_from_args(args: argparse.Namespace, command: str = "") -> StudyConfig:
    """
    The study's settings: each flag, else the preset's value.

    :param args: parsed flags
    :param command: the command line, recorded in the study folder

    :raises StudyError: unknown preset, or a grid setting missing without a preset
    """
    if args.preset is not None and args.preset not in presets():
        raise StudyError(f"--preset: unknown preset {args.preset!r}; choose one of {', '.join(presets())}")
    preset = presets()[args.preset] if args.preset else {}
    grid = {key: getattr(args, key) for key in ("envs", "objectives", "seeds", "timesteps", "hyperparams", "baselines")}
    grid = {key: preset.get(key) if value is None else value for key, value in grid.items()}
    try:
        env_kwargs = evaluate_key_values("--env-kwargs", args.env_kwargs)
        params = evaluate_key_values("--params", args.params)
    except ZooConfigError as error:
        raise StudyError(str(error)) from None
    if "objective" in params:
        raise StudyError("--params objective: each --objectives spec sets the objective of its runs; list them there")
    for key, value in params.items():
        # A run's hyperparameters are stored and hashed as JSON, and converted by the worker (the YAML form).
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise StudyError(
                f"--params {key}: the value {value!r} cannot be stored in a run's result (JSON); quote it so that it "
                f"stays a string, as in a YAML file, which rl-zoo evaluates in the run: {key}:\"'...'\""
            ) from None
    for key in ("envs", "seeds", *(("objectives",) if grid["baselines"] is None else ())):
        if grid[key] is None:
            raise StudyError(f"--{key} is required without --preset")
    # A preset's overrides belong to its hyperparameter file; --params apply to whichever file is used.
    overrides = preset.get("overrides", {}) if grid["hyperparams"] == preset.get("hyperparams") else {}
    overrides = {**overrides, **params}
    # The flags named as StudyConfig fields (workers, eval_episodes...) pass through; the grid's come from the preset
    # (timesteps still a float: plan_study checks that it is whole).
    settings = {field.name: getattr(args, field.name) for field in fields(StudyConfig) if hasattr(args, field.name)}
    settings.update(grid, objectives=grid["objectives"] or [], env_kwargs=env_kwargs, overrides=overrides, command=command)
    return StudyConfig(**{**settings, "out": args.out or Path("runs", "compare", args.preset or "study")})


def run(args: argparse.Namespace, command: str = "") -> int:
    """
    Run the ``compare`` command.

    :param args: parsed flags
    :param command: the command line, recorded in the study folder
    :return: exit code (0 ok, 1 runs lost, 2 bad input, 130 interrupted)
    """
    console = Console()
    try:
        check_requirements(ray=args.ray_address is not None and not args.report_only)
        if args.report_only:
            out = args.out or config_from_args(args).out
            if not (out / storage.RUNS).is_dir():
                raise StudyError(f"--out: {str(out)!r} holds no study results (no {storage.RUNS}/ folder)")
            storage.check_writable(out)
            report = write_report(out, bootstrap_reps=args.bootstrap_reps)
            print_tables(report, console)
            console.print(f"Report: {report}")
            return 0
        return run_study(config_from_args(args, command), console)
    except StudyError as error:
        print(f"sb3-ppo-variants compare: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: finished runs are saved; run the same command again to resume.", file=sys.stderr)
        return 130


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``compare`` parser (or fill ``parser``, e.g. a sub-command's)."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="sb3-ppo-variants compare")
    parser.description = DESCRIPTION.format(presets=", ".join(presets()))
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(parser)
    return parser
