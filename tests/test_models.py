"""Model families: parameter counts from the architecture description, numerics, invariants.

Parameter counts are computed here by hand from layer shapes (the architecture text of
paper-protocol.md §1.2 and learned_optimization's task definitions), never from the code
under test, and compared with ``jax.eval_shape`` of each paper task's model (no data).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from celo_bench import models
from celo_bench.assembly import build_model, build_model_only, learned_optimizer
from celo_bench.errors import SpecError
from celo_bench.models import LearnedOptimizer
from celo_bench.models.conv import conv2d_im2col
from celo_bench.optimizers import REGISTERED_FACTORIES, register
from celo_bench.suite import load_registry

# Dataset facts of the paper datasets, stated independently of celo_bench.data.facts.
# vocab 32100: learned_optimization's language.py builds
# seqio.SentencePieceVocabulary("gs://t5-data/vocabs/cc_all.32000/...", extra_ids=100), whose
# vocab_size is 32000 pieces + 100 sentinel ids. (Cross-check: 12,753,252 parameters for the
# LSTM LMs and 1,332,820 for TransformerLM_LM1B_MultiRuntime_0 only hold with 32100.)
PAPER_FACTS = {
    "fashion_mnist": {"num_classes": 10, "image_shape": (28, 28, 1)},
    "mnist": {"num_classes": 10, "image_shape": (28, 28, 1)},
    "cifar10": {"num_classes": 10, "image_shape": (32, 32, 3)},
    "cifar100": {"num_classes": 100, "image_shape": (32, 32, 3)},
    "lm1b_32k": {"vocab_size": 32100},
    "wikipedia_en_32k": {"vocab_size": 32100},
}


def paper_info(spec) -> dict:
    info = dict(PAPER_FACTS[spec.dataset])
    if "image_size" in spec.data:
        h, w = spec.data["image_size"]
        info["image_shape"] = (h, w, info["image_shape"][2])
    if "seq_len" in spec.data:
        info["seq_len"] = spec.data["seq_len"]
    return info


# ---- hand-written parameter formulas (layer shapes only) -------------------------------

def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def mlp_count(n_in: int, hidden: list[int], n_out: int, layer_norm: bool = False) -> int:
    sizes = [n_in, *hidden, n_out]
    n = sum(dense(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return n + (2 * sum(hidden) if layer_norm else 0)


def conv_count(c_in: int, widths: list[int], classes: int, norm: bool) -> int:
    chans = [c_in, *widths]
    n = sum(3 * 3 * a * b + b for a, b in zip(chans[:-1], chans[1:], strict=True))
    return n + dense(widths[-1], classes) + (2 * sum(widths) if norm else 0)


def vit_count(patch: int, c_in: int, tokens: int, d: int, mlp: int, layers: int, classes: int) -> int:
    embed = patch * patch * c_in * d + d
    cls_and_pos = d + (tokens + 1) * d
    block = 2 * d + 4 * dense(d, d) + 2 * d + dense(d, mlp) + dense(mlp, d)  # LN, q/k/v/out, LN, MLP
    return embed + cls_and_pos + layers * block + 2 * d + dense(d, classes)


def transformer_count(vocab: int, d: int, heads: int, layers: int, key_size: int = 32) -> int:
    a = heads * key_size
    block = 2 * d + 3 * dense(d, a) + dense(a, d) + 2 * d + dense(d, 4 * d) + dense(4 * d, d)
    return vocab * d + layers * block + 2 * d + dense(d, vocab)


def lstm_count(vocab: int, embed: int, hidden: int) -> int:
    return vocab * embed + dense(embed + hidden, 4 * hidden) + 2 * hidden + dense(hidden, vocab)


ADAFAC_META = 3 + 1 + 3 + dense(39, 4) + dense(4, 4) + dense(4, 2)  # decays + 39-4-4-2 MLP

EXPECTED = {
    "ImageMLP_FashionMnist_Relu128x128": mlp_count(784, [128, 128], 10),
    "ImageMLP_Cifar10_128x128x128_LayerNorm_Relu": mlp_count(3072, [128] * 3, 10, layer_norm=True),
    "ImageMLP_Cifar10_128x128x128_Tanh_bs128": mlp_count(3072, [128] * 3, 10),
    "Conv_Cifar10_32x64x64": conv_count(3, [32, 64, 64], 10, norm=False),
    "Conv_Cifar10_32x64x64_batchnorm": conv_count(3, [32, 64, 64], 10, norm=True),
    "Conv_Cifar10_32x64x64_layernorm": conv_count(3, [32, 64, 64], 10, norm=True),
    "Conv_Cifar100_32x64x64": conv_count(3, [32, 64, 64], 100, norm=False),
    "VIT_Cifar100_wideshallow": vit_count(16, 3, 4, 384, 1536, 6, 100),
    "VIT_Cifar100_skinnydeep": vit_count(16, 3, 4, 128, 512, 10, 100),
    "TransformerLM_LM1B_MultiRuntime_0": transformer_count(32100, 20, 5, 1),
    "TransformerLM_LM1B_MultiRuntime_2": transformer_count(32100, 32, 4, 2),
    "TransformerLM_LM1B_MultiRuntime_5": transformer_count(32100, 32, 4, 1),
    "ImageMLPAE_Cifar10_128x32x128_bs256": mlp_count(3072, [128, 32, 128], 3072),
    "ImageMLPAE_Mnist_128x32x128_bs128": mlp_count(784, [128, 32, 128], 784),
    "RNNLM_lm1b32k_Patch32_LSTM256_Embed128": lstm_count(32100, 128, 256),
    "RNNLM_wikipediaen32k_Patch32_LSTM256_Embed128": lstm_count(32100, 128, 256),
    "LOpt_AdafacMLPLOpt_FashionMnist_50": ADAFAC_META,
}


def n_params(model) -> int:
    params, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def test_formulas_match_published_counts():
    # Anchors stated in the issue; the formulas above must reproduce them.
    assert EXPECTED["ImageMLP_FashionMnist_Relu128x128"] == 118_282
    assert EXPECTED["Conv_Cifar10_32x64x64"] == 56_970
    assert ADAFAC_META == 197  # learned-optimizers.md Appendix B.6


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_param_count(name):
    spec = load_registry().task(name)
    if spec.family == "lopt" and spec.model["optimizer"] not in REGISTERED_FACTORIES:
        pytest.skip(f"learned optimizer factory '{spec.model['optimizer']}' is not registered yet")
    model = build_model_only(spec, paper_info(spec))
    assert n_params(model) == EXPECTED[name]


def test_registered_facts_agree():
    """celo_bench.data.facts (the data layer's registry) states the same dataset facts."""
    from celo_bench.data import dataset_info
    from celo_bench.data.facts import FACTS

    for name, facts in PAPER_FACTS.items():
        if name not in FACTS:
            continue
        info = dataset_info(name, {})
        for k, v in facts.items():
            assert tuple(np.atleast_1d(info[k])) == tuple(np.atleast_1d(v)), (name, k)


# ---- numerics of individual layers ---------------------------------------------------------

@pytest.mark.parametrize("shape,stride,cin,cout", [((9, 9), 1, 3, 5), ((8, 8), 2, 1, 4), ((32, 32), 2, 3, 8)])
def test_im2col_convolution_equals_xla(shape, stride, cin, cout):
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (2, *shape, cin))
    w = jax.random.normal(kw, (3, 3, cin, cout))

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(conv2d_im2col(x, w, stride), xla(x, w), rtol=1e-5, atol=1e-5)
    g1 = jax.grad(lambda w: jnp.sum(jnp.sin(conv2d_im2col(x, w, stride))))(w)
    g2 = jax.grad(lambda w: jnp.sum(jnp.sin(xla(x, w))))(w)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)


