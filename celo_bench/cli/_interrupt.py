"""Ctrl-C: one line on stderr, exit code 130, and no interpreter shutdown.

JAX 0.10's CPU client can crash (SIGSEGV, exit 139) while the interpreter shuts down after a
trace or compile was interrupted, so an interrupted command leaves with ``os._exit`` once
the exception has unwound: every ``finally`` and ``with`` block on the way has run (temporary
folders removed, progress bars stopped), but no interpreter teardown follows. Writers
in this package replace files whole, so nothing is left half-written.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

EXIT_CODE = 130
"""128 + SIGINT, the shell's code for a command stopped by Ctrl-C."""

GENERIC = ("interrupted: nothing is half-written; re-run the same command to go on "
           "(run, submit and meta-train resume where they stopped)")
"""The line of a command that has no more specific one."""


def exit_interrupted(line: str = GENERIC) -> NoReturn:
    """Flush what was printed, write `line` to stderr and leave at once with code 130."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
            pass
    try:
        sys.stderr.write(f"\n{line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(EXIT_CODE)
