"""Rendering the head atlas (seg.study.atlas) as report.md and cells.json, with the claims table first.

The figures are seg/study/atlas_figures.py's; what each data condition is, measured on its files,
seg/study/atlas_conditions.py's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from seg.study import claims as claims_of
from seg.study.atlas import (
    ALPHA,
    BASELINE,
    DEFAULT_OPTIMIZER,
    FIT_METRIC,
    LAST_METRICS,
    MEMORISATION_METRICS,
    METRIC,
    MIN_SEEDS,
    OPERATING_METRICS,
    PLAIN,
    PREDICTED_SHIFTS,
    SHARED_SCALE,
    SHIFT_EXPERIMENTS,
    Cell,
    Run,
    atlas_cells,
    best_scales,
    describe_arms,
    failed_runs,
    fill_command,
    grid_curves,
    is_regime,
    lr_grid,
    measured,
    replications,
    significance,
    survives_tuned_threshold,
    to_json,
    verdict,
)
from seg.study.atlas_conditions import condition_facts
from seg.study.atlas_figures import MARKS, write_heatmap, write_lr_figure, write_regime_curves
from seg.study.failure import failure_table, failure_tests, summarize
from seg.study.regimes import PLATEAU_WITHIN, criteria
from seg.study.report import fmt, fmt_p
from seg.study.shift import fit_shifts
from seg.study.stats import COLLAPSE_BELOW, MARGIN


def render_atlas(directories: list[Path], runs: list[Run], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cells = atlas_cells(runs)
    heatmap = out / "heatmap.png" if write_heatmap(cells, out / "heatmap.png") else None
    curves = out / "learning_rates.png" if write_lr_figure(runs, out / "learning_rates.png") else None
    regime_curves = out / "regime_curves.png" if write_regime_curves(runs, out / "regime_curves.png") else None
    shifts = lr_shifts(runs)
    failure = {condition: failure_tests(by_head) for condition, by_head in failure_table(runs).items()}
    (out / "cells.json").write_text(to_json(cells) + "\n")
    report = out / "report.md"
    report.write_text(render_markdown(directories, runs, cells, heatmap, curves, shifts, failure, regime_curves))
    return report


def lr_shifts(runs: list[Run]) -> dict[str, dict[str, dict]]:
    """optimizer -> seg.study.shift.fit_shifts over that optimizer's declared grid (with >= 4 rates a head)."""
    grid = lr_grid([run for run in runs if run.experiment in SHIFT_EXPERIMENTS])
    out = {}
    for optimizer in sorted({p.optimizer for p in grid}):
        curves = grid_curves(grid, optimizer)
        curves = {h: c for h, c in curves.items() if len({lr for by_lr in c.values() for lr in by_lr}) >= 4}
        if BASELINE in curves and len(curves) > 1:
            out[optimizer] = fit_shifts(curves, BASELINE)
    return out


# --- report.md ------------------------------------------------------------------------------------------


def render_markdown(directories, runs, cells, heatmap, curves, shifts=None, failure=None, regime_curves=None) -> str:
    lines = [
        "# The head atlas",
        "",
        "Rendered by",
        "",
        "    python scripts/atlas.py " + " ".join(map(str, directories)),
        "",
    ]
    lines += _claims_section(cells, shifts or {}, failure or {}, runs)
    lines += _arms_section(directories, runs)
    lines += _schedule_section(runs)
    lines += _cells_section(cells)
    if heatmap is not None:
        lines += [
            "",
            f"![Δ test IoU per cell]({heatmap.name})",
            "",
            "n/a in the heatmap: not measured, or, in a matched-lr row, both heads chose the shared lr (that cell is "
            "then the shared-lr one, counted once).",
        ]
    lines += _seeds_section(cells)
    lines += _replications_section(runs)
    lines += _operating_point_section(cells)
    lines += _last_weights_section(cells)
    lines += _regime_criteria_section(runs, regime_curves)
    lines += _interactions_section(cells)
    lines += _lr_section(runs, curves)
    lines += _shift_section(shifts or {})
    lines += _failure_section(runs)
    lines += _conditions_section(runs)
    lines += _gaps_section(runs, cells)
    return "\n".join(lines) + "\n"


