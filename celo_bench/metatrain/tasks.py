"""The meta-training task family: 8x8 greyscale image MLPs (64-32-10, batch 64) with augmentation.

A :class:`TaskFamily` is what the PES estimator (:mod:`celo_bench.metatrain.pes`) trains
inner problems from. It is a set of ``members`` (one per dataset) that share one model,
so every task instance of an outer step, whatever its dataset, runs in one ``vmap``:

- ``sample_cfg(key, member)`` draws the configuration of a fresh task instance;
- ``init(key, cfg)`` its initial parameters; ``loss(params, cfg, data, key)`` the training
  loss on a minibatch drawn from ``data`` with ``key``; ``normalize(loss)`` the
  per-step meta-loss.

``data`` is a pytree of arrays passed to the compiled program as an argument (never
baked in as a constant). The image family stacks its datasets along a leading member
axis, padding with repeats so shapes agree; each member samples indices below its own size.

**Task augmentation** (Celo (Moudgil et al., arXiv:2501.12670); learned_optimization's ``ReparamWeightsFamily(level="global")``):
:func:`reparametrize` draws one scale ``s`` per instance, log-uniform in ``[lo, hi]``;
initial weights are divided by ``s`` and the loss multiplies them back,
``L_aug(phi) = L(s * phi)``, so the function computed (and the initial loss) is unchanged
while gradients are scaled by ``s`` and the optimiser sees a different problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from celo_bench import data
from celo_bench.errors import CeloBenchError, DataMissingError
from celo_bench.models.mlp import build_classifier

NUM_CLASSES = 10


@dataclass(frozen=True)
class TaskFamily:
    """Inner problems for meta-training (see module docstring for the contract)."""

    name: str
    members: tuple[str, ...]
    sample_cfg: Callable[[jax.Array, jax.Array], Any]
    init: Callable[[jax.Array, Any], Any]
    loss: Callable[[Any, Any, Any, jax.Array], jax.Array]
    normalize: Callable[[jax.Array], jax.Array]
    data: Any = None
    eval_loss: Callable[[Any, Any, Any], jax.Array] | None = None
    eval_data: Any = None
    augmentation: str = "none"


def normalizer(loss: jax.Array, num_classes: int = NUM_CLASSES) -> jax.Array:
    """learned_optimization's image-MLP normaliser: clip to [0, 1.5 ln C], non-finite -> max."""
    maxval = 1.5 * float(np.log(num_classes))
    return jnp.nan_to_num(jnp.clip(loss, 0.0, maxval), nan=maxval, posinf=maxval, neginf=maxval)


def reparametrize(family: TaskFamily, scale_range: tuple[float, float]) -> TaskFamily:
    """Global reparametrisation augmentation: ``init / s``, ``loss(s * params)``, s log-uniform."""
    lo, hi = (float(np.log(v)) for v in scale_range)

    def sample_cfg(key, member):
        k_base, k_s = jax.random.split(key)
        scale = jnp.exp(jax.random.uniform(k_s, (), jnp.float32, lo, hi))
        return {"base": family.sample_cfg(k_base, member), "scale": scale}

    def scaled(params, s):
        return jax.tree_util.tree_map(lambda p: p * s, params)

    def init(key, cfg):
        return scaled(family.init(key, cfg["base"]), 1.0 / cfg["scale"])

    def loss(params, cfg, data, key):
        return family.loss(scaled(params, cfg["scale"]), cfg["base"], data, key)

    def eval_loss(params, cfg, data):
        return family.eval_loss(scaled(params, cfg["scale"]), cfg["base"], data)

    return replace(
        family,
        sample_cfg=sample_cfg,
        init=init,
        loss=loss,
        eval_loss=eval_loss if family.eval_loss else None,
        augmentation=f"reparam global log-uniform [{scale_range[0]:g}, {scale_range[1]:g}]",
    )


# --------------------------------------------------------------------------- image MLPs
def _dataset(name: str, image_size: int):
    """A meta-training dataset at ``image_size`` x ``image_size``, greyscale."""
    if name == "digits":  # already 8x8 greyscale; other sizes are not offered offline
        if image_size != 8:
            raise CeloBenchError("the offline 'digits' family exists only at image_size 8")
        return data.load("digits")
    if name not in data.LOADERS:
        raise CeloBenchError(
            f"meta-training task '{name}' has no dataset here (known: digits, "
            f"{', '.join(n for n in ('mnist', 'fashion_mnist', 'svhn', 'cifar10') if n in data.LOADERS)})"
        )
    return data.load(name, {"image_size": image_size, "greyscale": True})


def available(names: Sequence[str], image_size: int = 8) -> tuple[list[str], dict[str, str]]:
    """Split `names` into those whose data is present and those missing (with the reason)."""
    ok, missing = [], {}
    for name in names:
        if name == "digits":
            ok.append(name)
            continue
        if name not in data.LOADERS:
            missing[name] = "no loader in celo_bench.data"
            continue
        try:
            data.require(name, {"image_size": image_size, "greyscale": True})
            ok.append(name)
        except DataMissingError as e:
            missing[name] = str(e).splitlines()[0]
    return ok, missing


