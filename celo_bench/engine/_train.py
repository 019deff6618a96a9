"""The vectorized trainer: every run of one (task, optimizer) job trains together (vmapped).

Per run the loop follows the reference evaluation protocol (learned_optimization's
``single_task_training_curves``): for ``i = 0..T`` inclusive, evaluate every
``eval_every`` steps *before* the update of step ``i`` (``last_eval_batches`` at
``i == T``), then take a training step (``T + 1`` steps in the reference); the
minibatch loss is recorded at every step (the last update itself is unobservable and
skipped).

The seed fixes parameter init, per-step keys, evaluation batches **and the data order**:
each run draws its own epoch permutations of the training split from its seed.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.engine.memory import (
    bytes_per_run,
    device_memory_budget,
    eval_group,
    output_bytes,
    run_chunked,
)
from celo_bench.strategy import ENGINE_PROGRAMS_PER_CHUNK, Strategy
from celo_bench.task import EVAL_SPLITS, OptimizerBuilder, Task

BareBuilder = Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]
"""A plain ``make(hparams) -> optimizer`` function, taken as a hand-crafted builder."""


@dataclass(frozen=True, eq=False)
class _Bare:
    """A :class:`~celo_bench.task.OptimizerBuilder` around a bare function (no meta-parameters,
    no program key)."""

    fn: BareBuilder
    meta_params: Any = None
    program_key: tuple | None = None

    def __call__(self, hparams: Mapping[str, Any], meta_params: Any = None) -> optax.GradientTransformation:
        return self.fn(hparams)


def as_builder(make: OptimizerBuilder | BareBuilder) -> OptimizerBuilder:
    """`make` itself when it is an :class:`~celo_bench.task.OptimizerBuilder` (e.g. from
    :func:`celo_bench.optimizers.builder`), else the bare function `make` as one."""
    return make if isinstance(make, OptimizerBuilder) else _Bare(make)

META_KEY = "meta_params"
"""Key of a learned optimizer's meta-parameters among a program's shared inputs."""


class RunState(NamedTuple):
    params: Any
    model_state: Any
    opt_state: Any


class RunConsts(NamedTuple):
    hparams: Any
    order: jax.Array  # (T + 1, batch) int32 indices into the train split
    step_key: jax.Array
    eval_key: jax.Array


class RunStart(NamedTuple):
    """What a seed fixes before the first update, whatever the optimizer.

    Initial parameters and model state, the data order ``(T + 1, batch)`` and the step and
    evaluation keys. It is computed by a small program of its own, compiled once per task and
    horizon and shared by every job of that task, instead of inside each job's program (the
    epoch permutations alone are a sort that took ~40 % of a small job's compile).
    """

    params: Any
    model_state: Any
    order: jax.Array
    step_key: jax.Array
    eval_key: jax.Array


@dataclass
class JobResult:
    """Curves of every run of a job, in input order.

    Shapes: ``train_loss (R, T + 1)``; ``eval_steps (E,)`` with ``E = T / eval_every + 1``;
    ``eval_loss[split] (R, E)``. ``programs`` counts the programs each chunk runs (4: init,
    steps or update, evaluation, and the final loss or, with ``split``, the gradient), shared
    or reused ones included: chunks of one size
    compile the job's own programs once.
    """

    train_loss: np.ndarray
    eval_steps: np.ndarray
    eval_loss: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float
    strategy: str
    programs: int


def _as_extra_args(opt: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    if isinstance(opt, optax.GradientTransformationExtraArgs):
        return opt
    return optax.with_extra_args_support(opt)


def _data_order(key: jax.Array, n: int, batch: int, steps: int) -> jax.Array:
    """Indices for ``steps`` batches: concatenated epoch permutations drawn from `key`."""
    epochs = math.ceil(steps * batch / n)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
    return perms.reshape(-1)[: steps * batch].reshape(steps, batch).astype(jnp.int32)


class _Program:
    """Pure single-run functions of one job; strategies compose them with jit/vmap/scan."""

    def __init__(self, task: Task, make_optimizer: OptimizerBuilder | BareBuilder, num_steps: int):
        spec = task.spec
        self.task, self.make_optimizer, self.T = task, as_builder(make_optimizer), num_steps
        self.batch, self.every = spec.batch_size, spec.eval_every
        self.eval_batches, self.last_eval_batches = spec.eval_batches, spec.last_eval_batches
        self.n_train = task.dataset.size("train")
        self.chunk = math.gcd(self.eval_batches, self.last_eval_batches)
        n_eval = len(EVAL_SPLITS) * self.chunk
        self.eval_group = eval_group(n_eval, self.batch, output_bytes(task.dataset.info, spec.family))

    def optimizer(self, hparams: Any, data: Any = None) -> optax.GradientTransformationExtraArgs:
        """The optimizer for `hparams`; a learned one reads its meta-parameters from ``data``.

        Meta-parameters travel as a program input (``data["meta_params"]``), not as constants
        baked into the program, so two weights of one architecture (published Celo and the
        cpu-diet Celo) run the same compiled program: the persistent compilation cache serves
        the second.
        """
        meta = None if data is None else data.get(META_KEY)
        if meta is not None:
            return _as_extra_args(self.make_optimizer(hparams, meta_params=meta))
        return _as_extra_args(self.make_optimizer(hparams))

    def start(self, seed: jax.Array) -> RunStart:
        """The optimizer-independent part of a run's initialisation (see :class:`RunStart`)."""
        k_init, k_data, k_step, k_eval = jax.random.split(jax.random.PRNGKey(seed), 4)
        params, model_state = self.task.init(k_init)
        order = _data_order(k_data, self.n_train, self.batch, self.T + 1)
        return RunStart(params, model_state, order, k_step, k_eval)

    def init(self, data: Any, hparams: Any, start: RunStart) -> tuple[RunState, RunConsts]:
        opt_state = self.optimizer(hparams, data).init(start.params)
        return (
            RunState(start.params, start.model_state, opt_state),
            RunConsts(hparams, start.order, start.step_key, start.eval_key),
        )

    def gradient(self, data: Any, order: jax.Array, step_key: jax.Array, params: Any, model_state: Any,
                 i: jax.Array):
        """Minibatch loss, gradient and new model state of step `i` (reads no optimizer state).

        Shared by every optimizer of a task: with ``steps="split"`` it is a program of its own,
        compiled once per task and runs per program.
        """
        batch = jax.tree_util.tree_map(lambda a: a[order[i]], data["train"])
        key = jax.random.fold_in(step_key, i)

        def loss_fn(p):
            return self.task.loss(p, model_state, key, batch)

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, grads, model_state

    def update(self, data: Any, hparams: Any, grads: Any, opt_state: Any, params: Any, loss: jax.Array):
        """The optimizer's step: ``(params, opt_state)`` after applying its update to `grads`."""
        updates, opt_state = self.optimizer(hparams, data).update(grads, opt_state, params, loss=loss)
        return optax.apply_updates(params, updates), opt_state

    def train_step(self, data: Any, consts: RunConsts, state: RunState, i: jax.Array):
        loss, grads, model_state = self.gradient(data, consts.order, consts.step_key, state.params,
                                                 state.model_state, i)
        params, opt_state = self.update(data, consts.hparams, grads, state.opt_state, state.params, loss)
        return RunState(params, model_state, opt_state), loss

    def eval_loss(self, data: Any, eval_key: jax.Array, params: Any, model_state: Any, i: jax.Array,
                  c: jax.Array):
        """Mean loss per eval split over chunk `c` (``chunk`` batches each) at step `i`.

        An evaluation of ``n`` batches is ``n / chunk`` chunks, so the regular and the final
        evaluation share one piece of code. All splits' batches are drawn with one uniform
        draw and evaluated in one batched forward pass (few, large ops compile and run
        fastest on CPU), or, when their outputs would exceed
        :data:`celo_bench.engine.memory.EVAL_PASS_OUTPUT_CAP` (language models with large
        vocabularies), in a ``lax.map`` over groups of ``eval_group`` batches.
        """
        k_idx, k_loss = jax.random.split(jax.random.fold_in(jax.random.fold_in(eval_key, i), c))
        S, g = len(EVAL_SPLITS), self.chunk
        u = jax.random.uniform(k_idx, (S, g, self.batch))
        batches = []
        for s, split in enumerate(EVAL_SPLITS):
            arrays = data[split]
            n = next(iter(arrays.values())).shape[0]
            idx = jnp.minimum((u[s] * n).astype(jnp.int32), n - 1)
            batches.append(jax.tree_util.tree_map(lambda a, idx=idx: a[idx], arrays))
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *batches)

        def one(batch, k):
            return self.task.loss(params, model_state, k, batch)[0]

        keys = jax.random.split(k_loss, S * g)
        if self.eval_group >= S * g:
            losses = jax.vmap(one)(stacked, keys)
        else:
            losses = jax.lax.map(lambda bk: one(*bk), (stacked, keys), batch_size=self.eval_group)
        return jnp.mean(losses.reshape(S, g), axis=1)

    def schedule(self) -> np.ndarray:
        """Rows ``(step, chunk, trains)``: one eval chunk each, then ``eval_every`` steps if ``trains``."""
        rows = []
        for b in range(self.T // self.every + 1):
            last = b == self.T // self.every
            k = (self.last_eval_batches if last else self.eval_batches) // self.chunk
            rows += [(b * self.every, c, int(c == k - 1 and not last)) for c in range(k)]
        return np.asarray(rows, dtype=np.int32)

    def train_steps(self, data, consts, state, start, n: int, unroll: bool = False):
        """`n` training steps from step `start`; losses of shape ``(n,)``."""
        if n == 1:  # no loop at all: convolution gradients inside loops are slow on CPU
            state, loss = self.train_step(data, consts, state, start)
            return state, loss[None]

        def body(st, i):
            return self.train_step(data, consts, st, i)

        return jax.lax.scan(body, state, start + jnp.arange(n), unroll=unroll)

    def last_loss(self, data, order, step_key, params, model_state):
        """Minibatch loss of step ``T``, from what it reads only (shared by every optimizer of a task).

        The reference loop also applies an update at ``i == T``; its result is never
        observed, so only the loss it records is computed (no backward pass to compile).
        """
        batch = jax.tree_util.tree_map(lambda a: a[order[self.T]], data["train"])
        key = jax.random.fold_in(step_key, self.T)
        return self.task.loss(params, model_state, key, batch)[0]

    def assemble(self, evs: np.ndarray, losses: np.ndarray, last: np.ndarray):
        """Raw per-row outputs (leading run axis) -> ``train (R, T + 1)``, ``evals (R, E, splits)``."""
        sched = self.schedule()
        R = evs.shape[0]
        train = np.concatenate([losses[:, sched[:, 2] == 1].reshape(R, -1), last.reshape(R, 1)], axis=1)
        points = np.unique(sched[:, 0])
        evals = np.stack([evs[:, sched[:, 0] == p].mean(axis=1) for p in points], axis=1)
        return train, evals


def _timed_compile(fn, *args, opt_level: int | None = None):
    """Compile `fn` for `args`; `opt_level` is XLA's backend optimisation level (None: XLA's)."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    options = {"xla_backend_optimization_level": opt_level} if opt_level is not None else None
    compiled = lowered.compile(compiler_options=options) if options else lowered.compile()
    return compiled, time.perf_counter() - t0


_SHARED_LOCK = threading.Lock()
_SHARED: OrderedDict[tuple, Any] = OrderedDict()
_BUILDING: dict[tuple, threading.Lock] = {}
SHARED_PROGRAMS_KEPT = 512
"""Compiled programs kept for reuse by later jobs of the process (least recently used go)."""


def _shared(key: tuple, build: Callable[[], tuple[Any, float]]) -> tuple[Any, float]:
    """A compiled program shared by every job that needs it, compiled by the first one.

    Different keys compile concurrently (the local executor runs two jobs at once on a CPU);
    a job that needs a program another job is compiling waits for it. Returns the program and
    the compile seconds charged to this call (0 when it existed).
    """
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key], 0.0
        building = _BUILDING.setdefault(key, threading.Lock())
    with building:
        with _SHARED_LOCK:
            if key in _SHARED:
                return _SHARED[key], 0.0
        try:
            compiled, seconds = build()
        finally:  # a failed build is not left marked as in progress
            with _SHARED_LOCK:
                _BUILDING.pop(key, None)
        with _SHARED_LOCK:
            _SHARED[key] = compiled
            while len(_SHARED) > SHARED_PROGRAMS_KEPT:
                _SHARED.popitem(last=False)
        return compiled, seconds


def _shared_many(requests: list[tuple[tuple, Callable[[], tuple[Any, float]]]]) -> list[tuple[Any, float]]:
    """:func:`_shared` for several ``(key, build)`` requests, in the order given back.

    Programs that no other job is compiling come first: two jobs that start on one task then
    compile its evaluation and gradient side by side instead of the second one queueing
    behind the first for both.
    """
    with _SHARED_LOCK:
        busy = [key in _BUILDING for key, _ in requests]
    out: list[tuple[Any, float]] = [(None, 0.0)] * len(requests)
    for i in sorted(range(len(requests)), key=busy.__getitem__):
        out[i] = _shared(*requests[i])
    return out


START_OPT_LEVEL = 1
"""XLA backend optimisation level of the start program (task init and data order).

It runs once per task and seed set, so only its compile counts: mostly threefry bits and
the initialisers' float transforms, which LLVM optimises slowly at XLA's default level.
Level 1 compiles it 2-8x faster (quick v1's ``quick_digits_conv``: 7.8 s -> 1.0 s; the quick tier's 7
tasks: 21.7 s -> 6.9 s; CPU, jax 0.10.2) and gives bit-identical parameters, data orders
and keys on every task of the quick and paper suites (measured 2026-12-05; a test keeps
checking it). Level 0 is faster still but rounds some initial weights differently.
"""

_START_LOCK = threading.Lock()
_START_CACHE: dict[tuple[int, int, tuple[int, ...]], RunStart] = {}


def prepare_starts(task: Task, num_steps: int, seeds: np.ndarray) -> float:
    """Compute ahead of `task`'s jobs what its `seeds` fix at horizon `num_steps` (initial
    parameters, data order, keys: :func:`_starts`), so that its jobs find them cached; returns
    the compile seconds. Needs no optimizer and runs no optimizer code (``celo-bench submit``
    does it while the submission is validated in its own process)."""
    prog = _Program(task, lambda hparams: optax.identity(), num_steps)
    return _starts(prog, np.asarray(seeds, dtype=np.uint32))[1]


def _starts(prog: _Program, seeds: np.ndarray) -> tuple[RunStart, float]:
    """Every run's :class:`RunStart` (leading axis ``R``) and the seconds spent compiling.

    Computed once per distinct seed by one program per (task, horizon), shared by every job
    of the task: the grid's jobs differ in optimizer and hyper-parameters, not in what a seed
    fixes. Results stay on the host and are cached for the process.
    """
    uniq, inverse = np.unique(seeds, return_inverse=True)
    ident = (id(prog.task), prog.T)
    cache_key = (*ident, tuple(int(u) for u in uniq))
    compile_s = 0.0
    with _START_LOCK:
        cached = _START_CACHE.get(cache_key)
    if cached is None:
        args = jnp.asarray(uniq, dtype=jnp.uint32)
        fn, compile_s = _shared(
            ("start", *ident, len(uniq)),
            lambda: _timed_compile(jax.vmap(prog.start), args, opt_level=START_OPT_LEVEL),
        )
        cached = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(fn(args)))
        with _START_LOCK:
            if len(_START_CACHE) > 64:
                _START_CACHE.clear()
            _START_CACHE[cache_key] = cached
    return jax.tree_util.tree_map(lambda a: a[inverse], cached), compile_s


def _take(tree: Any, r: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[r], tree)


def _optimizer_identity(make_optimizer: OptimizerBuilder, hparams: Any, meta: Any) -> tuple | None:
    """What fixes a job's own programs besides the task: the optimizer's ``program_key`` (see
    :func:`celo_bench.optimizers.builder`), its hyper-parameters' names and shapes and its
    meta-parameters' structure and shapes (their values are program inputs). Learned
    optimizers' jobs with equal identities (published Celo and the cpu-diet Celo) run one
    compiled program, which the process keeps. None (a hand-crafted optimizer, whose programs
    compile fast and are seldom met again, or a builder without a key): compiled per job."""
    key = make_optimizer.program_key
    if key is None or meta is None:
        return None
    hp = tuple((k, jnp.shape(v), jnp.result_type(v)) for k, v in sorted(hparams.items()))
    leaves, treedef = jax.tree_util.tree_flatten(meta)  # shapes and dtypes only: no copy to the host
    return (key, hp, treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))


def _run_blocks(
    prog: _Program, data, hparams, starts: RunStart, vmap: bool, block: int, unroll: bool,
    opt_level: int | None, split: bool = False, job_programs: dict | None = None,
):
    """Train the job's runs: Python over the evaluation schedule, compiled pieces inside.

    Per job, two programs are compiled: the optimizer's ``init`` and a block of `block`
    training steps (a ``lax.scan``; unrolled when `unroll`). The evaluation chunk and the
    final minibatch loss read only parameters, model state and keys, so one compiled copy
    of each serves every job of the task with the same number of runs: on small tasks the
    compile of a job (which dominated the quick tier) is then its update rule, not the model
    evaluated three ways. With `split` the training step itself is two programs called from
    Python each step: the task's gradient (shared by every job of the task, like the
    evaluation; it also gives the final minibatch loss) and the optimizer's update (the job's
    own), so a job compiles only its update rule and init. A learned optimizer's programs are
    shared too, by the jobs whose optimizers differ in weights only
    (:func:`_optimizer_identity`). With ``vmap`` every program is batched over the runs;
    otherwise one single-run copy of each is reused run after run. `job_programs` (one dict
    per job) keeps the job's own compiled programs by chunk size, so equal chunks compile once.

    Returns ``(train (R, T+1), evals (R, E, splits), compile s, run s, programs)``.
    """
    R = starts.order.shape[0]
    wrap = (lambda f, axes: jax.vmap(f, in_axes=axes)) if vmap else (lambda f, axes: f)

    def steps(data, consts, state, i):
        return prog.train_steps(data, consts, state, i, block, unroll=unroll)

    f_init = wrap(prog.init, (None, 0, 0))
    f_steps = wrap(steps, (None, 0, 0, None))
    f_grad = wrap(prog.gradient, (None, 0, 0, 0, 0, None))
    f_update = wrap(prog.update, (None, 0, 0, 0, 0, 0))
    f_eval = wrap(prog.eval_loss, (None, 0, 0, 0, None, None))
    f_last = wrap(prog.last_loss, (None, 0, 0, 0, 0))
    sched = prog.schedule()
    # every step index as a device scalar, made once: no conversion per step in the loops below
    idx = [jax.device_put(np.int32(i)) for i in range(max(prog.T, int(sched[:, 1].max())) + 1)]
    i0 = idx[0]
    plain = {k: v for k, v in data.items() if k != META_KEY}  # what the shared programs read

    def compile_job(hp, st):
        size = R if vmap else 1
        if job_programs is not None and size in job_programs:
            return job_programs[size], 0.0
        programs, seconds = _compile_job(hp, st)
        if job_programs is not None:
            job_programs[size] = programs
        return programs, seconds

    def _compile_job(hp, st):
        ident = (id(prog.task), prog.T, vmap, R if vmap else 1, opt_level)
        own = _optimizer_identity(prog.make_optimizer, hp, data.get(META_KEY))

        def job_own(kind: str, build):  # shared with every job of an identical optimizer program
            return build() if own is None else _shared((kind, *ident, *own), build)

        ci, a = job_own("init", lambda: _timed_compile(f_init, data, hp, st, opt_level=opt_level))
        state0, consts0 = ci(data, hp, st)
        evaluation = (("eval", *ident), lambda: _timed_compile(
            f_eval, plain, consts0.eval_key, state0.params, state0.model_state, i0, i0, opt_level=opt_level))
        if split:
            (ce, c), (cg, b1) = _shared_many([evaluation, (("grad", *ident), lambda: _timed_compile(
                f_grad, plain, consts0.order, consts0.step_key, state0.params, state0.model_state, i0,
                opt_level=opt_level))])
            loss0, grads0, _ = cg.out_info  # shapes of the gradient's outputs: no second trace
            cu, b2 = job_own("update", lambda: _timed_compile(
                f_update, data, consts0.hparams, grads0, state0.opt_state, state0.params, loss0,
                opt_level=opt_level))
            return (ci, (cg, cu), ce, None), a + b1 + b2 + c
        cs, b = job_own("steps", lambda: _timed_compile(f_steps, data, consts0, state0, i0, opt_level=opt_level))
        (ce, c), (cl, d) = _shared_many([evaluation, (("last", *ident), lambda: _timed_compile(
            f_last, plain, consts0.order, consts0.step_key, state0.params, state0.model_state,
            opt_level=opt_level))])
        return (ci, cs, ce, cl), a + b + c + d

    def run_one(hp, st, compiled):
        ci, cs, ce, cl = compiled
        t0 = time.perf_counter()
        state, consts = ci(data, hp, st)
        evs, losses = [], []
        for step, chunk, trains in sched:
            evs.append(ce(plain, consts.eval_key, state.params, state.model_state, idx[step], idx[chunk]))
            row = []
            if trains and split:
                cg, cu = cs
                step_losses = []
                for i in range(step, step + prog.every):
                    loss, grads, model_state = cg(plain, consts.order, consts.step_key, state.params,
                                                  state.model_state, idx[i])
                    params, opt_state = cu(data, consts.hparams, grads, state.opt_state, state.params, loss)
                    state = RunState(params, model_state, opt_state)
                    step_losses.append(loss)
                row.append(jnp.stack(step_losses, axis=-1))  # one op per block, not one per step
            elif trains:
                for i in range(step, step + prog.every, block):
                    state, loss = cs(data, consts, state, idx[i])
                    row.append(loss)
            losses.append(row)
        if split:  # the loss of step T from the shared gradient program: no program of its own
            last = cs[0](plain, consts.order, consts.step_key, state.params, state.model_state, idx[prog.T])[0]
        else:
            last = cl(plain, consts.order, consts.step_key, state.params, state.model_state)
        last = jax.block_until_ready(last)
        ax = 1 if vmap else 0
        ev = np.stack([np.asarray(e) for e in evs], axis=ax)
        tr = np.stack([np.concatenate([np.asarray(x) for x in r], axis=-1) if r else
                       np.zeros(np.shape(last) + (prog.every,), np.float32) for r in losses], axis=ax)
        return (ev, tr, np.asarray(last)), time.perf_counter() - t0

    n_programs = ENGINE_PROGRAMS_PER_CHUNK  # init + steps + evaluation + final loss, or init + update + gradient + evaluation
    if vmap:
        compiled, c = compile_job(hparams, starts)
        raw, r = run_one(hparams, starts, compiled)
        return (*prog.assemble(*raw), c, r, n_programs)
    compiled, c_total = compile_job(_take(hparams, 0), _take(starts, 0))
    raws, r_total = [], 0.0
    for r in range(R):
        raw, t = run_one(_take(hparams, r), _take(starts, r), compiled)
        raws.append(raw)
        r_total += t
    stacked = [np.stack([x[k] for x in raws]) for k in range(3)]
    return (*prog.assemble(*stacked), c_total, r_total, n_programs)


def _bytes_per_run(task: Task, num_steps: int) -> int:
    """Rough device memory of one run (:func:`celo_bench.engine.memory.bytes_per_run`): params,
    optimizer state, grads, activations, the outputs of one evaluation pass (the logits of a
    language model dominate) and the data order."""
    params, _ = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    n_params = int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
    example = int(sum(np.prod(a.shape[1:]) * 4 for a in task.dataset.splits["train"].values()))
    spec = task.spec
    return bytes_per_run(
        n_params, example, batch_size=spec.batch_size, eval_batches=spec.eval_batches,
        last_eval_batches=spec.last_eval_batches, num_steps=num_steps,
        output_bytes=output_bytes(task.dataset.info, spec.family),
    )


def run_job(
    task: Task,
    make_optimizer: OptimizerBuilder | BareBuilder,
    hparams: Mapping[str, np.ndarray],
    seeds: np.ndarray,
    *,
    num_steps: int,
    strategy: Strategy,
    memory_budget: int | None = None,
    max_runs_per_program: int | None = None,
) -> JobResult:
    """Train ``R = len(seeds)`` runs of `task`; run ``r`` uses ``hparams[k][r]`` and ``seeds[r]``.

    Args:
      task: the task (model, data, eval cadence).
      make_optimizer: builds the optimizer from a dict of (traced) hyper-parameters: an
        :class:`~celo_bench.task.OptimizerBuilder` (its meta-parameters become a program
        input; its program key lets jobs share programs) or a bare function.
      hparams: hyper-parameter name -> array of shape ``(R,)``.
      seeds: integer array of shape ``(R,)``.
      num_steps: horizon ``T`` (multiple of the task's ``eval_every``).
      strategy: how to compile (see :mod:`celo_bench.strategy`).
      memory_budget: bytes per program (None: a fraction of the device's memory,
        :func:`celo_bench.engine.memory.device_memory_budget`); jobs whose runs exceed it
        are split into chunks, and a chunk that runs out of memory is retried with half
        as many runs.
      max_runs_per_program: optional hard cap on runs per compiled program.

    Returns:
      A :class:`JobResult` with curves in input order.
    """
    if num_steps % task.spec.eval_every:
        raise ValueError(f"num_steps={num_steps} is not a multiple of eval_every={task.spec.eval_every}")
    seeds = np.asarray(seeds, dtype=np.uint32)
    R = seeds.shape[0]
    hp = {k: np.asarray(v, dtype=np.float32).reshape(R) for k, v in hparams.items()}
    prog = _Program(task, make_optimizer, num_steps)
    data = {s: dict(task.dataset.splits[s]) for s in ("train", *EVAL_SPLITS[1:])}
    meta = prog.make_optimizer.meta_params
    if meta is not None:
        data[META_KEY] = meta
    data = jax.device_put(data)
    budget = memory_budget if memory_budget is not None else device_memory_budget()
    chunk = max(1, budget // max(1, _bytes_per_run(task, num_steps)))
    if max_runs_per_program:
        chunk = min(chunk, max_runs_per_program)
    vmap = strategy.runs == "vmap"
    starts, start_compile = _starts(prog, seeds)
    level = strategy.xla_opt_level
    if strategy.steps in ("scan", "split"):  # a block: the steps between two evaluations, one scan
        block, unroll = prog.every, False
    else:  # a block of `block_size` steps (1: no loop at all, fast for convolutions on CPU)
        block, unroll = math.gcd(strategy.block_size, prog.every), True

    job_programs: dict = {}

    def train_chunk(lo: int, hi: int):
        sl = slice(lo, hi)
        hp_c = {k: jnp.asarray(v[sl]) for k, v in hp.items()}
        st_c = jax.tree_util.tree_map(lambda a: jnp.asarray(a[sl]), starts)
        return _run_blocks(prog, data, hp_c, st_c, vmap, block, unroll, level, split=strategy.steps == "split",
                           job_programs=job_programs)

    # a chunk that runs out of device memory is retried with half as many runs
    parts, _ = run_chunked(train_chunk, R, chunk)
    trains = [p[0] for p in parts]
    evalss = [p[1] for p in parts]
    compile_s = start_compile + sum(p[2] for p in parts)
    run_s = sum(p[3] for p in parts)
    programs = sum(p[4] for p in parts)
    train = np.concatenate(trains).astype(np.float32)
    evals = np.concatenate(evalss).astype(np.float32)  # (R, E, splits)
    eval_steps = np.arange(0, num_steps + 1, task.spec.eval_every)
    return JobResult(
        train_loss=train,
        eval_steps=eval_steps,
        eval_loss={s: evals[:, :, j] for j, s in enumerate(EVAL_SPLITS)},
        compile_seconds=compile_s,
        run_seconds=run_s,
        strategy=strategy.label,
        programs=programs,
    )
