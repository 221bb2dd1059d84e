"""The head atlas: paired, seeded head comparisons over optimizers, learning rates and data conditions.

Three kinds of sweep feed it (conf/experiment/atlas_*.yaml):

- *selection* (experiment=atlas_lr): every head x optimizer x lr_scale on a few seeds. Only its val/iou is
  used, to pick each head's best lr_scale per optimizer; its test numbers never enter a verdict;
- *measurement* (experiment=atlas_confirm, atlas_data): six or more fresh seeds per head in one setting.

A *cell* compares one head with another on the seeds both ran, in one context (condition, optimizer,
learning rates): the paired difference of test IoU, its bootstrap and t intervals, the Wilcoxon and
paired-t p, the smallest difference the seeds could detect. The contexts: at the optimizer's shared default
lr (lr_scale 1), at *matched* learning rates (each head at its own best lr_scale), per data condition (at the
shared and at the tuned rates), and the exact *controls* (experiment=atlas_controls, CONTROLS below).

The primary family, declared in docs/results/atlas/preregistration.md before its runs: tanh_mse − sigmoid_bce
at each head's own tuned lr, one cell per condition and optimizer. Only its paired-t p values are
Holm-corrected; every other cell is secondary and reports its uncorrected p. Every cell also carries a TOST at
the declared margin, collapse as its own endpoint, its per-seed values and, for a condition, the interaction
(condition Δ − plain Δ). A cell that lacks runs is listed with the command that would fill it, never dropped.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from seg.paths import PROJECT_DIR
from seg.study.compare import Job, find_jobs, paired_comparison, read_curve
from seg.study.stats import ALPHA, MARGIN, collapse_endpoint, excludes_zero, holm, interaction, tost

BASELINE = "sigmoid_bce"
TANH = "tanh_mse"
CONTROL = "sigmoid_mse"  # tanh_mse is 4x the Brier score of sigmoid(2z): this is the same loss at logit scale 1
SELECTION_EXPERIMENTS = ("atlas_lr", "atlas_mechanism", "atlas_mechanism_top")  # lr grids: only val/iou is read
# The lr-shift test was declared on atlas_mechanism's 12 rates; the grid's upward extension (atlas_mechanism_top,
# an amendment made after the grid's top turned out best) only moves the tuned rates, never the declared fit.
SHIFT_EXPERIMENTS = ("atlas_lr", "atlas_mechanism")
CONTROLS_EXPERIMENT = "atlas_controls"
PLAIN = "plain"  # no condition=: the generated dataset as it is
DEFAULT_OPTIMIZER = "adamw"
DEFAULT_MODEL = "unet"
SHARED_SCALE = 1.0
ATLAS_EPOCHS = 6  # conf/experiment/atlas.yaml's schedule; a run at another is labelled with its epochs
MIN_SEEDS = 6  # below this the signed-rank test cannot reach p < 0.05 (2 / 2^5 = 0.0625)
METRIC = "test/iou"
COMPARISONS = ((TANH, BASELINE), (CONTROL, BASELINE), (TANH, CONTROL))  # (head, against)
PRIMARY = (TANH, BASELINE)
# Where a head is not one of conf/head/*.yaml's options but conf/head/control/<name>.yaml's.
CONTROL_HEADS = frozenset(p.stem for p in (PROJECT_DIR / "conf" / "head" / "control").glob("*.yaml"))
# Read from summary.json when the run wrote them, else from the last row of its metrics.csv (callbacks).
OPERATING_METRICS = ("test/iou@val_threshold", "test/ap", "test/ece", "test/brier", "test/boundary_iou", "test/cldice")
# The final weights beside the best checkpoint (evaluate_last, the regime arms): what early stopping hides.
LAST_IOU = "last/test/iou"
LAST_METRICS = (LAST_IOU, "last/test/iou@val_threshold", "last/test/ece", "last/test/brier")
# How closely the final epoch fits the training labels (noisy ones in the noise arm): what memorising raises. Read
# only where the final weights were scored, i.e. in the regime arms, whose long schedules can memorise.
FIT_METRIC = "train/iou"
# Per job, beside summary.json, from scripts/memorisation.py (seg/inference/memorisation.py, which this layer may not
# import): the share of flipped training pixels the final weights decide as their flipped label, and of the others
# they get right; the noise arm's test of *how* a head resists noisy labels.
MEMORISATION_FILE = "memorisation.json"
MEMORISATION_METRICS = ("last/train/memorised", "last/train/kept_right")
REGIME_ONLY_METRICS = (FIT_METRIC, *MEMORISATION_METRICS)  # read only in cells whose final weights were scored
# The regime arms (experiment=regime_*, docs/results/regimes/preregistration.md): each is a condition of its own,
# named `regime <arm>` (and the label-noise rate where it sweeps one); their primary cells form their own family.
REGIME = "regime_"
REGIME_SWEPT = ("data.label_noise.flip",)

# lr ratio c = (head's lr) / (sigmoid_bce's lr) at which the head's val-IoU curve matches sigmoid_bce's
# (seg.study.shift), predicted in docs/results/atlas/preregistration.md from the gradient scales before the runs.
PREDICTED_SHIFTS = {
    "sgd": {TANH: 0.5, CONTROL: 2.0},  # the body's gradient at the boundary: tanh_mse 2x, sigmoid_mse 1/2x BCE's
    "adamw": {TANH: 1.0, CONTROL: 1.0},  # Adam divides every constant gradient factor out
}


@dataclass(frozen=True)
class Control:
    """A pair of arms the scale calculus relates (docs/heads.md "Exact equivalences"): `equal` pairs must pass
    TOST at MARGIN, the others are tested for a difference. An arm is a head, `@model` for another init and
    `@last_lr<s>` for the last layer's own lr scale (last_layer_lr_scale)."""

    arm: str
    scale: float
    against: str
    against_scale: float
    optimizer: str
    equal: bool
    why: str


