"""Rendering the head atlas (seg.study.atlas): report.md, heatmap.png, learning_rates.png, cells.json."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from seg.paths import resolve_project_path  # noqa: E402
from seg.study.atlas import (  # noqa: E402
    ALPHA,
    BASELINE,
    COMPARISONS,
    DEFAULT_OPTIMIZER,
    MIN_SEEDS,
    PLAIN,
    SHARED_SCALE,
    Cell,
    Run,
    atlas_cells,
    best_scales,
    describe_arms,
    failed_runs,
    fill_command,
    lr_grid,
    measured,
    significance,
    to_json,
    verdict,
)
from seg.study.baselines import threshold_iou  # noqa: E402
from seg.study.report import fmt, fmt_p, save_figure  # noqa: E402

MARKS = {0: "", 1: "°", 2: "*"}  # in the heatmap and the table


def render_atlas(directories: list[Path], runs: list[Run], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cells = atlas_cells(runs)
    heatmap = out / "heatmap.png" if write_heatmap(cells, out / "heatmap.png") else None
    curves = out / "learning_rates.png" if write_lr_figure(runs, out / "learning_rates.png") else None
    (out / "cells.json").write_text(to_json(cells) + "\n")
    report = out / "report.md"
    report.write_text(render_markdown(directories, runs, cells, heatmap, curves))
    return report


# --- the figures ----------------------------------------------------------------------------------------


def write_heatmap(cells: list[Cell], path: Path) -> bool:
    """Rows: contexts; columns: comparisons; colour: mean paired Δ test IoU; * Holm-significant, ° CIs only."""
    contexts = list(dict.fromkeys(c.context for c in cells))
    columns = [f"{head} − {against}" for head, against in COMPARISONS]
    if not contexts:
        return False
    values = np.full((len(contexts), len(columns)), np.nan)
    labels = [["" for _ in columns] for _ in contexts]
    for cell in cells:
        if cell.stats is None:
            continue
        i, j = contexts.index(cell.context), columns.index(cell.comparison)
        values[i, j] = cell.stats["mean_diff"]
        labels[i][j] = f"{cell.stats['mean_diff']:+.3f}{MARKS[significance(cell)]}"
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(contexts) + 1.8))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#dddddd")  # grey: not measured
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(contexts)):
        for j in range(len(columns)):
            dark = np.isfinite(values[i, j]) and abs(values[i, j]) > 0.6 * limit
            ax.text(
                j, i, labels[i][j] or "n/a", ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(range(len(columns)), [c.replace(" − ", "\n− ") for c in columns], fontsize=8)
    ax.set_yticks(range(len(contexts)), contexts, fontsize=8)
    ax.set_title(f"Δ test IoU (paired by seed); * Holm p < {ALPHA} and both 95% CIs exclude 0; ° CIs only", fontsize=9)
    fig.colorbar(image, ax=ax, label="mean Δ test IoU")
    save_figure(fig, path)
    return True


def write_lr_figure(runs: list[Run], path: Path) -> bool:
    """Val IoU (selection seeds, mean ± sd) against the learning rate, per head, one panel per optimizer."""
    grid = lr_grid(runs)
    if not grid:
        return False
    best = best_scales(grid)
    optimizers = sorted({p.optimizer for p in grid})
    fig, axes = plt.subplots(1, len(optimizers), figsize=(5.5 * len(optimizers), 4), squeeze=False)
    for ax, optimizer in zip(axes[0], optimizers, strict=True):
        for head in sorted({p.head for p in grid if p.optimizer == optimizer}):
            points = sorted((p for p in grid if (p.optimizer, p.head) == (optimizer, head)), key=lambda p: p.lr)
            lrs = [p.lr for p in points]
            means = [np.mean(p.val) for p in points]
            stds = [np.std(p.val, ddof=1) if len(p.val) > 1 else 0.0 for p in points]
            line = ax.errorbar(lrs, means, yerr=stds, marker="o", capsize=3, label=f"{head} (n={len(points[0].val)})")
            chosen = next(p for p in points if p.lr_scale == best[(optimizer, head)])
            ax.plot([chosen.lr], [np.mean(chosen.val)], "o", ms=13, mfc="none", color=line[0].get_color())
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the decades: the points name the rest
        ax.set_xlabel(f"{optimizer} peak learning rate")
        ax.set_ylabel("val IoU (selection seeds)")
        ax.set_title(f"{optimizer}: ring = the head's chosen lr", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


# --- the data conditions --------------------------------------------------------------------------------


def condition_facts(run: Run) -> dict:
    """Foreground fraction and best global threshold IoU of the condition's test split; for label noise, how
    much of the training masks it changed. Measured on the data folder the run read (n/a if it is gone)."""
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    root = resolve_project_path(config["data"]["root"])
    facts = {"root": str(config["data"]["root"])}
    test = _read_split(root / "test")
    if test:
        images, masks = zip(*test, strict=True)
        facts["foreground"] = float(np.mean([m.mean() for m in masks]))
        facts["threshold_iou"] = threshold_iou(images, masks)["iou"]
    noise = config["data"].get("label_noise")
    train = _read_split(root / "train") if noise else []
    if train:
        noise_of = instantiate(noise)
        masks = [m for _, m in train]
        noisy = [noise_of(m.astype(np.uint8), index) for index, m in enumerate(masks)]
        facts["changed"] = float(np.mean([(a != b).mean() for a, b in zip(masks, noisy, strict=True)]))
        kept = sum(int((a & b).sum()) for a, b in zip(masks, noisy, strict=True))
        facts["foreground_kept"] = kept / max(1, sum(int(m.sum()) for m in masks))
    return facts


def _read_split(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    if not (folder / "images").is_dir():
        return []
    pairs = []
    for image_file in sorted((folder / "images").glob("*.png")):
        image = cv2.imread(str(image_file), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(folder / "masks" / image_file.name), cv2.IMREAD_GRAYSCALE)
        pairs.append((image, (mask > 0).astype(np.uint8)))
    return pairs


# --- report.md ------------------------------------------------------------------------------------------


def render_markdown(directories, runs, cells, heatmap: Path | None, curves: Path | None) -> str:
    lines = [
        "# The head atlas",
        "",
        "Rendered by",
        "",
        "    python scripts/atlas.py " + " ".join(map(str, directories)),
        "",
    ]
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
    lines += _lr_section(runs, curves)
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
    config = yaml.safe_load((finished[0].path / "config.yaml").read_text())
    data, trainer = config["data"], config["trainer"]
    steps = sorted({int(r.summary.get("global_step", 0)) for r in finished})
    return [
        "## Schedule of every cell",
        "",
        f"{data['source']['size']} px images, {data['source']['counts']['train']} training images, batch "
        f"{data['batch_size']}, {trainer['max_epochs']} epochs ({', '.join(map(str, steps))} steps; a condition that "
        "needs a longer schedule says so in its table below), OneCycle "
        f"to the peak lr, validation every {trainer['check_val_every_n_epoch']} epochs on "
        f"{data['source']['counts']['val']} images (best.ckpt by val IoU), test on {data['source']['counts']['test']} "
        "images. One CPU thread per job.",
        "",
    ]


def _cells_section(cells: list[Cell]) -> list[str]:
    lines = [
        "## Every cell: paired Δ test IoU",
        "",
        "Δ = the first head − the second, per seed, on the seeds both ran (measurement seeds only). CI: 95% BCa "
        "bootstrap of the mean Δ; t CI: 95% Student-t. p: exact Wilcoxon signed-rank (two-sided) and paired t. "
        f"Holm: the paired-t p corrected over all {sum(c.p_holm == c.p_holm for c in cells)} tested cells of this "
        "atlas. Detectable: the smallest true mean Δ a paired t-test on these seeds finds with 80% power at "
        f"α = {ALPHA} (uncorrected). Verdict: * significant after Holm with both CIs excluding 0; ° both CIs "
        "exclude 0 but Holm does not confirm it.",
        "",
        "| condition | optimizer | lr (scale: head / other) | comparison | n | Δ mean | 95% CI | t CI | Wilcoxon p | t p | Holm p | detectable | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        s = c.stats
        scales = f"{c.setting} ({c.scales[0]:g} / {c.scales[1]:g})"
        if s is None:
            lines.append(
                f"| {c.condition} | {c.optimizer} | {scales} | {c.comparison} | 0 | | | | | | | | not measured |"
            )
            continue
        lines.append(
            f"| {c.condition} | {c.optimizer} | {scales} | {c.comparison} | {s['n']} | {s['mean_diff']:+.4f}"
            f"{MARKS[significance(c)]} | [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}] | [{fmt(s['t_ci_low'])},"
            f" {fmt(s['t_ci_high'])}] | {fmt_p(s['wilcoxon_p'])} | {fmt_p(s['t_p'])} | {fmt_p(c.p_holm)}"
            f" | {fmt(s['detectable'])} | {verdict(c)} |"
        )
    return lines


def _lr_section(runs, curves: Path | None) -> list[str]:
    grid = lr_grid(runs)
    if not grid:
        return []
    best = best_scales(grid)
    lines = [
        "",
        "## Learning rates (selection seeds)",
        "",
        "Each head's lr is chosen per optimizer on mean val IoU of the selection seeds; the verdicts above use "
        "only fresh seeds at those rates.",
        "",
        "| optimizer | head | lr_scale | peak lr | n | val IoU mean | sd | chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in grid:
        sd = np.std(p.val, ddof=1) if len(p.val) > 1 else math.nan
        chosen = "◀" if best[(p.optimizer, p.head)] == p.lr_scale else ""
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
