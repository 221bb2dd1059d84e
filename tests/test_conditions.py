"""The atlas's data conditions and noise kinds (conf/condition/) do what they claim, measured on generated masks;
conf/optimizer/sgd.yaml composes, scales with lr_scale and trains."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from seg.data.synthetic import _curve, generate_sample, soft_paste
from seg.study.baselines import threshold_iou
from tests.conftest import compose_config

N = 120  # images per condition: enough for a stable foreground fraction, few enough to generate in the fast suite
ATLAS = ["experiment=atlas"]  # the atlas's 32 px
SQUARE = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))


def samples(condition: str, overrides=ATLAS, n: int = N) -> list[tuple[np.ndarray, np.ndarray]]:
    style = instantiate(compose_config([f"condition={condition}", *overrides]).data.source).style
    return [generate_sample(0, 2_000_000 + i, style) for i in range(n)]


def components(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_the_default_generator_is_unchanged_by_the_new_knobs():
    """Pictures of the embedded dataset before the atlas's knobs existed (commit 3de208a)."""
    digest = hashlib.sha256()
    for i in range(5):
        image, mask = generate_sample(0, i)
        digest.update(image.tobytes())
        digest.update(mask.tobytes())
    assert digest.hexdigest() == "614f8bf790fda6f4ec342879c1311f7b260fd698a6b96c66313e8ad6ca2fa05f"


@pytest.mark.parametrize("overrides", [ATLAS, []], ids=["32px", "64px"])
def test_rare_foreground_is_one_small_object_under_two_percent(overrides):
    pairs = samples("rare", overrides)
    masks = [m for _, m in pairs]
    assert np.mean([m.mean() for m in masks]) <= 0.02
    assert all(components(m) == 1 for m in masks)
    assert threshold_iou(*zip(*pairs, strict=True))["iou"] < 0.1  # a grey threshold finds nothing


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


@pytest.mark.parametrize("thickness, width", [(1, 1), (2, 3)])
def test_a_curve_of_thickness_1_or_2_is_1_or_3_px_wide(thickness, width):
    for seed in range(20):
        curve = _curve(np.random.default_rng(seed), 32, thickness)
        depth = distance_to_background(curve)[curve > 0]
        # The middle of a w px stroke is (w + 1) / 2 px from the background; a sharp turn may fold a little more.
        assert (depth <= (width + 1) / 2 + 0.25).mean() > 0.95


def test_thin_structures_are_lines_1_to_3px_wide():
    masks = [m for _, m in samples("thin")]
    assert 0.03 < np.mean([m.mean() for m in masks]) < 0.25
    assert list(compose_config(["condition=thin"]).data.source.curve_width) == [1, 2]
    depth = np.concatenate([distance_to_background(m)[m > 0] for m in masks])
    assert (depth <= 2.25).mean() > 0.97  # in a stroke at most 3 px wide; the rest where two lines cross
    shapes = np.concatenate([distance_to_background(m)[m > 0] for _, m in samples("soft")])
    assert (shapes <= 2.25).mean() < 0.9  # the default composition's shapes are not


def test_soft_edges_blend_over_the_boundary_and_label_where_alpha_is_half():
    image = np.zeros((32, 32), np.float32)
    shape = np.zeros((32, 32), bool)
    shape[8:24, 8:24] = True
    label = soft_paste(image, np.ones_like(image), shape, sigma=2.0)
    assert (image[label] >= 0.5).all() and (image[~label] < 0.5).all()  # the label is the half-weight contour
    ring = cv2.dilate(label.astype(np.uint8), SQUARE).astype(bool) & ~label
    assert ((image[ring] > 0.1) & (image[ring] < 0.5)).all()  # just outside: mixtures, not background
    assert image[16, 16] > 0.95 and image[0, 0] < 0.01


def test_soft_condition_changes_only_the_edges():
    hard = samples("soft", [*ATLAS, "data.source.edge_softness=0"], n=20)
    soft = samples("soft", n=20)
    assert not all(np.array_equal(h[1], s[1]) for h, s in zip(hard, soft, strict=True))  # labels differ a bit
    overlap = np.mean([(h[1] == s[1]).mean() for h, s in zip(hard, soft, strict=True)])
    assert overlap > 0.95  # ... only near the edges
    assert compose_config(["condition=soft"]).data.source.edge_softness == 2.0


def noise(condition: str):
    return instantiate(compose_config([f"condition={condition}", "seed=3"]).data.label_noise)


MASKS = [generate_sample(0, i)[1] for i in range(40)]  # the default data's training masks


def test_flips_change_ten_percent_of_pixels_and_nothing_else():
    flips = noise("flips")
    changed = np.mean([(flips(m, i) != m).mean() for i, m in enumerate(MASKS)])
    assert changed == pytest.approx(0.1, abs=0.005)
    assert flips.drop == 0 and flips.jitter == 0


def test_missing_drops_whole_objects_about_half_of_them():
    missing = noise("missing")
    kept_objects, total = 0, 0
    for i, mask in enumerate(MASKS):
        noisy = missing(mask, i)
        assert np.array_equal(noisy & mask, noisy)  # nothing added, no pixel flipped
        count, labels = cv2.connectedComponents(mask, connectivity=8)
        for label in range(1, count):
            piece = labels == label
            assert noisy[piece].all() or not noisy[piece].any()  # an object is kept whole or dropped whole
            kept_objects += int(noisy[piece].all())
            total += 1
    assert total > 100
    assert 0.4 < kept_objects / total < 0.6


def test_jitter_moves_every_outline_by_one_or_two_pixels_and_drops_nothing():
    jitter = noise("jitter")
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    changed = []
    for i, mask in enumerate(MASKS):
        noisy = jitter(mask, i)
        band = cv2.dilate(mask, disc) & ~cv2.erode(mask, disc)  # within 2 px of the true outline
        assert ((noisy != mask) <= band.astype(bool)).all()
        changed.append((noisy != mask).mean())
    assert np.mean(changed) > 0.02


def test_noise_conditions_touch_training_masks_only():
    cfg = compose_config(["condition=missing"])
    assert cfg.data.label_noise.seed == cfg.seed  # per-run noise, the same for both heads of a seed
    assert "label_noise" in cfg.data and cfg.data.root == "data/synthetic"  # the default data, noisy labels


@pytest.mark.parametrize("scale, lr", [(1, 0.1), (0.3, 0.03)])
def test_sgd_config_is_nesterov_momentum_at_its_own_lr_times_lr_scale(scale, lr):
    cfg = compose_config(["optimizer=sgd", f"lr_scale={scale}"])
    optimizer = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(lr) and group["momentum"] == 0.9 and group["nesterov"]


def test_adamw_lr_scale_multiplies_its_default_and_an_explicit_lr_wins():
    assert compose_config(["lr_scale=3"]).optimizer.lr == pytest.approx(1.8e-2)
    assert compose_config(["lr_scale=3", "optimizer.lr=1e-3"]).optimizer.lr == 1e-3


@pytest.mark.parametrize("head", ["sigmoid_bce", "tanh_mse"])
def test_sgd_trains_the_network_loss_falls(tiny_cfg, head):
    from seg.run.train import build

    module, datamodule, _ = build(tiny_cfg("optimizer=sgd", f"head={head}", "lr_scale=0.3"))
    optimizer = module.optimizer_factory(params=module.parameters())  # the configured SGD, at its peak lr
    batch = next(iter(datamodule.train_dataloader()))
    module.train()
    losses = []
    for _ in range(15):  # one fixed batch: the loss of a working optimizer must fall
        loss = module.head.loss(module.net(batch["image"]), batch["mask"], batch["valid"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0]