def test_conv_impls_share_parameters():
    info = {"num_classes": 10, "image_shape": (8, 8, 1)}
    a = models.build({"kind": "conv", "widths": [4, 8], "impl": "xla"}, info, batch_size=4)
    b = models.build({"kind": "conv", "widths": [4, 8], "impl": "im2col"}, info, batch_size=4)
    params, state = a.init(jax.random.PRNGKey(0))
    batch = {"image": jax.random.randint(jax.random.PRNGKey(1), (4, 8, 8, 1), 0, 256).astype(jnp.uint8),
             "label": jnp.arange(4, dtype=jnp.int32)}
    np.testing.assert_allclose(a.loss(params, state, None, batch)[0], b.loss(params, state, None, batch)[0],
                               rtol=1e-5)


def test_haiku_default_init_statistics():
    """hk.Linear default: N(0, 1/fan_in) truncated at 2 std, so std = 0.8796/sqrt(fan_in)."""
    model = models.build({"kind": "mlp", "hidden": [512]}, {"num_classes": 10, "image_shape": (20, 20, 1)},
                         batch_size=1)
    params, _ = model.init(jax.random.PRNGKey(0))
    w = np.asarray(params["Dense_0"]["kernel"])
    assert np.all(np.abs(w) <= 2 / 20 + 1e-7)
    assert abs(w.std() - 0.87962566 / 20) < 0.002
    assert not np.any(params["Dense_0"]["bias"])


