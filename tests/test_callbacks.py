"""Prediction pictures and learning curves: the files exist, have the right size and show the right pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seg.run.callbacks import LearningCurves
from seg.run.callbacks.predictions import ALPHA, GAP, PictureHistory, PredictionImages
from seg.run.train import build
from tests.conftest import compose_config, logged_rows, tiny_overrides

SIZE, COUNT = 32, 6  # tiny images; the count of conf/callbacks/default.yaml
SCALE = 256 // SIZE  # tile_size 256 (conf/callbacks/default.yaml): 32 px images drawn 8x


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
    top, left = row * (SIZE * SCALE + GAP), column * (SIZE * SCALE + GAP)
    block = picture[top : top + SIZE * SCALE : SCALE, left : left + SIZE * SCALE : SCALE, :3]
    return block.astype(int)


def test_prediction_pictures_show_ground_truth_and_errors(fitted):
    cfg, datamodule, trainer = fitted
    images = Path(cfg.paths.output_dir) / "images"
    assert sorted(p.name for p in images.glob("*.png")) == ["epoch_000.png", "epoch_001.png"]

    picture = np.asarray(Image.open(images / "epoch_001.png").convert("RGB"))
    assert picture.shape == (COUNT * (SIZE * SCALE + GAP) - GAP, 3 * (SIZE * SCALE + GAP) - GAP, 3)
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


class _Decider(torch.nn.Module):
    """A stand-in LightningModule for render(): foreground where the image is bright."""

    def __init__(self, head) -> None:
        super().__init__()
        self.head = head
        self.device = torch.device("cpu")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :1] - 0.5


def test_large_images_are_drawn_at_the_tile_size_and_small_ones_enlarged(tmp_path):
    from seg.heads import SigmoidBCE

    callback = PredictionImages(dirpath=tmp_path, num_images=2, tile_size=256)
    for height, width, expected in [(600, 600, (256, 256)), (584, 565, (256, 248)), (20, 30, (160, 240))]:
        image = torch.rand(2, 1, height, width)
        callback._batch = {"image": image, "mask": (image > 0.5).float()}
        picture = callback.render(_Decider(SigmoidBCE()))
        tile_h, tile_w = expected
        assert tuple(picture.shape) == (3, 2 * tile_h + GAP, 3 * tile_w + 2 * GAP), (height, width)
    # A 600 px image's picture: 6 images at 256 px tiles instead of 6 x 2400 px at the old fixed 4x scale.


def test_picture_history_keeps_a_bounded_evenly_spread_set():
    history = PictureHistory(12)
    on_disk: set[int] = set()
    logged = 0
    for epoch in range(300):
        kept, dropped = history.add(epoch)
        logged += kept
        on_disk -= set(dropped)
        on_disk |= {epoch} if kept else set()
        assert 1 <= len(history.kept) <= 12
        assert on_disk == set(history.kept)  # what add() reported dropped is exactly what history no longer keeps
    assert history.kept == list(range(0, 300, 32)) and history.stride == 32  # 0, 32, ..., 288: evenly spread
    assert logged < 60  # what TensorBoard holds for the whole run


def test_only_the_latest_and_the_kept_history_stay_on_disk(tmp_path):
    from seg.heads import SigmoidBCE

    callback = PredictionImages(dirpath=tmp_path, num_images=1, max_pictures=3)
    image = torch.rand(1, 1, 16, 16)
    callback._batch = {"image": image, "mask": (image > 0.5).float()}
    module = _Decider(SigmoidBCE())
    for epoch in range(10):
        callback.on_validation_epoch_end(picture_trainer(epoch, step=epoch), module)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["epoch_000.png", "epoch_004.png", "epoch_008.png", "epoch_009.png"]  # history + the latest


def picture_trainer(epoch: int, step: int):
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerFn

    return SimpleNamespace(
        sanity_checking=False, state=SimpleNamespace(fn=TrainerFn.FITTING), is_global_zero=True,
        current_epoch=epoch, loggers=[], global_step=step,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("epochs", "trained_after_the_last_validation", "drawn"),
    [
        (5, False, [0, 2, 4]),  # the last validation is on the schedule
        (4, False, [0, 2, 3]),  # it is not: drawn when training ends, with the weights it scored
        (4, True, [0, 2]),  # steps ran after it (e.g. max_steps mid-epoch): those weights were never validated
    ],
)
def test_pictures_every_n_epochs_and_after_the_last_validation(
    tmp_path, epochs, trained_after_the_last_validation, drawn
):
    from seg.heads import SigmoidBCE

    callback = PredictionImages(dirpath=tmp_path, num_images=1, every_n_epochs=2)
    image = torch.rand(1, 1, 16, 16)
    callback._batch = {"image": image, "mask": (image > 0.5).float()}
    module = _Decider(SigmoidBCE())
    for epoch in range(epochs):
        callback.on_validation_epoch_end(picture_trainer(epoch, step=10 * (epoch + 1)), module)
    end = 10 * epochs + (3 if trained_after_the_last_validation else 0)
    callback.on_train_end(picture_trainer(epochs - 1, step=end), module)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"epoch_{e:03d}.png" for e in drawn]
