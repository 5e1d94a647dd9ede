"""Learning-rate schedule: linear warm-up, then cosine decay to a floor, stepped per optimiser step."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    Warm-up goes linearly from 1/(warmup+1) to 1 over ``warmup_steps``; then a half cosine takes it
    from 1 to ``min_ratio`` at ``total_steps`` (and it stays there afterwards).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