def test_batchnorm_state_is_updated_and_unused_by_loss():
    info = {"num_classes": 10, "image_shape": (8, 8, 1)}
    model = models.build({"kind": "conv", "widths": [4, 8], "norm": "batchnorm"}, info, batch_size=8)
    params, state = model.init(jax.random.PRNGKey(0))
    batch = {"image": jax.random.randint(jax.random.PRNGKey(1), (8, 8, 8, 1), 0, 256).astype(jnp.uint8),
             "label": jnp.zeros(8, jnp.int32)}
    loss1, state1 = model.loss(params, state, None, batch)
    assert set(state1) == {"batch_stats"}
    mean0 = jax.tree_util.tree_leaves(state["batch_stats"])
    mean1 = jax.tree_util.tree_leaves(state1["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(mean0, mean1, strict=True))
    # Training-mode normalisation: the running statistics do not change the loss.
    loss2, _ = model.loss(params, state1, None, batch)
    np.testing.assert_allclose(loss1, loss2, rtol=1e-6)


def _lm(kind: str, **kw):
    info = {"vocab_size": 50, "seq_len": 6}
    return models.build({"kind": kind, **kw}, info, batch_size=2)


@pytest.mark.parametrize("kind,kw", [("transformer_lm", {"d_model": 16, "heads": 2, "layers": 2}),
                                     ("lstm_lm", {"hidden": 8, "embed": 4})])
def test_lm_masks_targets_after_padding(kind, kw):
    model = _lm(kind, **kw)
    params, state = model.init(jax.random.PRNGKey(0))
    tokens = jnp.array([[5, 6, 7, 8, 9, 10, 11], [3, 4, 0, 0, 0, 0, 0]], jnp.int32)
    base, _ = model.loss(params, state, None, {"tokens": tokens})
    # Row 1 has inputs [3, 4, 0, 0, 0, 0]: the last target follows a padding input, so it
    # does not count; in row 0 the last target follows a real input and counts.
    changed = tokens.at[1, 6].set(17)
    np.testing.assert_allclose(model.loss(params, state, None, {"tokens": changed})[0], base, rtol=1e-6)
    changed = tokens.at[0, 6].set(17)
    assert not np.isclose(model.loss(params, state, None, {"tokens": changed})[0], base)


def test_lm_is_causal():
    from celo_bench.models.rnn_lm import LSTMLM
    from celo_bench.models.transformer_lm import TransformerLM

    obs = jnp.array([[5, 6, 7, 8, 9, 10]], jnp.int32)
    later = obs.at[0, 3].set(20)
    for net in (TransformerLM(50, 16, 2, 2, 0.0), LSTMLM(50, 4, 8)):
        args = (jax.random.PRNGKey(0),) if isinstance(net, TransformerLM) else ()
        variables = net.init(jax.random.PRNGKey(0), obs, *args)
        a, b = net.apply(variables, obs, *args), net.apply(variables, later, *args)
        np.testing.assert_allclose(a[0, :3], b[0, :3], rtol=1e-6)  # positions before the change
        assert not np.allclose(a[0, 3:], b[0, 3:])


def test_transformer_dropout_uses_the_key():
    tokens = {"tokens": jnp.arange(1, 15, dtype=jnp.int32).reshape(2, 7)}
    drop = _lm("transformer_lm", d_model=16, heads=2, layers=1, dropout=0.5)
    p, s = drop.init(jax.random.PRNGKey(0))
    a = drop.loss(p, s, jax.random.PRNGKey(1), tokens)[0]
    b = drop.loss(p, s, jax.random.PRNGKey(2), tokens)[0]
    assert not np.isclose(a, b)
    plain = _lm("transformer_lm", d_model=16, heads=2, layers=1)
    p, s = plain.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(plain.loss(p, s, jax.random.PRNGKey(1), tokens)[0],
                               plain.loss(p, s, jax.random.PRNGKey(2), tokens)[0])


def test_vit_head_is_zero_so_initial_loss_is_log_classes():
    info = {"num_classes": 7, "image_shape": (8, 8, 3)}
    model = models.build({"kind": "vit", "patch": 4, "hidden": 16, "mlp": 32, "heads": 2, "layers": 1},
                         info, batch_size=3)
    params, state = model.init(jax.random.PRNGKey(0))
    batch = {"image": jnp.full((3, 8, 8, 3), 200, jnp.uint8), "label": jnp.array([0, 3, 6], jnp.int32)}
    np.testing.assert_allclose(model.loss(params, state, None, batch)[0], math.log(7), rtol=1e-6)


# ---- training a learned optimizer as a task ------------------------------------------------

def _scaled_sgd(meta_params, *, num_steps):
    """A one-parameter 'learned optimizer': SGD with learning rate meta_params['lr']."""
    del num_steps
    return optax.sgd(meta_params["lr"])


seen_options: list[dict] = []


def _recording_sgd(meta_params, *, num_steps, scale=1.0):
    """Like _scaled_sgd, and records the options it was built with."""
    seen_options.append({"scale": scale, "num_steps": num_steps})
    return optax.sgd(scale * meta_params["lr"])


if "test_scaled_sgd" not in REGISTERED_FACTORIES:
    register("test_scaled_sgd", _scaled_sgd, learned=True,
             init_meta_params=lambda key: {"lr": jnp.asarray(0.0, jnp.float32)})
    register("test_scaled_sgd_options", _recording_sgd, learned=True,
             init_meta_params=lambda key: {"lr": jnp.asarray(0.0, jnp.float32)})


def _lopt_batch(k, bs):
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (k * bs, 8, 8, 1)).astype(np.uint8),
            "label": rng.integers(0, 10, k * bs).astype(np.int32)}


