"""Head math (docs/heads.md) against hand-computed values and autograd, for every conf/head/*.yaml."""

from __future__ import annotations

import math

import pytest
import torch

from seg.heads import Head, logits_with_decision
from tests.conftest import build_head, head_names

LN2, LN3 = math.log(2.0), math.log(3.0)  # tanh(ln 2) = 0.6 and sigmoid(ln 3) = 0.75 exactly: hand-checkable


def _focal(p: float) -> tuple[float, float]:
    """Focal loss (gamma 2) of a foreground pixel with probability p, and dL/dz: -(1-p)^2 ln p; 2p(1-p)^2 ln p - (1-p)^3."""
    return -((1 - p) ** 2) * math.log(p), 2 * p * (1 - p) ** 2 * math.log(p) - (1 - p) ** 3


# (logits of one pixel, one value per output channel; mask y; loss of that pixel; dL/dlogits), worked out by hand.
HAND_CASES = {
    "sigmoid_bce": [
        ([0.0], 1.0, LN2, [-0.5]),  # -log(1/2); sigmoid(0) - 1
        ([LN3], 0.0, math.log(4), [0.75]),  # -log(1 - 3/4); 3/4 - 0
        ([-5.0], 1.0, math.log(1 + math.e**5), [1 / (1 + math.e**5) - 1]),  # confident mistake: ~ -1
    ],
    "tanh_mse": [
        ([0.0], 1.0, 1.0, [-2.0]),  # (0 - 1)^2; 2 (0 - 1)(1 - 0): 4x the BCE gradient at z = 0
        ([LN2], 0.0, 2.56, [2.048]),  # (0.6 + 1)^2; 2 (1.6)(1 - 0.36)
        ([LN2], 1.0, 0.16, [-0.512]),  # (0.6 - 1)^2; 2 (-0.4)(0.64)
    ],
    "sigmoid_mse": [
        ([0.0], 1.0, 0.25, [-0.25]),  # (1/2 - 1)^2; 2 (-1/2)(1/4)
        ([LN3], 0.0, 0.5625, [0.28125]),  # (3/4)^2; 2 (3/4)(3/4)(1/4)
    ],
    "softmax_ce": [
        ([0.0, 0.0], 1.0, LN2, [0.5, -0.5]),  # softmax (1/2, 1/2); dL/dz = softmax - onehot
        ([0.0, LN3], 0.0, math.log(4), [-0.75, 0.75]),  # softmax (1/4, 3/4), target background
    ],
    "dice": [
        ([0.0], 1.0, 1 / 3, [-2 / 9]),  # 1 - 2p/(p+1) at p = 1/2; -2/(p+1)^2 * p(1-p)
        ([LN3], 1.0, 1 / 7, [-(2 / 1.75**2) * 0.1875]),  # p = 3/4: 1 - 1.5/1.75
    ],
    "bce_dice": [
        ([0.0], 1.0, LN2 + 1 / 3, [-0.5 - 2 / 9]),  # the sum of the two above
    ],
    "focal": [
        ([0.0], 1.0, *(lambda v: (v[0], [v[1]]))(_focal(0.5))),  # 0.25 ln 2; -0.125 - 0.25 ln 2
        ([LN3], 1.0, *(lambda v: (v[0], [v[1]]))(_focal(0.75))),
    ],
    "lovasz": [
        ([0.0], 1.0, 1.0, [-1.0]),  # hinge error 1 - z*(2y-1) = 1, Lovasz weight 1; d/dz = -(2y-1)
        ([0.5], 0.0, 1.5, [1.0]),  # error 1 + 0.5
    ],
}

# dL/dlogits per pixel in closed form (docs/heads.md), for the heads whose loss is a mean of per-pixel terms.
# Set-level losses (dice, bce_dice, lovasz) couple pixels: autograd is their formula; their sign is tested below.
PIXEL_GRADIENTS = {
    "sigmoid_bce": lambda z, y: torch.sigmoid(z) - y,
    "tanh_mse": lambda z, y: 2 * (torch.tanh(z) - (2 * y - 1)) * (1 - torch.tanh(z) ** 2),
    "sigmoid_mse": lambda z, y: 2 * (torch.sigmoid(z) - y) * torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    "softmax_ce": lambda z, y: torch.softmax(z, 1) - torch.cat([1 - y, y], 1),
    "focal": lambda z, y: _focal_gradient(z, y),
}


