"""Folders and files the package writes: why a folder cannot be made (the one-line errors for
--out, --results and friends), and the mode of a new file."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from celo_bench.errors import CeloBenchError


def unwritable_reason(folder: str | Path) -> str | None:
    """Why `folder` could not be created or written, or None if it seems it could (creates nothing).

    Looks at the nearest existing path on the way to `folder`: a file there blocks it, and a
    folder there must be writable and searchable by this user. (A full disk or a read-only
    mount shows only when writing; callers that can, probe with a real write.)
    """
    path = Path(folder).expanduser().absolute()
    for here in (path, *path.parents):
        if not here.exists():
            continue
        if not here.is_dir():
            return "it is a file" if here == path else f"{here} is a file"
        if not os.access(here, os.W_OK | os.X_OK):
            return f"no permission to write in {here}"
        return None
    return None


def require_writable(folder: str | Path, what: str, fix: str) -> None:
    """Raise ``"<what> <folder> cannot be written: <why>; <fix>"`` now if :func:`unwritable_reason`
    finds a reason (creates nothing).

    Raises:
      CeloBenchError: names the folder, what blocks it, and `fix`.
    """
    problem = unwritable_reason(folder)
    if problem:
        raise CeloBenchError(f"{what} {folder} cannot be written: {problem}; {fix}")


@functools.cache
def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process umask (read once).

    Files written through ``tempfile.mkstemp`` (then renamed into place) are owner-only
    otherwise. The umask can only be read by setting it: it is set to the most private mask
    for that instant (a file another thread creates meanwhile is only more private) and put
    back.
    """
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


def set_new_file_mode(fd: int) -> None:
    """Give the open file `fd` (e.g. from ``mkstemp``) the mode of a normal new file."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, new_file_mode())
