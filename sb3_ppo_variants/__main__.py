"""
Command line of sb3-ppo-variants: ``python -m sb3_ppo_variants <command>`` or ``sb3-ppo-variants <command>``.

Commands:

- ``compare``: the objective comparison study (see ``docs/compare.md``)
"""

import argparse
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: arguments (default: ``sys.argv[1:]``)
    :return: exit code
    """
    from sb3_ppo_variants.compare.requirements import check_requirements
    from sb3_ppo_variants.compare.specs import StudyError

    try:
        check_requirements()  # before importing the command: a missing package is named with the extra to install
    except StudyError as error:
        print(f"sb3-ppo-variants compare: error: {error}", file=sys.stderr)
        return 2
    from sb3_ppo_variants.compare.cli import make_parser, run

    parser = argparse.ArgumentParser(prog="sb3-ppo-variants", description="PPO surrogate objectives for Stable-Baselines3.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    make_parser(commands.add_parser("compare", help="compare objectives on a grid of envs x objectives x seeds"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    return run(args, command=shlex.join(["python", "-m", "sb3_ppo_variants", *argv]))


if __name__ == "__main__":
    sys.exit(main())
