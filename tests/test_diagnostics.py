"""Diagnostics on hand-made logits: stuck pixels, wrong-pixel gradients, ECE and Brier."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from seg.heads import logits_with_decision
from seg.model.module import SegmentationModule
from seg.study.diagnostics import HeadDiagnostics, decision_gradient, stuck_statistics
from tests.conftest import LOGITS, MASK, VALID, FixedLogits, build_head

# Four pixels: a confident mistake, a hesitant mistake, two confident right answers.
Z = torch.tensor([-5.0, -0.1, 3.0, -3.0]).view(1, 1, 1, 4)
Y = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 4)
ALL = torch.ones_like(Y, dtype=torch.bool)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def tanh_grad(z: float, y: float) -> float:
    a = math.tanh(z)
    return 2 * (a - (2 * y - 1)) * (1 - a * a)


def test_tanh_leaves_the_confident_mistake_stuck():
    stats = stuck_statistics(build_head("tanh_mse"), Z, Y, ALL, stuck_below=0.01)
    assert stats["stuck_fraction"].item() == pytest.approx(1 / 4)  # |grad at -5| = 3.6e-4
    assert stats["stuck_of_wrong"].item() == pytest.approx(1 / 2)
    expected = (abs(tanh_grad(-5, 1)) + abs(tanh_grad(-0.1, 1))) / 2
    assert stats["wrong_grad"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["sigmoid_bce", "softmax_ce"])
def test_cross_entropy_pushes_every_mistake(name):
    head = build_head(name)
    stats = stuck_statistics(head, logits_with_decision(head, Z), Y, ALL, stuck_below=0.01)
    assert stats["stuck_fraction"].item() == 0.0
    expected = ((1 - sigmoid(-5)) + (1 - sigmoid(-0.1))) / 2  # |p - y|
    assert stats["wrong_grad"].item() == pytest.approx(expected, rel=1e-5)


def test_decision_gradient_is_per_pixel_not_divided_by_the_pixel_count():
    grad = decision_gradient(build_head("sigmoid_bce"), Z, Y, ALL).flatten().tolist()
    assert grad == pytest.approx(
        [sigmoid(z) - y for z, y in zip(Z.flatten().tolist(), Y.flatten().tolist(), strict=True)], rel=1e-5
    )


@pytest.mark.parametrize("name", ["sigmoid_bce", "tanh_mse"])
def test_ece_and_brier_logged_per_validation_epoch(name):
    head = build_head(name)
    images = torch.arange(2).float().view(2, 1, 1, 1).expand(2, 1, 1, 4).clone()
    data = [{"image": images[i], "mask": MASK[i], "valid": VALID[i]} for i in range(2)]
    module = SegmentationModule(net=FixedLogits(head), head=head, optimizer=torch.optim.SGD)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[HeadDiagnostics(n_bins=15)],
    )
    result = trainer.validate(module, DataLoader(data, batch_size=1), verbose=False)[0]

    p = head.probability(LOGITS).flatten()
    y = MASK.flatten()
    assert result["val/brier"] == pytest.approx(((p - y) ** 2).mean().item(), rel=1e-5)
    bins = torch.clamp((p * 15).long(), max=14)  # 15 equal-width bins of confidence
    ece = sum((bins == b).sum() / len(p) * abs(p[bins == b].mean() - y[bins == b].mean()) for b in bins.unique())
    assert result["val/ece"] == pytest.approx(float(ece), rel=1e-5)


def _ece(p: list[float], y: list[float], n_bins: int = 15) -> float:
    """Expected calibration error by hand, as torchmetrics' binary ECE: 15 equal-width bins of p, each bin's
    |mean p - mean y| weighted by its share of the pixels."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for pi, yi in zip(p, y, strict=True):
        bins.setdefault(min(int(pi * n_bins), n_bins - 1), []).append((pi, yi))
    return sum(abs(sum(a for a, _ in b) - sum(c for _, c in b)) for b in bins.values()) / len(p)