CONTROLS = (
    Control("tanh_half", 1, CONTROL, 1, "adamw", True, "4 x sigmoid_mse; Adam divides a constant factor out"),
    Control("sigmoid2_brier", 1, TANH, 1, "adamw", True, "tanh_mse / 4; Adam divides a constant factor out"),
    Control("bce_2z", 1, BASELINE, 1, "adamw", False, "the logit scale 2 alone, on BCE"),
    Control(f"{CONTROL}@unet_last_init2", 1, CONTROL, 1, "adamw", False, "tanh_mse's start (last layer x2) alone"),
    Control(CONTROL, 2, CONTROL, 1, "adamw", False, "a 2x step alone"),
    Control(TANH, 1, f"{CONTROL}@unet_last_init2", 1, "adamw", False, "what is left: the last layer's step x2"),
    Control(f"{CONTROL}@last_lr2", 1, CONTROL, 1, "adamw", False, "the last layer's step x2 alone"),
    Control(
        f"{CONTROL}@unet_last_init2@last_lr2", 1, TANH, 1, "adamw", True, "tanh_mse exactly: last layer x2, its step x2"
    ),
    Control("tanh_half", 0.25, CONTROL, 1, "sgd", True, "4 x the loss at lr / 4 (coupled L2 differs 4x)"),
    Control("sigmoid2_brier", 1, TANH, 0.25, "sgd", True, "tanh_mse / 4 at 4x its lr (coupled L2 differs 4x)"),
)


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
    model: str = DEFAULT_MODEL  # the model= option (unet_last_init2: a control)
    last_lr: float = 1.0  # last_layer_lr_scale (2: the control that steps the last layer x2)
    started: str = ""  # when the job started (its run.json): orders the replications of one seed; "" unknown
    measured: dict = field(default_factory=dict)  # metrics measured after the run (MEMORISATION_FILE)

    @property
    def cell_key(self) -> tuple:
        """(condition, optimizer, lr_scale, arm): the cell side this run measures (a Table's key)."""
        return self.condition, self.optimizer, self.lr_scale, self.arm

    @property
    def arm(self) -> str:
        """The head, `@model` when the network's init differs, `@last_lr<s>` when the last layer has its own lr:
        what a cell compares."""
        parts = [self.head, *([self.model] if self.model != DEFAULT_MODEL else [])]
        return "@".join(parts + ([f"last_lr{self.last_lr:g}"] if self.last_lr != 1.0 else []))

    def metric(self, name: str) -> float:
        """A metric of the finished run: summary.json's, else one measured after it, else the last value its
        metrics.csv logged."""
        if self.summary is not None and name in self.summary and self.summary[name] is not None:
            return float(self.summary[name])
        if name in self.measured:
            return float(self.measured[name])
        curve = read_curve(Job(self.path, {}, self.summary), name)
        return curve[max(curve)] if curve else math.nan

    @property
    def selection(self) -> bool:
        """An lr-grid job (atlas_lr, atlas_mechanism): picks learning rates, never enters a verdict."""
        return self.experiment in SELECTION_EXPERIMENTS