def _arms_section(directories, runs) -> list[str]:
    lines = [
        "## Arms",
        "",
        "| sweep folder | command | jobs | finished | wall | summed fit time | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in describe_arms(directories, runs):
        wall = "n/a" if math.isnan(arm.wall_seconds) else f"{arm.wall_seconds / 60:.1f} min"
        lines.append(
            f"| `{arm.path.parent.name}/{arm.path.name}` | `{arm.command}` | {arm.jobs} | {arm.finished} | {wall}"
            f" | {arm.train_seconds / 60:.1f} min | {arm.commit} |"
        )
    return lines + [""]


def _schedule_section(runs) -> list[str]:
    finished = [r for r in runs if r.summary is not None and (r.path / "config.yaml").exists()]
    if not finished:
        return []
    configs = [yaml.safe_load((r.path / "config.yaml").read_text()) for r in finished]
    # The atlas's own cells are generated data; a rendering of real-image arms alone describes their folder.
    config = next((c for c in configs if c["data"].get("source")), configs[0])
    data, trainer = config["data"], config["trainer"]
    steps = sorted({int(r.summary.get("global_step", 0)) for r in finished})
    source = data.get("source")
    if source:
        images = f"{source['size']} px images, {source['counts']['train']} training images"
        val, test = f"{source['counts']['val']} images", f"{source['counts']['test']} images"
    else:
        images = f"The folder dataset `{data['root']}`"
        val, test = "its val split", "its test split"
    return [
        "## Schedule of every cell",
        "",
        f"{images}, batch {data['batch_size']}, {trainer['max_epochs']} epochs ({', '.join(map(str, steps))} steps;"
        " a condition that needs a longer schedule says so in its table below), OneCycle to the peak lr, validation"
        f" every {trainer['check_val_every_n_epoch']} epochs on {val} (best.ckpt by val IoU), test on {test}."
        " One CPU thread per job.",
        "",
    ]


def _claims_section(cells, shifts, failure, runs) -> list[str]:
    claims = claims_of.cell_claims(cells) + claims_of.shift_claims(shifts) + claims_of.failure_claims(failure)
    if replications(runs):  # what each claim says on the other run of every replicated seed
        other = {c.claim: c for c in claims_of.cell_claims(atlas_cells(runs, latest=False))}
        claims = [_with_other_replication(c, other.get(c.claim)) for c in claims]
    lines = [
        "## Claims",
        "",
        "Each claim, the test that decides it (docs/results/atlas/preregistration.md), its numbers and its status: "
        "supported, refuted, unresolved (the test decides neither way) or untested (its runs are missing; the "
        "commands are at the end). Where a seed ran twice (Replications, below), a claim is computed on the "
        "latest runs, and on the earlier ones beside it when that changes its numbers.",
        "",
        "| claim | test | numbers | status |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c.claim} | {c.test} | {c.numbers} | **{c.status}** |" for c in claims]
    return lines + [""]


def _with_other_replication(claim, other):
    """A claim with what it says on the earlier runs of its replicated seeds, when that differs."""
    if other is None or other.numbers == claim.numbers:
        return claim
    numbers = f"{claim.numbers}; on the earlier replication: {other.numbers}"
    status = (
        claim.status
        if other.status == claim.status
        else f"{claim.status}**; on the earlier replication: **{other.status}"
    )
    return claims_of.Claim(claim.claim, claim.test, numbers, status)


def _cells_section(cells: list[Cell]) -> list[str]:
    n_atlas = sum(c.p_holm == c.p_holm and not is_regime(c.condition) for c in cells)
    n_regime = sum(c.p_holm == c.p_holm and is_regime(c.condition) for c in cells)
    regimes = f"; the regime arms' primary cells, {n_regime}, are a family of their own" if n_regime else ""
    lines = [
        "## Every cell: paired Δ test IoU",
        "",
        "Δ = the first arm − the second, per seed, on the seeds both ran (measurement seeds only). CI: 95% BCa "
        "bootstrap of the mean Δ; t CI: 95% Student-t. p: exact Wilcoxon signed-rank (two-sided) and paired t. "
        f"Holm: over the declared primary family only (tanh_mse − sigmoid_bce at the tuned rates, {n_atlas} "
        f"tested cells, marked P{regimes}); every other cell is secondary and its p is uncorrected. TOST: paired "
        f"equivalence within ±{MARGIN:g}. Collapsed: seeds with test IoU < {COLLAPSE_BELOW:g} (head / other), "
        "Fisher p of the two rates, and Δ over the seeds where neither collapsed. Detectable: the smallest true "
        f"mean Δ a paired t-test on these seeds finds with 80% power at α = {ALPHA}. Verdict: * p < {ALPHA} with "
        "both CIs excluding 0; ° both CIs exclude 0 only.",
        "",
        "| condition | optimizer | lr (scale: head / other) | comparison | n | Δ mean | 95% CI | t CI | Wilcoxon p | t p | Holm p | TOST p | collapsed | Δ given success | detectable | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        s = c.stats
        scales = f"{c.setting} ({c.scales[0]:g} / {c.scales[1]:g})" + (" P" if c.primary else "")
        if s is None:
            lines.append(
                f"| {c.condition} | {c.optimizer} | {scales} | {c.comparison} | 0 | | | | | | | | | | | not measured |"
            )
            continue
        k = c.collapse
        collapsed = f"{k['k']} / {k['k_other']} (p {fmt_p(k['fisher_p'])})" if k else ""
        success = k["given_success"] if k else None
        given = f"{success['mean_diff']:+.4f} (n {success['n']})" if success and success["n"] else "n/a"
        lines.append(
            f"| {c.condition} | {c.optimizer} | {scales} | {c.comparison} | {s['n']} | {s['mean_diff']:+.4f}"
            f"{MARKS[significance(c)]} | [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}] | [{fmt(s['t_ci_low'])},"
            f" {fmt(s['t_ci_high'])}] | {fmt_p(s['wilcoxon_p'])} | {fmt_p(s['t_p'])} | {fmt_p(c.p_holm)}"
            f" | {fmt_p(c.tost['p'])} | {collapsed} | {given} | {fmt(s['detectable'])} | {verdict(c)} |"
        )
    return lines


def _seeds_section(cells: list[Cell]) -> list[str]:
    measured_cells = [c for c in cells if c.seeds]
    if not measured_cells:
        return []
    lines = ["", "## Per-seed test IoU", "", "head / other, per measurement seed (also in cells.json).", ""]
    lines += ["| cell | comparison | per seed (head / other) |", "|---|---|---|"]
    for c in measured_cells:
        per_seed = ", ".join(f"{seed}: {h:.3f} / {b:.3f}" for seed, (h, b) in c.seeds.items())
        lines.append(f"| {c.context} ({c.scales[0]:g} / {c.scales[1]:g}) | {c.comparison} | {per_seed} |")
    return lines


def _replications_section(runs) -> list[str]:
    """Seeds that ran twice: how far one job's test IoU moves between two launches (another machine's CPU
    kernels, another commit with the same training code): the noise a cross-machine pairing adds."""
    repeated = replications(runs)
    if not repeated:
        return []
    by_arm: dict[tuple, list[float]] = defaultdict(list)
    for (condition, optimizer, scale, arm), _, group in repeated:
        first, last = group[0], group[-1]
        by_arm[(condition, optimizer, scale, arm, first.experiment, last.experiment)].append(
            last.metric(METRIC) - first.metric(METRIC)
        )
    lines = [
        "",
        "## Replications",
        "",
        "Seeds of an arm that ran more than once; a cell uses one run per seed (the latest of its own experiment:"
        " the controls' sweep for a control cell, any other otherwise). Δ = later − earlier test IoU, same seed"
        " and config.",
        "",
        "| arm | condition · optimizer · lr_scale | runs (earlier → later) | n | mean Δ | sd Δ | max abs Δ |",
        "|---|---|---|---|---|---|---|",
    ]
    for (condition, optimizer, scale, arm, first, last), diffs in sorted(by_arm.items()):
        d = np.array(diffs)
        sd = np.std(d, ddof=1) if len(d) > 1 else math.nan
        lines.append(
            f"| {arm} | {condition} · {optimizer} · {scale:g} | {first} → {last} | {len(d)} | {d.mean():+.4f} "
            f"| {fmt(sd)} | {np.abs(d).max():.4f} |"
        )
    return lines


def _operating_point_section(cells: list[Cell]) -> list[str]:
    with_metrics = [c for c in cells if c.metrics]
    if not with_metrics:
        return [
            "",
            "## Operating-point-fair metrics",
            "",
            "No run recorded " + ", ".join(f"`{m}`" for m in OPERATING_METRICS) + " yet.",
        ]
    lines = [
        "",
        "## Operating-point-fair metrics",
        "",
        "Paired Δ (head − other) with its 95% t CI, per metric the runs recorded (summary.json, else metrics.csv). "
        "Tuned threshold: whether a gap resolved at 0.5 is still resolved, same sign, at the threshold tuned on val.",
        "",
        "| cell | comparison | " + " | ".join(OPERATING_METRICS) + " | gap at 0.5 at the tuned threshold |",
        "|---|---|" + "---|" * len(OPERATING_METRICS) + "---|",
    ]
    for c in with_metrics:
        row = []
        for metric in OPERATING_METRICS:
            m = c.metrics.get(metric)
            row.append(f"{m['mean_diff']:+.4f} [{fmt(m['t_ci_low'])}, {fmt(m['t_ci_high'])}]" if m else "")
        lines.append(f"| {c.context} | {c.comparison} | " + " | ".join(row) + f" | {survives_tuned_threshold(c)} |")
    return lines


def _last_weights_section(cells: list[Cell]) -> list[str]:
    """The best checkpoint against the final weights (runs with evaluate_last): what early stopping hides."""
    rows = [c for c in cells if any(m in c.metrics for m in LAST_METRICS)]
    if not rows:
        return []
    columns = (*LAST_METRICS, FIT_METRIC, *MEMORISATION_METRICS)
    lines = [
        "",
        "## Best checkpoint and final weights",
        "",
        "Paired Δ (head − other) with its 95% t CI: test IoU of the best checkpoint (by val IoU), then the final "
        f"weights' test IoU, IoU at their val-tuned threshold, ECE and Brier, and `{FIT_METRIC}`: IoU of the last "
        "training epoch against the training labels (the flipped ones in the noise arm), which memorising raises. "
        "Where label noise was measured (`python scripts/memorisation.py <sweep folders>`), the final weights' "
        "share of flipped training pixels decided as their flipped label (`memorised`) and of the other training "
        "pixels decided right (`kept_right`).",
        "",
        "| cell | comparison | best: test/iou | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for c in rows:
        cells_text = [_paired(c.stats)] + [_paired(c.metrics.get(m)) for m in columns]
        lines.append(f"| {c.context} | {c.comparison} | " + " | ".join(cells_text) + " |")
    return lines


def _paired(m: dict | None) -> str:
    return f"{m['mean_diff']:+.4f} [{fmt(m['t_ci_low'])}, {fmt(m['t_ci_high'])}]" if m else ""


def _regime_criteria_section(runs: list[Run], figure: Path | None = None) -> list[str]:
    """Per regime and head: how many seeds plateaued, memorised, overfit (seg.study.regimes), from metrics.csv."""
    groups: dict[tuple[str, str, float], list] = {}
    for run in runs:
        if is_regime(run.condition) and run.summary is not None:
            found = criteria(run.seed, run.path / "csv" / "metrics.csv")
            if found is not None:
                groups.setdefault((run.condition, run.arm, run.lr_scale), []).append((found, run))
    if not groups:
        return []
    lines = [
        "",
        "## Regime schedules: plateau, memorisation, overfitting",
        "",
        f"Per seed from metrics.csv: *plateau* = val IoU over the last third of validations within {PLATEAU_WITHIN};"
        " *memorising* = train IoU (on the training labels, noisy where they are) higher at the last epoch than at"
        " val IoU's peak, and the last val IoU below the peak; *overfit* = the last val IoU below the peak.",
        "",
        "| regime | head | lr_scale | seeds | plateau | memorising | overfit | peak epoch (median) | peak − last val IoU (median) | train IoU rise after the peak (median) | flipped labels memorised: best / final weights (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (condition, arm, scale), members in sorted(groups.items()):
        found, n = [f for f, _ in members], len(members)
        memorised = [np.median([r.metric(f"{k}train/memorised") for _, r in members]) for k in ("", "last/")]
        lines.append(
            f"| {condition} | {arm} | {scale:g} | {n} | {sum(f.plateaued for f in found)}/{n}"
            f" | {sum(f.memorising for f in found)}/{n} | {sum(f.overfit for f in found)}/{n}"
            f" | {np.median([f.peak_epoch for f in found]):g} | {np.median([f.peak_val - f.last_val for f in found]):.4f}"
            f" | {np.median([f.train_last - f.train_at_peak for f in found]):+.4f}"
            f" | {'' if math.isnan(memorised[1]) else f'{memorised[0]:.3f} / {memorised[1]:.3f}'} |"
        )
    if figure is not None:
        lines += ["", f"![val and train IoU per epoch, mean over seeds, per regime arm and head]({figure.name})"]
    return lines


def _interactions_section(cells: list[Cell]) -> list[str]:
    rows = [c for c in cells if c.interaction is not None]
    if not rows:
        return []
    lines = [
        "",
        "## Interactions: condition Δ − plain Δ",
        "",
        "What a hypothesis about a condition predicts: the condition moves the gap. Paired by seed when both "
        "cells ran the same seeds, else Welch.",
        "",
        "| condition | optimizer | lr | comparison | interaction | 95% CI | p | n | paired |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        i = c.interaction
        lines.append(
            f"| {c.condition} | {c.optimizer} | {c.setting} ({c.scales[0]:g} / {c.scales[1]:g}) | {c.comparison}"
            f" | {fmt(i['mean'])} | [{fmt(i['ci_low'])}, {fmt(i['ci_high'])}] | {fmt_p(i['p'])} | {i['n']} | {i['paired']} |"
        )
    return lines


def _shift_section(shifts: dict[str, dict[str, dict]]) -> list[str]:
    if not shifts:
        return []
    lines = [
        "",
        "## Learning-rate shift against sigmoid_bce",
        "",
        "One cubic in log lr shared by every head, moved sideways per head (seg/study/shift.py): a head at lr "
        f"× c does what {BASELINE} does at lr. 95% percentile bootstrap over selection seeds.",
        "",
        "| optimizer | head | fitted c | 95% CI | predicted | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for optimizer, fitted in shifts.items():
        for head, f in fitted.items():
            predicted = PREDICTED_SHIFTS.get(optimizer, {}).get(head)
            lines.append(
                f"| {optimizer} | {head} | {f['shift']:.3f} | [{f['ci_low']:.3f}, {f['ci_high']:.3f}]"
                f" | {'—' if predicted is None else f'{predicted:g}'} | {f['n_seeds']} |"
            )
    return lines


def _failure_section(runs) -> list[str]:
    table = failure_table(runs)
    if not table:
        return []
    lines = ["", "## Failure-rate arm", ""]
    for condition, by_head in table.items():
        lines += [
            f"### {condition}",
            "",
            "| head | seeds | collapsed | 95% CI (exact) | escaped | median escape step | late stuck fraction | late stuck of wrong |",
            "|---|---|---|---|---|---|---|---|",
        ]
        tests = failure_tests(by_head)
        for head, outcomes in sorted(by_head.items()):
            s = summarize(outcomes)
            ci = _rate_ci(tests, head)
            lines.append(
                f"| {head} | {s['n']} | {s['collapsed']} | {ci} | {s['escaped']} | {fmt(s['median_escape_step'], 0)}"
                f" | {fmt(s['stuck_fraction'])} | {fmt(s['stuck_of_wrong'])} |"
            )
        lines += ["", "| comparison | rates | Fisher p | Barnard p |", "|---|---|---|---|"]
        for name, t in tests.items():
            lines.append(
                f"| {name} | {t['k']}/{t['n']} vs {t['k_other']}/{t['n_other']} | {fmt_p(t['fisher_p'])} | {fmt_p(t['barnard_p'])} |"
            )
        lines += ["", "Per seed (test IoU, escape step):", ""]
        for head, outcomes in sorted(by_head.items()):
            per_seed = ", ".join(
                f"{o.seed}: {o.test_iou:.3f} @ {o.escape_step if o.escape_step is not None else 'never'}"
                for o in outcomes
            )
            lines.append(f"- {head}: {per_seed}")
        lines.append("")
    return lines


def _rate_ci(tests: dict, head: str) -> str:
    for name, t in tests.items():
        if name.startswith(head + " "):
            low, high = t["rate_ci"]
            return f"[{low:.2f}, {high:.2f}]"
        if name.split(" vs ")[1].split(" ")[0] == head:
            low, high = t["rate_other_ci"]
            return f"[{low:.2f}, {high:.2f}]"
    return "n/a"


def _lr_section(runs, curves: Path | None) -> list[str]:
    grid = lr_grid(runs)
    if not grid:
        return []
    best = best_scales(grid)
    top: dict[tuple[str, str], float] = {}  # (optimizer, head) -> the grid's largest lr_scale
    for p in grid:
        top[(p.optimizer, p.head)] = max(p.lr_scale, top.get((p.optimizer, p.head), p.lr_scale))
    censored = sorted(key for key, scale in best.items() if scale == top[key])
    lines = [
        "",
        "## Learning rates (selection seeds)",
        "",
        "Each head's lr is chosen per optimizer on mean val IoU of the selection seeds; the verdicts above use "
        "only fresh seeds at those rates.",
        "",
    ]
    if censored:
        lines += [
            "A head whose best rate is its grid's largest (◀ top) is censored there: its tuned lr is the largest "
            f"tried, its peak may lie above ({', '.join(f'{o} {h}' for o, h in censored)}).",
            "",
        ]
    lines += [
        "| optimizer | head | lr_scale | peak lr | n | val IoU mean | sd | chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in grid:
        sd = np.std(p.val, ddof=1) if len(p.val) > 1 else math.nan
        chosen = "◀" if best[(p.optimizer, p.head)] == p.lr_scale else ""
        chosen += " top" if chosen and p.lr_scale == top[(p.optimizer, p.head)] else ""
        lines.append(
            f"| {p.optimizer} | {p.head} | {p.lr_scale:g} | {p.lr:.3g} | {len(p.val)} | {np.mean(p.val):.4f} | {fmt(sd)} | {chosen} |"
        )
    if curves is not None:
        lines += ["", f"![val IoU against learning rate]({curves.name})"]
    table = measured(runs)
    todo = sorted(
        {
            (optimizer, scale, head)
            for (optimizer, head), scale in best.items()
            if len(table.get((PLAIN, optimizer, scale, head), {})) < MIN_SEEDS
        }
    )
    if todo:
        lines += ["", "Confirmation runs still to do:", ""]
        lines += [f"    {fill_command(PLAIN, optimizer, scale, head)}" for optimizer, scale, head in todo]
    return lines


def _conditions_section(runs) -> list[str]:
    by_condition: dict[str, Run] = {}
    for run in runs:
        if run.summary is not None and not run.selection and (run.path / "config.yaml").exists():
            by_condition.setdefault(run.condition, run)
    if not by_condition:
        return []
    table = measured(runs)
    lines = [
        "",
        "## Data conditions",
        "",
        "Measured on the data each cell read: foreground fraction and the best global grey-threshold IoU of the "
        "test split (oracle threshold and blur, seg/study/baselines.py: the floor the network must clear); for "
        "label noise, the fraction of training-mask pixels it changes and of foreground pixels it keeps. Model "
        f"IoU: mean test IoU of {BASELINE} under {DEFAULT_OPTIMIZER} at the shared lr (measurement seeds).",
        "",
        "| condition | data folder | epochs (steps) | foreground | threshold IoU | model IoU | label pixels changed | foreground kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for condition, run in sorted(by_condition.items()):
        facts = condition_facts(run)
        model = [
            np.mean(list(seeds.values()))
            for (cond, optimizer, scale, head), seeds in table.items()
            if (cond, optimizer, scale, head) == (condition, DEFAULT_OPTIMIZER, SHARED_SCALE, BASELINE)
        ]
        lines.append(
            f"| {condition} | `{facts['root']}` | {_schedule(runs, condition)} | {_pct(facts.get('foreground'))} | {fmt(facts.get('threshold_iou'), 3)}"
            f" | {fmt(float(np.mean(model)) if model else math.nan, 3)} | {_pct(facts.get('changed'))} | {_pct(facts.get('foreground_kept'))} |"
        )
    return lines


def _schedule(runs, condition: str) -> str:
    """The schedules the condition's measurement runs used, e.g. "6 (120)"; several if they differ."""
    seen = sorted(
        {
            (r.summary.get("epochs"), r.summary.get("global_step"))
            for r in runs
            if r.condition == condition and r.summary is not None and not r.selection
        },
        key=str,
    )
    return ", ".join(f"{epochs} ({steps})" for epochs, steps in seen)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _gaps_section(runs, cells) -> list[str]:
    lines = ["", "## Failed, unfinished or missing", ""]
    failed = failed_runs(runs)
    gaps = [(c, item) for c in cells for item in c.missing]
    if not failed and not gaps:
        return lines + ["None: every job finished and every cell has its seeds."]
    for run in failed:
        lines.append(
            f"- no summary.json (failed or unfinished): `{run.path}` ({run.head}, {run.condition}, {run.optimizer}, lr_scale {run.lr_scale:g}, seed {run.seed})"
        )
    for cell, item in gaps:
        lines.append(f"- {cell.context}, {cell.comparison}: {item}")
    return lines