def test_diagnostics_count_only_valid_pixels():
    """A batch of two 1x4 images: an ignored pixel (trimap border) in the first, two padding pixels in the second.
    Their logits are confident mistakes, which would change every statistic if they were counted."""
    head = build_head("tanh_mse")
    z = torch.tensor([[[[-5.0, -0.1, 3.0, 6.0]]], [[[2.0, -4.0, 6.0, 6.0]]]])
    y = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]], [[[1.0, 0.0, 0.0, 0.0]]]])
    valid = torch.tensor([[[[True, True, True, False]]], [[[True, True, False, False]]]])
    # Valid pixels: (-5, 1) stuck mistake, (-0.1, 1) hesitant mistake, (3, 1), (2, 1), (-4, 0): 5 pixels, 2 wrong.
    stats = stuck_statistics(head, z, y, valid, stuck_below=0.01)
    assert stats["stuck_fraction"].item() == pytest.approx(1 / 5)
    assert stats["stuck_of_wrong"].item() == pytest.approx(1 / 2)
    expected = (abs(tanh_grad(-5, 1)) + abs(tanh_grad(-0.1, 1))) / 2
    assert stats["wrong_grad"].item() == pytest.approx(expected, rel=1e-5)
    grad = decision_gradient(head, z, y, valid)
    assert grad[~valid].abs().max() == 0 and grad[0, 0, 0, 0].item() == pytest.approx(tanh_grad(-5, 1), rel=1e-3)

    images = torch.arange(2).float().view(2, 1, 1, 1).expand(2, 1, 1, 4).clone()
    data = [{"image": images[i], "mask": y[i], "valid": valid[i]} for i in range(2)]

    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, image):
            return z[image[:, 0, 0, 0].long()] * self.scale

    module = SegmentationModule(net=Fixed(), head=head, optimizer=torch.optim.SGD)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[HeadDiagnostics(n_bins=15)],
    )  # fmt: skip
    result = trainer.validate(module, DataLoader(data, batch_size=2), verbose=False)[0]
    p = [(math.tanh(v) + 1) / 2 for v in (-5.0, -0.1, 3.0, 2.0, -4.0)]
    labels = [1.0, 1.0, 1.0, 1.0, 0.0]
    assert result["val/brier"] == pytest.approx(sum((a - b) ** 2 for a, b in zip(p, labels, strict=True)) / 5, rel=1e-5)
    assert result["val/ece"] == pytest.approx(_ece(p, labels), rel=1e-5)


def test_foreground_recall_is_the_share_of_object_pixels_found():
    # Z's foreground pixels: -5 and -0.1 (missed), 3 (found): one of three
    stats = stuck_statistics(build_head("sigmoid_bce"), Z, Y, ALL, stuck_below=0.01)
    assert stats["foreground_recall"].item() == pytest.approx(1 / 3)
    none = stuck_statistics(build_head("sigmoid_bce"), Z, torch.zeros_like(Y), ALL, stuck_below=0.01)
    assert none["foreground_recall"].item() == 0.0  # no object in the batch: nothing found, not NaN


def test_shape_metrics_logged_at_the_end_of_testing():
    """Test boundary IoU and clDice of the head's decision over a split, by hand on LOGITS and MASK."""
    from seg.study.shape_metrics import ShapeMetrics

    head = build_head("sigmoid_bce")
    images = torch.arange(2).float().view(2, 1, 1, 1).expand(2, 1, 1, 4).clone()
    data = [{"image": images[i], "mask": MASK[i], "valid": VALID[i]} for i in range(2)]
    module = SegmentationModule(net=FixedLogits(head), head=head, optimizer=torch.optim.SGD)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ShapeMetrics(width=1)],
    )  # fmt: skip
    result = trainer.test(module, DataLoader(data, batch_size=1), verbose=False)[0]
    # image 1: prediction (z >= 0) [1, 0, 1, 0], truth [1, 1, 0, 0]; a 1-px-high image is all boundary and all
    # skeleton, so boundary IoU is the pixel IoU 1/3 and clDice's precision 1/2, sensitivity 1/2.
    # image 2: prediction [1, 1, 0, 0], truth empty: boundary 0 of 2, skeleton of P 2 px, none on G.
    assert result["test/boundary_iou"] == pytest.approx((1 + 0) / (3 + 2))
    precision, sensitivity = 1 / (2 + 2), 1 / 2
    assert result["test/cldice"] == pytest.approx(2 * precision * sensitivity / (precision + sensitivity))
