"""A tiny typed-field validator for TOML specs: every error names the file and the key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celo_bench.errors import SpecError

_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One key of a spec table: its type(s), whether required, its default and allowed values."""

    types: tuple[type, ...]
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    positive: bool = False


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors into a SpecError that names the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path, "<file>", f"not valid TOML: {e}") from None
    except OSError as e:
        raise SpecError(path, "<file>", f"cannot be read: {e}") from None


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def validate(path: Path, table: dict[str, Any], fields: dict[str, Field], prefix: str = "") -> dict:
    """Check `table` against `fields`; returns a dict with defaults filled in.

    Unknown keys are errors too: a typo such as `batchsize` must not silently fall back
    to a default.
    """
    out: dict[str, Any] = {}
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise SpecError(path, prefix + key, f"unknown key; allowed keys: {known}")
    for key, spec in fields.items():
        value = table.get(key, _MISSING)
        if value is _MISSING:
            if spec.required:
                raise SpecError(path, prefix + key, "is required but missing")
            out[key] = spec.default
            continue
        ok_types = spec.types
        # TOML integers are acceptable where floats are expected (1 == 1.0); bool is not an int here.
        if isinstance(value, bool) and bool not in ok_types:
            ok = False
        elif float in ok_types and isinstance(value, int):
            value, ok = float(value), True
        else:
            ok = isinstance(value, ok_types)
        if not ok:
            raise SpecError(
                path, prefix + key, f"expected {_type_name(ok_types)}, got {type(value).__name__} {value!r}"
            )
        if spec.choices is not None and value not in spec.choices:
            raise SpecError(path, prefix + key, f"{value!r} is not one of {list(spec.choices)}")
        if spec.positive and isinstance(value, int | float) and value <= 0:
            raise SpecError(path, prefix + key, f"must be positive, got {value!r}")
        out[key] = value
    return out


def float_list(path: Path, key: str, value: Any) -> tuple[float, ...]:
    """Validate a non-empty list of positive finite numbers (a hyper-parameter grid)."""
    if not isinstance(value, list) or not value:
        raise SpecError(path, key, f"expected a non-empty list of numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not v == v or v in (float("inf"),):
            raise SpecError(path, key, f"grid values must be finite numbers, got {v!r}")
        out.append(float(v))
    return tuple(out)
