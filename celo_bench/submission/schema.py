"""``submission.toml``: the metadata of a submitted optimizer, parsed and validated.

A submission is a folder with two files (see ``submissions/template/``)::

    submission.toml   name, authors, description, kind, license, search space,
                      and for learned optimizers a checkpoint and a meta-training card
    optimizer.py      one factory, ``make_optimizer``, returning an optax transformation

Parsing executes no code from the folder: it only reads TOML. Every problem is a
:class:`~celo_bench.errors.SpecError` naming the file and the key, with the fix; a folder
with several problems raises them all at once (:class:`SubmissionProblems`), so one
``celo-bench validate`` lists every missing or invalid key.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
import pydantic
from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from celo_bench._schema import (
    SPEC_CONFIG,
    FiniteFloat,
    KeyProblem,
    collect,
    first_problem,
    raise_all,
    read_toml,
)
from celo_bench.errors import SpecError

TOML_NAME = "submission.toml"
CODE_NAME = "optimizer.py"
FACTORY_NAME = "make_optimizer"
KINDS = ("handcrafted", "learned")
MAX_POINTS = 64
"""Largest search space (grid points): every point is trained on every task and seed."""
TEMPLATE_HINT = "see submissions/template/submission.toml"

class SubmissionProblems(SpecError):
    """Every problem found in a submission folder, one :class:`SpecError` each (file order).

    Its own ``path``, ``key`` and ``problem`` are those of the first, for callers that
    expect one SpecError; its message lists them all, separated by ``; ``.
    """

    def __init__(self, problems: Sequence[SpecError]):
        first = problems[0]
        super().__init__(first.path, first.key, first.problem)
        self.problems = tuple(problems)
        self.args = ("; ".join(str(p) for p in self.problems),)


_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"'{name}' must be 1-40 characters of lower-case letters, digits and _, "
                         "starting with a letter (it names folders in the results store)")
    return name


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError(f"is empty; {TEMPLATE_HINT}")
    return value.strip()


def _authors(names: tuple[str, ...]) -> tuple[str, ...]:
    if not names or not all(a.strip() for a in names):
        raise ValueError('must be a non-empty list of names, e.g. ["Ada Lovelace"]')
    return names


def _sha256(value: str) -> str:
    if not _SHA_RE.match(value.lower()):
        raise ValueError("must be 64 hexadecimal digits (run `sha256sum theta.state`)")
    return value.lower()


def _tasks(value: Any) -> Any:
    if not isinstance(value, str | list):
        raise ValueError(f"expected str or a list, got {type(value).__name__} {value!r}")
    return value


def _distinct(points: tuple[float, ...]) -> tuple[float, ...]:
    if len(set(points)) != len(points):
        raise ValueError(f"has repeated values {list(points)!r}; list each point once")
    return points


_POINTS = TypeAdapter(
    Annotated[tuple[FiniteFloat, ...], Field(min_length=1, strict=False), AfterValidator(_distinct)],
    config=SPEC_CONFIG,
)


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class LogRange:
    """``{low, high, num}``: `num` log-spaced points from `low` to `high`, both included."""

    low: Annotated[FiniteFloat, Field(gt=0)]
    high: Annotated[FiniteFloat, Field(gt=0)]
    num: Annotated[int, Field(ge=2)]

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> LogRange:
        if not self.low < self.high:
            raise KeyProblem("", f"low ({self.low!r}) must be smaller than high ({self.high!r})")
        return self

    def points(self) -> tuple[float, ...]:
        return tuple(float(x) for x in np.geomspace(self.low, self.high, self.num))


def _axis(name: str, value: Any) -> tuple[float, ...]:
    """One hyper-parameter's points: an explicit list, or a log range; KeyProblem if malformed."""
    example = "{ low = 1e-4, high = 1e-1, num = 7 }"
    if not name.isidentifier():
        raise KeyProblem(name, "is not a Python identifier; it must be a keyword argument of make_optimizer")
    if isinstance(value, list):
        try:
            return _POINTS.validate_python(value)
        except ValidationError as e:  # keyed at the list: "search_space.lr"
            raise KeyProblem(name, first_problem(None, e)[1]) from None
    if isinstance(value, dict):
        if set(value) != {"low", "high", "num"}:
            raise KeyProblem(name, f"a range needs exactly the keys low, high and num (got "
                             f"{', '.join(sorted(value)) or 'none'}); write e.g. {name} = {example}")
        try:
            return LogRange(**value).points()
        except ValidationError as e:
            key, problem = first_problem(LogRange, e)
            raise KeyProblem(f"{name}.{key}" if key else name, problem) from None
    raise KeyProblem(name, f"expected a list of points or a table {{ low, high, num }}, "
                     f"got {type(value).__name__} {value!r}")


def _space(table: Any) -> dict[str, tuple[float, ...]]:
    """``[search_space]``: hyper-parameter -> list of points, or a log range {low, high, num}."""
    if not isinstance(table, dict):
        raise KeyProblem("", f"must be a table of hyper-parameter = [points] or {{ low, high, num }}, "
                         f"got {table!r}")
    space, problems = {}, []
    for name, value in table.items():
        try:
            space[name] = _axis(name, value)
        except KeyProblem as e:
            problems.append(e)
    raise_all(problems)
    n = math.prod(len(v) for v in space.values())
    if n > MAX_POINTS:
        raise KeyProblem("", f"has {n} points, more than {MAX_POINTS}; every point is trained on "
                         "every task and seed: use fewer values")
    return space


