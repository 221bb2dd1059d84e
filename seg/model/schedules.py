"""Learning-rate schedules defined over the run's step budget.

Each is `(optimizer, total_steps, **config) -> LRScheduler`: the config (conf/scheduler/*.yaml) gives the
shape, and the module passes `total_steps` from the trainer, so `trainer.max_epochs` or
`trainer.max_steps` overrides stretch the schedule instead of breaking it.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR

MIN_WARMUP_STEPS = 2  # OneCycleLR's warm-up phase runs from step 0 to pct_start * total_steps - 1


def one_cycle(optimizer: Optimizer, total_steps: int, *, pct_start: float = 0.2) -> LRScheduler:
    """Warm up to each group's configured lr, then anneal to ~0 (torch's OneCycleLR, cosine).

    A budget too short for a warm-up of two steps (under 10 steps at pct_start 0.2) gets `cosine` instead:
    the same annealing from the peak, without the warm-up. torch's OneCycleLR divides by
    `pct_start * total_steps - 1`, zero for a 5-step smoke run, and with no warm-up phase it starts a step
    into the annealing (a 1-step run would train at lr 0).
    """
    total_steps = max(total_steps, 1)
    if pct_start * total_steps < MIN_WARMUP_STEPS:
        return cosine(optimizer, total_steps)
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start)


def cosine(optimizer: Optimizer, total_steps: int, *, eta_min: float = 0.0) -> LRScheduler:
    """Cosine decay from the configured lr to `eta_min`, no warm-up."""
    return CosineAnnealingLR(optimizer, T_max=max(total_steps, 1), eta_min=eta_min)


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """The configured lr at every step (`scheduler=constant`); the only schedule a resumed run may lengthen."""
    return LambdaLR(optimizer, lambda step: 1.0)


constant.independent_of_budget = True  # seg/inference/checkpoint.py: a resumed run may train longer
