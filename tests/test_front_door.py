"""The main job's front door: shipped weights, the not-run summary, progress, clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from celo_bench import inputs, plan, weights
from celo_bench.optimizers import checkpoint as ck
from celo_bench.optimizers import factory
from celo_bench.suite import load_registry

REPO = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = REPO.parent / "shared" / "weights"
PUBLISHED = ("celo", "celo_adam")


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "celo_bench.cli", *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=timeout)


@pytest.fixture
def no_sockets(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*a, **k):
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_published_weights_match_spec_notice_and_source(name):
    spec = load_registry().optimizer(name)
    path = weights.packaged(name)
    assert path is not None, f"{name} is not shipped as package data"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha == spec.checkpoint["sha256"]
    notice = (path.parent / "NOTICE.md").read_text()  # beside the file it describes
    assert sha in notice and "66d976116f39" in notice and "MIT License" in notice
    assert "Permission is hereby granted, free of charge" in notice
    if (SHARED_WEIGHTS / name / "theta.state").is_file():  # byte-identical to the published copy
        assert path.read_bytes() == (SHARED_WEIGHTS / name / "theta.state").read_bytes()


@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_weights_load_offline_with_no_checkpoint_folder(name, monkeypatch, no_sockets):
    monkeypatch.delenv(ck.ENV_FOLDER, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_registry().optimizer(name)
    found = weights.locate(spec)
    assert found.origin == "package"
    theta = ck.load_for_spec(spec)
    n = sum(np.size(v) for v in ck.flatten(theta).values())
    assert n == {"celo": 37089, "celo_adam": 36865}[name]


def test_source_order_explicit_then_env_then_package(tmp_path, monkeypatch, no_sockets):
    spec = load_registry().optimizer("celo")
    shipped = weights.packaged("celo")
    (tmp_path / "celo").mkdir()
    (tmp_path / "celo" / "theta.state").write_bytes(shipped.read_bytes())
    monkeypatch.setenv(ck.ENV_FOLDER, str(tmp_path))
    assert weights.locate(spec).origin == "env"
    assert weights.locate(spec, shipped).origin == "explicit"
    monkeypatch.setenv(ck.ENV_FOLDER, str(tmp_path / "empty"))
    assert weights.locate(spec).origin == "package"


def test_env_copy_of_published_weights_must_match_their_sha256(tmp_path, monkeypatch):
    spec = load_registry().optimizer("celo")
    other = factory("celo").init_meta_params
    import jax

    ck.write(tmp_path / "celo" / "theta.state", jax.tree_util.tree_map(np.asarray, other(jax.random.PRNGKey(1))))
    monkeypatch.setenv(ck.ENV_FOLDER, str(tmp_path))
    inputs.clear()
    w = inputs.weights_input(spec)
    assert w.sha256 is None and "sha256" in w.unavailable


def _keys(jobs, optimizer):
    return sorted(r.key for j in jobs if j.optimizer.name == optimizer for r in j.runs)


def test_run_keys_follow_the_weights_actually_loaded(tmp_path, monkeypatch):
    """Replacing a made-here optimizer's weights with others of the same tree changes its keys."""
    import jax

    reg = load_registry()
    suite = reg.suite("quick")
    init = factory("celo").init_meta_params
    monkeypatch.setenv(ck.ENV_FOLDER, str(tmp_path))
    keys, prov = [], []
    for seed in (1, 2, 1):
        theta = jax.tree_util.tree_map(np.asarray, init(jax.random.PRNGKey(seed)))
        ck.write(tmp_path / "celo_cpu_diet" / "theta.state", theta)
        inputs.clear()
        jobs = plan.expand(reg, suite, tasks=["quick_fmnist_mlp"], optimizers=["celo_cpu_diet", "adam"])
        keys.append(_keys(jobs, "celo_cpu_diet"))
        prov.append(jobs[0].provenance["weights_sha256"])
        assert _keys(jobs, "adam")  # hand-crafted keys do not depend on any weights
    assert keys[0] != keys[1] and keys[0] == keys[2]
    assert prov[0] == hashlib.sha256((tmp_path / "celo_cpu_diet" / "theta.state").read_bytes()).hexdigest()
    inputs.clear()


