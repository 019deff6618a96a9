"""Domain errors. Core code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def describe(e: BaseException) -> str:
    """``Type: first line of the message`` of any exception (tracebacks stay out of one-line
    reports, e.g. what an optimizer under conformance checks or a submission raised)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class CeloBenchError(Exception):
    """Base class: every message says what is wrong and what to do next."""


class SpecError(CeloBenchError):
    """A task, optimizer or suite spec is malformed. Names the file and the key."""

    def __init__(self, path: object, key: str, problem: str):
        self.path, self.key, self.problem = str(path), key, problem
        super().__init__(f"{self.path}: key '{key}': {problem}")


class UnknownNameError(CeloBenchError, KeyError):
    """A task/optimizer/suite name that is not registered; suggests the closest one."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        self.kind, self.name = kind, name
        super().__init__(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class DataMissingError(CeloBenchError):
    """A dataset is not in the cache; the message carries the command that prepares it."""


class CheckpointError(CeloBenchError):
    """A checkpoint cannot be found, fetched, verified or matched to its architecture."""


class HyperparameterError(CeloBenchError, ValueError):
    """An optimizer argument outside its domain; names the argument and its valid range."""
