"""Adan with warm-up and cosine decay: an example hand-crafted submission.

None of the benchmark's baselines combines a Nesterov gradient-difference term with a
horizon-aware schedule. Adan itself is ``optax.adan``; the schedule is the unit-peak
``optax.warmup_cosine_decay_schedule`` multiplied by the learning rate, because optax's
schedule checks its peak value in Python and so cannot take a traced learning rate.
"""

from __future__ import annotations

import optax


def make_optimizer(
    *,
    learning_rate,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    warmup_fraction: float = 0.05,
    num_steps: int,
) -> optax.GradientTransformation:
    r"""Adan (Xie et al. 2022) under a warm-up + cosine schedule :math:`\eta_t`.

    With gradient :math:`g_t` and :math:`\Delta_t = g_t - g_{t-1}`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t, \\
        n_t = \beta_3 n_{t-1} + (1-\beta_3) [g_t + \beta_2 \Delta_t]^2, \quad
        \theta_{t+1} = \theta_t - \eta_t (\hat m_t + \beta_2 \hat v_t) / (\sqrt{\hat n_t} + \epsilon)

    (hats: bias-corrected; optax's betas are the EMA decays). :math:`\eta_t` rises
    linearly from 0 to ``learning_rate`` over ``warmup_fraction * num_steps`` steps, then
    follows a cosine to 0 at ``num_steps``.

    Args:
      learning_rate: peak step size (traced when the search space is vmapped).
      b1, b2, b3: decays of the gradient, gradient-difference and squared-term EMAs.
      warmup_fraction: share of the horizon spent warming up (a Python float).
      num_steps: the run's horizon T.
    """
    warmup = max(1, int(warmup_fraction * num_steps))
    shape = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=1.0, warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1), end_value=0.0,
    )
    return optax.adan(lambda count: learning_rate * shape(count), b1=b1, b2=b2, b3=b3)
