"""
The test matrix: the fast tests (``pytest -m "not slow"``) on every Python that ``setup.cfg``'s classifiers list and
that is found on this machine: on ``PATH``, or installed with pyenv (``$PYENV_ROOT/versions``, active or not). Run
it with ``make test-matrix``, or ``python -m nox`` from the project's virtualenv (``nox`` comes with the ``tests``
extra).

- One session per Python, ``tests-3.10`` ... (``python -m nox -s tests-3.12`` runs one); a Python that is not found is
  skipped, never downloaded.
- The virtualenvs live in ``.nox/`` and are reused: dependencies are installed again only when ``setup.cfg``,
  ``pyproject.toml`` or the torch requirement change (``--reinstall`` forces it).
- torch is installed first, as ``TORCH_REQUIREMENT`` (default ``torch==2.13.0``, the Makefile's), from
  ``TORCH_INDEX_URL`` when set (e.g. PyTorch's CPU index, https://download.pytorch.org/whl/cpu), else from pip's
  configured index, where Linux gets the CUDA build (several GB per virtualenv).
- Arguments after ``--`` replace the default pytest arguments (``-n 2 tests``), e.g.
  ``python -m nox -- tests/test_kl.py``.
"""

import configparser
import hashlib
import os
import re
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
TORCH_REQUIREMENT = os.environ.get("TORCH_REQUIREMENT") or "torch==2.13.0"
TORCH_INDEX_URL = os.environ.get("TORCH_INDEX_URL") or ""
STAMP = ".sb3-ppo-variants-installed"

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"  # test the Pythons this machine has
nox.options.error_on_missing_interpreters = False


def supported_pythons() -> list[str]:
    """The ``Programming Language :: Python :: 3.X`` classifiers of setup.cfg: the claims are what the matrix tests."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return re.findall(r"Programming Language :: Python :: (3\.\d+)\s*$", config["metadata"]["classifiers"], re.MULTILINE)


def _pyenv_folders(minors: list[str]) -> list[str]:
    """The ``bin`` folder of pyenv's newest installed patch release of each minor version, active or not."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    folders = []
    for minor in minors:
        patches = [path for path in versions.glob(f"{minor}.*") if re.fullmatch(rf"{re.escape(minor)}\.\d+", path.name)]
        patches = [path for path in patches if (path / "bin" / f"python{minor}").is_file()]
        if patches:
            newest = max(patches, key=lambda path: int(path.name.rsplit(".", 1)[1]))
            folders.append(str(newest / "bin"))
    return folders


# nox finds interpreters on PATH and the versions pyenv has activated (its shims fail for the others): put every
# supported Python that pyenv has installed on PATH first.
os.environ["PATH"] = os.pathsep.join([*_pyenv_folders(supported_pythons()), os.environ.get("PATH", "")])


def _install_key() -> str:
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(f"{TORCH_REQUIREMENT}\n{TORCH_INDEX_URL}".encode())
    return digest.hexdigest()


def _size(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


@nox.session(python=supported_pythons())
def tests(session: nox.Session) -> None:
    """The fast tests on one Python, in a reused virtualenv with ``.[all,tests]`` installed in editable mode."""
    venv = Path(session.virtualenv.location)
    stamp = venv / STAMP
    key = _install_key()
    if stamp.is_file() and stamp.read_text() == key and "--reinstall" not in session.posargs:
        session.log(f"dependencies already installed in {venv} (setup.cfg, pyproject.toml and torch unchanged)")
    else:
        stamp.unlink(missing_ok=True)
        session.install("--upgrade", "pip")
        index = ["--index-url", TORCH_INDEX_URL] if TORCH_INDEX_URL else []
        session.install(TORCH_REQUIREMENT, *index)
        session.install("-e", ".[all,tests]")
        stamp.write_text(key)
    session.run("python", "-c", "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__)")
    args = [arg for arg in session.posargs if arg != "--reinstall"] or ["-n", "2", "tests"]
    try:
        session.run("python", "-m", "pytest", "-m", "not slow", "-q", "-p", "no:cacheprovider", *args)
    finally:
        session.log(f"virtualenv {venv}: {_size(venv) / 1e9:.1f} GB")
