"""
Optuna tuning on a real PostgreSQL server: the documented recipe (the ``postgres`` extra, a plain ``postgresql://``
URL) with two rl-zoo ``-optimize`` workers filling one study.

The server is Debian's ``postgresql`` package (``.ci/run`` installs it in CI), started from a temporary data directory
on a free 127.0.0.1 port and removed afterwards. Without its binaries the test skips, except in CI where it must run.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import optimize, wait
from optuna.trial import TrialState

from sb3_ppo_variants.zoo.sampler import DEFAULT_OBJECTIVES

#: a password with characters that the URL must percent-encode, as docs/zoo.md says
USER, PASSWORD, DATABASE = "optuna", "s3cret@pass/word", "ppo_variant_optuna"


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: Debian's newest /usr/lib/postgresql/<version>/bin, else the PATH's."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    found = debian[-1] if debian else shutil.which("pg_ctl")
    if found is None or not os.access(Path(found).parent / "initdb", os.X_OK):
        return None
    return Path(found).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A throw-away PostgreSQL server in a temporary folder, run as the ``postgres`` user when we are root."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        # postgres refuses to run as root: drop to the user the Debian package creates, in a folder it owns.
        self.as_user: dict = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
            self.as_user = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
        # Not pytest's tmp_path: its parent (/tmp/pytest-of-root) is closed to the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="sb3-ppo-variants-postgres-"))
        if self.as_user:
            os.chown(self.folder, self.as_user["user"], self.as_user["group"])
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = 0

    def run(self, program: str, *arguments: str) -> None:
        result = subprocess.run(
            [str(self.binaries / program), *arguments],
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **self.as_user,
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(arguments)} failed:\n{result.stdout}\n{log}")

    def start(self) -> None:
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD)
        if self.as_user:
            os.chown(password_file, self.as_user["user"], self.as_user["group"])
        # Password authentication, as on a real server; no fsync: the data is thrown away; the C locale: the machine's
        # LANG may name a locale that is not installed, which initdb rejects.
        initdb = ["-D", str(self.data), "-U", USER, f"--pwfile={password_file}", "--auth=scram-sha-256"]
        self.run("initdb", *initdb, "--no-sync", "--no-locale", "--encoding=UTF8")
        settings = f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.folder}'\nfsync = off\n"
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(settings)
        for attempt in range(3):
            self.port = free_port()
            try:
                self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", f"-p {self.port}", "-w", "start")
                break
            except RuntimeError as error:
                # Another process took the free port between the probe and the server's bind: try another one.
                if attempt == 2 or "could not bind" not in str(error):
                    raise
        # The recipe's `createdb`, through the driver under test (CREATE DATABASE cannot run in a transaction).
        engine = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {DATABASE}"))
        engine.dispose()

    def url(self, database: str = DATABASE) -> str:
        """The recipe's URL, ``postgresql://user:password@host:port/database``: no ``+driver``, SQLAlchemy picks it."""
        url = sqlalchemy.URL.create("postgresql", USER, PASSWORD, "127.0.0.1", self.port, database)
        return url.render_as_string(hide_password=False)

    def stop(self) -> None:
        """Stop the server, whatever state it is in, and remove its folder."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                # pg_ctl could not stop it: kill the server we started, by the pid it recorded.
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(self.folder)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run installs it)")  # in CI the test must run, not skip
        pytest.skip(message)
    server = PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_plain_url_has_its_driver():
    """The ``postgres`` extra installs the driver SQLAlchemy picks for a plain ``postgresql://`` URL."""
    try:
        engine = sqlalchemy.create_engine("postgresql://user:password@db-host/optuna")
    except ModuleNotFoundError as error:
        pytest.fail(f"postgresql:// needs {error.name}, which pip install 'sb3-ppo-variants[postgres]' should bring")
    engine.dispose()


@pytest.mark.slow
def test_two_workers_fill_one_postgres_study(postgres, tmp_path):
    storage = postgres.url()
    assert storage.startswith("postgresql://optuna:s3cret%40pass%2Fword@127.0.0.1:")
    # Two concurrent workers, as on two machines, two trials each, started together on the empty database.
    workers = [optimize(storage, seed, "--n-trials", "2", cwd=tmp_path) for seed in (2, 7)]
    try:
        for worker in workers:
            wait(worker)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert len(trials) == 4
    assert {trial.state for trial in trials} == {TrialState.COMPLETE}
    # Each trial records the worker that ran it: both workers contributed two.
    pids = sorted(int(trial.user_attrs["worker"].rsplit(":", 1)[1]) for trial in trials)
    assert pids == sorted(2 * [worker.pid for worker in workers])
    assert all(trial.params["objective"] in DEFAULT_OBJECTIVES for trial in trials)