def to_run(job: Job) -> Run:
    o = job.overrides
    config_file = job.path / "config.yaml"  # written at the end of a finished run, with the resolved values
    config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    lr = float(config["optimizer"]["lr"]) if config else None
    epochs = int(o.get("trainer.max_epochs", (config.get("trainer") or {}).get("max_epochs", ATLAS_EPOCHS)))
    experiment = o.get("experiment", "?")
    condition = o.get("condition", PLAIN)
    if experiment.startswith(REGIME):  # its schedule is part of the regime
        condition = " ".join(
            ["regime", experiment.removeprefix(REGIME), *(f"{k}={o[k]}" for k in REGIME_SWEPT if k in o)]
        )
    elif (
        epochs != ATLAS_EPOCHS
    ):  # another schedule is another cell: the failure arm's rare objects are not the 6-epoch ones
        condition = f"{condition}, {epochs} epochs"
    return Run(
        head=job.head.rsplit("/", 1)[-1],  # head=control/tanh_half names the head tanh_half
        condition=condition,
        optimizer=o.get("optimizer", DEFAULT_OPTIMIZER),
        lr_scale=float(o.get("lr_scale", SHARED_SCALE)),
        seed=job.seed,
        experiment=experiment,
        path=job.path,
        summary=job.summary,
        lr=lr,
        model=o.get("model", DEFAULT_MODEL),
        last_lr=float(o.get("last_layer_lr_scale", 1.0)),
        started=start_time(job.path),
        measured=read_measured(job.path),
    )


def read_measured(job_dir: Path) -> dict:
    try:
        return json.loads((job_dir / MEMORISATION_FILE).read_text())
    except (OSError, ValueError):  # not measured (yet), or a partial write: the report shows it as missing
        return {}


def start_time(job_dir: Path) -> str:
    try:
        return str(json.loads((job_dir / "run.json").read_text()).get("started", ""))
    except (OSError, ValueError):
        return ""


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
    seeds: list[str] = field(default_factory=list)  # in the order of `val`


def lr_grid(runs: list[Run]) -> list[GridPoint]:
    groups: dict[tuple, dict[str, Run]] = defaultdict(dict)
    for run in runs:
        if run.selection and run.summary is not None:  # a seed that two grids ran counts once
            groups[(run.optimizer, run.arm, run.lr_scale)][run.seed] = run
    return [
        GridPoint(
            optimizer,
            head,
            scale,
            members[0].lr,
            [float(r.summary["val/iou"]) for r in members],
            [r.seed for r in members],
        )
        for (optimizer, head, scale), by_seed in sorted(groups.items())
        for members in [list(by_seed.values())]
    ]


