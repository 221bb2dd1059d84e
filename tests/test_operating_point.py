"""Threshold, calibration, flip TTA and small-component removal on inputs built for each, without a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

from seg.errors import UserError
from seg.inference.calibration import brier, ece, fit_temperature, log_odds, reliability_figure, scaled
from seg.inference.postprocess import check_min_component, remove_small_components, remove_small_components_batch
from seg.inference.threshold import ThresholdCounts, threshold_value
from seg.inference.tta import FLIPS, flip_averaged


def test_a_threshold_below_half_finds_foreground_that_half_misses():
    """Foreground at p = 0.4, background at 0.2: IoU 0 at 0.5, 1 at any threshold in (0.2, 0.4]."""
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:5, 2:6] = 1
    probability = torch.where(mask.bool(), 0.4, 0.2)
    valid = torch.ones_like(mask, dtype=torch.bool)
    counts = ThresholdCounts()
    counts.update(probability, mask, valid)
    assert counts.at(0.5) == {"iou": 0.0, "dice": 0.0}
    assert counts.best_threshold() == pytest.approx(0.4)  # of the equal best (0.21 ... 0.40), the nearest to 0.5
    assert counts.at(0.4) == {"iou": 1.0, "dice": 1.0} and counts.at(0.2)["iou"] < 1.0


def test_threshold_counts_equal_torchmetrics_at_every_grid_threshold_ignoring_invalid_pixels():
    generator = torch.Generator().manual_seed(0)
    probability = torch.rand(3, 1, 16, 16, generator=generator)
    mask = (torch.rand(3, 1, 16, 16, generator=generator) < probability).float()
    valid = torch.rand(3, 1, 16, 16, generator=generator) > 0.2
    counts = ThresholdCounts()
    for b in range(3):  # accumulated over batches
        counts.update(probability[b : b + 1], mask[b : b + 1], valid[b : b + 1])
    target = mask.long().masked_fill(~valid, -1)
    for threshold in (0.05, 0.3, 0.5, 0.77):
        iou = BinaryJaccardIndex(threshold=threshold, ignore_index=-1)(probability, target)
        dice = BinaryF1Score(threshold=threshold, ignore_index=-1)(probability, target)
        assert counts.at(threshold)["iou"] == pytest.approx(float(iou), abs=1e-6)
        assert counts.at(threshold)["dice"] == pytest.approx(float(dice), abs=1e-6)


def test_threshold_values_are_checked_and_val_needs_a_stored_one():
    assert threshold_value(0.3, None) == 0.3 and threshold_value("val", 0.42) == 0.42
    with pytest.raises(UserError, match=r"^threshold=val: this checkpoint holds no validation-picked threshold"):
        threshold_value("val", None)
    for bad in (0, 1.5, "abc", True):
        with pytest.raises(UserError, match=rf"^threshold={bad}: must be a probability in \(0, 1\] or val"):
            threshold_value(bad, None)


def overconfident(n: int = 200_000, factor: float = 4.0):
    """Pixels whose truth follows sigmoid(z), and a model that says sigmoid(factor * z): over-confident."""
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(n, generator=generator, dtype=torch.float64) * 2
    target = torch.rand(n, generator=generator, dtype=torch.float64) < torch.sigmoid(z)
    return factor * z, target


def test_temperature_scaling_undoes_overconfidence_and_lowers_ece_and_brier():
    logit, target = overconfident()
    temperature = fit_temperature(logit, target)
    assert temperature == pytest.approx(4.0, rel=0.05)
    before, after = torch.sigmoid(logit), scaled(logit, temperature)
    assert ece(after, target) < ece(before, target) / 5
    assert brier(after, target) < brier(before, target)
    assert torch.equal(before >= 0.5, after >= 0.5)  # T > 0: the decision at 0.5 (z = 0) is unchanged


def test_a_calibrated_model_keeps_temperature_one_and_log_odds_invert_the_probability():
    logit, target = overconfident(factor=1.0)
    assert fit_temperature(logit, target) == pytest.approx(1.0, rel=0.05)
    probability = torch.tensor([1e-20, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    assert log_odds(probability)[1:4].tolist() == pytest.approx([np.log(1 / 9), 0.0, np.log(9)])
    assert torch.isfinite(log_odds(probability)).all()  # saturated probabilities stay finite
    figure = reliability_figure({"as is": (torch.sigmoid(logit), target)}, "test")
    assert len(figure.axes) == 2


def test_flip_tta_is_the_mean_of_the_flipped_predictions():
    """A network that is not flip-symmetric: the average equals the four flipped-back views, by hand."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 5, padding=2))

    def probability(x):
        return torch.sigmoid(net(x) + torch.linspace(-2, 2, x.shape[-1]))  # a left-right gradient: not symmetric

    image = torch.randn(2, 1, 12, 16)
    with torch.no_grad():
        averaged = flip_averaged(probability, image)
        by_hand = (
            probability(image)
            + probability(image.flip(-1)).flip(-1)
            + probability(image.flip(-2)).flip(-2)
            + probability(image.flip(-2, -1)).flip(-2, -1)
        ) / 4
        assert torch.allclose(averaged, by_hand, atol=1e-6) and len(FLIPS) == 4
        assert not torch.allclose(averaged, probability(image), atol=1e-3)  # TTA changes the prediction
        # The averaged prediction is flip-equivariant, which the plain one is not.
        assert torch.allclose(flip_averaged(probability, image.flip(-1)), averaged.flip(-1), atol=1e-6)


def test_components_below_the_size_are_removed_and_none_above():
    mask = np.zeros((20, 20), bool)
    mask[1:3, 1:3] = True  # 4 px: removed at min_size 5
    mask[10:15, 10:15] = True  # 25 px: kept
    mask[3, 5] = mask[4, 6] = mask[5, 7] = mask[6, 8] = mask[7, 9] = True  # 5 px joined diagonally: kept at 5
    mask[0, 19] = True  # 1 px: removed
    kept = remove_small_components(mask, 5)
    expected = mask.copy()
    expected[1:3, 1:3] = expected[0, 19] = False
    assert np.array_equal(kept, expected)
    assert np.array_equal(remove_small_components(mask, 0), mask)
    assert not remove_small_components(mask, 26).any()
    batch = torch.from_numpy(np.stack([mask, mask.T]))[:, None]
    assert torch.equal(remove_small_components_batch(batch, 5)[1, 0], torch.from_numpy(expected.T))
    with pytest.raises(UserError, match=r"^min_component=-1: must be a whole number of pixels >= 0"):
        check_min_component(-1)
