"""Why a folder cannot be made: the checks behind the one-line errors for --out, --results and friends."""

from __future__ import annotations

import os
from pathlib import Path


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
