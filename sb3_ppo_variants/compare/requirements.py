"""
The packages a study needs (the ``compare`` extra), checked before anything else is imported or run, so that a missing
one is named with the extra that installs it. Imports nothing outside the standard library and :mod:`.specs`.
"""

import importlib

from sb3_ppo_variants.compare.specs import StudyError

#: Modules a study needs (arch is imported by rliable only when it computes intervals).
REQUIRED_MODULES = ("rl_zoo3", "optuna", "yaml", "rich", "rliable", "arch", "matplotlib")
INSTALL_HINT = "pip install 'sb3-ppo-variants[compare]'"


def check_requirements(ray: bool = False) -> None:
    """
    Import every package a study needs, and Ray if it runs on a cluster.

    :raises StudyError: naming the missing module and the extra
    """
    for module in (*REQUIRED_MODULES, *(("ray", "ray.util.queue") if ray else ())):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise StudyError(f"the comparison study needs {module!r} ({error}): {INSTALL_HINT}") from None
