"""State files only the agent's user may read: files 0600, directories 0700, whatever the umask.

The outbox holds alert payloads and the recordings hold process data; neither is for other local
users. Modes are set explicitly (chmod after create), because a umask of 022 or 002 would leave
them readable and a umask of 077 is not something a deployment can be relied on to set.
Directories that already exist are left as they are (they may be shared, e.g. a working
directory); the ones the agent creates are 0700.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700; existing ones are not touched.
    Raises OSError like `Path.mkdir`."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: theirs to keep
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def make_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist, and bring an existing file the
    agent owns down to 0600 (files from earlier versions were created 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        with contextlib.suppress(PermissionError):  # not ours: left as its owner made it
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def restrict_file(path: Path) -> None:
    """Mode 0600 for an existing file; nothing if it does not exist or is not ours to change."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        os.chmod(path, FILE_MODE)


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write a secret (a private key) atomically with mode 0600 whatever the umask: into a fresh
    temporary file next to it, then renamed over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), FILE_MODE)
        f.write(data)
    os.replace(tmp, path)
