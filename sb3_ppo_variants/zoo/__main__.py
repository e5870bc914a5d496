"""
``python -m sb3_ppo_variants.zoo train|enjoy [rl-zoo arguments]``, also installed as ``sb3-ppo-variants-zoo``:
rl-zoo's ``train`` and ``enjoy`` with ``ppo_variant`` registered. Every rl-zoo argument works as documented by rl-zoo.
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence

PROG = "sb3-ppo-variants-zoo"
USAGE = f"""usage: {PROG} {{train,enjoy}} [rl-zoo arguments]   (or: python -m sb3_ppo_variants.zoo ...)

rl-baselines3-zoo's train and enjoy with --algo ppo_variant available (PPOVariant: clip, adaptive_kl, fixed_kl, none).
`{PROG} train -h` lists every argument. Example:

  {PROG} train --algo ppo_variant --env CartPole-v1 --hyperparams objective:"'adaptive_kl'" kl_target:0.02
  {PROG} enjoy --algo ppo_variant --env CartPole-v1 -f logs/
"""
#: Options whose values rl-zoo evaluates as Python (``key:value``), per command.
DICT_OPTIONS = {
    "train": (("-params", "--hyperparams"), ("--env-kwargs",), ("--eval-env-kwargs",)),
    "enjoy": (("--env-kwargs",),),
}


def _commands() -> dict[str, Callable[[], None]]:
    from rl_zoo3.enjoy import enjoy
    from rl_zoo3.train import train

    return {"train": train, "enjoy": enjoy}


def check_arguments(command: str, arguments: Sequence[str]) -> None:
    """
    Check what rl-zoo would only find late or report unclearly, before it starts: the env id (after importing
    ``--gym-packages``; rl-zoo's enjoy does not check it) and ``key:value`` options whose value is not a Python
    expression (rl-zoo evaluates them; ``objective:adaptive_kl`` must be written ``objective:"'adaptive_kl'"``).
    Anything this lenient parser cannot read is left to rl-zoo's parser.

    :param command: ``"train"`` or ``"enjoy"``
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
    if command == "enjoy":
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
    if command == "enjoy" and known.algo in variant_keys() and not os.path.isdir(os.path.join(known.folder, known.algo)):
        raise ZooConfigError(
            f"-f {known.folder}: no {known.algo} runs there ({os.path.join(known.folder, known.algo)} does not exist). "
            "Pass the log "
            "folder of the training run (train's -f, default: logs)."
        )


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run rl-zoo's ``train`` or ``enjoy`` with ``ppo_variant`` registered.

    :param argv: ``[command, *rl-zoo arguments]``; default: the process's command line
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, arguments = argv[0], argv[1:]
    if command not in DICT_OPTIONS:
        print(f"{USAGE}\n{PROG}: error: unknown command {command!r}; choose one of: train, enjoy", file=sys.stderr)
        raise SystemExit(2)

    from sb3_ppo_variants.zoo import ZooConfigError, register

    register()
    saved_argv = sys.argv
    # rl-zoo parses sys.argv; the program name shows in its usage and error messages.
    sys.argv = [f"{PROG} {command}", *arguments]
    try:
        if "-h" not in arguments and "--help" not in arguments:
            check_arguments(command, arguments)
        _commands()[command]()
    except ZooConfigError as error:
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv


if __name__ == "__main__":
    main()
