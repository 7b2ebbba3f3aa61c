"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(
    step: int, total_steps: int, warmup_steps: int, final_factor: float = 0.01
) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Rises linearly from ``1 / (warmup_steps + 1)`` to 1 over the first ``warmup_steps`` steps,
    then follows half a cosine from 1 down to ``final_factor`` at ``total_steps``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps), got {warmup_steps} of {total_steps}"
        )
    if not 0.0 <= final_factor <= 1.0:
        raise ValueError(f"final_factor must be in [0, 1], got {final_factor}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    final_factor: float = 0.01,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_cosine_factor` (step it once per optimiser step)."""
    warmup_cosine_factor(0, total_steps, warmup_steps, final_factor)  # validate eagerly
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, total_steps, warmup_steps, final_factor),
    )
