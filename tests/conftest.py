"""
Tests run on CPU with one torch thread per process: deterministic, and two xdist workers fit two cores. Helpers shared
by several test modules are here (``from conftest import run_zoo``).
"""

import os
import subprocess
import sys
from pathlib import Path

import torch as th

th.set_num_threads(1)


def run_zoo(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the entry point like a user would, with one torch thread; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_ppo_variants.zoo", *arguments],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"exit code {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result
