"""
Atomic file writes: write next to the destination, flush to disk, then rename over it. A crash or a kill at any
point leaves either the old file or the complete new one, never a half-written file.
"""

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """
    Create or replace ``path`` atomically with what ``write`` writes to the binary file it is given.

    :param path: destination; missing parent folders are created
    :param write: called with an open binary file
    :return: the destination path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (same filesystem, so the rename is atomic); created with the process umask.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Create or replace a UTF-8 text file atomically."""
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_save(save: Callable[[Any], None], path: str | Path | IO[bytes]) -> None:
    """
    Run an SB3-style ``save(file)`` atomically. Like SB3, ``.zip`` is appended to a path without a suffix.
    File objects are passed through unchanged.

    :param save: writes a model to the file object it is given (e.g. ``BaseAlgorithm.save``)
    :param path: destination path or an open binary file
    """
    if not isinstance(path, (str, os.PathLike)):
        save(path)
        return
    path = Path(path)
    if path.suffix == "":
        path = path.with_name(f"{path.name}.zip")
    atomic_write(path, save)
