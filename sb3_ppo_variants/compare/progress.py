"""
Progress display of a study (rich): one bar for the whole grid, one bar per run in flight (its timesteps), and one line
per finished run with its status, score and wall time. When the output is not a terminal (a log file), only the
lines are printed.
"""

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sb3_ppo_variants.compare.specs import RunSpec
from sb3_ppo_variants.compare.text import number


def describe(spec: RunSpec) -> str:
    return f"{spec.env_id} {spec.method} seed {spec.seed}"


class GridProgress:
    """
    :param specs: the runs to execute
    :param skipped: runs of the grid already finished in the study folder
    :param console: where to draw (default: stdout)
    """

    def __init__(self, specs: list[RunSpec], skipped: int = 0, console: Console | None = None) -> None:
        self.specs = {spec.run_id: spec for spec in specs}
        self.total = len(specs)
        self.skipped = skipped
        self.console = console or Console()
        self.done = 0
        self.counts = {"ok": 0, "diverged": 0, "failed": 0, "lost": 0}
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.running: dict[str, TaskID] = {}
        self.grid = self.progress.add_task(self._grid_description(), total=self.total)

    def __enter__(self) -> "GridProgress":
        self.progress.start()
        if self.skipped:
            self.console.print(
                f"{self.skipped} run(s) of this grid already finished in the study folder: skipped", soft_wrap=True
            )
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        self.progress.stop()

    def _grid_description(self) -> str:
        parts = [f"grid {self.done}/{self.total}"]
        if self.running:
            parts.append(f"{len(self.running)} running")
        parts += [f"{count} {status}" for status, count in self.counts.items() if count and status != "ok"]
        return ", ".join(parts)

    def update(self, run_id: str, timesteps: int) -> None:
        """A worker's progress message (a run started, or reached ``timesteps``)."""
        spec = self.specs.get(run_id)
        if spec is None:
            return
        if run_id not in self.running:
            self.running[run_id] = self.progress.add_task(f"  {escape(describe(spec))}", total=spec.timesteps)
            self.progress.update(self.grid, description=self._grid_description())
            if not self.console.is_terminal:  # a log file gets no live bars: say when each run starts
                self.console.print(f"started {escape(describe(spec))}", highlight=False, soft_wrap=True)
        self.progress.update(self.running[run_id], completed=min(timesteps, spec.timesteps))

    def _finish(self, spec: RunSpec, status: str, line: str) -> None:
        task = self.running.pop(spec.run_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.done += 1
        self.counts[status] += 1
        self.progress.update(self.grid, completed=self.done, description=self._grid_description())
        self.console.print(f"[{self.done}/{self.total}] {line}", highlight=False, soft_wrap=True)

    def finished(self, spec: RunSpec, result: dict[str, Any]) -> None:
        """A run's result arrived (and was saved)."""
        status = result["status"]
        summary = (
            f"score {number(result.get('score'), 1, 'n/a')} (last {result.get('score_episodes')} episodes), "
            f"eval {number(result.get('eval_mean'), 1, 'n/a')}, {result.get('wall_time', 0):.0f} s"
        )
        if status == "failed":
            summary = escape(str(result.get("error", "")).splitlines()[0])
        elif status == "diverged":
            summary = f"diverged (non-finite loss), {summary}"
        mark = {"ok": "[green]done[/green]", "diverged": "[yellow]diverged[/yellow]", "failed": "[red]failed[/red]"}
        self._finish(spec, status, f"{mark[status]} {escape(describe(spec))}: {summary}")

    def lost(self, spec: RunSpec, error: Exception) -> None:
        """A run ended without a result (its worker died); it is not saved and will run again on the next call."""
        self._finish(spec, "lost", f"[red]lost[/red] {escape(describe(spec))}: {escape(str(error))} (rerun to retry)")
