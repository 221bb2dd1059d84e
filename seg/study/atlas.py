"""The head atlas: paired, seeded head comparisons over optimizers, learning rates and data conditions.

Three kinds of sweep feed it (conf/experiment/atlas_*.yaml):

- *selection* (experiment=atlas_lr): every head x optimizer x lr_scale on a few seeds. Only its val/iou is
  used, to pick each head's best lr_scale per optimizer; its test numbers never enter a verdict;
- *measurement* (experiment=atlas_confirm, atlas_data): six or more fresh seeds per head in one setting.

A *cell* compares one head with another on the seeds both ran, in one context (condition, optimizer,
learning rates): the paired difference of test IoU, its bootstrap and t intervals, the Wilcoxon and
paired-t p, the smallest difference the seeds could detect. The contexts: at the optimizer's shared default
lr (lr_scale 1), at *matched* learning rates (each head at its own best lr_scale), and per data condition.
All cells of the atlas form one family: their paired-t p values are Holm-corrected together. (The exact
signed-rank test cannot serve there: with 6 seeds its smallest p is 2/64, which Holm multiplies by the
number of cells.) A cell that lacks runs is listed with the command that would fill it, never dropped.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from seg.study.compare import Job, find_jobs, paired_comparison

BASELINE = "sigmoid_bce"
TANH = "tanh_mse"
CONTROL = "sigmoid_mse"  # tanh_mse is 4x the Brier score of sigmoid(2z): this is the same loss at logit scale 1
SELECTION_EXPERIMENT = "atlas_lr"
PLAIN = "plain"  # no condition=: the generated dataset as it is
DEFAULT_OPTIMIZER = "adamw"
SHARED_SCALE = 1.0
ALPHA = 0.05
MIN_SEEDS = 6  # below this the signed-rank test cannot reach p < 0.05 (2 / 2^5 = 0.0625)
METRIC = "test/iou"
COMPARISONS = ((TANH, BASELINE), (CONTROL, BASELINE), (TANH, CONTROL))  # (head, against)


@dataclass(frozen=True)
class Run:
    """One job of an atlas sweep, by what defines its cell."""

    head: str
    condition: str
    optimizer: str
    lr_scale: float
    seed: str
    experiment: str  # the experiment= it ran under ("?" without one)
    path: Path
    summary: dict | None  # None: the job failed or is still running
    lr: float | None  # the optimizer's resolved lr, from the run's config.yaml

    @property
    def selection(self) -> bool:
        """An atlas_lr job: picks learning rates, never enters a verdict."""
        return self.experiment == SELECTION_EXPERIMENT


def to_run(job: Job) -> Run:
    o = job.overrides
    config_file = job.path / "config.yaml"  # written at the end of a finished run, with the resolved values
    lr = None
    if config_file.exists():
        lr = float(yaml.safe_load(config_file.read_text())["optimizer"]["lr"])
    return Run(
        head=job.head,
        condition=o.get("condition", PLAIN),
        optimizer=o.get("optimizer", DEFAULT_OPTIMIZER),
        lr_scale=float(o.get("lr_scale", SHARED_SCALE)),
        seed=job.seed,
        experiment=o.get("experiment", "?"),
        path=job.path,
        summary=job.summary,
        lr=lr,
    )


def load_runs(directories: list[Path]) -> list[Run]:
    return [to_run(job) for job in find_jobs(directories)]


# --- selection: the learning-rate grid ------------------------------------------------------------------


@dataclass(frozen=True)
class GridPoint:
    optimizer: str
    head: str
    lr_scale: float
    lr: float
    val: list[float]  # val/iou per seed


def lr_grid(runs: list[Run]) -> list[GridPoint]:
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.selection and run.summary is not None:
            groups[(run.optimizer, run.head, run.lr_scale)].append(run)
    return [
        GridPoint(optimizer, head, scale, members[0].lr, [float(r.summary["val/iou"]) for r in members])
        for (optimizer, head, scale), members in sorted(groups.items())
    ]


def best_scales(grid: list[GridPoint]) -> dict[tuple[str, str], float]:
    """(optimizer, head) -> the lr_scale with the highest mean val/iou (the smaller scale on a tie)."""
    best: dict[tuple[str, str], GridPoint] = {}
    for point in sorted(grid, key=lambda p: p.lr_scale):
        key = (point.optimizer, point.head)
        if key not in best or np.mean(point.val) > np.mean(best[key].val):
            best[key] = point
    return {key: point.lr_scale for key, point in best.items()}


# --- measurement: the cells -----------------------------------------------------------------------------


@dataclass
class Cell:
    condition: str
    optimizer: str
    setting: str  # "shared lr" or "matched lr"
    head: str
    against: str
    scales: tuple[float, float]  # lr_scale of head, of against
    stats: dict | None = None  # seg.study.compare.paired_comparison; None when a side has no runs
    missing: list[str] = field(default_factory=list)  # what is absent, as commands that would fill it
    p_holm: float = math.nan

    @property
    def context(self) -> str:
        return f"{self.condition} · {self.optimizer} · {self.setting}"

    @property
    def comparison(self) -> str:
        return f"{self.head} − {self.against}"


def measured(runs: list[Run]) -> dict[tuple, dict[str, float]]:
    """(condition, optimizer, lr_scale, head) -> {seed: test IoU} over the finished measurement runs."""
    table: dict[tuple, dict[str, float]] = defaultdict(dict)
    for run in runs:
        if not run.selection and run.summary is not None and METRIC in run.summary:
            table[(run.condition, run.optimizer, run.lr_scale, run.head)][run.seed] = float(run.summary[METRIC])
    return table


def fill_command(condition: str, optimizer: str, scale: float, head: str) -> str:
    if condition == PLAIN:
        return f"python train.py -m experiment=atlas_confirm optimizer={optimizer} lr_scale={scale:g} head={head}"
    return (
        f"python train.py -m experiment=atlas_data condition={condition} optimizer={optimizer}"
        f" lr_scale={scale:g} head={head}"
    )


def compare(table, condition: str, optimizer: str, setting: str, pair, scales) -> Cell:
    cell = Cell(condition, optimizer, setting, pair[0], pair[1], scales)
    sides = [table.get((condition, optimizer, scale, head), {}) for head, scale in zip(pair, scales, strict=True)]
    for head, scale, seeds in zip(pair, scales, sides, strict=True):
        if len(seeds) < MIN_SEEDS:
            cell.missing.append(
                f"{head} has {len(seeds)} of {MIN_SEEDS} seeds: {fill_command(condition, optimizer, scale, head)}"
            )
    if all(sides):
        cell.stats = paired_comparison(sides[0], sides[1])
    return cell


def atlas_cells(runs: list[Run]) -> list[Cell]:
    """Every comparison the runs support or were meant to: plain data per optimizer at the shared and at matched
    learning rates, then each data condition (at the shared lr of the optimizer it ran with)."""
    table, best = measured(runs), best_scales(lr_grid(runs))
    optimizers = sorted({r.optimizer for r in runs if r.condition == PLAIN})
    cells = []
    for optimizer in optimizers:
        for pair in COMPARISONS:
            cells.append(compare(table, PLAIN, optimizer, "shared lr", pair, (SHARED_SCALE, SHARED_SCALE)))
        for pair in COMPARISONS:
            if all((optimizer, head) in best for head in pair):
                scales = tuple(best[(optimizer, head)] for head in pair)
                if scales != (SHARED_SCALE, SHARED_SCALE):  # else it is the shared-lr cell: one test, not two
                    cells.append(compare(table, PLAIN, optimizer, "matched lr", pair, scales))
    conditions = sorted(
        {(r.condition, r.optimizer, r.lr_scale) for r in runs if r.condition != PLAIN and not r.selection}
    )
    for condition, optimizer, scale in conditions:
        heads = {r.head for r in runs if (r.condition, r.optimizer, r.lr_scale) == (condition, optimizer, scale)}
        for pair in COMPARISONS:
            if set(pair) <= heads:
                cells.append(compare(table, condition, optimizer, "shared lr", pair, (scale, scale)))
    apply_holm(cells)
    return cells


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest of m p values times (m - k + 1), kept monotone, capped at 1.

    Controls the family-wise error rate at alpha over all m tests without assuming they are independent.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [math.nan] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def apply_holm(cells: list[Cell]) -> None:
    """One family: every cell with a paired-t p. Cells without one (missing, or no spread) are not tests."""
    tested = [c for c in cells if c.stats is not None and not math.isnan(c.stats["t_p"])]
    for cell, p in zip(tested, holm([c.stats["t_p"] for c in tested]), strict=True):
        cell.p_holm = p


def excludes_zero(stats: dict) -> bool:
    lows, highs = (stats["ci_low"], stats["t_ci_low"]), (stats["ci_high"], stats["t_ci_high"])
    return all(low > 0 for low in lows) or all(high < 0 for high in highs)


def significance(cell: Cell) -> int:
    """2: both CIs exclude 0 and Holm p < alpha; 1: both CIs exclude 0 before correction only; 0: neither."""
    if cell.stats is None or cell.stats["n"] < 2 or math.isnan(cell.stats["ci_low"]):
        return 0
    if not excludes_zero(cell.stats):
        return 0
    return 2 if cell.p_holm < ALPHA else 1


def verdict(cell: Cell) -> str:
    s = cell.stats
    if s is None:
        return "not measured"
    if s["n"] < 2 or math.isnan(s["ci_low"]):
        return f"too few paired seeds ({s['n']})"
    direction = f"{cell.head} {'better' if s['mean_diff'] > 0 else 'worse'} by {abs(s['mean_diff']):.4f}"
    level = significance(cell)
    if level == 2:
        return f"{direction} (Holm p = {cell.p_holm:.3g})"
    if level == 1:
        return f"{direction} before correction; not significant after Holm (p = {cell.p_holm:.3g})"
    return f"no difference resolved ({s['mean_diff']:+.4f}; could detect ≥ {s['detectable']:.4f})"


# --- provenance -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One sweep folder: what ran, at which commit, how long it took."""

    path: Path
    jobs: int
    finished: int
    wall_seconds: float  # from the sweep's start (multirun.yaml) to its last summary.json
    train_seconds: float  # the jobs' own fit time, summed
    commit: str
    command: str  # the sweep's command line, from Hydra's multirun.yaml


