"""``celo-bench plan``: counts against an independent calculation from the TOML specs, missing
data and weights with their commands, storage, chunking and the OOM-retry helper."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from celo_bench import inputs, plan, pricing
from celo_bench.engine import memory
from celo_bench.pricing import TaskSize
from celo_bench.suite import load_registry

REPO = Path(__file__).resolve().parents[1]


def _toml(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def independent_counts(suite: str) -> dict[str, int]:
    """Runs and jobs of a suite computed from the TOML files alone (not via celo_bench)."""
    manifest = _toml(REPO / "tasks" / "suites" / f"{suite}.toml")
    seeds = manifest.get("seeds", 3)
    runs = {"handcrafted": 0, "learned": 0}
    for opt in manifest["optimizers"]:
        path = REPO / "baselines" / f"{opt}.toml"
        spec = _toml(path if path.is_file() else REPO / "baselines" / "extra" / f"{opt}.toml")
        grid = manifest.get("grids", {}).get(opt) or spec.get("grid", {})
        points = math.prod(len(v) for v in grid.values()) if grid else 1
        kind = "learned" if spec.get("kind") == "learned" else "handcrafted"
        runs[kind] += points * seeds * len(manifest["tasks"])
    return {"tasks": len(manifest["tasks"]), "jobs": len(manifest["tasks"]) * len(manifest["optimizers"]),
            "runs_handcrafted": runs["handcrafted"], "runs_learned": runs["learned"],
            "runs": runs["handcrafted"] + runs["learned"]}


@pytest.fixture(scope="module")
def reg():
    return load_registry()


@pytest.fixture
def fresh_inputs():
    """Data and weights fingerprints are memoised per process: forget them around a test."""
    inputs.clear()
    yield
    inputs.clear()


def test_paper_counts_match_the_specs(reg, tmp_path):
    want = independent_counts("paper")
    assert want["runs"] == 5865 and want["tasks"] == 17  # 17 x (15 x 7 x 3 + 10 x 3)
    assert want["runs_handcrafted"] == 17 * 15 * 7 * 3 and want["runs_learned"] == 17 * 10 * 3
    p = pricing.price(reg, "paper", results=tmp_path, backend="gpu")
    got = p.counts
    assert {k: got[k] for k in want} == want
    assert got["task_steps"] == 5865 * 2000
    assert got["runs_to_do"] == 5865 and p.stored["stored"] == 0
    # On a GPU every job is one scan + vmap chunk when it fits: its init and its block of steps.
    assert p.by_strategy() == {"scan+vmap": {"jobs": 425, "chunks": 425, "programs": 850, "runs": 5865}}
    # Per task: the start program, and evaluation + final loss for 21-run and 3-run chunks.
    assert got["shared_programs"] == 17 * (1 + 2 * 2) and got["programs"] == 850 + 85


def test_restricted_grid_counts(reg, tmp_path):
    p = pricing.price(reg, "paper", tasks=["Conv_Cifar10_32x64x64"], optimizers=["adam", "celo"], seeds=2,
                      steps=100, results=tmp_path, backend="gpu")
    assert p.counts["runs"] == 7 * 2 + 2 and p.counts["jobs"] == 2
    assert p.counts["task_steps"] == 16 * 100


def test_programs_follow_strategy_and_memory(reg, tmp_path):
    """2 programs per chunk; chunks = ceil(runs / (budget // bytes per run)); CPU jobs are split."""
    sizes = {"Conv_Cifar10_32x64x64": TaskSize(1, 1, 100), "ImageMLP_FashionMnist_Relu128x128": TaskSize(1, 1, 100)}
    p = pricing.price(reg, "paper", tasks=list(sizes), optimizers=["adam", "celo"], results=tmp_path,
                      backend="cpu", memory_budget=250, sizes=sizes)
    jobs = {(j.task, j.optimizer): j for j in p.jobs}
    conv_adam = jobs[("Conv_Cifar10_32x64x64", "adam")]
    assert (conv_adam.strategy.split("@")[0], conv_adam.runs_per_program, conv_adam.chunks) == ("split+sequential", 2, 11)
    assert conv_adam.programs == 22  # 11 chunks x (init + update)
    mlp_adam = jobs[("ImageMLP_FashionMnist_Relu128x128", "adam")]
    assert mlp_adam.strategy.startswith("split+vmap") and (mlp_adam.chunks, mlp_adam.programs) == (11, 22)
    assert jobs[("ImageMLP_FashionMnist_Relu128x128", "celo")].chunks == 2  # 3 runs, 2 per program
    # Shared: conv (sequential) 1 start + 2 (evaluation, gradient, which also gives the final
    # loss); mlp (vmap, chunks of 2 and 1 runs) 1 + 2 x 2.
    assert p.shared_programs() == 3 + 5
    on_gpu = pricing.price(reg, "paper", tasks=list(sizes), optimizers=["adam"], results=tmp_path, backend="gpu",
                           memory_budget=10**6, sizes=sizes)
    assert [j.programs for j in on_gpu.jobs] == [2, 2]


def test_store_size_per_record():
    # (T + 1) float32 train losses + 3 eval curves of T / eval_every + 1 float32 + 2 KB.
    assert pricing.record_bytes(2000, 10) == 4 * 2001 + 3 * 4 * 201 + 2048 == 12_464


def test_stored_runs_are_counted(reg, tmp_path, monkeypatch):
    jobs = plan.expand(reg, reg.suite("smoke"), optimizers=["adam"])
    keys = [r.key for j in jobs for r in j.runs]
    statuses = {keys[0]: "ok", keys[1]: "diverged", keys[2]: "failed", "not-in-this-grid": "ok"}

    class FakeStore:
        def __init__(self, root):
            self.root = Path(root)

        def statuses(self):
            return statuses

        def scan(self):
            return type("Scan", (), {"paths": {}})()

    monkeypatch.setattr(pricing, "Store", FakeStore)
    p = pricing.price(reg, "smoke", optimizers=["adam"], results=tmp_path)
    assert p.stored == {"total": len(keys), "stored": 3, "missing": len(keys) - 3, "ok": 1, "diverged": 1, "failed": 1}
    assert p.counts["runs_to_do"] == len(keys) - 3


def test_missing_datasets_name_their_commands(reg, tmp_path, monkeypatch, fresh_inputs):
    monkeypatch.setenv("CELO_BENCH_DATA", str(tmp_path / "empty-cache"))
    inputs.clear()
    p = pricing.price(reg, "paper", results=tmp_path)
    rows = {d["dataset"]: d for d in p.datasets}
    assert set(rows) == {"fashion_mnist", "mnist", "cifar10", "cifar100", "lm1b_32k", "wikipedia_en_32k"}
    for name in ("mnist", "cifar10", "cifar100", "lm1b_32k", "wikipedia_en_32k"):
        assert not rows[name]["present"], name
        assert rows[name]["command"] == f"celo-bench data prepare {name}"
        assert rows[name]["download"]
    assert sorted(rows["lm1b_32k"]["tasks"]) == sorted(
        n for n in reg.suite("paper").tasks if reg.task(n).dataset == "lm1b_32k")
    assert {o.get("seq_len") for o in rows["lm1b_32k"]["options"]} == {8, 32}
    synth = pricing.price(reg, "paper", results=tmp_path, data="synthetic")
    assert all(d["present"] and d["dataset"].startswith("synthetic:") for d in synth.datasets)
    assert synth.suite_label == "paper@synthetic"


def test_missing_weights_name_their_commands(reg, tmp_path, monkeypatch, fresh_inputs):
    monkeypatch.setenv("CELO_BENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.delenv("CELO_BENCH_CHECKPOINTS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    inputs.clear()
    p = pricing.price(reg, "paper", tasks=["ImageMLP_FashionMnist_Relu128x128"], results=tmp_path)
    rows = {c["optimizer"]: c for c in p.checkpoints}
    assert set(rows) == {n for n in reg.suite("paper").optimizers if reg.optimizer(n).kind == "learned"}
    assert rows["celo_cpu_diet"]["present"] and rows["celo"]["present"]  # shipped as package data
    velo = rows["velo_4000"]
    assert not velo["present"] and velo["command"] == "hf download amoudgl/velo-4000 theta.state"
    assert velo["runs"] == 3
    missing_runs = sum(c["runs"] for c in rows.values() if not c["present"])
    assert p.counts["runs_without_weights"] == missing_runs
    # a file that is there but wrong: its own reason and fix, not a download command
    (tmp_path / "ck" / "celo").mkdir(parents=True)
    (tmp_path / "ck" / "celo" / "theta.state").write_bytes(b"not the published weights")
    monkeypatch.setenv("CELO_BENCH_CHECKPOINTS", str(tmp_path / "ck"))
    inputs.clear()
    p = pricing.price(reg, "paper", tasks=["ImageMLP_FashionMnist_Relu128x128"], results=tmp_path)
    celo = next(c for c in p.checkpoints if c["optimizer"] == "celo")
    assert not celo["present"] and celo["command"] == ""
    assert "does not match" in celo["reason"] and "found through $CELO_BENCH_CHECKPOINTS" in celo["reason"]


def test_projection_arithmetic(reg, tmp_path):
    p = pricing.price(reg, "paper", tasks=["ImageMLP_FashionMnist_Relu128x128"], results=tmp_path,
                      backend="gpu")
    rates = {"ImageMLP_FashionMnist_Relu128x128": {"handcrafted": {"compile_s": 10.0, "run_step_s": 1e-3},
                                                   "learned": {"compile_s": 20.0, "run_step_s": 2e-3}}}
    proj = pricing.project(p, rates, skip_unavailable=False)
    # 15 hand-crafted jobs of 21 runs, 10 learned jobs of 3 runs, 2000 steps, one program each.
    want = 15 * (10 + 21 * 2000 * 1e-3) + 10 * (20 + 3 * 2000 * 2e-3)
    assert proj["seconds"] == pytest.approx(want)
    assert proj["device_hours"] == pytest.approx(want / 3600)
    missing = sum(not c["present"] for c in p.checkpoints)  # run skips them: so does the default
    assert pricing.project(p, rates)["seconds"] == pytest.approx(want - missing * (20 + 3 * 2000 * 2e-3))


def test_counting_imports_no_jax():
    code = ("import sys; from celo_bench import pricing; from celo_bench.suite import load_registry; "
            "p = pricing.price(load_registry(), 'paper', results='/nonexistent'); "
            "assert p.counts['runs'] == 5865; print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


def test_plan_cli_json_on_smoke(tmp_path):
    from typer.testing import CliRunner

    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["plan", "--suite", "smoke", "--results", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    want = independent_counts("smoke")
    assert {k: d["counts"][k] for k in want} == want
    assert {t["task"]: t["n_params"] for t in d["tasks"]} == {"smoke_digits_mlp": 64 * 32 + 32 + 32 * 10 + 10,
                                                              "smoke_digits_ae": 64 * 16 + 16 + 16 * 64 + 64}
    assert d["storage"]["bytes_per_record"] == pricing.record_bytes(50, 10)
    assert d["projection"] is None


def test_plan_cli_rejects_bad_data():
    from typer.testing import CliRunner

    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["plan", "--suite", "smoke", "--data", "fake"])
    assert res.exit_code != 0 and "--data must be one of real, synthetic" in str(res.exception or res.output)


# ---- memory: budget, chunking, OOM retries ---------------------------------------------------

def test_budget_follows_the_device():
    assert memory.budget_from_stats({"bytes_limit": 100 * 2**30}, "gpu") == int(0.7 * 100 * 2**30)
    assert memory.budget_from_stats(None, "cpu", host_bytes=8 * 2**30) == 2 * 2**30
    assert memory.budget_from_stats(None, "cpu", host_bytes=256 * 2**30) == 4 * 2**30  # capped
    assert memory.budget_from_stats({}, "gpu", host_bytes=8 * 2**30) == 2 * 2**30  # no stats: host rule
    assert 0 < memory.device_memory_budget() <= 4 * 2**30  # this CPU


def test_is_oom():
    class XlaRuntimeError(RuntimeError):
        pass

    assert memory.is_oom(XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.0GiB"))
    assert memory.is_oom(MemoryError())
    assert not memory.is_oom(ValueError("learning rate must be positive"))
    assert not memory.is_oom(FloatingPointError("nan"))


def test_run_chunked_halves_on_oom_and_keeps_order():
    calls = []

    def fn(lo, hi):
        calls.append((lo, hi))
        if hi - lo > 3:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory")
        return list(range(lo, hi))

    parts, log = memory.run_chunked(fn, 21, 21)
    assert list(itertools.chain.from_iterable(parts)) == list(range(21))
    assert log.chunk == 2 and [r[1] for r in log.retries] == [10, 5, 2]
    assert calls[:3] == [(0, 21), (0, 10), (0, 5)]
    assert all(hi - lo <= 2 for lo, hi in calls[3:])


def test_run_chunked_other_errors_and_single_run_oom():
    def boom(lo, hi):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        memory.run_chunked(boom, 4, 4)

    def always_oom(lo, hi):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")

    with pytest.raises(memory.DeviceOutOfMemoryError, match="one run does not fit"):
        memory.run_chunked(always_oom, 4, 4)


def test_bytes_per_run_matches_the_engine(reg):
    """The planner's estimate is the engine's (so planned chunks are the executed ones)."""
    from celo_bench.assembly import build_task
    from celo_bench.calibration import task_size
    from celo_bench.engine import _train

    spec = replace(reg.task("smoke_digits_mlp"), steps=50)
    size = task_size(spec)
    base = memory.bytes_per_run(size.n_params, size.example_bytes, batch_size=64, eval_batches=5,
                                last_eval_batches=10, num_steps=50)
    # Both add the outputs of one evaluation pass (3 splits x 5 batches x 3 copies).
    assert size.bytes_per_run == base + 3 * 3 * 5 * 64 * 4 * 10
    assert size.bytes_per_run == _train._bytes_per_run(build_task(spec), 50)


def test_language_model_logits_dominate_the_estimate_and_one_run_fits(reg):
    """32,100-way logits: evaluated one batch per pass, so one run fits a CPU's 4 GiB budget."""
    from celo_bench.calibration import task_size

    rnn = task_size(reg.task("RNNLM_lm1b32k_Patch32_LSTM256_Embed128"))
    one_batch = 128 * 32 * 32100 * 4  # 128 sequences x 32 tokens x vocab, float32
    assert memory.eval_group(15, 128, 32 * 32100 * 4) == 1
    assert 3 * one_batch < rnn.bytes_per_run < memory.HOST_CAP
    assert 3 * one_batch > rnn.bytes_per_run / 2  # the logits dominate (12.8M parameters: 0.6 GB)


def test_eval_group_fits_the_cap():
    assert memory.eval_group(15, 64, 40) == 15  # small classifier: one pass
    per_batch = 100 * 2**20
    assert memory.eval_group(15, 1, per_batch) == memory.EVAL_PASS_OUTPUT_CAP // per_batch == 5
    assert memory.eval_group(15, 1, memory.EVAL_PASS_OUTPUT_CAP + 1) == 1  # never 0


@pytest.mark.slow
def test_plan_cli_json_on_the_paper_suite(tmp_path, monkeypatch, fresh_inputs):
    """The issue's check: counts, and every missing dataset with the command that fetches it."""
    from typer.testing import CliRunner

    from celo_bench.cli import app

    monkeypatch.setenv("CELO_BENCH_DATA", str(tmp_path / "empty-cache"))
    inputs.clear()
    res = CliRunner().invoke(app, ["plan", "--suite", "paper", "--backend", "gpu", "--results",
                                   str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    want = independent_counts("paper")
    assert {k: d["counts"][k] for k in want} == want
    missing = {r["dataset"]: r["command"] for r in d["datasets"] if not r["present"]}
    assert {"mnist", "cifar10", "cifar100", "lm1b_32k", "wikipedia_en_32k"} <= set(missing)
    assert all(cmd == f"celo-bench data prepare {name}" for name, cmd in missing.items())
    rnn = next(t for t in d["tasks"] if t["task"] == "RNNLM_lm1b32k_Patch32_LSTM256_Embed128")
    assert rnn["n_params"] == 12_753_252
    # one evaluation batch per pass (2.2 GB per run): each job, Adam's 21 runs too, is one chunk on an H200
    jobs = [j for j in d["jobs"] if j["task"] == rnn["task"]]
    assert rnn["bytes_per_run"] < 3e9 and all(j["chunks"] == 1 for j in jobs)


@pytest.mark.slow
def test_plan_calibrate_projects_the_grid_from_timed_probes(tmp_path):
    """`plan --calibrate` times Adam and Celo per family and projects every task of the grid."""
    from typer.testing import CliRunner

    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["plan", "--suite", "smoke", "--calibrate", "--probe-steps", "10",
                                   "--probe-seeds", "1", "--results", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    proj = d["projection"]
    assert {(p["family"], p["optimizer"]) for p in proj["probes"]} >= {("image_mlp", "adam"), ("image_mlp", "celo")}
    assert all(p["compile_s"] > 0 and p["run_s"] > 0 and p["num_steps"] == 10 for p in proj["probes"])
    assert set(proj["tasks"]) == {"smoke_digits_mlp", "smoke_digits_ae"} and not proj["unprojected_tasks"]
    assert proj["seconds"] == pytest.approx(proj["compile_seconds"] + proj["train_seconds"])
    assert proj["seconds"] == pytest.approx(sum(proj["tasks"].values()), abs=0.1)  # per task: 0.1 s
    assert proj["hours"] == pytest.approx(proj["seconds"] / 3600) and proj["seconds"] > 0
    assert d["counts"]["runs"] == 2 * (3 + 3) * 2  # 2 tasks x (adam 3 + sgd 3 learning rates) x 2 seeds
