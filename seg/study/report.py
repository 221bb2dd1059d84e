"""Rendering a head study (seg.study.compare) as report.md, curves.png and a printed table."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from seg.study.compare import (
    METRICS,
    Study,
    describe,
    failed_jobs,
    last_value,
    late_mean,
    metric_by_seed,
    missing_runs,
    paired_comparison,
    read_curve,
)
from seg.study.figures import new_figure, save_figure
from seg.study.stats import excludes_zero

# summary.json's operating-point fields (seg/inference/operating_point.py): absent in runs made before them.
OPERATING_POINT = (
    ("test IoU @ val threshold", "test/iou@val_threshold"),
    ("val threshold", "val_threshold"),
    ("test AP", "test/ap"),
    ("test ECE", "test/ece"),
    ("test ECE @ T", "test/ece@temperature"),
    ("test Brier", "test/brier"),
    ("test Brier @ T", "test/brier@temperature"),
    ("temperature", "temperature"),
)
TUNED = "test/iou@val_threshold"

DIAGNOSTICS = (  # (column title, how to read it from a job)
    ("stuck of wrong (late train)", lambda job: late_mean(job, "train/stuck_of_wrong")),
    ("stuck fraction (late train)", lambda job: late_mean(job, "train/stuck_fraction")),
    ("|dL/dz| wrong (late train)", lambda job: late_mean(job, "train/wrong_grad")),
    ("val ECE (last)", lambda job: last_value(job, "val/ece")),
    ("val Brier (last)", lambda job: last_value(job, "val/brier")),
)


def fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def mean_of_known(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return float(np.mean(known)) if known else math.nan


def summary_rows(study: Study) -> list[dict]:
    rows = []
    for label, jobs in sorted(study.groups.items()):
        row = {"group": label}
        for metric in METRICS:
            row[metric] = describe(np.array(list(metric_by_seed(jobs, metric).values())))
        rows.append(row)
    return rows


def comparison_rows(study: Study, baseline: str) -> list[dict]:
    """Each non-baseline group against the baseline head in the same context, paired by seed."""
    by_context = {}
    for jobs in study.groups.values():
        if jobs[0].head == baseline:
            by_context[study.context(jobs[0])] = jobs
    rows = []
    for label, jobs in sorted(study.groups.items()):
        base = by_context.get(study.context(jobs[0]))
        if jobs[0].head == baseline or base is None:
            continue
        row = {"group": label, "baseline": study.label(base[0])}
        for metric in METRICS:
            row[metric] = paired_comparison(metric_by_seed(jobs, metric), metric_by_seed(base, metric))
        rows.append(row)
    return rows


def verdict(row: dict, metric: str = "test/iou") -> str:
    """A plain sentence; "excludes 0" only when both the bootstrap and the t interval do."""
    c = row[metric]
    if c["n"] < 2 or math.isnan(c["ci_low"]):
        return "too few paired seeds to say"
    direction = "better" if c["mean_diff"] > 0 else "worse"
    if excludes_zero(c):
        strength = "both 95% CIs exclude 0"
        if not c["wilcoxon_p"] < 0.05:
            strength += f", but Wilcoxon p = {fmt_p(c['wilcoxon_p'])} is not < 0.05"
        return f"{direction} by {abs(c['mean_diff']):.4f} ({strength})"
    return f"no significant difference: {c['mean_diff']:+.4f}, a 95% CI includes 0"


def write_curves(study: Study, path: Path, metric: str = "val/iou") -> bool:
    fig, (ax,) = new_figure(7, 4.5)
    drawn = False
    for label, jobs in sorted(study.groups.items()):
        curves = [read_curve(job, metric) for job in jobs]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves and all(curves) else []
        if not steps:
            continue
        values = np.array([[c[s] for s in steps] for c in curves])  # (seeds, steps)
        mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(steps))
        ax.plot(steps, mean, label=f"{label} (n={len(values)})")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        drawn = True
    if not drawn:
        return False
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training: mean ± 1 std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def copy_reliability_diagrams(study: Study, out: Path) -> list[Path]:
    """Each group's reliability.png (of its first seed's run) copied next to the report, as reliability_<group>.png."""
    copies = []
    for label, jobs in sorted(study.groups.items()):
        source = next((job.path / "reliability.png" for job in jobs if (job.path / "reliability.png").is_file()), None)
        if source is not None:
            copies.append(out / f"reliability_{''.join(c if c.isalnum() else '_' for c in label)}.png")
            shutil.copyfile(source, copies[-1])
    return copies


def render_markdown(
    study: Study, baseline: str, directories: list[Path], curves: Path | None, reliability: list[Path] = ()
) -> str:
    lines = ["# Head comparison", "", "Runs: " + ", ".join(f"`{d}`" for d in directories), ""]
    lines += [
        "## Test metrics per group",
        "",
        "Mean, standard deviation over seeds and a 95% BCa bootstrap CI of the mean.",
        "",
    ]
    lines += [
        "| group | n | test IoU mean | std | 95% CI | test Dice mean | std | 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(study):
        iou, dice = row["test/iou"], row["test/dice"]
        lines.append(
            f"| {row['group']} | {iou['n']} | {fmt(iou['mean'])} | {fmt(iou['std'])} | [{fmt(iou['ci_low'])}, {fmt(iou['ci_high'])}]"
            f" | {fmt(dice['mean'])} | {fmt(dice['std'])} | [{fmt(dice['ci_low'])}, {fmt(dice['ci_high'])}] |"
        )
    comparisons = comparison_rows(study, baseline)
    if comparisons:
        lines += ["", f"## Paired difference to `{baseline}` (same seed, same context)", ""]
        lines += [
            "Difference = group − baseline, per seed. CI: 95% BCa bootstrap of the mean difference; t CI: the 95% "
            "Student-t interval (with few seeds the bootstrap undercovers: trust the wider). p: exact Wilcoxon "
            "signed-rank test (two-sided). Detectable: the smallest true mean difference a paired t-test on these "
            "seeds would detect with 80% power at α = 0.05.",
            "",
            "| group | metric | n | mean diff | 95% CI | t CI | Wilcoxon p | smallest possible p | detectable | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in comparisons:
            for metric in METRICS:
                c = row[metric]
                lines.append(
                    f"| {row['group']} | {metric} | {c['n']} | {c['mean_diff']:+.4f} | [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
                    f" | [{fmt(c['t_ci_low'])}, {fmt(c['t_ci_high'])}]"
                    f" | {fmt_p(c['wilcoxon_p'])} | {fmt_p(c['min_possible_p'])} | {fmt(c['detectable'])} | {verdict(row, metric)} |"
                )
        n_min = min(row["test/iou"]["n"] for row in comparisons)
        if n_min < 6:
            lines += [
                "",
                f"With {n_min} paired seeds the Wilcoxon test cannot reach p < 0.05 whatever the data (its smallest "
                f"two-sided p is {2 / 2**n_min:.4f}); use ≥ 6 seeds for a significance claim, and read the CI.",
            ]
    lines += operating_point_section(study, baseline)
    diag = [(label, jobs) for label, jobs in sorted(study.groups.items())]
    if any(not math.isnan(DIAGNOSTICS[0][1](jobs[0])) for _, jobs in diag):
        lines += [
            "",
            "## Diagnostics (mean over seeds)",
            "",
            "| group | " + " | ".join(t for t, _ in DIAGNOSTICS) + " |",
        ]
        lines.append("|---|" + "---|" * len(DIAGNOSTICS))
        for label, jobs in diag:
            cells = [fmt(mean_of_known([read(job) for job in jobs])) for _, read in DIAGNOSTICS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "stuck = on the wrong side of the decision rule with |dL/dz| < the callback's threshold; late train = the "
            "last quarter of the logged training steps (see seg/study/diagnostics.py).",
        ]
    if curves is not None:
        lines += ["", "## Learning curves", "", f"![val IoU]({curves.name})"]
    if reliability:
        lines += ["", "## Reliability diagrams (test, the first seed of each group)", ""]
        lines += [f"![{path.stem}]({path.name})" for path in reliability]
    failed, missing = failed_jobs(study), missing_runs(study)
    lines += ["", "## Failed or missing jobs", ""]
    if not failed and not missing:
        lines.append("None: every job finished and every group has every seed.")
    for job in failed:
        lines.append(f"- failed or unfinished (no summary.json): `{job.path}` ({job.head} seed={job.seed})")
    for item in missing:
        lines.append(f"- missing: {item}")
    return "\n".join(lines) + "\n"


def operating_point_section(study: Study, baseline: str) -> list[str]:
    """Per group: the operating-point fields (mean and 95% BCa CI over seeds); per head: whether its paired IoU gap
    at probability 0.5 survives when each run is scored at its own val-picked threshold. Empty for older runs."""
    groups = sorted(study.groups.items())
    if not any(TUNED in (job.summary or {}) for _, jobs in groups for job in jobs):
        return []
    lines = [
        "",
        "## Operating point and calibration",
        "",
        "Each run's threshold is picked on its val split (IoU-best), its temperature fitted on val (one scalar on the "
        "logit; for T > 0 the decision at 0.5 does not move); test is scored at both. Mean [95% BCa CI] over seeds.",
        "",
        "| group | " + " | ".join(title for title, _ in OPERATING_POINT) + " |",
        "|---|" + "---|" * len(OPERATING_POINT),
    ]
    for label, jobs in groups:
        cells = []
        for _, key in OPERATING_POINT:
            values = np.array(list(metric_by_seed(jobs, key).values()))
            d = describe(values) if len(values) else None
            cells.append(f"{fmt(d['mean'])} [{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]" if d else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    comparisons = comparison_rows(study, baseline)
    if comparisons:
        lines += ["", "| group | Δ test IoU at 0.5 | t CI | Δ at each run's val threshold | t CI | the gap at 0.5 |"]
        lines.append("|---|---|---|---|---|---|")
    for row in comparisons:
        jobs, base = study.groups[row["group"]], study.groups[row["baseline"]]
        plain, tuned = row["test/iou"], paired_comparison(metric_by_seed(jobs, TUNED), metric_by_seed(base, TUNED))
        lines.append(
            f"| {row['group']} | {plain['mean_diff']:+.4f} | [{fmt(plain['t_ci_low'])}, {fmt(plain['t_ci_high'])}]"
            f" | {tuned['mean_diff']:+.4f} | [{fmt(tuned['t_ci_low'])}, {fmt(tuned['t_ci_high'])}]"
            f" | {gap_at_tuned_threshold(plain, tuned)} |"
        )
    return lines


def gap_at_tuned_threshold(plain: dict, tuned: dict) -> str:
    """Whether a gap resolved at 0.5 (t CI excludes 0) is still resolved, with the same sign, at tuned thresholds."""

    def resolved(c: dict) -> bool:
        return not math.isnan(c["t_ci_low"]) and (c["t_ci_low"] > 0 or c["t_ci_high"] < 0)

    if not resolved(plain):
        return "no gap resolved at 0.5"
    if resolved(tuned) and np.sign(tuned["mean_diff"]) == np.sign(plain["mean_diff"]):
        return "survives"
    return "not resolved at the tuned thresholds"


def print_table(study: Study, baseline: str) -> None:
    table = Table(title="test IoU by group")
    for column in ("group", "n", "mean", "std", "95% CI", f"Δ vs {baseline}", "Δ 95% CI", "Wilcoxon p"):
        table.add_column(column, justify="left" if column == "group" else "right")
    paired = {row["group"]: row["test/iou"] for row in comparison_rows(study, baseline)}
    for row in summary_rows(study):
        s, c = row["test/iou"], paired.get(row["group"])
        table.add_row(
            row["group"], str(s["n"]), fmt(s["mean"]), fmt(s["std"]), f"[{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]",
            f"{c['mean_diff']:+.4f}" if c else "", f"[{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]" if c else "",
            fmt_p(c["wilcoxon_p"]) if c else "",
        )  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table, unwrapped
    console.print(table)
    failed, missing = failed_jobs(study), missing_runs(study)
    if failed or missing:
        console.print(
            f"[yellow]{len(failed)} failed or unfinished and {len(missing)} missing job(s): see report.md[/yellow]"
        )
