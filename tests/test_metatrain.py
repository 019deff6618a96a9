"""Meta-training: the PES estimator, its bookkeeping, augmentation, phases, resume and the CLI.

The estimator tests use a quadratic family with a closed-form objective: the inner
"optimizer" adds the meta-parameter ``v`` to the parameters at every step, so the loss
at episode step ``t`` is ``L_t(v) = 0.5 ||p0 + t v - c||^2``. It is quadratic in ``v``, so
the Gaussian-smoothed objective has exactly the gradient of the objective itself:
``d/dv L_t = t (p0 + t v - c)``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

from celo_bench.errors import CeloBenchError
from celo_bench.metatrain import phases
from celo_bench.metatrain.config import preset_config
from celo_bench.metatrain.pes import TruncatedPES, sample_horizon
from celo_bench.metatrain.tasks import TaskFamily, image_mlp_family, reparametrize

P0 = np.array([1.0, -2.0, 0.5], np.float32)
C = np.array([0.0, 1.0, 2.0], np.float32)
V = np.array([0.05, 0.1, -0.02], np.float32)


def quadratic_family(offset: float = 0.0) -> TaskFamily:
    def loss(params, cfg, data, key):
        return 0.5 * jnp.sum((params["x"] - cfg["c"]) ** 2) + offset

    return TaskFamily(
        name="quadratic", members=("quad",),
        sample_cfg=lambda key, member: {"c": jnp.asarray(C)},
        init=lambda key, cfg: {"x": jnp.asarray(P0)},
        loss=loss, normalize=lambda x: x, data={},
    )


def drift(theta, num_steps):
    """'Learned optimizer' whose update is the meta-parameter itself (ignores gradients)."""
    return optax.GradientTransformationExtraArgs(
        lambda params: optax.EmptyState(),
        lambda g, s, params=None, **kw: ({"x": theta["v"] * jnp.ones_like(g["x"])}, s),
    )


def make_pes(n=4000, k=4, horizon=(12, 12), offset=0, family=None, std=0.01) -> TruncatedPES:
    return TruncatedPES(family=family or quadratic_family(), make_opt=drift, instances_per_member=n,
                        truncation=k, min_horizon=horizon[0], max_horizon=horizon[1],
                        initial_offset=offset, std=std)


def grad_of_steps(ts) -> np.ndarray:
    """Exact gradient of the mean of L_t over steps `ts` at v = V."""
    return np.mean([t * (P0 + t * V - C) for t in ts], axis=0)


THETA = {"v": jnp.asarray(V)}


def test_pes_is_unbiased_for_the_smoothed_gradient_across_truncations():
    """Each truncation's mean estimate matches d/dv of its steps' mean loss within 4 SE.

    An episode of T = 12 steps is cut into truncations of K = 4: steps 0-3, 4-7, 8-11;
    the fourth truncation starts a new episode (steps 0-3 again). Without PES's
    accumulated perturbations the second and third truncations would estimate only the
    dependence on the current truncation's v (``(t - 4k)`` instead of ``t``), far outside
    the tolerance. Tolerance: |mean - exact| <= 4 standard errors per component (the
    standard error is estimated from the 4000 per-instance estimates); a false failure
    has probability below 1e-3 over the 12 checks.
    """
    pes = make_pes()
    state = pes.init(THETA, jax.random.PRNGKey(0))
    grads = jax.jit(pes.instance_grads)
    for k, ts in enumerate([range(0, 4), range(4, 8), range(8, 12), range(0, 4)]):
        g, state, out = grads(THETA, state, {}, jax.random.PRNGKey(100 + k))
        g = np.asarray(g["v"])
        mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
        exact = grad_of_steps(ts)
        assert np.all(np.abs(mean - exact) <= 4 * se), (k, mean, exact, se)
        wrong = grad_of_steps([t - 4 * (k % 3) for t in ts]) if k % 3 else None
        if wrong is not None:  # the estimator would be this without the accumulator
            assert np.any(np.abs(mean - wrong) > 8 * se)


def test_antithetic_pairs_cancel_the_loss_value():
    """A meta-loss that does not depend on theta gives exactly zero, whatever its value."""
    family = quadratic_family(offset=123.0)
    frozen = TruncatedPES(family=family, make_opt=lambda th, n: optax.with_extra_args_support(
        optax.set_to_zero()), instances_per_member=16, truncation=3, min_horizon=5, max_horizon=9,
        initial_offset=4)
    state = frozen.init(THETA, jax.random.PRNGKey(1))
    g, _, out = jax.jit(frozen.instance_grads)(THETA, state, {}, jax.random.PRNGKey(2))
    assert np.all(np.asarray(g["v"]) == 0.0)
    assert float(out.meta_loss) == pytest.approx(123.0 + 0.5 * np.sum((P0 - C) ** 2), rel=1e-6)


def test_truncation_offsets_resets_and_accumulator():
    pes = make_pes(n=64, k=4, horizon=(5, 9), offset=7)
    theta, key = THETA, jax.random.PRNGKey(3)
    state = jax.jit(pes.init)(theta, key)
    grads, perturbations = jax.jit(pes.instance_grads), jax.jit(pes.perturbations)
    n = pes.num_instances
    step0, len0 = np.asarray(state.inner.step), np.asarray(state.inner.length)
    assert step0.shape == (2 * n,) and np.array_equal(step0[:n], step0[n:])  # twins in sync
    assert np.array_equal(len0[:n], len0[n:])
    assert 0 <= step0.min() and step0.max() < 7 and len(set(step0[:n])) > 3  # random offsets
    assert 5 <= len0.min() and len0.max() <= 9
    accum_prev = np.zeros((n, 3), np.float32)
    for i in range(3):
        k = jax.random.PRNGKey(10 + i)
        eps = np.asarray(perturbations(theta, k)["v"])
        s, ln = np.asarray(state.inner.step[:n]), np.asarray(state.inner.length[:n])
        _, state, out = grads(theta, state, {}, k)
        first_reset = np.maximum(ln - s, 0)  # step index of the reset within this truncation
        reset = first_reset < 4  # lengths >= 5 > K: at most one reset per truncation
        new_step = np.where(reset, 4 - first_reset, s + 4)
        assert np.array_equal(np.asarray(state.inner.step[:n]), new_step)
        assert np.array_equal(np.asarray(out.resets), reset.astype(int))
        kept = ~reset
        assert np.array_equal(np.asarray(state.inner.length[:n])[kept], ln[kept])
        acc = np.asarray(state.accum["v"])
        np.testing.assert_allclose(acc[reset], eps[reset])
        np.testing.assert_allclose(acc[kept], accum_prev[kept] + eps[kept], rtol=1e-5, atol=1e-8)
        accum_prev = acc
    assert np.array_equal(np.asarray(state.inner.step[:n]), np.asarray(state.inner.step[n:]))


def test_horizons_are_log_uniform_in_range():
    t = np.asarray(jax.vmap(lambda k: sample_horizon(k, 100, 2000))(jax.random.split(jax.random.PRNGKey(0), 20000)))
    assert t.min() >= 100 and t.max() <= 2000 and t.min() < 105 and t.max() > 1900
    # log-uniform: the median is the geometric mean of the ends (447), not the mean (1050)
    assert abs(np.median(t) / np.sqrt(100 * 2001) - 1) < 0.05


@pytest.fixture(scope="module")
def digits_family():
    return image_mlp_family(["digits"])


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_reparametrization_keeps_the_initial_loss(digits_family, scale):
    base = digits_family
    aug = reparametrize(base, (scale, scale))
    key, kb = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    cfg_b, cfg_a = base.sample_cfg(key, 0), aug.sample_cfg(key, 0)
    assert float(cfg_a["scale"]) == pytest.approx(scale, rel=1e-5)
    p_b, p_a = base.init(key, cfg_b), aug.init(key, cfg_a)
    l_b, g_b = jax.jit(jax.value_and_grad(base.loss))(p_b, cfg_b, base.data, kb)
    l_a, g_a = jax.jit(jax.value_and_grad(aug.loss))(p_a, cfg_a, aug.data, kb)
    assert float(l_a) == pytest.approx(float(l_b), rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(p_a), jax.tree_util.tree_leaves(p_b), strict=True):
        np.testing.assert_allclose(np.asarray(a) * scale, np.asarray(b), rtol=1e-5, atol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g_a), jax.tree_util.tree_leaves(g_b), strict=True):
        np.testing.assert_allclose(np.asarray(a), scale * np.asarray(b), rtol=1e-4, atol=1e-6 * scale)


def test_reparametrization_scales_are_log_uniform(digits_family):
    aug = reparametrize(digits_family, (1e-3, 1e3))
    s = np.asarray(jax.vmap(lambda k: aug.sample_cfg(k, 0)["scale"])(jax.random.split(jax.random.PRNGKey(0), 4000)))
    assert s.min() >= 1e-3 * (1 - 1e-5) and s.max() <= 1e3 * (1 + 1e-5)
    assert abs(np.mean(np.log10(s))) < 0.1 and abs(np.mean(s < 1.0) - 0.5) < 0.05


@pytest.mark.parametrize("phase,trained", [("1", "ff_mod_stack"), ("2", "rnn_params")])
def test_phase_masks_leave_frozen_meta_parameters_untouched(phase, trained):
    from celo_bench.optimizers.learned.celo import init_meta_params

    theta = jax.jit(init_meta_params)(jax.random.PRNGKey(0))
    mask = phases.trainable_mask("celo", phase, theta)
    opt = phases.outer_optimizer(1e-2, 1e-4, mask)
    @jax.jit
    def outer_steps(theta):
        state, new = opt.init(theta), theta
        for i in range(3):
            g = jax.tree_util.tree_map(lambda t, i=i: jax.random.normal(jax.random.PRNGKey(i), t.shape), theta)
            u, state = opt.update(g, state, new)
            new = optax.apply_updates(new, u)
        return new

    new = outer_steps(theta)
    pes = TruncatedPES(family=quadratic_family(), make_opt=drift, instances_per_member=2, mask=mask)
    eps = jax.jit(pes.perturbations)(theta, jax.random.PRNGKey(5))
    for (path, a), b, m, e in zip(jax.tree_util.tree_leaves_with_path(theta), jax.tree_util.tree_leaves(new),
                                  jax.tree_util.tree_leaves(mask), jax.tree_util.tree_leaves(eps), strict=True):
        name = phases.path_name(path)
        if m:
            assert not np.array_equal(np.asarray(a), np.asarray(b)), name
            assert np.any(np.asarray(e) != 0)
        else:
            assert np.array_equal(np.asarray(a), np.asarray(b)), name  # bit for bit
            assert np.all(np.asarray(e) == 0)
        frozen = phases.FROZEN[("celo", phase)]
        assert m == (not any(f in name for f in frozen))
    assert any(m for m in jax.tree_util.tree_leaves(mask)) and trained in str(
        [phases.path_name(p) for p, m in jax.tree_util.tree_leaves_with_path(mask) if m])
    assert phases.factory_kwargs("celo", phase) == {"train_phase": int(phase)}


def tiny_config(arch="nn_adam", **kw):
    values = dict(tasks=("quad",), instances_per_task=2, truncation=3, min_horizon=4, max_horizon=8,
                  initial_offset=8, outer_iterations=4, checkpoint_every=2, outer_lr=1e-2)
    values.update(kw)
    return preset_config(arch, "smoke", **values)


def test_resume_after_a_kill_continues_identically(tmp_path):
    """A real learned optimizer (NNAdam: LSTM state, Adam moments) on the quadratic family."""
    from celo_bench.metatrain.trainer import MetaTrainer

    cfg = tiny_config()
    family = quadratic_family()
    straight = MetaTrainer(cfg, tmp_path / "a", family).run()

    class Killed(Exception):
        pass

    def kill_at_3(done, total, loss):
        if done == 3:  # step 3 ran but is not checkpointed (checkpoint_every 2)
            raise Killed

    with pytest.raises(Killed):
        MetaTrainer(cfg, tmp_path / "b", family).run(kill_at_3)
    resumed = MetaTrainer(cfg, tmp_path / "b", family).run()
    assert resumed.resumed_from == 2 and resumed.outer_iterations == 4
    assert resumed.meta_loss == straight.meta_loss
    a = (tmp_path / "a" / "theta.state").read_bytes()
    b = (tmp_path / "b" / "theta.state").read_bytes()
    assert a == b
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["outer_step"] == 4 and card["label"] == "meta-trained here (smoke diet)"
    assert (tmp_path / "b" / "checkpoints" / "0000002" / "theta.state").is_file()
    assert (tmp_path / "b" / "meta_loss.png").stat().st_size > 1000
    with pytest.raises(CeloBenchError, match="other settings"):
        MetaTrainer(tiny_config(outer_lr=3e-3), tmp_path / "b", family).run()


def _cli(args):
    from celo_bench.cli import app

    return CliRunner().invoke(app, ["meta-train", *args])


@pytest.mark.parametrize("args,message", [
    (["adam"], "not a learned optimizer"),
    (["celoo"], "Did you mean 'celo'"),
    (["rnn_mlp_lopt", "--phase", "1"], "exists only for celo"),
    (["celo", "--phase", "3"], "--phase must be 1, 2 or joint"),
    (["celo", "--phase", "2"], "pass --init"),
    (["celo", "--phase", "1", "--init", "/nonexistent/x"], "does not exist"),
    (["celo", "--outer-iterations", "0"], "--outer-iterations must be >= 1"),
    (["celo", "--outer-lr", "-1"], "--outer-lr must be > 0"),
    (["celo", "--preset", "huge"], "unknown preset 'huge'"),
    (["celo", "--tasks", "imagenet"], "imagenet"),
])
def test_bad_arguments_give_clear_errors(args, message, tmp_path):
    res = _cli([*args, "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, CeloBenchError), res.output
    assert message in str(res.exception)
    assert not (tmp_path / "o" / "theta.state").exists()


def test_a_misspelt_learned_optimizer_is_matched_among_learned_ones_only(tmp_path):
    res = _cli(["celoo", "--out", str(tmp_path / "o")])
    said = str(res.exception)
    assert "unknown learned optimizer 'celoo'. Did you mean 'celo'?" in said
    known = said.split("Known: ")[1].split(", ")
    assert "velo_s" in known and "adam" not in known and "sgd" not in known


def test_unwritable_out_or_weights_folder_is_one_line_before_training(tmp_path, monkeypatch):
    from celo_bench.optimizers import checkpoint as ck

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "run"):
        res = _cli(["nn_adam", "--preset", "smoke", "--out", str(out)])
        assert isinstance(res.exception, CeloBenchError), res.output
        assert f"meta-training folder {out} cannot be written" in str(res.exception)
        assert "is a file" in str(res.exception) and "--out" in str(res.exception)
    monkeypatch.setenv(ck.WEIGHTS_ENV, str(blocker / "weights"))
    res = _cli(["nn_adam", "--preset", "smoke", "--out", str(tmp_path / "o"), "--install"])
    assert isinstance(res.exception, CeloBenchError), res.output
    assert "weights folder" in str(res.exception) and ck.WEIGHTS_ENV in str(res.exception)
    assert not (tmp_path / "o").exists()  # refused before any training


@pytest.mark.slow
def test_cli_meta_train_checkpoint_runs_through_the_engine(tmp_path, spec_tree, monkeypatch):
    """`meta-train ARCH --preset smoke` (shortened) -> JSON, a loadable checkpoint, and a spec
    that `celo-bench run` benchmarks on a smoke task. NNAdam keeps the compile short; the
    same path with celo (`celo-bench meta-train celo --preset smoke`) takes minutes."""
    from celo_bench.optimizers import build
    from celo_bench.store import Store
    from celo_bench.suite import load_registry

    out = tmp_path / "mt"
    res = _cli(["nn_adam", "--preset", "smoke", "--outer-iterations", "3", "--out", str(out),
                "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    assert doc["outer_iterations"] == 3 and doc["checkpoint"] == str(out / "theta.state")
    assert np.isfinite(doc["meta_loss_first"]) and np.isfinite(doc["meta_loss_last"])
    card = json.loads((out / "card.json").read_text())
    assert card["tasks"] == ["digits"] and card["outer_step"] == 3 and "reparam" in card["augmentation"]
    from celo_bench.optimizers import checkpoint as ck

    start, end = (ck.flatten(ck.read(p / "theta.state")) for p in (out / "init", out))
    assert start.keys() == end.keys() and any(not np.array_equal(start[k], end[k]) for k in start)
    opt = build("nn_adam", num_steps=10, checkpoint=str(out))
    params = {"w": jnp.ones((3, 2))}
    u, _ = opt.update({"w": jnp.ones((3, 2))}, opt.init(params), params, loss=jnp.asarray(1.0))
    assert np.all(np.isfinite(np.asarray(u["w"])))
    spec = out / "nn_adam_smoke_diet.toml"
    (spec_tree / "baselines" / spec.name).write_text(spec.read_text())
    monkeypatch.setenv("CELO_BENCH_SPECS", str(spec_tree))
    load_registry.cache_clear()
    try:
        from celo_bench.cli import app

        run = CliRunner().invoke(app, ["run", "--suite", "smoke", "--tasks", "smoke_digits_mlp",
                                       "--optimizers", "nn_adam_smoke_diet", "--seeds", "1",
                                       "--results", str(tmp_path / "res"), "--no-report"])
        assert run.exit_code == 0, run.output
        frame = Store(tmp_path / "res").read()
        assert list(frame["optimizer"]) == ["nn_adam_smoke_diet"] and list(frame["status"]) == ["ok"]
        assert np.all(np.isfinite(frame["train_loss"].iloc[0]))
    finally:
        load_registry.cache_clear()

    # installing the run where `local://` specs find it: all files or none, atomically
    from celo_bench.cli import app as cli_app
    from celo_bench.metatrain.install import install
    from celo_bench.optimizers import checkpoint as ck_mod
    from celo_bench.suite import parse_optimizer

    dest = install(out, root=tmp_path / "weights")
    assert dest == tmp_path / "weights" / "nn_adam_smoke_diet"
    assert sorted(p.name for p in dest.iterdir()) == ["card.json", "card.md", "theta.state"]
    assert (dest / "theta.state").read_bytes() == (out / "theta.state").read_bytes()
    monkeypatch.setenv(ck_mod.WEIGHTS_ENV, str(tmp_path / "weights"))
    spec = parse_optimizer(out / "nn_adam_smoke_diet.toml")
    assert spec.checkpoint["label"] == "meta-trained here (smoke diet)"
    local_spec = dataclasses.replace(spec, checkpoint={"source": "local://nn_adam_smoke_diet"})
    assert ck_mod.flatten(ck_mod.load_for_spec(local_spec)).keys() == ck_mod.flatten(ck_mod.read(out / "theta.state")).keys()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CeloBenchError, match="cannot install weights into .*a-file.*stays in"):
        install(out, root=blocker / "weights")
    assert blocker.read_text() == "not a folder"
    with pytest.raises(CeloBenchError, match="not a finished meta-training run"):
        install(tmp_path / "res", root=tmp_path / "weights")
    again = CliRunner().invoke(cli_app, ["meta-train", "nn_adam", "--preset", "smoke", "--outer-iterations",
                                         "3", "--out", str(out), "--install", "--format", "json"])
    assert again.exit_code == 0, again.output  # resumes (nothing to train) and installs
    assert json.loads(again.stdout[again.stdout.index("{"):])["installed"] == str(dest)
    text = CliRunner().invoke(cli_app, ["meta-train", "nn_adam", "--preset", "smoke", "--outer-iterations", "3",
                                        "--out", str(out)])
    assert text.exit_code == 0, text.output
    said = "".join(text.stdout.split())  # the way to use the weights must be one that exists
    assert "--checkpoint" not in said and "--installcopiesit" in said and f"checkpoint='{out}')" in said


def test_presets_follow_the_paper_recipe():
    cfg = preset_config("celo", "paper", phase="1")
    assert (cfg.truncation, cfg.min_horizon, cfg.max_horizon, cfg.initial_offset) == (50, 100, 2000, 2000)
    assert (cfg.std, cfg.instances_per_task, cfg.reparam_range) == (0.01, 8, (1e-3, 1e3))
    assert (cfg.outer_lr, cfg.weight_decay, cfg.outer_iterations, cfg.nan_loss_value) == (3e-4, 1e-4, 100_000, 20.0)
    assert cfg.tasks == ("mnist", "fashion_mnist", "svhn", "cifar10")
    cpu = preset_config("celo", "cpu", phase="1")
    assert cpu.tasks == ("digits", "fashion_mnist") and (cpu.truncation, cpu.max_horizon, cpu.std) == (50, 2000, 0.01)


@pytest.mark.slow
def test_outer_lr_sweep_picks_the_lowest_meta_validation_loss(tmp_path):
    from celo_bench.metatrain.recipe import RULE, sweep

    summary = sweep("nn_adam", out=tmp_path, lrs=(1e-2, 1e-3), seeds=(0,), preset="smoke",
                    outer_iterations=2)
    rows = summary["runs"]
    assert {(r["outer_lr"], r["seed"], r["step"]) for r in rows} == {(1e-2, 0, 2), (1e-3, 0, 2)}
    best = min(rows, key=lambda r: r["meta_validation_loss"])
    assert summary["best"] == best and summary["rule"] == RULE
    assert all(0 < r["meta_validation_loss"] < 1.5 * np.log(10) + 1e-6 for r in rows)
    card = json.loads((tmp_path / "best" / "card.json").read_text())
    assert card["meta_validation_loss"] == best["meta_validation_loss"]
    assert card["outer_optimizer"]["lr"] == best["outer_lr"]
    assert (tmp_path / "best" / "theta.state").read_bytes() == (Path(best["checkpoint"]) / "theta.state").read_bytes()


@pytest.mark.slow
def test_select_best_keeps_the_lowest_meta_validation_checkpoint(tmp_path):
    """`--select-best`: every checkpoint of the run scored, the lowest copied to OUT/best."""
    out = tmp_path / "mt"
    res = _cli(["nn_adam", "--preset", "smoke", "--outer-iterations", "100", "--out", str(out),
                "--select-best", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    rows = json.loads((out / "selection.json").read_text())["runs"]
    assert [r["step"] for r in rows] == [50, 100]  # smoke checkpoints every 50 outer steps
    best = min(rows, key=lambda r: r["meta_validation_loss"])
    assert doc["best"] == {"step": best["step"], "meta_validation_loss": best["meta_validation_loss"]}
    assert doc["checkpoint"] == str(out / "best" / "theta.state")
    assert doc["final_checkpoint"] == str(out / "theta.state")
    assert (out / "best" / "theta.state").read_bytes() == (Path(best["checkpoint"]) / "theta.state").read_bytes()
    card = json.loads((out / "best" / "card.json").read_text())
    assert card["selected_step"] == best["step"] == card["outer_step"]
    assert "meta-validation" in card["selected_by"]
