"""
``python -m sb3_ppo_variants.zoo train|enjoy|record-video [rl-zoo arguments]``, also installed as
``sb3-ppo-variants-zoo``: rl-zoo's ``train``, ``enjoy`` and ``record_video`` with ``ppo_variant`` registered. Every
rl-zoo argument works as documented by rl-zoo. Maskable algorithms play with the env's action masks in all three.
"""

import argparse
import contextlib
import importlib
import os
import runpy
import sys
from collections.abc import Callable, Sequence

PROG = "sb3-ppo-variants-zoo"
USAGE = f"""usage: {PROG} {{train,enjoy,record-video}} [rl-zoo arguments]   (or: python -m sb3_ppo_variants.zoo ...)

rl-baselines3-zoo's train, enjoy and record_video with --algo ppo_variant available (PPOVariant: clip, adaptive_kl,
fixed_kl, none). `{PROG} train -h` lists every argument. Example:

  {PROG} train --algo ppo_variant --env CartPole-v1 --hyperparams objective:"'adaptive_kl'" kl_target:0.02
  {PROG} enjoy --algo ppo_variant --env CartPole-v1 -f logs/
  {PROG} record-video --algo ppo_variant --env CartPole-v1 -f logs/ -n 1000
"""
#: Options whose values rl-zoo evaluates as Python (``key:value``), per command.
DICT_OPTIONS = {
    "train": (("-params", "--hyperparams"), ("--env-kwargs",), ("--eval-env-kwargs",)),
    "enjoy": (("--env-kwargs",),),
    "record-video": (("--env-kwargs",),),
}
#: Commands that play a saved model (with the env's masks for a maskable algorithm).
PLAY_COMMANDS = ("enjoy", "record-video")


def _record_video() -> None:
    """rl-zoo's ``record_video`` script (it has no function to call: its code runs as ``__main__``)."""
    runpy.run_module("rl_zoo3.record_video", run_name="__main__")


def _commands() -> dict[str, Callable[[], None]]:
    from rl_zoo3.enjoy import enjoy

    from sb3_ppo_variants.zoo.overrides import train

    return {"train": train, "enjoy": enjoy, "record-video": _record_video}


def check_arguments(command: str, arguments: Sequence[str]) -> None:
    """
    Check what rl-zoo would only find late or report unclearly, before it starts: the env id (after importing
    ``--gym-packages``; rl-zoo's enjoy does not check it) and ``key:value`` options whose value is not a Python
    expression (rl-zoo evaluates them; ``objective:adaptive_kl`` must be written ``objective:"'adaptive_kl'"``).
    Anything this lenient parser cannot read is left to rl-zoo's parser.

    :param command: ``"train"``, ``"enjoy"`` or ``"record-video"``
    :param arguments: the command's arguments
    :raises ZooConfigError: naming the argument and its value
    """
    from sb3_ppo_variants.zoo import ZooConfigError
    from sb3_ppo_variants.zoo.adapter import check_env_id, evaluate_key_values, variant_keys

    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    for flags in DICT_OPTIONS[command]:
        parser.add_argument(*flags, nargs="+", default=[])
    if command in PLAY_COMMANDS:
        parser.add_argument("--algo", default="ppo")
        parser.add_argument("-f", "--folder", default="rl-trained-agents")
    try:
        known, _ = parser.parse_known_args(arguments)
    except (argparse.ArgumentError, SystemExit):
        return

    for flags in DICT_OPTIONS[command]:
        evaluate_key_values(flags[-1], getattr(known, flags[-1].lstrip("-").replace("-", "_")))
    check_env_id(known.env, known.gym_packages)
    # rl-zoo's enjoy downloads missing models from the SB3 hub, which has no ppo_variant models.
    if command in PLAY_COMMANDS and known.algo in variant_keys() and not os.path.isdir(os.path.join(known.folder, known.algo)):
        raise ZooConfigError(
            f"-f {known.folder}: no {known.algo} runs there ({os.path.join(known.folder, known.algo)} does not exist). "
            "Pass the log "
            "folder of the training run (train's -f, default: logs)."
        )


def play_arguments(command: str, arguments: Sequence[str]) -> tuple[str, list[str]]:
    """
    The ``--algo`` of ``enjoy`` or ``record-video`` (rl-zoo's default ``ppo`` if none), and the arguments for rl-zoo.
    rl-zoo's ``record_video`` has no ``--gym-packages``: for it they are imported here and left out.
    """
    algo_parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    algo_parser.add_argument("--algo", default="ppo")
    packages_parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    packages_parser.add_argument("--gym-packages", nargs="+", default=[])
    try:
        algo = algo_parser.parse_known_args(arguments)[0].algo
        packages, rest = packages_parser.parse_known_args(arguments)
    except (argparse.ArgumentError, SystemExit):
        return "ppo", list(arguments)  # rl-zoo's parser reports it
    if command != "record-video":
        return algo, list(arguments)
    for package in packages.gym_packages:
        importlib.import_module(package)
    return algo, rest


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run rl-zoo's ``train``, ``enjoy`` or ``record_video`` with ``ppo_variant`` registered; ``enjoy`` and
    ``record_video`` play a maskable algorithm's model with the env's masks.

    :param argv: ``[command, *rl-zoo arguments]``; default: the process's command line
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, arguments = argv[0], argv[1:]
    if command not in DICT_OPTIONS:
        choices = ", ".join(DICT_OPTIONS)
        print(f"{USAGE}\n{PROG}: error: unknown command {command!r}; choose one of: {choices}", file=sys.stderr)
        raise SystemExit(2)

    from sb3_ppo_variants.zoo import ZooConfigError, register
    from sb3_ppo_variants.zoo.overrides import masked_play

    register()
    saved_argv = sys.argv
    try:
        if "-h" not in arguments and "--help" not in arguments:
            check_arguments(command, arguments)
        playing: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if command in PLAY_COMMANDS:
            algo, arguments = play_arguments(command, arguments)
            playing = masked_play(algo)
        # rl-zoo parses sys.argv; the program name shows in its usage and error messages.
        sys.argv = [f"{PROG} {command}", *arguments]
        with playing:
            _commands()[command]()
    except ZooConfigError as error:
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv


if __name__ == "__main__":
    main()
