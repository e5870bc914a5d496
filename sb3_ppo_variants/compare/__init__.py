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

from sb3_ppo_variants.compare.specs import StudyError, check_requirements

# Before the imports below: a missing package stops here with the extra that installs it.
check_requirements()

from sb3_ppo_variants.compare.metrics import (  # noqa: E402
    Normalization,
    aggregate_intervals,
    normalization_constants,
    summarize,
)
from sb3_ppo_variants.compare.report import write_report  # noqa: E402
from sb3_ppo_variants.compare.runner import measure_random_policy, train_run  # noqa: E402
from sb3_ppo_variants.compare.specs import Method, RunSpec, parse_method  # noqa: E402
from sb3_ppo_variants.compare.study import StudyConfig, plan_study, run_study  # noqa: E402

__all__ = [
    "Method",
    "Normalization",
    "RunSpec",
    "StudyConfig",
    "StudyError",
    "aggregate_intervals",
    "check_requirements",
    "measure_random_policy",
    "normalization_constants",
    "parse_method",
    "plan_study",
    "run_study",
    "summarize",
    "train_run",
    "write_report",
]
