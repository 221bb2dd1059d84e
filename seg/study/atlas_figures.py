"""The head atlas's figures: the heatmap of cells, val IoU against the learning rate, and the regime arms' curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

from seg.study.atlas import ALPHA, COMPARISONS, Cell, Run, best_scales, is_regime, lr_grid, significance
from seg.study.figures import new_figure, save_figure
from seg.study.regimes import epoch_curves

MARKS = {0: "", 1: "°", 2: "*"}  # in the heatmap and the table


def write_heatmap(cells: list[Cell], path: Path) -> bool:
    """Rows: contexts; columns: comparisons; colour: mean paired Δ test IoU; * Holm-significant, ° CIs only."""
    columns = [f"{head} − {against}" for head, against in COMPARISONS]
    cells = [c for c in cells if c.comparison in columns]  # controls: in the cells table, not columns here
    contexts = list(dict.fromkeys(c.context for c in cells))
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
    fig, (ax,) = new_figure(7.5, 0.45 * len(contexts) + 1.8)
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")  # grey: not measured
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(contexts)):
        for j in range(len(columns)):
            dark = np.isfinite(values[i, j]) and abs(values[i, j]) > 0.6 * limit
            ax.text(
                j, i, labels[i][j] or "n/a", ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(range(len(columns)), [c.replace(" − ", "\n− ") for c in columns], fontsize=8)
    ax.set_yticks(range(len(contexts)), contexts, fontsize=8)
    ax.set_title(
        f"Δ test IoU (paired by seed); * p < {ALPHA} (primary: Holm) and both 95% CIs exclude 0; ° CIs only", fontsize=8
    )
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
    fig, axes = new_figure(5.5 * len(optimizers), 4, ncols=len(optimizers))
    for ax, optimizer in zip(axes, optimizers, strict=True):
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


def write_regime_curves(runs: list[Run], path: Path) -> bool:
    """One panel per regime arm: per head (at its lr), val IoU on clean masks (solid) and train IoU on the
    training labels (dashed, noisy in the noise arm) against the epoch, the mean over its finished seeds; what a
    plateau, memorisation and overfitting look like, beside the per-seed counts of the report's table."""
    groups: dict[str, dict[tuple[str, float], list]] = {}
    for run in runs:
        if is_regime(run.condition) and run.summary is not None:
            val, train = epoch_curves(run.path / "csv" / "metrics.csv")
            val = {e: v for e, v in val.items() if train and e <= max(train)}  # not the refit's extra validation
            if val and train:
                groups.setdefault(run.condition, {}).setdefault((run.arm, run.lr_scale), []).append((val, train))
    if not groups:
        return False
    fig, axes = new_figure(4.2 * len(groups), 3.6, ncols=len(groups))
    heads = sorted({arm for by_head in groups.values() for arm, _ in by_head})
    palette = dict(zip(heads, matplotlib.colormaps["tab10"].colors, strict=False))  # a head's colour in every panel
    for ax, (condition, by_head) in zip(axes, sorted(groups.items()), strict=True):
        for (arm, scale), curves in sorted(by_head.items()):
            for kind, style in ((0, "-"), (1, "--")):
                # every epoch any seed logged, each the mean of the seeds that logged it: a seed whose log starts
                # late (a resume before the log was kept, docs/resume.md) does not cut the others' curve
                epochs = sorted(set().union(*(set(c[kind]) for c in curves)))
                mean = [np.mean([c[kind][e] for c in curves if e in c[kind]]) for e in epochs]
                name = f"{arm} @ {scale:g} (n={len(curves)})" if kind == 0 else None
                ax.plot(epochs, mean, style, color=palette[arm], lw=1.2, label=name)
        ax.set_title(condition, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("IoU: val (solid), train labels (dashed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
    return True
