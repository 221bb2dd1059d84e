"""How many of its flipped training labels a checkpoint reproduces: the memorisation a bounded loss is expected
to resist (docs/heads.md), measured pixel by pixel rather than read off a curve.

A run trained with `data.label_noise` saw noisy training masks, fixed per (seed, image), while its val and test
masks are clean. Reading the training split twice, with and without the noise, names every flipped pixel. The
weights *memorised* a flipped pixel when their decision there follows the flipped label instead of the truth.
Beside it, how often the same weights get the untouched pixels right, so that fitting the training set less
overall is not mistaken for memorising less.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from seg.errors import UserError
from seg.inference.checkpoint import TrainedModel

FILE = "memorisation.json"  # beside summary.json: {"train/memorised": ..., "last/train/memorised": ..., ...}


def memorisation(model: TrainedModel, device: torch.device | str = "cpu") -> dict[str, float]:
    """On the run's training split, in file order, unaugmented, the decision `probability >= 0.5`:

    - `flipped`: the share of the counted pixels whose training label the noise flipped;
    - `memorised`: the share of flipped pixels decided as their flipped label;
    - `kept_right`: the share of the other pixels decided as their (true) label;
    - `iou_clean`, `iou_noisy`: IoU against the true and against the noisy training masks.
    """
    if model.config.data.get("label_noise") is None:
        raise UserError("this checkpoint's run trained without data.label_noise: no flipped labels to look for")
    noisy, clean = (_training_loader(model, noise) for noise in (True, False))
    total = dict.fromkeys(("pixels", "flipped", "memorised", "kept", "kept_right"), 0)
    overlap = dict.fromkeys(("tp_clean", "union_clean", "tp_noisy", "union_noisy"), 0)
    with torch.no_grad():
        for with_noise, truth in zip(noisy, clean, strict=True):
            if not torch.equal(with_noise["image"], truth["image"]):
                raise RuntimeError("the two readings of the training split differ in their images")  # a bug here
            image = with_noise["image"].to(device)
            decided = (model.probability(image) >= 0.5).cpu()
            valid = with_noise["valid"] & truth["valid"]
            label, true = with_noise["mask"].bool(), truth["mask"].bool()
            flipped, kept = valid & (label != true), valid & (label == true)
            total["pixels"] += int(valid.sum())
            total["flipped"] += int(flipped.sum())
            total["memorised"] += int((flipped & (decided == label)).sum())
            total["kept"] += int(kept.sum())
            total["kept_right"] += int((kept & (decided == true)).sum())
            for name, mask in (("clean", true), ("noisy", label)):
                overlap[f"tp_{name}"] += int((valid & decided & mask).sum())
                overlap[f"union_{name}"] += int((valid & (decided | mask)).sum())
    if total["flipped"] == 0:
        raise UserError("the run's label noise flipped no training pixel: nothing to memorise (data.label_noise.flip)")
    return {
        "flipped": total["flipped"] / total["pixels"],
        "memorised": total["memorised"] / total["flipped"],
        "kept_right": total["kept_right"] / total["kept"],
        "iou_clean": overlap["tp_clean"] / max(overlap["union_clean"], 1),
        "iou_noisy": overlap["tp_noisy"] / max(overlap["union_noisy"], 1),
    }


def _training_loader(model: TrainedModel, noise: bool):
    """The run's training split as evaluation reads a split: in file order, no augmentation, padded alike."""
    overrides = {} if noise else {"label_noise": None}
    datamodule = instantiate(model.config.data, **overrides)  # no train_transform: nothing is augmented
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.eval_dataloader("train")
