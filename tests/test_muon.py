"""Muon follows the Muon reference (github.com/KellerJordan/Muon), written out here in NumPy.

The reference, for a weight of rank >= 2 in PyTorch layout (a conv kernel is
``(out, in, h, w)``, viewed as ``(out, in * h * w)``)::

    M <- beta M + (1 - beta) g                     (momentum.lerp_(grad, 1 - beta))
    U  = (1 - beta) g + beta M                      (Nesterov: grad.lerp_(momentum, beta))
    X  = NS5(U)  with (a, b, c) = (3.4445, -4.7750, 2.0315), on the wide orientation
    p <- p - lr * sqrt(max(1, rows / cols)) * X

and plain Adam for scalars and vectors. The expected values below are computed in float64
from these formulas on the PyTorch layout and moved to flax's HWIO layout by transposes,
so the test also pins which axis is the output channel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from celo_bench.optimizers import build

NS = (3.4445, -4.7750, 2.0315)
LR, BETA = 0.02, 0.95


def newton_schulz(m: np.ndarray, steps: int = 5, eps: float = 1e-8) -> np.ndarray:
    """The reference's ``zeropower_via_newtonschulz5`` in float64."""
    x = np.asarray(m, np.float64)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (np.linalg.norm(x) + eps)
    a, b, c = NS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def reference_matrix_update(g_torch: np.ndarray, momentum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One reference Muon step on a PyTorch-layout weight: (update, new momentum)."""
    momentum = BETA * momentum + (1 - BETA) * g_torch
    u = (1 - BETA) * g_torch + BETA * momentum
    mat = u.reshape(len(u), -1)
    scale = np.sqrt(max(1.0, mat.shape[0] / mat.shape[1]))
    return -LR * scale * newton_schulz(mat).reshape(g_torch.shape), momentum


HWIO_TO_OIHW, OIHW_TO_HWIO = (3, 2, 0, 1), (2, 3, 1, 0)


def _grads(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "bias": rng.normal(size=(5,)).astype(np.float32),
        "scalar": np.float32(rng.normal()),
        "conv": rng.normal(size=(3, 3, 2, 4)).astype(np.float32),  # flax HWIO: 4 output channels
        "dense": rng.normal(size=(2, 8)).astype(np.float32),  # flax (in, out): 2 -> 8
    }


def _run(grads_seq) -> list[dict]:
    params = jax.tree.map(jnp.asarray, _grads(99))
    opt = build("muon", num_steps=10, learning_rate=LR)
    state = opt.init(params)
    out = []
    for g in grads_seq:
        u, state = opt.update(jax.tree.map(jnp.asarray, g), state, params)
        params = jax.tree.map(lambda a, b: a + b, params, u)
        out.append(jax.tree.map(np.asarray, u))
    return out


def test_first_update_of_vector_scalar_and_conv_kernel():
    g = _grads(0)
    (u,) = _run([g])
    # 0-D and 1-D: Adam's first step, m_hat = g and v_hat = g^2 (eps 1e-8).
    for k in ("bias", "scalar"):
        want = -LR * np.float64(g[k]) / (np.abs(np.float64(g[k])) + 1e-8)
        np.testing.assert_allclose(u[k], want, rtol=2e-5, err_msg=k)  # NAdam would be 1.47x
        assert u[k].shape == np.shape(g[k]) and u[k].dtype == np.float32
    # 4-D: the reference on (out, in, h, w), viewed (4, 18); here the kernel is HWIO.
    want, _ = reference_matrix_update(np.float64(g["conv"]).transpose(HWIO_TO_OIHW), np.zeros((4, 2, 3, 3)))
    np.testing.assert_allclose(u["conv"], want.transpose(OIHW_TO_HWIO), rtol=2e-4, atol=1e-6)
    # orthogonalised: the (out x rest) view has singular values near 1 (NS5 gives ~0.7-1.2), not g's
    sv = np.linalg.svd(u["conv"].reshape(18, 4) / -LR, compute_uv=False)
    assert np.all((sv > 0.5) & (sv < 1.5)), sv
    raw = np.linalg.svd(g["conv"].reshape(18, 4), compute_uv=False)
    assert raw.max() / raw.min() > 1.5  # the raw gradient is not already orthogonal


def test_wide_dense_scale_and_second_step_momentum():
    """A (2, 8) flax kernel is the reference's (8, 2) weight: scale sqrt(8 / 2) = 2."""
    g1, g2 = _grads(1), _grads(2)
    u1, u2 = _run([g1, g2])
    for k, to_torch, back in (("dense", (1, 0), (1, 0)), ("conv", HWIO_TO_OIHW, OIHW_TO_HWIO)):
        t1, t2 = (np.float64(g[k]).transpose(to_torch) for g in (g1, g2))
        want1, mom = reference_matrix_update(t1, np.zeros_like(t1))
        want2, _ = reference_matrix_update(t2, mom)
        np.testing.assert_allclose(u1[k], want1.transpose(back), rtol=2e-4, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(u2[k], want2.transpose(back), rtol=2e-4, atol=1e-6, err_msg=k)
    assert np.isclose(np.linalg.norm(u1["dense"]) / LR, 2 * np.sqrt(2), rtol=0.2)


def test_attention_projection_kernel_is_its_dense_matrix():
    """A flax ``query`` kernel (in, heads, head_dim) is the dense (in, heads * head_dim) matrix
    (the reference's (heads * head_dim, in) nn.Linear weight): scale sqrt(6 / 4)."""
    rng = np.random.default_rng(5)
    params = {"attn": {"query": {"kernel": jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32)},
                       "out": {"kernel": jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)}}}
    g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    opt = build("muon", num_steps=10, learning_rate=LR)
    u, _ = opt.update(g, opt.init(params), params)
    q = np.float64(g["attn"]["query"]["kernel"]).reshape(4, 6).T  # torch layout (out, in)
    want, _ = reference_matrix_update(q, np.zeros_like(q))
    np.testing.assert_allclose(u["attn"]["query"]["kernel"], want.T.reshape(4, 2, 3), rtol=2e-4, atol=1e-6)
    o = np.float64(g["attn"]["out"]["kernel"]).reshape(6, 4).T  # (heads, head_dim, out) -> (out, 6)
    want, _ = reference_matrix_update(o, np.zeros_like(o))
    np.testing.assert_allclose(u["attn"]["out"]["kernel"], want.T.reshape(2, 3, 4), rtol=2e-4, atol=1e-6)