def _focal_gradient(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pt = torch.where(y > 0, torch.sigmoid(z), 1 - torch.sigmoid(z))  # probability of the true class
    sign = 2 * y - 1  # d pt / dz = sign * pt (1 - pt)
    return sign * (2 * pt * (1 - pt) ** 2 * torch.log(pt) - (1 - pt) ** 3)


def random_batch(head: Head, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    logits = 3 * torch.randn(2, head.out_channels, 8, 8, dtype=torch.float64)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).double()
    return logits, mask


@pytest.mark.parametrize("name", head_names())
def test_every_head_config_has_hand_checked_cases(name):
    assert name in HAND_CASES, f"conf/head/{name}.yaml has no hand-computed cases in this test; add them"
    assert build_head(name).name == name


@pytest.mark.parametrize("name", head_names())
def test_loss_and_gradient_match_hand_values(name):
    head = build_head(name)
    for z, y, loss, grad in HAND_CASES[name]:
        logits = torch.tensor(z, dtype=torch.float64).view(1, -1, 1, 1).requires_grad_()
        mask = torch.full((1, 1, 1, 1), y, dtype=torch.float64)
        value = head.loss(logits, mask)
        value.backward()
        assert value.item() == pytest.approx(loss, rel=1e-6), (z, y)
        assert logits.grad.flatten().tolist() == pytest.approx(grad, rel=1e-6), (z, y)


@pytest.mark.parametrize("name", sorted(PIXEL_GRADIENTS))
def test_autograd_gradient_matches_formula_on_a_map(name):
    """dL/dz from autograd equals the closed form on every pixel of a random map."""
    head = build_head(name)
    logits, mask = random_batch(head)
    logits.requires_grad_()
    head.loss(logits, mask).backward()
    n = mask.numel()  # the loss is a mean over pixels: undo the 1/n
    torch.testing.assert_close(logits.grad * n, PIXEL_GRADIENTS[name](logits.detach(), mask))


@pytest.mark.parametrize("name", head_names())
def test_gradient_never_pushes_a_pixel_away_from_its_label(name):
    """Descending the loss raises the foreground probability of foreground pixels and lowers it elsewhere."""
    head = build_head(name)
    logits, mask = random_batch(head, seed=1)
    logits.requires_grad_()
    head.loss(logits, mask).backward()
    step = logits.detach() - 1e-3 * logits.grad / logits.grad.abs().max()
    change = head.probability(step) - head.probability(logits.detach())
    assert (change[mask > 0] >= -1e-12).all() and (change[mask == 0] <= 1e-12).all()


@pytest.mark.parametrize("name", head_names())
def test_probability_is_in_unit_interval_and_decides_at_one_half(name):
    head = build_head(name)
    z = torch.tensor([-1e4, -30.0, -1e-3, 0.0, 1e-3, 30.0, 1e4]).view(1, 1, 1, -1)
    logits = logits_with_decision(head, z)
    p = head.probability(logits)
    assert p.shape == (1, 1, 1, 7)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert head.predict(logits).flatten().tolist() == [False, False, False, True, True, True, True]
    assert torch.isfinite(head.loss(logits, torch.ones_like(z))), "loss must stay finite for extreme logits"


def test_tanh_probability_is_sigmoid_of_twice_the_logit():
    z = torch.linspace(-8, 8, 101, dtype=torch.float64)
    torch.testing.assert_close(build_head("tanh_mse").probability(z), torch.sigmoid(2 * z))


def test_tanh_mse_is_four_times_the_brier_score_of_sigmoid_2z():
    z, y = random_batch(build_head("tanh_mse"), seed=2)
    torch.testing.assert_close(build_head("tanh_mse").loss(z, y), 4 * build_head("sigmoid_mse").loss(2 * z, y))


def test_softmax_ce_on_the_logit_difference_is_sigmoid_bce():
    z, y = random_batch(build_head("sigmoid_bce"), seed=3)
    softmax = build_head("softmax_ce")
    torch.testing.assert_close(softmax.loss(logits_with_decision(softmax, z), y), build_head("sigmoid_bce").loss(z, y))


def test_confident_mistake_is_stuck_for_tanh_but_pushed_for_bce():
    z = torch.tensor([[[[-6.0]]]], dtype=torch.float64, requires_grad=True)
    y = torch.ones_like(z)
    grads = {}
    for name in ("sigmoid_bce", "tanh_mse"):
        z.grad = None
        build_head(name).loss(z, y).backward()
        grads[name] = z.grad.item()
    assert grads["sigmoid_bce"] == pytest.approx(-1.0, abs=0.01)
    assert abs(grads["tanh_mse"]) < 1e-4  # 2 (a - 1)(1 - a^2) with a = tanh(-6) ~ -1 + 1.2e-5


@pytest.mark.parametrize("name", head_names())
def test_every_pixelwise_head_has_a_closed_form_gradient(name):
    assert build_head(name).pixelwise == (name in PIXEL_GRADIENTS)


def _gradient_at(head: Head, z: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """dL/dz for logits `z` handed to the head in `dtype` under CPU bf16 autocast, as a bf16-mixed network does."""
    z = z.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head.loss(logits_with_decision(head, z.to(dtype)), mask).backward()
    return z.grad


@pytest.mark.parametrize("name", head_names())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16 logits", "fp32 logits"])
def test_heads_compute_in_float32_under_bf16_autocast(name, dtype):
    """Under autocast each head's dL/dz equals its fp32 value, rounded once to the logits' dtype on the way back.

    Before heads ran in fp32, bf16 logits rounded tanh(z) to exactly -1 at z = -6 and tanh_mse's gradient for a
    confidently wrong pixel was 0.0 instead of -1e-4 (and 0.0 instead of -0.0054 at z = -4).
    """
    head = build_head(name)
    z = torch.arange(-6.0, 6.5, 0.5).view(1, 1, 5, 5)  # exact in bf16: the bf16 run sees the same logits
    mask = (torch.arange(25).view(1, 1, 5, 5) % 2).float()  # both labels at every |z|
    with torch.autocast("cpu", enabled=False):  # the plain fp32 reference, no autocast anywhere
        reference = z.clone().requires_grad_()
        head.loss(logits_with_decision(head, reference), mask).backward()
    expected = reference.grad.to(dtype).float()  # the network's dtype carries the fp32 gradient back
    observed = _gradient_at(head, z, mask, dtype)
    torch.testing.assert_close(observed, expected, rtol=1e-3, atol=1e-12)
    assert head.loss(logits_with_decision(head, z.to(dtype)), mask).dtype == torch.float32
    assert head.probability(logits_with_decision(head, z.to(dtype))).dtype == torch.float32