def grid_curves(grid: list[GridPoint], optimizer: str) -> dict[str, dict[str, dict[float, float]]]:
    """head -> seed -> {lr: val IoU} of one optimizer's selection grid: what seg.study.shift fits."""
    curves: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for point in grid:
        if point.optimizer == optimizer and point.lr:
            for seed, value in zip(point.seeds, point.val, strict=True):
                curves[point.head][seed][point.lr] = value
    return {head: dict(seeds) for head, seeds in curves.items()}


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
    setting: str  # "shared lr", "matched lr" (each head at its tuned lr) or "control"
    head: str  # an arm: a head, or head@model
    against: str
    scales: tuple[float, float]  # lr_scale of head, of against
    stats: dict | None = None  # seg.study.compare.paired_comparison; None when a side has no runs
    missing: list[str] = field(default_factory=list)  # what is absent, as commands that would fill it
    p_holm: float = math.nan  # only in the primary family
    primary: bool = False  # tanh_mse − sigmoid_bce at the tuned rates: the declared primary family
    seeds: dict[str, tuple[float, float]] = field(default_factory=dict)  # seed -> (head, against) test IoU
    tost: dict | None = None  # seg.study.stats.tost of the paired Δ at MARGIN
    collapse: dict | None = None  # seg.study.stats.collapse_endpoint
    interaction: dict | None = None  # condition Δ − plain Δ (seg.study.stats.interaction), for a condition
    metrics: dict[str, dict] = field(default_factory=dict)  # OPERATING_METRICS name -> paired_comparison
    expect_equal: bool | None = None  # a control: the theory says equal (True) or does not (False)
    why: str = ""  # a control's reason

    @property
    def context(self) -> str:
        return f"{self.condition} · {self.optimizer} · {self.setting}"

    @property
    def comparison(self) -> str:
        return f"{self.head} − {self.against}"


Table = dict[tuple, dict[str, Run]]  # (condition, optimizer, lr_scale, arm) -> {seed: finished measurement run}


def finished_measurements(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.selection and r.summary is not None and METRIC in r.summary]


def measured_runs(runs: list[Run], prefer: str | None = None, latest: bool = True) -> Table:
    """(condition, optimizer, lr_scale, arm) -> {seed: run}. A seed of an arm that ran more than once (the
    controls' sweep reruns the plain heads; an arm rerun on another machine, whose CPU kernels differ in their last
    bits) counts once: the run of the `prefer`red experiment, else of any experiment but the controls', and of
    those the latest (`latest=False`: the earliest, to show what a claim says on the other replication). Every
    replication is reported apart (`replications`)."""

    def own(run: Run) -> bool:
        return run.experiment == prefer if prefer else run.experiment != CONTROLS_EXPERIMENT

    by_start = sorted(finished_measurements(runs), key=lambda run: run.started, reverse=not latest)
    table: Table = defaultdict(dict)
    for run in sorted(by_start, key=own):  # stable: the best-ranked run is written last and stays
        table[run.cell_key][run.seed] = run
    return table


