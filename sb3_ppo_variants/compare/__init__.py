"""
Objective comparison study: envs × objective configurations (× baselines) × seeds at a timestep budget, with the PPO
paper's metrics (Table 1) and rliable's aggregates. Command line: ``python -m sb3_ppo_variants compare``.

Python use:

.. code-block:: python

    from pathlib import Path
    from sb3_ppo_variants.compare import StudyConfig, run_study, write_report

    run_study(StudyConfig(out=Path("study"), envs=["CartPole-v1"], objectives=["clip:0.2", "none"], seeds=2,
                          timesteps=50_000, workers=2))
"""

import importlib
from typing import Any

#: Public names by module, imported on first use: a worker process imports only what a run needs (no plotting), and
#: ``python -m sb3_ppo_variants compare`` checks the required packages before importing the rest.
_EXPORTS = {
    "metrics": ("Normalization", "aggregate_intervals", "normalization_constants", "summarize"),
    "report": ("write_report",),
    "runner": ("measure_random_policy", "train_run"),
    "requirements": ("check_requirements",),
    "specs": ("Method", "RunSpec", "StudyError", "parse_method"),
    "study": ("StudyConfig", "plan_study", "run_study"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)


def __getattr__(name: str) -> Any:
    for module, names in _EXPORTS.items():
        if name in names:
            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