def test_lopt_loss_is_mean_inner_loss():
    """With learning rate 0 the inner parameters stay at init: the loss is the mean of the
    inner losses of the initial model on the K inner batches."""
    info = {"num_classes": 10, "image_shape": (8, 8, 1)}
    k, bs = 4, 16
    model = build_model({"kind": "lopt", "optimizer": "test_scaled_sgd", "unroll_steps": k,
                         "inner_batch_size": bs, "hidden": [8]}, info, batch_size=k * bs)
    inner = models.build({"kind": "mlp", "hidden": [8]}, info, batch_size=bs)
    meta, state = model.init(jax.random.PRNGKey(0))
    batch = _lopt_batch(k, bs)
    key = jax.random.PRNGKey(3)
    got, _ = model.loss(meta, state, key, batch)
    p0, s0 = inner.init(jax.random.split(key)[0])
    want = np.mean([
        inner.loss(p0, s0, None, {n: v[i * bs:(i + 1) * bs] for n, v in batch.items()})[0]
        for i in range(k)
    ])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # On K copies of one batch, a larger (small) learning rate lowers the later inner
    # losses: the outer gradient flows through the unroll and is negative.
    same = {n: np.concatenate([v[:bs]] * k) for n, v in batch.items()}
    g = jax.grad(lambda m: model.loss(m, state, key, same)[0])({"lr": jnp.asarray(0.01)})
    assert g["lr"] < 0


def test_lopt_rejects_inconsistent_batch():
    with pytest.raises(SpecError, match="unroll_steps"):
        build_model({"kind": "lopt", "optimizer": "test_scaled_sgd", "unroll_steps": 5,
                     "inner_batch_size": 8}, {"num_classes": 10, "image_shape": (8, 8, 1)}, batch_size=41)


def test_lopt_model_takes_its_inner_optimizer_as_an_object():
    """The model family needs no registry: a LearnedOptimizer built here trains the same way,
    and its options reach the factory through the assembly (``optimizer_options``)."""
    info = {"num_classes": 10, "image_shape": (8, 8, 1)}
    k, bs = 3, 8
    calls = []

    def make(meta_params, num_steps):
        calls.append(num_steps)
        return optax.sgd(meta_params["lr"])

    direct = models.build({"kind": "lopt", "unroll_steps": k, "inner_batch_size": bs, "hidden": [8],
                           "optimizer": LearnedOptimizer("sgd", lambda key: {"lr": jnp.asarray(0.0)}, make)},
                          info, batch_size=k * bs)
    assembled = build_model({"kind": "lopt", "optimizer": "test_scaled_sgd", "unroll_steps": k,
                             "inner_batch_size": bs, "hidden": [8]}, info, batch_size=k * bs)
    batch, key = _lopt_batch(k, bs), jax.random.PRNGKey(1)
    meta = {"lr": jnp.asarray(0.05)}
    np.testing.assert_allclose(direct.loss(meta, {}, key, batch)[0], assembled.loss(meta, {}, key, batch)[0],
                               rtol=1e-6)
    assert calls == [k]  # the unroll length is the inner horizon
    bound = learned_optimizer("test_scaled_sgd_options", {"scale": 3.0})
    bound.make({"lr": 1.0}, 7)
    assert seen_options == [{"scale": 3.0, "num_steps": 7}]


def test_lopt_rejects_a_hand_crafted_inner_optimizer():
    with pytest.raises(SpecError, match="not a learned optimizer"):
        build_model({"kind": "lopt", "optimizer": "adam", "unroll_steps": 2, "inner_batch_size": 4},
                    {"num_classes": 10, "image_shape": (8, 8, 1)}, batch_size=8)