def replications(runs: list[Run]) -> list[tuple[tuple, str, list[Run]]]:
    """(cell key, seed, runs in start order) for every measured seed of an arm that ran more than once."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in finished_measurements(runs):
        groups[(run.cell_key, run.seed)].append(run)
    return [
        (key, seed, sorted(group, key=lambda run: run.started))
        for (key, seed), group in groups.items()
        if len(group) > 1
    ]


def measured(runs: list[Run]) -> dict[tuple, dict[str, float]]:
    """(condition, optimizer, lr_scale, arm) -> {seed: test IoU} over the finished measurement runs."""
    return {key: values(seeds) for key, seeds in measured_runs(runs).items()}


def values(seeds: dict[str, Run], metric: str = METRIC) -> dict[str, float]:
    out = {seed: run.metric(metric) for seed, run in seeds.items()}
    return {seed: v for seed, v in out.items() if not math.isnan(v)}


def head_option(arm: str) -> str:
    """The command-line overrides that select an arm: head=..., model=... for an init control and
    last_layer_lr_scale=... for a last-layer step control."""
    head, *rest = arm.split("@")
    option = f"control/{head}" if head in CONTROL_HEADS else head
    extra = [
        f"last_layer_lr_scale={part.removeprefix('last_lr')}" if part.startswith("last_lr") else f"model={part}"
        for part in rest
    ]
    return " ".join([f"head={option}", *extra])


def is_regime(condition: str) -> bool:
    return condition.startswith("regime ")


def fill_command(condition: str, optimizer: str, scale: float, head: str, experiment: str | None = None) -> str:
    if is_regime(condition):
        arm, *swept = condition.removeprefix("regime ").split()
        where = f"multirun/{REGIME}{arm}/{head.split('@')[0]}"
        return (
            f"python train.py -m experiment={REGIME}{arm} {' '.join(swept) + ' ' if swept else ''}lr_scale={scale:g}"
            f" {head_option(head)} hydra.sweep.dir={where}"
        )
    experiment = experiment or ("atlas_confirm" if condition == PLAIN else "atlas_data")
    name, _, schedule = condition.partition(", ")  # "rare, 18 epochs"
    where = ("" if name == PLAIN else f" condition={name}") + (
        f" trainer.max_epochs={schedule.split()[0]}" if schedule else ""
    )
    return f"python train.py -m experiment={experiment}{where} optimizer={optimizer} lr_scale={scale:g} {head_option(head)}"


def compare(table: Table, condition, optimizer, setting, pair, scales, experiment: str | None = None) -> Cell:
    cell = Cell(condition, optimizer, setting, pair[0], pair[1], scales)
    sides = [table.get((condition, optimizer, scale, head), {}) for head, scale in zip(pair, scales, strict=True)]
    for head, scale, seeds in zip(pair, scales, sides, strict=True):
        if len(seeds) < MIN_SEEDS:
            command = fill_command(condition, optimizer, scale, head, experiment)
            cell.missing.append(f"{head} has {len(seeds)} of {MIN_SEEDS} seeds: {command}")
    if not all(sides):
        return cell
    head_iou, base_iou = values(sides[0]), values(sides[1])
    cell.stats = paired_comparison(head_iou, base_iou)
    common = sorted(set(head_iou) & set(base_iou), key=_seed_order)
    cell.seeds = {seed: (head_iou[seed], base_iou[seed]) for seed in common}
    cell.tost = tost([head_iou[s] - base_iou[s] for s in common])
    cell.collapse = collapse_endpoint(head_iou, base_iou)
    regime_metrics = (*LAST_METRICS, *REGIME_ONLY_METRICS)
    for metric in (*OPERATING_METRICS, *regime_metrics):
        if metric in REGIME_ONLY_METRICS and LAST_IOU not in cell.metrics:  # LAST_IOU comes first in the loop
            continue
        a, b = values(sides[0], metric), values(sides[1], metric)
        if set(a) & set(b):
            cell.metrics[metric] = paired_comparison(a, b)
            if metric in regime_metrics:  # the regime arms' endpoints: per seed, and TOST for their IoU
                both = sorted(set(a) & set(b), key=_seed_order)
                cell.metrics[metric]["per_seed"] = {s: {"head": a[s], "against": b[s]} for s in both}
                if metric == LAST_IOU:
                    cell.metrics[metric]["tost"] = tost([a[s] - b[s] for s in both])
    return cell


def metric_cell(cell: Cell, metric: str) -> Cell | None:
    """The cell as if `metric` (of LAST_METRICS and REGIME_ONLY_METRICS) were its endpoint: its paired Δ,
    per-seed values and TOST; a secondary comparison (uncorrected p). None when the cell has no per-seed values."""
    measured = cell.metrics.get(metric)
    if not measured or "per_seed" not in measured:
        return None
    stats = {k: v for k, v in measured.items() if k not in ("per_seed", "tost")}
    seeds = {s: (v["head"], v["against"]) for s, v in measured["per_seed"].items()}
    return Cell(
        cell.condition, cell.optimizer, cell.setting, cell.head, cell.against, cell.scales,
        stats=stats, seeds=seeds, tost=measured.get("tost"),
    )  # fmt: skip


def best_to_last(cell: Cell) -> Cell | None:
    """Per seed, (final weights' Δ) − (best checkpoint's Δ), Δ = head − against in test IoU: positive when the
    head loses less than `against` between its best checkpoint and its final weights (memorises less), as a
    paired comparison with TOST. None without the final weights' per-seed values."""
    last = metric_cell(cell, LAST_IOU)
    if last is None:
        return None
    both = sorted(set(last.seeds) & set(cell.seeds), key=_seed_order)
    late = {s: last.seeds[s][0] - last.seeds[s][1] for s in both}
    best = {s: cell.seeds[s][0] - cell.seeds[s][1] for s in both}
    return Cell(
        cell.condition, cell.optimizer, cell.setting, cell.head, cell.against, cell.scales,
        stats=paired_comparison(late, best), tost=tost([late[s] - best[s] for s in both]),
    )  # fmt: skip


