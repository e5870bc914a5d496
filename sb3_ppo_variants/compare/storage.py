"""
Layout of a study folder, and reading/writing its files. Every file is written atomically (a kill leaves the old file
or the new one, never half of one), so a result file that exists is a finished run.

::

    <out>/
      study.json                     the study's settings and the commands that ran it
      runs/<env>/<method>/seed_<n>.json    one result per run (config, learning curve, metrics, versions, wall time)
      random_policy/<env>.json       the random policy's score per env (the normalisation's 0)
      runs.csv                       one row per run
      summary.json                   the table's numbers (machine-readable)
      report.md                      the report
      plots/*.png                    learning curves, normalised scores, rliable aggregates
"""

import json
import os
import warnings
from pathlib import Path
from typing import Any

from sb3_ppo_variants.atomic import atomic_write_text
from sb3_ppo_variants.compare.specs import RunSpec, StudyError

RUNS = "runs"
RANDOM = "random_policy"
PLOTS = "plots"
STUDY = "study.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (NaN is not valid JSON: callers store ``None`` instead)."""
    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def result_path(out: Path, spec: RunSpec) -> Path:
    return out / RUNS / f"{spec.run_id}.json"


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every run result in the study folder (unreadable files are skipped with a warning: their runs will rerun)."""
    results = []
    for path in sorted((out / RUNS).glob("*/*/seed_*.json")):
        try:
            result = read_json(path)
            if not isinstance(result, dict) or "config" not in result or "run_id" not in result:
                raise ValueError("not a run result")
        except (OSError, ValueError) as error:
            warnings.warn(f"ignoring unreadable result file {path}: {error}")
            continue
        results.append(result)
    return results


def save_result(out: Path, spec: RunSpec, result: dict[str, Any]) -> Path:
    path = result_path(out, spec)
    write_json(path, result)
    return path


def random_path(out: Path, env_id: str) -> Path:
    return out / RANDOM / f"{env_id}.json"


def check_writable(out: Path) -> None:
    """
    Create the study folder if needed and check that files can be written in it (before any run starts).

    :raises StudyError: naming the folder and the reason
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        atomic_write_text(probe, "ok")
        probe.unlink()
    except OSError as error:
        raise StudyError(f"--out: cannot write to the output folder {str(out)!r}: {error}") from error