def _defaults(table: dict[str, Any]) -> dict[str, Any]:
    problems = []
    for k, v in table.items():
        if not k.isidentifier():
            problems.append(KeyProblem(k, "is not a Python identifier (a keyword of make_optimizer)"))
        elif not isinstance(v, bool | int | float | str):
            problems.append(KeyProblem(k, f"must be a number, bool or string, got {type(v).__name__}"))
    raise_all(problems)
    return table


@pydantic.with_config(SPEC_CONFIG)
class CheckpointTable(TypedDict):
    """``[checkpoint]`` of a learned submission."""

    source: str
    sha256: Annotated[str, AfterValidator(_sha256)]


@pydantic.with_config(SPEC_CONFIG)
class MetaTrainingCard(TypedDict):
    """``[meta_training]`` of a learned submission: what it was meta-trained on, with what compute."""

    tasks: Annotated[Any, AfterValidator(_tasks)]
    compute: str
    note: NotRequired[str]


Text = Annotated[str, AfterValidator(_text)]


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class Submission:
    """A parsed ``submission.toml`` (nothing from ``optimizer.py`` has been run)."""

    folder: Path
    name: Annotated[str, AfterValidator(_name)]
    authors: Annotated[tuple[str, ...], Field(strict=False), AfterValidator(_authors)]
    description: Text
    kind: Literal["handcrafted", "learned"]
    license: Text
    reference: str = ""
    defaults: Annotated[dict[str, Any], AfterValidator(_defaults)] = field(default_factory=dict)
    search_space: Annotated[dict[str, tuple[float, ...]], BeforeValidator(_space)] = field(default_factory=dict)
    checkpoint: CheckpointTable = field(default_factory=dict)  # type: ignore[assignment]  # {} unless learned
    meta_training: MetaTrainingCard = field(default_factory=dict)  # type: ignore[assignment]  # {} unless learned

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Submission:
        problems = [KeyProblem(f"search_space.{k}", "is also set in [defaults]; tune it or fix it, not both")
                    for k in self.search_space if k in self.defaults]
        if self.learned:
            if not self.checkpoint:
                problems.append(KeyProblem("checkpoint", "learned submissions need a [checkpoint] table with "
                                           f"source and sha256; {TEMPLATE_HINT}"))
            if not self.meta_training:
                problems.append(KeyProblem("meta_training", "learned submissions need a [meta_training] card "
                                           f"with tasks and compute; {TEMPLATE_HINT}"))
        else:
            problems += [KeyProblem(key, 'is only for kind = "learned"; remove it or change kind')
                         for key in ("checkpoint", "meta_training") if getattr(self, key)]
        raise_all(problems)
        return self

    @property
    def toml_path(self) -> Path:
        return self.folder / TOML_NAME

    @property
    def code_path(self) -> Path:
        return self.folder / CODE_NAME

    @property
    def learned(self) -> bool:
        return self.kind == "learned"

    def card(self) -> str:
        """The meta-training card as one line (shown under the leaderboard)."""
        if not self.meta_training:
            return ""
        tasks = self.meta_training["tasks"]
        tasks = ", ".join(tasks) if isinstance(tasks, list | tuple) else tasks
        note = self.meta_training.get("note", "")
        return f"meta-trained on {tasks}; compute: {self.meta_training['compute']}" + (
            f"; {note}" if note else ""
        )


def source_sha256(folder: Path) -> str:
    """sha256 of ``optimizer.py`` (the same as ``sha256sum optimizer.py``)."""
    return hashlib.sha256((Path(folder) / CODE_NAME).read_bytes()).hexdigest()


def parse_search_space(path: Path, table: Any) -> dict[str, tuple[float, ...]]:
    """``[search_space]`` alone -> hyper-parameter -> points (SpecError keyed ``search_space...``)."""
    try:
        return _space(table)
    except KeyProblem as e:
        raise SpecError(path, f"search_space.{e.key}" if e.key else "search_space", e.problem) from None


def parse_submission(folder: str | Path) -> Submission:
    """Read and validate ``folder/submission.toml``.

    Every problem is reported, not only the first: each missing file, and each missing,
    unknown or invalid key of ``submission.toml``.

    Raises:
        SubmissionProblems: (a :class:`SpecError`, one per problem in ``problems``) the
            path is not a folder (key ``<folder>``), a file is missing or not valid TOML
            (key ``<file>``), a key is missing, unknown or of a wrong type, the search space
            is malformed, a checkpoint table is on a hand-crafted submission (or none is on
            a learned one).
    """
    folder = Path(folder).expanduser().resolve()
    if folder.is_file() and folder.name in (TOML_NAME, CODE_NAME):
        folder = folder.parent  # the user pointed at a file of the submission
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise SubmissionProblems([SpecError(folder, "<folder>", f"{what}; a submission is a folder holding "
                                            f"{TOML_NAME} and {CODE_NAME}")])
    problems = [SpecError(folder / name, "<file>", "is missing") for name in (TOML_NAME, CODE_NAME)
                if not (folder / name).is_file()]
    sub = None
    if (folder / TOML_NAME).is_file():
        try:
            sub, found = collect(Submission, folder / TOML_NAME, read_toml(folder / TOML_NAME), folder=folder)
        except SpecError as e:  # not valid TOML, or unreadable
            found = [e]
        problems += found
    if problems or sub is None:
        raise SubmissionProblems(problems)
    return sub


def check_points(sub: Submission) -> list[dict[str, float]]:
    """Up to three points of the search space for the code checks: first, middle, last."""
    from celo_bench.plan import grid_points

    pts = grid_points(sub.search_space)
    if len(pts) <= 3:
        return pts
    return [pts[0], pts[len(pts) // 2], pts[-1]]