def _seed_order(seed: str):
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def tuned_scales(best: dict[tuple[str, str], float], optimizer: str, pair) -> tuple[float, float] | None:
    if all((optimizer, head) in best for head in pair):
        return tuple(best[(optimizer, head)] for head in pair)
    return None


def atlas_cells(runs: list[Run], latest: bool = True) -> list[Cell]:
    """Every comparison the runs support or were meant to: per condition and optimizer, at the shared lr and at
    the tuned rates (each head's own best lr_scale on the plain selection grid), then the exact controls."""
    table, best = measured_runs(runs, latest=latest), best_scales(lr_grid(runs))
    contexts = sorted({(r.condition, r.optimizer) for r in runs if not r.selection}, key=lambda c: (c[0] != PLAIN, c))
    contexts += [(PLAIN, o) for o in sorted({r.optimizer for r in runs if r.selection}) if (PLAIN, o) not in contexts]
    cells = []
    for condition, optimizer in contexts:
        ran = {
            (r.arm, r.lr_scale)
            for r in runs
            if (r.condition, r.optimizer) == (condition, optimizer) and not r.selection
        }
        shared_scales = sorted({scale for _, scale in ran} | ({SHARED_SCALE} if condition == PLAIN else set()))
        for pair in COMPARISONS:
            tuned = tuned_scales(best, optimizer, pair)
            for scale in shared_scales:  # both heads at one lr_scale (a condition may have run at another)
                if (scale, scale) == tuned and scale != SHARED_SCALE:
                    continue  # both heads tuned to this one scale: it is the matched-lr cell below
                always = condition == PLAIN and scale == SHARED_SCALE  # shown even unrun, with its commands
                if not always and not all((head, scale) in ran for head in pair):
                    continue
                cell = compare(table, condition, optimizer, "shared lr", pair, (scale, scale))
                cell.primary = pair == PRIMARY and tuned == (scale, scale)
                cells.append(cell)
            if tuned is not None and tuned != (SHARED_SCALE, SHARED_SCALE):
                cell = compare(table, condition, optimizer, "matched lr", pair, tuned)
                cell.primary = pair == PRIMARY
                cells.append(cell)
    controls = measured_runs(runs, prefer=CONTROLS_EXPERIMENT, latest=latest)  # each with its own sweep's partner
    cells += control_cells(controls, runs)
    add_interactions(cells)
    apply_holm(cells)
    return cells


def control_cells(table: Table, runs: list[Run]) -> list[Cell]:
    """The exact controls of CONTROLS, for every optimizer that ran a control arm (experiment=atlas_controls)."""
    ran = {r.optimizer for r in runs if r.experiment == CONTROLS_EXPERIMENT}
    cells = []
    for control in CONTROLS:
        if control.optimizer not in ran:
            continue
        pair, scales = (control.arm, control.against), (control.scale, control.against_scale)
        cell = compare(table, PLAIN, control.optimizer, "control", pair, scales, experiment=CONTROLS_EXPERIMENT)
        cell.expect_equal, cell.why = control.equal, control.why
        cells.append(cell)
    return cells


