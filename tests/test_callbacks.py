"""Prediction pictures and learning curves: the files exist, have the right size and show the right pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seg.callbacks import LearningCurves
from seg.callbacks.predictions import ALPHA
from seg.train import build
from tests.conftest import compose_config, logged_rows, tiny_overrides

SIZE, GAP, SCALE, COUNT = 32, 2, 4, 6  # tiny images; the gap, scale and count of conf/callbacks/default.yaml


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One 2-epoch tiny fit for this module, through build(), so the tests can reach the trainer's callbacks."""
    cfg = compose_config(tiny_overrides(tmp_path_factory.mktemp("fitted")) + ["trainer.max_epochs=2"])
    module, datamodule, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    return cfg, datamodule, trainer


def first_val_batch(datamodule, count: int) -> dict[str, torch.Tensor]:
    return {key: value[:count] for key, value in next(iter(datamodule.val_dataloader())).items()}


@torch.no_grad()
def head_decision(module, image: torch.Tensor) -> np.ndarray:
    """(N, H, W) bool: what the head calls foreground, the rule the metrics use."""
    module.eval()
    return module.head.predict(module(image))[:, 0].numpy()


def tile(picture: np.ndarray, row: int, column: int) -> np.ndarray:
    """(SIZE, SIZE, 3) int: one tile of the picture, sampled at one pixel per image pixel."""
    top, left = row * (SIZE + GAP) * SCALE, column * (SIZE + GAP) * SCALE
    block = picture[top : top + SIZE * SCALE : SCALE, left : left + SIZE * SCALE : SCALE, :3]
    return block.astype(int)


def test_prediction_pictures_show_ground_truth_and_errors(fitted):
    cfg, datamodule, trainer = fitted
    images = Path(cfg.paths.output_dir) / "images"
    assert sorted(p.name for p in images.glob("*.png")) == ["epoch_000.png", "epoch_001.png"]

    picture = np.asarray(Image.open(images / "epoch_001.png").convert("RGB"))
    assert picture.shape == ((COUNT * (SIZE + GAP) - GAP) * SCALE, (3 * (SIZE + GAP) - GAP) * SCALE, 3)
    batch = first_val_batch(datamodule, COUNT)
    masks = batch["mask"][:, 0].numpy() > 0.5
    decisions = head_decision(trainer.lightning_module, batch["image"])  # the weights of the last validation
    assert masks.any() and decisions.any()
    tint = round(255 * ALPHA)
    for row, (mask, decision) in enumerate(zip(masks, decisions, strict=True)):
        image, truth, prediction = (tile(picture, row, column) for column in range(3))
        r, g, b = truth[..., 0], truth[..., 1], truth[..., 2]
        # Ground truth: green blended in exactly where the mask is; the grey image everywhere else.
        assert np.all(np.abs(g[mask] - r[mask] - tint) <= 1)
        assert np.all(r[mask] == b[mask])
        assert np.all((r == g)[~mask]) and np.all((g == b)[~mask])
        assert np.array_equal(truth[~mask], image[~mask])
        # Prediction: on the mask only green (found) or blue (missed); off it only grey or red (false positive).
        r, g, b = prediction[..., 0], prediction[..., 1], prediction[..., 2]
        found, missed = (g - r >= tint - 1) & (r == b), (b - r >= tint - 1) & (r == g)
        grey, false_positive = (r == g) & (g == b), (r - g >= tint - 1) & (g == b)
        assert np.all((found | missed)[mask])
        assert np.all((grey | false_positive)[~mask])
        assert np.array_equal(found | false_positive, decision)


def test_learning_curves_follow_the_logged_values(fitted):
    cfg, _, trainer = fitted
    (curves,) = [c for c in trainer.callbacks if isinstance(c, LearningCurves)]
    rows = logged_rows(Path(cfg.paths.output_dir))
    for name in ("train/loss", "val/iou", "val/dice", "val/loss"):
        logged = [float(row[name]) for row in rows if row[name]]
        assert [value for _, value in curves.values()[name]] == pytest.approx(logged, rel=1e-6), name
    assert [step for step, _ in curves.history["val/iou"]] == [4, 8]
    assert [step for step, _ in curves.history["train/loss"]] == list(range(1, 9))

    picture = Image.open(Path(cfg.paths.output_dir) / "curves.png")
    assert picture.size == (3 * 450, 350)  # one 4.5 x 3.5 inch panel per quantity (loss, iou, dice) at 100 dpi