def test_run_keys_follow_the_data_content(monkeypatch):
    from celo_bench import data

    reg = load_registry()
    suite = reg.suite("smoke")
    inputs.clear()
    before = _keys(plan.expand(reg, suite, optimizers=["sgd"]), "sgd")
    real = data.LOADERS["digits"]

    def shifted(**options):
        ds = real(**options)
        ds.splits["train"]["label"] = (ds.splits["train"]["label"] + 1) % 10
        return ds

    monkeypatch.setitem(data.LOADERS, "digits", shifted)
    inputs.clear()
    after = _keys(plan.expand(reg, suite, optimizers=["sgd"]), "sgd")
    assert before != after
    inputs.clear()


def test_run_keys_follow_execution_choices():
    reg = load_registry()
    suite = reg.suite("smoke")
    a = _keys(plan.expand(reg, suite, optimizers=["sgd"], backend="cpu"), "sgd")
    b = _keys(plan.expand(reg, suite, optimizers=["sgd"], backend="cpu",
                          strategy_overrides={"xla_opt_level": 0}), "sgd")
    c = _keys(plan.expand(reg, suite, optimizers=["sgd"], backend="cpu",
                          strategy_overrides={"runs": "sequential"}), "sgd")
    assert len({tuple(a), tuple(b), tuple(c)}) == 3
    # naming the default is no override: the stored runs stay found by status, score and report
    same = _keys(plan.expand(reg, suite, optimizers=["sgd"], backend="cpu",
                             strategy_overrides={"steps": "split", "runs": "vmap"}), "sgd")
    assert same == a
    conv = reg.suite("quick")
    default = _keys(plan.expand(reg, conv, tasks=["quick_fmnist_conv"], optimizers=["sgd"], backend="cpu"), "sgd")
    named = _keys(plan.expand(reg, conv, tasks=["quick_fmnist_conv"], optimizers=["sgd"], backend="cpu",
                              strategy_overrides={"runs": "sequential"}), "sgd")
    assert named == default  # convnets run their runs in sequence on a CPU by default


def test_status_lists_what_did_not_run_with_reason_and_fix(tmp_path):
    res = _cli("status", "--suite", "quick", "--results", str(tmp_path / "r"), "--format", "json",
               env={ck.ENV_FOLDER: str(tmp_path / "none")})
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert "velo_4000" in st["not_run"] and "nn_adam" in st["not_run"]
    assert "celo" not in st["not_run"] and "celo_adam" not in st["not_run"]
    seeds_times_tasks = 3 * len(load_registry().suite("quick").tasks)  # learned optimizers are not tuned
    assert st["not_run_runs"] == seeds_times_tasks * len(st["not_run"])
    groups = st["not_run_groups"]
    assert sum(len(g["optimizers"]) for g in groups) == len(st["not_run"])
    assert len(groups) < len(st["not_run"])  # one line per reason, not per optimizer
    for g in groups:
        assert g["reason"] and g["fix"]
    offline = next(g for g in groups if "velo_4000" in g["optimizers"])
    assert "offline" in offline["reason"] and "CELO_BENCH_CHECKPOINTS" in offline["fix"]
    text = _cli("status", "--suite", "quick", "--results", str(tmp_path / "r"),
                env={ck.ENV_FOLDER: str(tmp_path / "none")})
    lines = [ln for ln in text.stderr.splitlines() if ln.startswith("not run:")]
    assert len(lines) == len(groups) and "Traceback" not in text.stderr