def add_interactions(cells: list[Cell]) -> None:
    """Each condition cell's Δ minus the plain-data Δ of the same comparison, optimizer and lr_scales (on the
    atlas's own schedule only: a longer one would confound the condition with the training length)."""
    plain = {(c.optimizer, c.comparison, c.scales): c for c in cells if c.condition == PLAIN and c.setting != "control"}
    for cell in cells:
        base = plain.get((cell.optimizer, cell.comparison, cell.scales))
        if cell.condition == PLAIN or ", " in cell.condition or base is None or not cell.seeds or not base.seeds:
            continue
        cell.interaction = interaction(
            {s: v[0] for s, v in cell.seeds.items()},
            {s: v[1] for s, v in cell.seeds.items()},
            {s: v[0] for s, v in base.seeds.items()},
            {s: v[1] for s, v in base.seeds.items()},
        )


def apply_holm(cells: list[Cell]) -> None:
    """The declared primary families only: tanh_mse − sigmoid_bce at the tuned rates, with a paired-t p, in the
    atlas's conditions and, as a family of their own, in the regime arms."""
    for family in (False, True):
        tested = [
            c
            for c in cells
            if c.primary and is_regime(c.condition) == family and c.stats is not None and not math.isnan(c.stats["t_p"])
        ]
        for cell, p in zip(tested, holm([c.stats["t_p"] for c in tested]), strict=True):
            cell.p_holm = p


def significance(cell: Cell) -> int:
    """2: both CIs exclude 0 and (primary) Holm p < alpha or (secondary) t p < alpha; 1: both CIs exclude 0
    only; 0: neither."""
    if cell.stats is None or cell.stats["n"] < 2 or math.isnan(cell.stats["ci_low"]):
        return 0
    if not excludes_zero(cell.stats):
        return 0
    p = cell.p_holm if cell.primary else cell.stats["t_p"]
    return 2 if p < ALPHA else 1


def equivalent(cell: Cell) -> bool:
    return cell.tost is not None and cell.tost["equivalent"]


def verdict(cell: Cell) -> str:
    s = cell.stats
    if s is None:
        return "not measured"
    if s["n"] < 2 or math.isnan(s["ci_low"]):
        return f"too few paired seeds ({s['n']})"
    direction = f"{cell.head} {'better' if s['mean_diff'] > 0 else 'worse'} by {abs(s['mean_diff']):.4f}"
    level, label = significance(cell), "Holm p" if cell.primary else "p, uncorrected"
    p = cell.p_holm if cell.primary else s["t_p"]
    if level == 2:
        return f"{direction} ({label} = {p:.3g})"
    if level == 1:
        return f"{direction} by both CIs; not significant ({label} = {p:.3g})"
    if equivalent(cell):
        return f"equivalent within ±{MARGIN:g} (TOST p = {cell.tost['p']:.3g})"
    return (
        f"unresolved ({s['mean_diff']:+.4f}; could detect ≥ {s['detectable']:.4f}; not equivalent within ±{MARGIN:g})"
    )


def survives_tuned_threshold(cell: Cell) -> str:
    """Whether a gap resolved at 0.5 is still resolved, in the same direction, at the val-tuned threshold."""
    tuned = cell.metrics.get("test/iou@val_threshold")
    if cell.stats is None or not excludes_zero(cell.stats):
        return "no gap at 0.5"
    if tuned is None or tuned["n"] < 2 or math.isnan(tuned["ci_low"]):
        return "not measured"
    same = excludes_zero(tuned) and (tuned["mean_diff"] > 0) == (cell.stats["mean_diff"] > 0)
    return "survives" if same else "gone"


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
                "primary": c.primary,
                **(c.stats or {}),
                "p_holm": c.p_holm,
                "verdict": verdict(c),
                "per_seed": {seed: {"head": h, "against": b} for seed, (h, b) in c.seeds.items()},
                "tost": c.tost,
                "collapse": c.collapse,
                "interaction": c.interaction,
                "metrics": c.metrics,
                "tuned_threshold": survives_tuned_threshold(c),
                **({"expect_equal": c.expect_equal, "why": c.why} if c.expect_equal is not None else {}),
                "missing": c.missing,
            }
            for c in cells
        ],
        indent=1,
    )