def describe_arms(directories: list[Path], runs: list[Run]) -> list[Arm]:
    arms = []
    for directory in directories:
        members = [r for r in runs if directory in r.path.parents]
        finished = [r for r in members if r.summary is not None]
        start_file = directory / "multirun.yaml"
        start = start_file.stat().st_mtime if start_file.exists() else math.nan
        end = max(((r.path / "summary.json").stat().st_mtime for r in finished), default=math.nan)
        commits = {r.summary.get("commit") for r in finished if r.summary.get("commit")}
        commit_file = directory / "commit.txt"  # for sweeps that predate summary.json's commit
        if not commits and commit_file.exists():
            commits = {commit_file.read_text().strip()}
        command = "?"
        if start_file.exists():
            task = (yaml.safe_load(start_file.read_text()) or {}).get("hydra", {}).get("overrides", {}).get("task")
            if task is not None:
                command = "python train.py -m " + " ".join(task)
        arms.append(
            Arm(
                path=directory,
                jobs=len(members),
                finished=len(finished),
                wall_seconds=end - start,
                train_seconds=sum(float(r.summary.get("train_seconds", 0)) for r in finished),
                commit=", ".join(sorted(commits)) or "not recorded",
                command=command,
            )
        )
    return arms


def failed_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.summary is None]


def to_json(cells: list[Cell]) -> str:
    return json.dumps(
        [
            {
                "context": c.context,
                "comparison": c.comparison,
                "scales": c.scales,
                **(c.stats or {}),
                "p_holm": c.p_holm,
                "verdict": verdict(c),
                "missing": c.missing,
            }
            for c in cells
        ],
        indent=1,
    )
