"""The failure-rate arm (experiment=atlas_failure): how often each head never leaves the all-background solution
on rare objects, when the others escape, and whether stuck pixels can be why.

Per seed: test IoU, collapsed (test IoU < COLLAPSE_BELOW, seg.study.stats), the time to escape (the first logged
training step at which the batch's foreground recall reaches ESCAPE_RECALL; None: never, censored at the last
step) and the late stuck fraction (train/stuck_fraction and train/stuck_of_wrong over the last quarter), read
from metrics.csv as callbacks=atlas_diagnostics logs them.

The stuck-pixel explanation predicts that sigmoid_mse, whose pull on a missed pixel is smaller than tanh_mse's
at every logit below the prior (docs/heads.md), collapses at least as often as tanh_mse; it is refuted when
sigmoid_mse collapses less often, one-sided Fisher p < alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seg.study.compare import Job, late_mean, read_curve
from seg.study.stats import ALPHA, COLLAPSE_BELOW, rate_comparison

ESCAPE_RECALL = 0.5  # half the batch's object pixels found: the run has left the all-background solution
FAILURE_HEADS = ("sigmoid_bce", "tanh_mse", "sigmoid_mse")


@dataclass(frozen=True)
class Outcome:
    seed: str
    test_iou: float
    collapsed: bool
    escape_step: int | None  # None: never reached ESCAPE_RECALL in the logged steps
    last_step: int | None  # the last logged step (where a run that never escaped is censored)
    stuck_fraction: float
    stuck_of_wrong: float


def escape_step(curve: dict[int, float], recall: float = ESCAPE_RECALL) -> int | None:
    return next((step for step in sorted(curve) if curve[step] >= recall), None)


def outcome(run) -> Outcome:
    """One finished atlas run (seg.study.atlas.Run) of the failure arm."""
    job = Job(run.path, {}, run.summary)
    recall = read_curve(job, "train/foreground_recall")
    iou = float(run.summary["test/iou"])
    return Outcome(
        seed=run.seed,
        test_iou=iou,
        collapsed=iou < COLLAPSE_BELOW,
        escape_step=escape_step(recall),
        last_step=max(recall) if recall else None,
        stuck_fraction=late_mean(job, "train/stuck_fraction"),
        stuck_of_wrong=late_mean(job, "train/stuck_of_wrong"),
    )


def failure_table(runs, condition_prefix: str = "rare") -> dict[str, dict[str, list[Outcome]]]:
    """condition label -> head -> outcomes, for measurement runs of the three heads on `condition_prefix`."""
    table: dict[str, dict[str, list[Outcome]]] = {}
    for run in runs:
        if run.selection or run.summary is None or run.head not in FAILURE_HEADS or run.model != "unet":
            continue
        if run.condition.split(", ")[0] != condition_prefix or run.experiment != "atlas_failure":
            continue
        table.setdefault(run.condition, {}).setdefault(run.head, []).append(outcome(run))
    return table


def summarize(outcomes: list[Outcome]) -> dict:
    escaped = [o.escape_step for o in outcomes if o.escape_step is not None]
    return {
        "n": len(outcomes),
        "collapsed": sum(o.collapsed for o in outcomes),
        "escaped": len(escaped),
        "median_escape_step": float(np.median(escaped)) if escaped else math.nan,
        "stuck_fraction": float(np.nanmean([o.stuck_fraction for o in outcomes])) if outcomes else math.nan,
        "stuck_of_wrong": float(np.nanmean([o.stuck_of_wrong for o in outcomes])) if outcomes else math.nan,
    }


def failure_tests(by_head: dict[str, list[Outcome]]) -> dict[str, dict]:
    """The arm's declared comparisons of collapse rates (preregistration.md)."""
    counts = {h: (sum(o.collapsed for o in by_head.get(h, [])), len(by_head.get(h, []))) for h in FAILURE_HEADS}
    tests = {
        "tanh_mse vs sigmoid_bce": rate_comparison(*counts["tanh_mse"], *counts["sigmoid_bce"]),
        "sigmoid_mse vs sigmoid_bce": rate_comparison(*counts["sigmoid_mse"], *counts["sigmoid_bce"]),
        # the stuck-pixel prediction: sigmoid_mse collapses at least as often; refuted if it collapses less
        "sigmoid_mse vs tanh_mse (one-sided: less)": rate_comparison(
            *counts["sigmoid_mse"], *counts["tanh_mse"], alternative="less"
        ),
    }
    stuck = tests["sigmoid_mse vs tanh_mse (one-sided: less)"]
    stuck["stuck_pixel_explanation"] = (
        "untested" if not stuck["n"] or not stuck["n_other"]
        else "refuted" if stuck["fisher_p"] < ALPHA
        else "not refuted"
    )  # fmt: skip
    return tests
