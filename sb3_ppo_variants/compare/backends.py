"""
Where the runs execute: a local process pool (default) or tasks on a Ray cluster. Both yield each run's result back to
the driver as soon as it finishes; the driver writes the files, so workers need no shared filesystem.

Workers report live progress (timesteps done) through a queue: a multiprocessing queue for the local pool, a
``ray.util.queue.Queue`` actor on Ray. Progress never affects results.
"""

import ctypes
import multiprocessing
import queue as queue_module
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from sb3_ppo_variants.compare.runner import train_run
from sb3_ppo_variants.compare.specs import RunSpec

#: ``progress(run_id, timesteps)``, called in the driver for each message of a worker.
ProgressHandler = Callable[[str, int], None]
#: How often (seconds) the driver looks at the progress queue while waiting for results.
POLL_INTERVAL = 0.5


class RunLost(Exception):
    """A run that ended without a result because its worker died (crash, out of memory, lost node): retry it."""


class Backend(Protocol):
    """Runs training runs and yields ``(spec, result)`` as they finish, or ``(spec, RunLost)`` for lost ones."""

    def run(self, specs: list[RunSpec], progress: ProgressHandler) -> Iterator[tuple[RunSpec, dict[str, Any] | RunLost]]:
        """Execute ``specs``; yield each outcome as soon as it is known."""
        ...


class _QueueReporter:
    """Picklable progress reporter of a worker: puts ``(run_id, timesteps)`` on a queue, never blocking training."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, run_id: str, timesteps: int) -> None:
        try:
            self.queue.put_nowait((run_id, timesteps))
        except Exception:  # progress is best effort: a full or closed queue must not fail a run
            pass


def _drain(progress_queue: Any, progress: ProgressHandler) -> None:
    """Hand every queued progress message to ``progress`` (ray.util.queue.Empty subclasses queue.Empty)."""
    while True:
        try:
            run_id, timesteps = progress_queue.get_nowait()
        except (queue_module.Empty, EOFError, OSError):
            return
        progress(run_id, timesteps)


# ---------------------------------------------------------------------------------------------------- local pool
_worker_queue: Any = None


def _die_with_parent() -> None:
    """Linux: end this worker if the driver dies (e.g. SIGKILL), instead of training on with nobody to save results."""
    if sys.platform.startswith("linux"):
        try:
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def _init_worker(progress_queue: Any) -> None:
    global _worker_queue
    _die_with_parent()
    # Ctrl-C reaches the whole process group: let the driver handle it and stop the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_queue = progress_queue


def _pool_task(spec: dict[str, Any]) -> dict[str, Any]:
    return train_run(spec, _QueueReporter(_worker_queue))


class LocalPool:
    """
    A pool of ``workers`` processes on this machine (``spawn`` start method: each run starts from a clean
    interpreter state, whatever the driver imported).

    :param workers: number of runs in parallel
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, specs: list[RunSpec], progress: ProgressHandler) -> Iterator[tuple[RunSpec, dict[str, Any] | RunLost]]:
        if not specs:
            return
        context = multiprocessing.get_context("spawn")
        progress_queue = context.Queue()
        executor = ProcessPoolExecutor(
            max_workers=min(self.workers, len(specs)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(progress_queue,),
        )
        futures: dict[Future, RunSpec] = {}
        try:
            futures = {executor.submit(_pool_task, spec.to_dict()): spec for spec in specs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_INTERVAL, return_when=FIRST_COMPLETED)
                _drain(progress_queue, progress)
                for future in done:
                    error = future.exception()
                    if error is None:
                        yield futures[future], future.result()
                    else:  # BrokenProcessPool: a worker died; the runs it took are lost, not failed
                        yield futures[future], RunLost(f"{type(error).__name__}: {error}")
        except BaseException:
            # Interrupted (Ctrl-C, or the consumer stopped): stop the runs in flight now rather than wait for them.
            # ProcessPoolExecutor has no public way to do this before Python 3.14 (terminate_workers()).
            for process in list(getattr(executor, "_processes", {}).values()):
                process.terminate()
            raise
        finally:
            for future in futures:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)
            progress_queue.close()


# ---------------------------------------------------------------------------------------------------------- Ray
def _ray_task(spec: dict[str, Any], progress_queue: Any) -> dict[str, Any]:
    return train_run(spec, _QueueReporter(progress_queue))


class RayCluster:
    """
    Each run is a Ray task (1 CPU) on an existing Ray cluster. The task returns its result to the driver.
    If this process is already connected to Ray (``ray.init()`` was called), that connection is used.

    :param address: Ray address (``auto``, ``ray://host:10001``, ``host:6379``)
    """

    def __init__(self, address: str) -> None:
        self.address = address

    def connect(self) -> None:
        """Connect to the cluster (before any run starts, so a wrong address fails early)."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False)

    def run(self, specs: list[RunSpec], progress: ProgressHandler) -> Iterator[tuple[RunSpec, dict[str, Any] | RunLost]]:
        if not specs:
            return
        import ray
        from ray.util.queue import Queue

        self.connect()
        progress_queue = Queue(actor_options={"num_cpus": 0})
        # max_retries: Ray re-runs a task whose worker process or node died (runs are pure, so a retry is exact).
        task = ray.remote(num_cpus=1, max_retries=2)(_ray_task)
        references = {task.remote(spec.to_dict(), progress_queue): spec for spec in specs}
        try:
            while references:
                ready, _ = ray.wait(list(references), num_returns=1, timeout=POLL_INTERVAL)
                _drain(progress_queue, progress)
                for reference in ready:
                    spec = references.pop(reference)
                    try:
                        yield spec, ray.get(reference)
                    except ray.exceptions.RayError as error:
                        yield spec, RunLost(f"{type(error).__name__}: {error}")
        finally:
            for reference in references:
                ray.cancel(reference, force=True)
            progress_queue.shutdown()
