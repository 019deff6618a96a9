"""TOML specs -> pydantic models, with every error naming the file and the dotted key.

The spec models (:mod:`celo_bench.suite`, :mod:`celo_bench.submission.schema`) are frozen
pydantic dataclasses declaring types, defaults, ranges and allowed values; this module
reads TOML and turns each pydantic error into one :class:`~celo_bench.errors.SpecError`
line whose key is the error's location (``grids.adam.learning_rate``, ``tasks[0]``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typing_extensions
from pydantic import AllowInfNan, ConfigDict, Field, ValidationError

from celo_bench.errors import SpecError

SPEC_CONFIG = ConfigDict(strict=True, extra="forbid")
"""Strict types (no "8" -> 8, no true -> 1; an int is accepted where a float is expected),
unknown keys refused (a typo such as ``batchsize`` must not fall back to a default)."""

PositiveInt = Annotated[int, Field(gt=0)]
FiniteFloat = Annotated[float, AllowInfNan(False)]
Grid = dict[str, Annotated[tuple[FiniteFloat, ...], Field(min_length=1, strict=False)]]
"""A tuning grid: hyper-parameter -> non-empty list of finite numbers (stored as floats)."""

M = TypeVar("M")


class KeyProblem(ValueError):
    """Raised by a model validator: `problem` concerns `key` (dotted, relative to the model)."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key, self.problem = key, problem


class KeyProblems(KeyProblem):
    """Several :class:`KeyProblem` at once, from a validator that checks every key.

    Where one problem is expected it reads as the first (its ``key`` and ``problem``);
    :func:`describe_all` reports each of ``problems``.
    """

    def __init__(self, problems: Sequence[KeyProblem]):
        super().__init__(problems[0].key, problems[0].problem)
        self.problems = tuple(problems)


def raise_all(problems: Sequence[KeyProblem]) -> None:
    """Raise a validator's collected problems: the one, or all as :class:`KeyProblems`."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise KeyProblems(problems)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors into a SpecError that names the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path, "<file>", f"not valid TOML: {e}") from None
    except OSError as e:
        raise SpecError(path, "<file>", f"cannot be read: {e}") from None


def build(model: type[M], path: Path | str, table: Any, prefix: str = "", /, **extra: Any) -> M:
    """``model(**table, **extra)``; raises SpecError(path, key, problem) for the first error.

    `prefix` is the dotted key of `table` inside its file (``checkpoint`` for a sub-table).
    """
    built, problems = collect(model, path, table, prefix, **extra)
    if problems:
        raise problems[0]
    return built


def collect(model: type[M], path: Path | str, table: Any, prefix: str = "", /,
            **extra: Any) -> tuple[M | None, list[SpecError]]:
    """``(model(**table, **extra), [])``, or ``(None, problems)`` with one SpecError per problem
    (a misspelt key first; keys in `extra` are filled in by the loader, never written)."""
    if not isinstance(table, Mapping):
        return None, [SpecError(path, prefix or "<file>", f"expected a table, got {type(table).__name__} {table!r}")]
    problems = [SpecError(path, _join(prefix, key), "unknown key; it is set by celo-bench, remove it")
                for key in extra if key in table]
    try:
        built = model(**{k: v for k, v in table.items() if k not in extra}, **extra)
    except ValidationError as e:
        problems += [SpecError(path, _join(prefix, key) or "<file>", problem)
                     for key, problem in describe_all(model, e, hidden=set(extra))]
        return None, problems
    return (None, problems) if problems else (built, [])


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p).replace(".[", "[")


def _dotted(loc: tuple[str | int, ...]) -> str:
    return _join(*(f"[{p}]" if isinstance(p, int) else str(p) for p in loc if p != "[key]"))


def _fields(model: Any, loc: tuple[str | int, ...]) -> list[str] | None:
    """Keys allowed at `loc` inside `model` (dataclass or TypedDict fields), if known."""
    t = model
    for part in loc:
        hints = _hints(t)
        if hints is None or part not in hints:
            return None
        t = hints[part]
    hints = _hints(t)
    return sorted(hints) if hints is not None else None


def _hints(t: Any) -> dict[str, Any] | None:
    while typing.get_origin(t) is Annotated:
        t = typing.get_args(t)[0]
    if dataclasses.is_dataclass(t):
        hints = typing.get_type_hints(t, include_extras=True)
        return {f.name: hints[f.name] for f in dataclasses.fields(t)}
    if typing_extensions.is_typeddict(t):
        return typing.get_type_hints(t, include_extras=True)
    return None


_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
           "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")
_TYPE_NAMES = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool",
               "dict_type": "a table", "list_type": "a list", "tuple_type": "a list"}


def first_problem(model: Any, err: ValidationError, hidden: set[str] = frozenset()) -> tuple[str, str]:
    """(dotted key, one-line problem) of the first error of `err` (`hidden`: keys not to suggest)."""
    return describe_all(model, err, hidden)[0]


def describe_all(model: Any, err: ValidationError, hidden: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(dotted key, one-line problem) of every error of `err`, a misspelt key first (it also makes
    the intended key missing: the typo is the news); a :class:`KeyProblems` gives one per problem."""
    out = []
    for e in sorted(err.errors(), key=lambda x: x["type"] not in _UNKNOWN):
        cause = (e.get("ctx") or {}).get("error")
        if e["type"] == "value_error" and isinstance(cause, KeyProblem):
            key = _dotted(e["loc"])
            out += [(_join(key, k.key), k.problem)
                    for k in (cause.problems if isinstance(cause, KeyProblems) else [cause])]
        else:
            out.append(_describe_one(model, e, hidden))
    return out


def _describe_one(model: Any, e: Mapping[str, Any], hidden: set[str]) -> tuple[str, str]:
    kind, loc, ctx, value = e["type"], e["loc"], e.get("ctx") or {}, e.get("input")
    key = _dotted(loc)
    if kind in ("missing", "missing_keyword_argument", "missing_argument"):
        return key, "is required but missing"
    if kind in _UNKNOWN:
        known = [k for k in _fields(model, loc[:-1]) or [] if not (len(loc) == 1 and k in hidden)]
        return key, "unknown key" + (f"; allowed keys: {', '.join(known)}" if known else "")
    if kind in _TYPE_NAMES:
        return key, f"expected {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return key, f"must be positive, got {value!r}"
    if kind in _BOUNDS:
        return key, f"must be {_BOUNDS[kind][0]} {ctx[_BOUNDS[kind][1]]}, got {value!r}"
    if kind == "literal_error":
        return key, f"{value!r} is not one of {ctx['expected']}"
    if kind == "too_short":
        return key, f"is empty; give at least {ctx['min_length']} value(s)"
    if kind == "finite_number":
        return key, f"values must be finite numbers, got {value!r}"
    problem = e["msg"].removeprefix("Value error, ")
    return key, problem[:1].lower() + problem[1:] + ("" if kind == "value_error" else f", got {value!r}")
