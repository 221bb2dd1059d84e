"""Any step budget >= 1 trains and writes its summary, for every schedule (conf/scheduler/*.yaml) and no schedule.

torch's OneCycleLR divides by zero when `pct_start * total_steps - 1 == 0` (a 5-step smoke run at 0.2): the
one_cycle schedule must fall back to annealing without a warm-up there, and still train at a non-zero lr.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from seg.run.train import train
from tests.conftest import CONF_DIR, compose_config, tiny_overrides

SCHEDULES = sorted(p.stem for p in (CONF_DIR / "scheduler").glob("*.yaml"))
LR = 1e-3


def learning_rates(schedule: str, total_steps: int) -> list[float]:
    """The lr each of `total_steps` optimizer steps uses, with the schedule built as training builds it."""
    factory = instantiate(compose_config([f"scheduler={schedule}"]).scheduler)
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=LR)
    scheduler = factory(optimizer, total_steps=total_steps)
    used = []
    for _ in range(total_steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()  # raises past the budget (OneCycleLR) or on a zero-length phase
    return used


@pytest.mark.parametrize("total_steps", range(1, 11))
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_runs_any_budget_at_a_positive_rate(schedule, total_steps):
    used = learning_rates(schedule, total_steps)
    assert len(used) == total_steps and all(math.isfinite(lr) and 0 <= lr <= LR for lr in used)
    assert max(used) == pytest.approx(LR)  # the configured peak is reached, even by a 1-step run
    assert used[-1] <= used[0] or total_steps >= 10  # short budgets: annealing only, no warm-up


def test_one_cycle_keeps_its_warm_up_when_the_budget_allows_one():
    used = learning_rates("one_cycle", 100)
    assert used[0] == pytest.approx(LR / 25)  # OneCycleLR's div_factor: the default run is unchanged
    assert max(used) == pytest.approx(LR, rel=1e-3) and used.index(max(used)) in (19, 20)


def _summary(tmp_path: Path, *overrides: str) -> dict:
    train(compose_config([*tiny_overrides(tmp_path), "~callbacks.predictions", *overrides]))
    return json.loads((tmp_path / "run" / "summary.json").read_text())


# 32 training images in batches of 8: 4 steps an epoch.
BUDGETS = {
    "max_steps=1": (["trainer.max_steps=1"], 1),
    "max_steps=5 (OneCycle's zero division)": (["trainer.max_steps=5"], 5),
    "limit_train_batches=1, 2 epochs": (["trainer.limit_train_batches=1", "trainer.max_epochs=2"], 2),
    "max_epochs=1": (["trainer.max_epochs=1"], 4),
}


@pytest.mark.parametrize("overrides, steps", BUDGETS.values(), ids=BUDGETS.keys())
def test_tiny_budgets_train_and_write_a_summary(tmp_path, overrides, steps):
    summary = _summary(tmp_path, *overrides)
    assert summary["global_step"] == steps
    assert all(0 <= summary[key] <= 1 for key in ("val/iou", "test/iou"))


@pytest.mark.slow
@pytest.mark.parametrize("max_steps", range(1, 11))
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_trains_every_budget_from_1_to_10(tmp_path, schedule, max_steps):
    summary = _summary(tmp_path, f"scheduler={schedule}", f"trainer.max_steps={max_steps}")
    assert summary["global_step"] == max_steps


def test_only_the_constant_schedule_lets_a_resumed_run_train_longer():
    from seg.run.resume import _laid_over_the_budget

    laid = {name: _laid_over_the_budget(compose_config([f"scheduler={name}"]).scheduler) for name in SCHEDULES}
    assert laid == {"constant": False, "cosine": True, "one_cycle": True}
    assert not _laid_over_the_budget(compose_config(["~scheduler"]).get("scheduler"))