def _stack(splits: list[dict[str, np.ndarray]], limit: int | None = None) -> dict[str, np.ndarray]:
    """Stack per-member ``image``/``label`` arrays on a member axis, padding by repetition."""
    xs = [np.asarray(s["image"], np.float32).reshape(len(s["label"]), -1)[:limit] for s in splits]
    ys = [np.asarray(s["label"], np.int32)[:limit] for s in splits]
    n = max(len(y) for y in ys)

    def pad(a):
        return np.concatenate([a] * (-(-n // len(a))))[:n]

    return {
        "x": np.stack([pad(x) for x in xs]),  # (F, N, D) float32 in [0, 255]
        "y": np.stack([pad(y) for y in ys]),  # (F, N)
        "n": np.asarray([len(y) for y in ys], np.int32),  # true sizes
    }


def image_mlp_family(
    names: Sequence[str],
    *,
    image_size: int = 8,
    hidden: Sequence[int] = (32,),
    batch_size: int = 64,
    eval_examples: int = 1024,
) -> TaskFamily:
    """The paper's meta-training MLPs on datasets `names` (one member each), unaugmented.

    The model is the project's image MLP (:func:`celo_bench.models.mlp.build_classifier`:
    haiku-default init, ReLU, mean cross-entropy), the same network the evaluation task
    ``ImageMLP_FashionMnist8_Relu32`` trains. Minibatches are sampled uniformly with
    replacement from each member's ``train`` split (the reference iterates a shuffled
    stream; for a 50-step truncation the difference is immaterial). ``eval_loss`` is the
    loss on (up to `eval_examples` of) the held-out ``outer_valid`` split.
    """
    if not names:
        raise CeloBenchError("meta-training needs at least one task")
    datasets = [_dataset(n, image_size) for n in names]
    shapes = {tuple(d.info["image_shape"]) for d in datasets}
    if len(shapes) != 1:
        raise CeloBenchError(f"meta-training tasks must share one image shape, got {sorted(shapes)}")
    info = {"num_classes": NUM_CLASSES, "image_shape": shapes.pop()}
    model = build_classifier(info=info, batch_size=batch_size, hidden=list(hidden))
    train = _stack([d.splits["train"] for d in datasets])
    held_out = _stack([d.splits["outer_valid"] for d in datasets], eval_examples)

    def sample_cfg(key, member):
        return {"member": jnp.asarray(member, jnp.int32)}

    def init(key, cfg):
        return model.init(key)[0]

    def loss(params, cfg, data, key):
        m = cfg["member"]
        idx = jax.random.randint(key, (batch_size,), 0, data["n"][m])
        batch = {"image": data["x"][m][idx], "label": data["y"][m][idx]}
        return model.loss(params, {}, key, batch)[0]

    def eval_loss(params, cfg, data):
        m = cfg["member"]
        mask = (jnp.arange(data["y"].shape[1]) < data["n"][m]).astype(jnp.float32)
        per_example = jax.vmap(
            lambda x, y: model.loss(params, {}, None, {"image": x[None], "label": y[None]})[0]
        )
        per = per_example(data["x"][m], data["y"][m])
        return jnp.sum(per * mask) / jnp.sum(mask)

    return TaskFamily(
        name="image_mlp8",
        members=tuple(names),
        sample_cfg=sample_cfg,
        init=init,
        loss=loss,
        normalize=normalizer,
        data={k: jnp.asarray(v) for k, v in train.items()},
        eval_loss=eval_loss,
        eval_data={k: jnp.asarray(v) for k, v in held_out.items()},
    )


def build_family(
    names: Sequence[str],
    *,
    image_size: int = 8,
    hidden: Sequence[int] = (32,),
    batch_size: int = 64,
    reparam_range: tuple[float, float] | None = (1e-3, 1e3),
) -> TaskFamily:
    """The meta-training family of a config: present datasets only, augmented if asked.

    Datasets without data are dropped with no error as long as one remains (the paper
    preset asks for all four; SVHN has no loader here). Raises CeloBenchError naming
    the missing ones when none is present.
    """
    ok, missing = available(names, image_size)
    if not ok:
        detail = "; ".join(f"{k}: {v}" for k, v in missing.items())
        raise DataMissingError(
            f"none of the meta-training tasks {', '.join(names)} has its data here ({detail}). "
            "Use --preset smoke (offline digits), --tasks digits, or prepare the data with `celo-bench data prepare`."
        )
    family = image_mlp_family(ok, image_size=image_size, hidden=hidden, batch_size=batch_size)
    if reparam_range is not None:
        family = reparametrize(family, reparam_range)
    return replace(family, name=f"{family.name}[{','.join(ok)}]")


__all__ = ["TaskFamily", "available", "build_family", "image_mlp_family", "normalizer", "reparametrize"]