def test_each_suite_reports_into_its_own_folder_by_default(tmp_path):
    """Without --out a suite's report goes to reports/<suite>: a smoke run (or a submission to
    another suite) never replaces the quick tier's report, and the lock stays inside reports/."""
    quick = tmp_path / "reports" / "quick"
    quick.mkdir(parents=True)
    (quick / "leaderboard.md").write_text("the quick tier's report")
    res = _cli("run", "--suite", "smoke", "--tasks", "smoke_digits_mlp", "--optimizers", "sgd,adam",
               "--steps", "20", "--seeds", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "reports" / "smoke" / "leaderboard.md").is_file()
    assert (quick / "leaderboard.md").read_text() == "the quick tier's report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports", "results"]  # no lock file beside them
    assert f"report: {Path('reports') / 'smoke'}" in res.stdout


@pytest.mark.parametrize("selection,message", [
    (["--tasks", "smoke_digits_mlpp"], "Did you mean 'smoke_digits_mlp'"),
    (["--tasks", "quick_fmnist_mlp"], "is not in suite 'smoke'"),
    (["--optimizers", "adamm"], "Did you mean 'adam'"),
    (["--optimizers", ","], "--optimizers names nothing"),
])
def test_a_bad_selection_is_one_line_and_creates_nothing(tmp_path, selection, message):
    res = _cli("run", "--suite", "smoke", *selection, "--results", str(tmp_path / "r"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1
    assert sorted(tmp_path.iterdir()) == []


def test_status_counts_a_grid_run_with_other_steps_and_seeds(tmp_path):
    args = ["--suite", "smoke", "--tasks", "smoke_digits_mlp", "--steps", "10", "--seeds", "1",
            "--results", str(tmp_path / "r")]
    assert _cli("run", *args, "--no-report").returncode == 0
    same = _cli("status", "--suite", "smoke", "--results", str(tmp_path / "r"), "--steps", "10", "--seeds", "1",
                "--format", "json")
    assert same.returncode == 0, same.stderr
    st = json.loads(same.stdout)
    assert st["tasks"]["smoke_digits_mlp"]["done"] == st["tasks"]["smoke_digits_mlp"]["total"] > 0
    default = json.loads(_cli("status", "--suite", "smoke", "--results", str(tmp_path / "r"), "--format", "json").stdout)
    assert default["done"] == 0  # the suite's own horizon and seeds: none of those runs is stored


def test_progress_lines_without_a_terminal(tmp_path):
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / ".gitkeep").touch()  # the placeholder a checkout's reports/ may hold
    res = _cli("run", "--suite", "smoke", "--tasks", "smoke_digits_mlp", "--optimizers", "sgd,adam",
               "--steps", "20", "--seeds", "1", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    reg = load_registry()
    n = len(_keys(plan.expand(reg, reg.suite("smoke"), tasks=["smoke_digits_mlp"], optimizers=["sgd", "adam"],
                              seeds=1, steps=20), "sgd")) * 2
    err = res.stderr
    assert f"grid: 2 jobs, {n} runs to execute, 0 already stored" in err
    assert "[1/2 jobs | " in err and f"[2/2 jobs | {n}/{n} runs | " in err and "ETA" in err
    assert "compile" in err and "execution" in res.stdout
    assert (tmp_path / "rep" / "leaderboard.md").is_file() and "report skipped" not in err
    # the outcome goes to stdout (`celo-bench run > log` keeps it); every line also to a log file
    assert res.stdout.startswith(f"done: executed {n}, already stored 0") and "compile" in res.stdout
    logs = sorted((tmp_path / "r" / ".logs").glob("run-smoke-*.log"))
    assert len(logs) == 1 and f"log: {logs[0]}" in res.stdout
    log = logs[0].read_text()
    assert f"grid: 2 jobs, {n} runs to execute" in log and f"[2/2 jobs | {n}/{n} runs | " in log
    assert f"done: executed {n}" in log
    again = _cli("run", "--suite", "smoke", "--tasks", "smoke_digits_mlp", "--optimizers", "sgd,adam",
                 "--steps", "20", "--seeds", "1", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "rep"))
    assert "report current" in again.stderr and "executed 0" in again.stdout


def _interrupt(args: list[str], when) -> tuple[int, str]:
    """Start ``celo-bench ARGS``, send SIGINT once `when(stderr line)` holds; (exit code, stderr)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celo_bench.cli", *args],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        # a test run started in the background of a script inherits SIGINT ignored: undo that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if when(line) or not line:
            break
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    return proc.returncode, seen + rest + out


def test_ctrl_c_says_how_many_runs_are_stored_and_how_to_resume(tmp_path):
    # interrupt once the first job is stored, mid-grid
    code, err = _interrupt(["run", "--suite", "smoke", "--steps", "3000", "--results", str(tmp_path / "r"),
                            "--no-report"], lambda line: line.startswith("[1/"))
    assert code == 130, err
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1]
    assert tail.startswith("interrupted: ") and "re-run the same command to resume" in tail
    assert "Traceback" not in err and "done:" not in err  # stopped mid-grid, not after it


def test_ctrl_c_while_a_command_compiles_is_one_line_not_a_crash(tmp_path):
    # meta-train compiles in the main thread; JAX crashed at exit after such an interrupt (code 139)
    code, err = _interrupt(["meta-train", "celo", "--preset", "smoke", "--out", str(tmp_path / "mt")],
                           lambda line: "first step compiles" in line)
    assert code == 130, err
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1]
    assert tail.startswith("interrupted: ") and "re-run the same command" in tail
    assert "Traceback" not in err and "Aborted" not in err


@pytest.mark.parametrize("flag", ["--results", "--out"])
def test_unwritable_folder_is_one_line_and_nothing_runs(tmp_path, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = {"--results": str(tmp_path / "r"), "--out": str(tmp_path / "rep")}
    args[flag] = str(blocker / "sub")
    res = _cli("run", "--suite", "smoke", "--steps", "10", "--results", args["--results"], "--out", args["--out"])
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(blocker / "sub") in lines[0]
    assert f"{blocker} is a file" in lines[0]  # what blocks it, not "File exists" or "Not a directory"
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.parquet"))


@pytest.mark.parametrize("args", [
    ["bench", "grid", "--suite", "smoke", "--steps", "10", "--seeds", "1"],
    ["report", "--suite", "smoke"],
])
def test_other_output_folders_name_what_blocks_them_before_any_work(tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = _cli(*args, "--results", str(tmp_path / "r"), "--out", str(blocker / "sub"), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{blocker} is a file" in lines[0], res.stderr
    assert "job 1" not in res.stderr and "Traceback" not in res.stderr


def test_run_keys_do_not_depend_on_the_device_a_store_is_read_from():
    """A store made on a GPU (default scan+vmap) is found by a laptop (default loop for convnets)."""
    reg = load_registry()
    suite = reg.suite("quick")
    cpu = plan.expand(reg, suite, tasks=["quick_fmnist_conv"], optimizers=["adam"], backend="cpu")
    gpu = plan.expand(reg, suite, tasks=["quick_fmnist_conv"], optimizers=["adam"], backend="gpu")
    assert cpu[0].strategy != gpu[0].strategy
    assert _keys(cpu, "adam") == _keys(gpu, "adam")


def test_paper_task_keys_are_the_same_with_or_without_the_data(monkeypatch):
    from celo_bench.data import sources

    reg = load_registry()
    suite = reg.suite("paper")
    inputs.clear()
    here = plan.expand(reg, suite, tasks=["ImageMLP_FashionMnist_Relu128x128"], optimizers=["sgd"])
    monkeypatch.setattr(sources, "find_local", lambda *a, **k: None)
    inputs.clear()
    elsewhere = plan.expand(reg, suite, tasks=["ImageMLP_FashionMnist_Relu128x128"], optimizers=["sgd"])
    assert _keys(here, "sgd") == _keys(elsewhere, "sgd")
    inputs.clear()


CPU_DIET = ("celo_cpu_diet", "rnn_mlp_lopt_cpu_diet", "adafac_mlp_lopt_cpu_diet", "velo_s_cpu_diet")


@pytest.mark.parametrize("name", CPU_DIET)
def test_shipped_cpu_diet_weights_sit_beside_a_card_that_remakes_them(name, monkeypatch, no_sockets):
    monkeypatch.delenv(ck.ENV_FOLDER, raising=False)
    spec = load_registry().optimizer(name)
    path = weights.packaged(name)
    assert path is not None, f"{name} is not shipped as package data"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    card = json.loads((path.parent / "card.json").read_text())
    assert sha == spec.checkpoint["sha256"] == card["sha256"]
    assert card["command"].startswith(f"celo-bench meta-train {spec.factory} ") and "--seed 0" in card["command"]
    assert card["preset"] == "cpu" and card["seed"] == 0
    for key in ("outer_step", "chosen_step", "wall_seconds", "device"):
        assert card[key], key
    assert card["provenance"]["git_commit"]
    assert spec.checkpoint["make"].startswith(card["command"])
    assert "Remake" in (path.parent / "card.md").read_text()
    assert spec.kind_label == "learned · meta-trained here (cpu diet)"
    assert weights.locate(spec).origin == "package"
    theta = ck.load_for_spec(spec)  # the tree of its architecture, from the package, offline
    assert all(np.all(np.isfinite(v)) for v in ck.flatten(theta).values())


def test_published_and_made_here_labels():
    reg = load_registry()
    assert reg.optimizer("celo").kind_label == "learned · published"
    assert reg.optimizer("celo_cpu_diet").kind_label == "learned · meta-trained here (cpu diet)"


def test_every_shipped_checkpoint_sits_beside_its_notice_or_card():
    root = weights.packaged("celo").parents[1]
    shipped = sorted(p.parent for p in root.rglob("theta.state"))
    assert {p.name for p in shipped} >= set(PUBLISHED) | set(CPU_DIET)
    for folder in shipped:
        sha = hashlib.sha256((folder / "theta.state").read_bytes()).hexdigest()
        texts = [(folder / n).read_text() for n in ("NOTICE.md", "card.md") if (folder / n).is_file()]
        assert texts and any(sha in t for t in texts), folder.name


def test_eta_weighs_the_jobs_left_by_the_cost_of_their_kind():
    """Learned optimizers run first and compile longest: the ETA must not project their pace
    onto the cheap jobs left, as a runs-based ETA did (1 h 34 m shown for a 10-minute grid)."""
    from types import SimpleNamespace

    from rich.console import Console

    from celo_bench.cli._progress import GridProgress

    def job(kind, runs):
        return SimpleNamespace(optimizer=SimpleNamespace(kind=kind), runs=[0] * runs, name="t x o")

    def record(compile_s, run_s):
        return {"compile_seconds": compile_s, "run_seconds": run_s, "status": "ok"}

    learned = [job("learned", 3) for _ in range(2)]
    cheap = [job("handcrafted", 21) for _ in range(8)]
    p = GridProgress(Console(file=io.StringIO()), quiet=True)
    p.start(learned + cheap)
    for j in learned:
        p.job_done(j, [record(9.0, 1.0)] * 3)
    # no cheap job finished yet: each is expected to cost what the finished ones did (10 s)
    assert p.eta(20.0) == pytest.approx(20.0 * 8 * 10.0 / 20.0)
    p.job_done(cheap[0], [record(1.0, 1.0)] * 21)
    # now the 7 cheap jobs left cost 2 s each: 20 s of the 22 s done took 22 s of wall time
    assert p.eta(22.0) == pytest.approx(22.0 * 7 * 2.0 / 22.0)
    assert p.runs_done == 6 + 21
