"""
Where the runs execute: an :class:`Executor`, a local pool of worker processes (default) or tasks on a Ray cluster.
Both hand out ``concurrent.futures.Future`` objects (Ray's ``ObjectRef.future()``), so one loop,
:meth:`Executor.run`, waits for the runs, yields each result to the driver as soon as it finishes (the driver writes
the files: workers need no shared filesystem) and stops the runs in flight when interrupted.

Workers report live progress (timesteps done) through a queue: a multiprocessing queue locally, a
``ray.util.queue.Queue`` actor on Ray. Progress never affects results.
"""

import multiprocessing
import os
import queue as queue_module
import signal
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from sb3_ppo_variants.compare.runner import train_run
from sb3_ppo_variants.compare.specs import RunSpec, StudyError

#: ``progress(run_id, timesteps)``, called in the driver for each message of a worker.
ProgressHandler = Callable[[str, int], None]
#: How often (seconds) the driver looks at the progress queue while waiting for results.
POLL_INTERVAL = 0.5
#: Seconds to reach a Ray address before giving up (Ray itself retries an unreachable address for minutes).
CONNECT_TIMEOUT = 10.0


class RunLost(Exception):
    """A run that ended without a result because its worker died (crash, out of memory, lost node): retry it."""


class _QueueReporter:
    """Picklable progress reporter of a worker: puts ``(run_id, timesteps)`` on a queue, never blocking training."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, run_id: str, timesteps: int) -> None:
        try:
            self.queue.put_nowait((run_id, timesteps))
        except Exception:  # progress is best effort: a full or closed queue must not fail a run
            pass


def _task(spec: dict[str, Any], progress_queue: Any) -> dict[str, Any]:
    return train_run(spec, _QueueReporter(progress_queue))


class Executor(ABC):
    """
    Where the runs of a study execute. :meth:`run` is the one loop; a backend says how to start, submit and stop.

    :ivar queue: where workers put their ``(run_id, timesteps)`` progress messages (set by :meth:`start`)
    """

    queue: Any

    @abstractmethod
    def start(self, runs: int) -> None:
        """Get ready for ``runs`` runs (workers, progress queue)."""

    @abstractmethod
    def submit(self, spec: RunSpec) -> Future:
        """Start a run; its future's result is the run's result."""

    @abstractmethod
    def stop(self, interrupted: bool) -> None:
        """Release the workers; ``interrupted``: stop the runs in flight now."""

    def run(self, specs: list[RunSpec], progress: ProgressHandler) -> Iterator[tuple[RunSpec, dict[str, Any] | RunLost]]:
        """
        Run ``specs``; yield ``(spec, result)`` as each finishes, or ``(spec, RunLost)`` for a run whose worker died
        (a run's own errors are results: see :func:`~sb3_ppo_variants.compare.runner.train_run`).
        """
        if not specs:
            return
        self.start(len(specs))
        interrupted = True
        try:
            futures = {self.submit(spec): spec for spec in specs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_INTERVAL, return_when=FIRST_COMPLETED)
                _drain(self.queue, progress)
                for future in done:
                    error = future.exception()
                    outcome = future.result() if error is None else RunLost(f"{type(error).__name__}: {error}")
                    yield futures[future], outcome
            interrupted = False
        finally:  # also when the consumer stops early (Ctrl-C)
            self.stop(interrupted)


def make_executor(workers: int, ray_address: str | None = None) -> Executor:
    """The local pool of ``workers`` processes, or the Ray cluster at ``ray_address`` (connected now)."""
    if ray_address is None:
        return LocalPool(workers)
    cluster = RayCluster(ray_address)
    cluster.connect()
    return cluster


# ---------------------------------------------------------------------------------------------------- local pool
_worker_queue: Any = None


def _exit_with_parent(parent: Any) -> None:
    parent.join()  # returns when the driver is gone (its sentinel closes), even after a SIGKILL
    os._exit(1)


def _init_worker(progress_queue: Any) -> None:
    global _worker_queue
    _worker_queue = progress_queue
    # End this worker if the driver dies, instead of training on with nobody to save the result.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # Ctrl-C reaches the whole process group: let the driver handle it and stop the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_task(spec: dict[str, Any]) -> dict[str, Any]:
    return _task(spec, _worker_queue)


class LocalPool(Executor):
    """
    ``workers`` processes on this machine (``spawn``: each run starts from a clean interpreter, whatever the driver
    imported). A worker that dies loses its run (``BrokenProcessPool``), reported as :class:`RunLost`.

    :param workers: number of runs in parallel
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def start(self, runs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.queue = context.Queue()
        self._before = set(multiprocessing.active_children())
        self._executor = ProcessPoolExecutor(
            max_workers=min(self.workers, runs), mp_context=context, initializer=_init_worker, initargs=(self.queue,)
        )

    def submit(self, spec: RunSpec) -> Future:
        return self._executor.submit(_pool_task, spec.to_dict())

    def stop(self, interrupted: bool) -> None:
        if interrupted:
            # Stop the runs in flight now rather than wait for them: the workers are this executor's processes.
            for process in set(multiprocessing.active_children()) - self._before:
                process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.queue.close()


# ---------------------------------------------------------------------------------------------------------- Ray
def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) nobody answers at (``auto`` is resolved by Ray)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise StudyError(f"--ray-address: nothing answers at {address!r} ({error}); is the Ray head running?") from None


class RayCluster(Executor):
    """
    Each run is a Ray task (1 CPU) on an existing Ray cluster; Ray retries a task whose worker or node died (runs are
    pure, so a retry is exact). If this process is already connected to Ray (``ray.init()``), that connection is used.

    :param address: Ray address (``auto``, ``HOST:6379``, ``ray://HOST:10001``)
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._references: dict[Future, Any] = {}

    def connect(self) -> None:
        """Connect now (before any run starts), so a wrong address or a token mismatch fails early."""
        import ray

        if ray.is_initialized():
            return
        _check_reachable(self.address)
        try:
            ray.init(address=self.address, log_to_driver=False)
        except Exception as error:
            raise StudyError(f"--ray-address: cannot connect to Ray at {self.address!r}: {error}") from error

    def start(self, runs: int) -> None:
        import ray
        from ray.util.queue import Queue

        self.connect()
        self.queue = Queue(actor_options={"num_cpus": 0})
        self._task = ray.remote(num_cpus=1, max_retries=2)(_task)

    def submit(self, spec: RunSpec) -> Future:
        reference = self._task.remote(spec.to_dict(), self.queue)
        future = reference.future()
        self._references[future] = reference
        return future

    def stop(self, interrupted: bool) -> None:
        import ray

        for future, reference in self._references.items():
            if not future.done():
                ray.cancel(reference, force=True)
        self.queue.shutdown()


def _drain(progress_queue: Any, progress: ProgressHandler) -> None:
    """Hand every queued progress message to ``progress`` (ray.util.queue.Empty subclasses queue.Empty)."""
    while True:
        try:
            run_id, timesteps = progress_queue.get_nowait()
        except (queue_module.Empty, EOFError, OSError):
            return
        progress(run_id, timesteps)
