"""Is a task in its family's regime? Tuned Adam's loss fraction against the paper's tasks.

A cheap tier stands in for the paper's 17 tasks only if each of its tasks trains in the
regime of its family: not memorised (loss near zero, where the final-loss ratio measures
float noise), not barely started. The measure is tuned Adam's

    fraction = final smoothed eval train loss / initial eval train loss

(mean over seeds of the tuned learning rate), compared with the same fraction at step 2,000
of LR-tuned Adam on the paper's tasks of that family, from the Adam baselines released with
VeLO (Metz et al., "VeLO: Training Versatile Learned Optimizers by Scaling Up",
arXiv:2211.09760), which Celo (Moudgil et al., arXiv:2501.12670) also scores against. A task
is in its family's band when its fraction lies in ``[min / 2, 2 * max]`` over the family's
paper tasks.

The table below holds those losses (steps 0 and 2,000, eight significant digits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

PAPER_ADAM_LOSS: dict[str, tuple[str, float, float]] = {
    # task: (family, tuned Adam's loss at step 0, at step 2,000)
    "ImageMLP_FashionMnist_Relu128x128": ("image_mlp", 2.2982438, 0.29939005),
    "ImageMLP_Cifar10_128x128x128_LayerNorm_Relu": ("image_mlp", 2.4059145, 1.4552874),
    "ImageMLP_Cifar10_128x128x128_Tanh_bs128": ("image_mlp", 2.3139443, 1.47915),
    "Conv_Cifar10_32x64x64": ("conv", 2.3018589, 1.1212737),
    "Conv_Cifar10_32x64x64_batchnorm": ("conv", 2.3101478, 0.76269956),
    "Conv_Cifar10_32x64x64_layernorm": ("conv", 2.4294438, 0.97652404),
    "Conv_Cifar100_32x64x64": ("conv", 4.6058097, 2.9124628),
    "VIT_Cifar100_wideshallow": ("vit", 4.605134, 2.8949068),
    "VIT_Cifar100_skinnydeep": ("vit", 4.605134, 3.2188702),
    "TransformerLM_LM1B_MultiRuntime_0": ("transformer_lm", 10.677266, 6.5470764),
    "TransformerLM_LM1B_MultiRuntime_2": ("transformer_lm", 10.702427, 6.2123309),
    "TransformerLM_LM1B_MultiRuntime_5": ("transformer_lm", 10.696767, 5.7678269),
    "ImageMLPAE_Cifar10_128x32x128_bs256": ("autoencoder", 0.063685656, 0.019238248),
    "ImageMLPAE_Mnist_128x32x128_bs128": ("autoencoder", 0.2312047, 0.011132596),
    "RNNLM_lm1b32k_Patch32_LSTM256_Embed128": ("rnn_lm", 10.377775, 4.6587512),
    "RNNLM_wikipediaen32k_Patch32_LSTM256_Embed128": ("rnn_lm", 10.378992, 4.0487247),
    "LOpt_AdafacMLPLOpt_FashionMnist_50": ("lopt", 2.2537186, 0.93398793),
}
"""The paper's 17 tasks: family and LR-tuned Adam's loss at steps 0 and 2,000 (VeLO's baselines)."""


def family_bands() -> dict[str, tuple[float, float]]:
    """Family -> ``(min / 2, 2 * max)`` of the paper tasks' fractions loss(2,000) / loss(0)."""
    by_family: dict[str, list[float]] = {}
    for family, at0, at2000 in PAPER_ADAM_LOSS.values():
        by_family.setdefault(family, []).append(at2000 / at0)
    return {f: (min(v) / 2.0, 2.0 * max(v)) for f, v in sorted(by_family.items())}


@dataclass(frozen=True)
class TaskRegime:
    """One task's regime check (the ``bench tier`` row)."""

    task: str
    family: str
    steps: int
    initial_loss: float     # tuned Adam's eval train loss at step 0 (mean over seeds)
    final_loss: float       # tuned Adam's final smoothed eval train loss (mean over seeds)
    fraction: float         # final_loss / initial_loss
    band: tuple[float, float] | None  # None: the family has no paper task
    in_band: bool
    zero_speedup_share: float  # share of (optimizer, seed) speedup scores that are exactly 0

    def as_json(self) -> dict:
        d = asdict(self)
        d["band"] = list(self.band) if self.band else None
        return d


def task_regimes(runs: pd.DataFrame, scores: pd.DataFrame, families: Mapping[str, str],
                 reference: str = "adam") -> list[TaskRegime]:
    """Regime of every task that has tuned reference runs.

    Args:
      runs: :attr:`celo_bench.score.RunScores.runs` (smoothed curves, ``selected``).
      scores: :attr:`celo_bench.score.RunScores.scores` (``speedup_score`` per tuned run).
      families: task -> family (the task spec's ``family``).
      reference: the tuned optimizer whose fraction is measured.
    """
    bands = family_bands()
    out = []
    tuned = runs[(runs["optimizer"] == reference) & runs["selected"] & (runs["status"] != "failed")]
    for task, g in tuned.groupby("task", sort=True):
        first = float(np.mean([y[0] for y in g["smoothed"] if len(y)]))
        final = float(np.mean(g["final_loss"]))
        fraction = final / first if first > 0 and np.isfinite(final) else float("nan")
        family = families.get(task, "")
        band = bands.get(family)
        su = scores.loc[scores["task"] == task, "speedup_score"].to_numpy(dtype=float)
        out.append(TaskRegime(
            task=task, family=family, steps=int(g["num_steps"].iloc[0]), initial_loss=first,
            final_loss=final, fraction=fraction, band=band,
            in_band=bool(band is not None and np.isfinite(fraction) and band[0] <= fraction <= band[1]),
            zero_speedup_share=float(np.mean(su == 0.0)) if su.size else float("nan"),
        ))
    return out


__all__ = ["PAPER_ADAM_LOSS", "TaskRegime", "family_bands", "task_regimes"]
