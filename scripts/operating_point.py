"""Does the operating point help? Test IoU of checkpoints at 0.5 and at the val-picked threshold, with and
without flip TTA and small-component removal, paired over the checkpoints (docs/operating-point.md).

python scripts/operating_point.py outputs/run1/checkpoints/best.ckpt outputs/run2/checkpoints/best.ckpt ...
Each setting is scored in the same pass over the test split; the threshold is picked on val with the same TTA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from seg.inference.checkpoint import load_trained_model  # noqa: E402
from seg.inference.operating_point import measure_operating_point, score_split  # noqa: E402
from seg.inference.postprocess import remove_small_components_batch  # noqa: E402
from seg.model.metrics import as_metric_input, segmentation_metrics  # noqa: E402

MIN_COMPONENTS = (0, 5, 20, 50)  # px


def score_checkpoint(ckpt: Path, *, tta: bool) -> dict[str, float]:
    """`iou@0.5/min=N` and `iou@val/min=N` for every N of MIN_COMPONENTS, and the val-picked threshold."""
    model = load_trained_model(ckpt)
    datamodule = instantiate(model.config.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    val = score_split(model.net, model.head, datamodule.eval_dataloader("val"), "cpu", tta=tta)
    picked = val.counts.best_threshold()
    thresholds = {"0.5": 0.5, "val": picked}
    settings = {(name, n): (t, segmentation_metrics("test")) for name, t in thresholds.items() for n in MIN_COMPONENTS}

    def score(probability, batch) -> None:
        for (_, n), (t, metrics) in settings.items():
            decision = remove_small_components_batch((probability >= t) & batch["valid"], n)
            metrics.update(*as_metric_input(decision, batch["mask"], batch["valid"]))

    score_split(model.net, model.head, datamodule.eval_dataloader("test"), "cpu", tta=tta, on_batch=score)
    result = {f"iou@{name}/min={n}": float(m.compute()["test/iou"]) for (name, n), (_, m) in settings.items()}
    return {**result, "val_threshold": picked}


def paired(values: list[float], baseline: list[float]) -> str:
    diff = np.asarray(values) - np.asarray(baseline)
    if len(diff) < 2:
        return f"{diff.mean():+.4f}"
    half = scipy.stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return f"{diff.mean():+.4f} [{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="JSON file for the per-checkpoint numbers")
    args = parser.parse_args(argv)
    rows = []
    for ckpt in args.checkpoints:
        row = {"checkpoint": str(ckpt)}
        for tta in (False, True):
            row |= {f"{'tta' if tta else 'plain'}/{k}": v for k, v in score_checkpoint(ckpt, tta=tta).items()}
        model = load_trained_model(ckpt)
        datamodule = instantiate(model.config.data)
        datamodule.prepare_data()
        datamodule.setup("test")
        start = time.perf_counter()
        loaders = {split: datamodule.eval_dataloader(split) for split in ("val", "test")}
        row |= measure_operating_point(model.net, model.head, loaders, "cpu", None)
        row["operating_point_seconds"] = time.perf_counter() - start
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    baseline = [r["plain/iou@0.5/min=0"] for r in rows]
    print(f"{len(rows)} checkpoints; test IoU at 0.5 plain: mean {np.mean(baseline):.4f}")
    for key in sorted(k for k in rows[0] if "/iou@" in k):
        values = [r[key] for r in rows]
        print(f"{key:28s} mean {np.mean(values):.4f}  vs plain@0.5: {paired(values, baseline)}")


if __name__ == "__main__":
    main()
