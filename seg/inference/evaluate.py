"""Evaluating a checkpoint on a split: the dataset-level IoU/Dice training logs, plus the per-image spread.

At the defaults (threshold=0.5, tta=false, min_component=0) the dataset-level numbers use the same metrics,
loader batches and decision rule as `trainer.test`, so for the checkpoint training evaluated they equal
summary.json's `test/iou` and `test/dice`. Per image, IoU is |pred & mask| / |pred | mask|; an image with
neither predicted nor true foreground scores 1 (nothing to find, nothing found). Average precision, ECE and
Brier are taken on the same probabilities (after TTA when it is on), before any post-processing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.classification import binary_stat_scores

from seg.errors import UserError
from seg.inference.checkpoint import TrainedModel, load_trained_model, pick_device
from seg.inference.operating_point import calibration_entries, score_split
from seg.inference.postprocess import check_min_component, remove_small_components_batch
from seg.inference.threshold import PICKED, threshold_value
from seg.model.metrics import IGNORED, as_metric_input, segmentation_metrics

WORST = 10  # files listed in eval.json, lowest IoU first


def data_config(saved: DictConfig, chosen: DictConfig) -> DictConfig:
    """`data=<option>` when one was chosen, else the checkpoint's own data config; `data.*` overrides on top."""
    if "_target_" in chosen:
        return chosen
    overrides = {key: value for key, value in chosen.items() if value is not None}
    return OmegaConf.merge(saved.data, overrides)


def evaluate_split(
    model: TrainedModel,
    loader,
    files: list[str],
    split: str,
    device,
    *,
    threshold: float = 0.5,
    tta: bool = False,
    min_component: int = 0,
) -> dict:
    """IoU/Dice of the decision `probability >= threshold` (after TTA, then post-processing), per image too,
    and the split's AP and calibration (with the checkpoint's temperature when it has one)."""
    metrics = segmentation_metrics(split).to(device)
    per_image: list[float] = []

    def score(probability: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        mask, valid = batch["mask"], batch["valid"]  # (B, 1, H, W) {0, 1} and bool
        decision = remove_small_components_batch((probability >= threshold) & valid, min_component)
        pair = as_metric_input(decision, mask, valid)
        metrics.update(*pair)
        counts = binary_stat_scores(*pair, multidim_average="samplewise", ignore_index=IGNORED, validate_args=False)
        tp, fp, _, fn, _ = counts.double().unbind(dim=1)  # (B,) each, over the image's valid pixels
        union = tp + fp + fn
        per_image.extend(torch.where(union > 0, tp / union.clamp(min=1), 1.0).tolist())  # nothing to find: 1.0

    scores = score_split(model.net, model.head, loader, device, tta=tta, on_batch=score)
    overall = {key: float(value) for key, value in metrics.compute().items()}
    ious = np.asarray(per_image)
    worst = np.argsort(ious, kind="stable")[:WORST]
    return {
        **overall,
        **calibration_entries(scores, split, model.operating_point.get("temperature")),
        "images": len(per_image),
        "per_image_iou": {"mean": float(ious.mean()), "median": float(np.median(ious)), "min": float(ious.min())},
        "worst": [{"file": files[i], "iou": float(ious[i])} for i in worst],
    }


def pick_threshold(model: TrainedModel, datamodule, device, *, spec, tta: bool) -> tuple[float, str]:
    """The threshold and where it came from: a number as given; `val`: the checkpoint's when it was picked the
    way this evaluation predicts (without TTA), else picked here on the validation split."""
    stored = model.operating_point.get("val_threshold")
    if spec != PICKED:
        return threshold_value(spec, stored), "given"
    if stored is not None and not tta:
        return float(stored), "checkpoint (picked on val at the end of training)"
    if "val" not in datamodule.splits:
        raise UserError("threshold=val: this dataset has no val split to pick it on; pass a number")
    scores = score_split(model.net, model.head, datamodule.eval_dataloader("val"), device, tta=tta)
    return scores.counts.best_threshold(), "picked on val here" + (" with tta" if tta else "")


def evaluate(cfg: DictConfig) -> dict:
    """eval.py's work (conf/eval.yaml): evaluates, writes eval.json, returns its content."""
    device = pick_device(cfg.device)
    min_component = check_min_component(cfg.min_component)
    model = load_trained_model(cfg.ckpt, device)
    data_cfg = data_config(model.config, cfg.data)
    datamodule = instantiate(data_cfg)  # no train_transform: evaluation never augments
    datamodule.prepare_data()
    datamodule.setup("test")
    if cfg.split not in datamodule.splits:
        raise UserError(f"split={cfg.split}: not a split of this dataset; choose one of {sorted(datamodule.splits)}")
    dataset = datamodule.splits[cfg.split]
    start = time.perf_counter()
    threshold, source = pick_threshold(model, datamodule, device, spec=cfg.threshold, tta=bool(cfg.tta))
    # The batches trainer.test used: eval_batch_size, in file order, padded alike (BatchNorm is frozen, but
    # batch size can change which kernels run; the same batches give bit-identical numbers).
    loader = datamodule.eval_dataloader(cfg.split)
    result = evaluate_split(
        model, loader, [pair[0].name for pair in dataset.pairs], cfg.split, device,
        threshold=threshold, tta=bool(cfg.tta), min_component=min_component,
    )  # fmt: skip
    report = {
        "checkpoint": str(Path(cfg.ckpt).resolve()),
        "head": model.head.name,
        "split": cfg.split,
        "data_root": str(datamodule.root),
        "threshold": threshold,
        "threshold_source": source,
        "tta": bool(cfg.tta),
        "min_component": min_component,
        "temperature": model.operating_point.get("temperature"),
        **result,
        "seconds": round(time.perf_counter() - start, 2),
    }
    output = Path(cfg.output) if cfg.output else _default_output(Path(cfg.ckpt))
    output.write_text(json.dumps(report, indent=2) + "\n")
    report["output"] = str(output)
    return report


def _default_output(ckpt: Path) -> Path:
    """The checkpoint's run directory (next to summary.json), or next to a checkpoint kept elsewhere."""
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder / "eval.json"
