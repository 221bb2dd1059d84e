"""Head math (docs/heads.md) against hand-computed values and autograd, for every conf/head/*.yaml."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from seg.heads import CrossEntropy, Head, LinkLoss, SigmoidLink, SquaredError, TanhLink, logits_with_decision
from tests.conftest import build_head, compose_config, head_names

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


# --- the link-loss family ---------------------------------------------------------------------------------

PINS = json.loads((Path(__file__).parent / "data" / "head_pins.json").read_text())


def _pinned_batch(head: Head) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed tensors tests/data/head_pins.json was computed on (by the head classes before the family)."""
    g = torch.Generator().manual_seed(1234)
    z = torch.randn(2, head.out_channels, 5, 6, generator=g, dtype=torch.float64) * 3
    mask = (torch.rand(2, 1, 5, 6, generator=g) < 0.3).double()
    valid = torch.rand(2, 1, 5, 6, generator=g) < 0.8
    return z, mask, valid


@pytest.mark.parametrize("name", head_names())
def test_every_head_config_keeps_its_numbers(name):
    """Loss, gradient and probability of every conf/head/*.yaml equal those pinned before the family existed."""
    head = build_head(name)
    z, mask, valid = _pinned_batch(head)
    z.requires_grad_()
    loss = head.loss(z, mask, valid)
    (grad,) = torch.autograd.grad(loss, z)
    pin = PINS[name]
    assert loss.item() == pytest.approx(pin["loss"], rel=1e-12, abs=1e-15)
    torch.testing.assert_close(grad.flatten(), torch.tensor(pin["grad"], dtype=torch.float64), rtol=1e-12, atol=1e-15)
    assert head.probability(z.detach()).sum().item() == pytest.approx(pin["prob_sum"], rel=1e-12)


def _loss_and_grad(head: Head, z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.clone().requires_grad_()
    loss = head.loss(z, mask)
    return loss.detach(), torch.autograd.grad(loss, z)[0]


def _family(link, loss, logit_scale=1.0, loss_scale=1.0) -> LinkLoss:
    return LinkLoss(name="x", link=link, loss=loss, logit_scale=logit_scale, loss_scale=loss_scale)


@pytest.mark.parametrize(
    ("config", "reference", "factor"),
    [
        ("control/sigmoid_mse_x2_x4", "tanh_mse", 1.0),  # tanh_mse is sigmoid_mse at logit_scale 2, loss_scale 4
        ("control/tanh_half", "sigmoid_mse", 4.0),  # (tanh(z/2) - t)^2 = 4 (sigmoid(z) - y)^2
        ("control/sigmoid2_brier", "tanh_mse", 0.25),  # (sigmoid(2z) - y)^2 = (tanh z - t)^2 / 4
    ],
)
def test_exact_controls_equal_their_reference_to_float_precision(config, reference, factor):
    z, y = random_batch(build_head("tanh_mse"), seed=4)
    z = torch.cat([z, torch.linspace(-20, 20, 128, dtype=torch.float64).view(2, 1, 8, 8)])  # saturated ends too
    y = torch.cat([y, (torch.arange(128) % 2).double().view(2, 1, 8, 8)])
    loss, grad = _loss_and_grad(build_head(config), z, y)
    ref_loss, ref_grad = _loss_and_grad(build_head(reference), z, y)
    torch.testing.assert_close(loss, factor * ref_loss, rtol=1e-14, atol=0)
    torch.testing.assert_close(grad, factor * ref_grad, rtol=1e-12, atol=1e-15)  # tanh saturates to 0 first
    torch.testing.assert_close(
        build_head(config).probability(z), build_head(reference).probability(z), rtol=1e-14, atol=0
    )


def test_bce_on_2z_is_sigmoid_bce_of_the_doubled_logit():
    z, y = random_batch(build_head("sigmoid_bce"), seed=5)
    loss, grad = _loss_and_grad(build_head("control/bce_2z"), z, y)
    ref_loss, ref_grad = _loss_and_grad(build_head("sigmoid_bce"), 2 * z, y)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-14, atol=0)
    torch.testing.assert_close(grad, 2 * ref_grad, rtol=1e-14, atol=1e-15)  # chain rule through 2z


def test_bce_through_the_tanh_link_is_bce_on_2z():
    """The family is closed: tanh's probability is sigmoid(2u), so BCE on it is BCE on logit 2u."""
    z, y = random_batch(build_head("sigmoid_bce"), seed=6)
    tanh_bce = _family(TanhLink(), CrossEntropy())
    torch.testing.assert_close(tanh_bce.loss(z, y), build_head("control/bce_2z").loss(z, y), rtol=1e-14, atol=0)


def test_a_negative_logit_scale_is_refused():
    with pytest.raises(ValueError, match="logit_scale"):
        _family(SigmoidLink(), SquaredError(), logit_scale=-1.0)


# The weight-space forms of the identity (docs/heads.md "Exact equivalences"), on a two-layer network:
# body h = relu(A x), logit z = w . h + b. tanh_mse is sigmoid_mse on the logit 2z, i.e. with last layer (2w, 2b).


def _tiny_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 5, dtype=torch.float64)
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0.2).double()  # (64, 1) labels
    body = torch.randn(8, 5, dtype=torch.float64) * 0.5
    last = torch.randn(1, 8, dtype=torch.float64) * 0.5
    bias = torch.zeros(1, dtype=torch.float64)
    return x, y, body, last, bias


def _train(head: Head, params, groups, optimizer, steps=25):
    params = [p.clone().requires_grad_() for p in params]
    x, y = _tiny_problem()[:2]
    opt = optimizer([{"params": [params[i] for i in idx], "lr": lr} for idx, lr in groups])
    for _ in range(steps):
        opt.zero_grad()
        z = torch.relu(x @ params[0].T) @ params[1].T + params[2]
        head.loss(z.view(-1, 1, 1, 1), y.view(-1, 1, 1, 1)).backward()
        opt.step()
    return [p.detach() for p in params]


def test_under_sgd_tanh_mse_is_sigmoid_mse_with_last_layer_x2_body_lr_x4_last_lr_x16():
    """SGD (momentum, no decay): the predicted lr shift of docs/results/atlas/preregistration.md, exactly."""
    _, _, body, last, bias = _tiny_problem()
    sgd = functools.partial(torch.optim.SGD, momentum=0.9)
    lr = 0.05
    tanh = _train(build_head("tanh_mse"), [body, last, bias], [([0], lr), ([1, 2], lr)], sgd)
    smse = _train(build_head("sigmoid_mse"), [body, 2 * last, 2 * bias], [([0], 4 * lr), ([1, 2], 16 * lr)], sgd)
    torch.testing.assert_close(smse[0], tanh[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(smse[1], 2 * tanh[1], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(tanh[0], body)  # it trained


def test_under_adam_tanh_mse_is_sigmoid_mse_with_last_layer_x2_and_last_lr_x2():
    """Adam divides the loss's factor 4 out; only the logit scale remains, as init x2 and last-layer step x2."""
    _, _, body, last, bias = _tiny_problem()
    adam = functools.partial(torch.optim.Adam, eps=1e-30)  # eps is the one term that is not scale-free
    lr = 0.01
    tanh = _train(build_head("tanh_mse"), [body, last, bias], [([0], lr), ([1, 2], lr)], adam)
    smse = _train(build_head("sigmoid_mse"), [body, 2 * last, 2 * bias], [([0], lr), ([1, 2], 2 * lr)], adam)
    torch.testing.assert_close(smse[0], tanh[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(smse[1], 2 * tanh[1], rtol=1e-9, atol=1e-12)
    same_init = _train(build_head("sigmoid_mse"), [body, last, bias], [([0], lr), ([1, 2], lr)], adam)
    assert not torch.allclose(same_init[0], tanh[0], atol=1e-3)  # without the rescaling they differ


# --- class weights ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sigmoid_bce", "sigmoid_mse", "tanh_mse"])
def test_pos_weight_scales_the_foreground_terms_by_its_factor(name):
    z = torch.tensor([0.3, -1.2, 2.0, -0.4], dtype=torch.float64).view(1, 1, 2, 2)
    y = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64).view(1, 1, 2, 2)
    plain, weighted = build_head(name), instantiate_head(name, pos_weight=3.0)
    foreground = plain.loss(z[..., :1, :], y[..., :1, :])  # the first row: the two foreground pixels
    background = plain.loss(z[..., 1:, :], y[..., 1:, :])
    assert weighted.loss(z, y).item() == pytest.approx((3 * foreground + background).item() / 2, rel=1e-12)
    assert weighted.loss(z, torch.ones_like(z)).item() == pytest.approx(3 * plain.loss(z, torch.ones_like(z)).item())
    if name == "sigmoid_bce":  # torch's own pos_weight is the same thing
        torch_bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, pos_weight=torch.tensor(3.0))
        assert weighted.loss(z, y).item() == pytest.approx(torch_bce.item(), rel=1e-12)


@pytest.mark.parametrize("name", ["sigmoid_bce", "sigmoid_mse"])
def test_pos_weight_moves_the_bayes_threshold_to_one_over_one_plus_w(name):
    """A pixel that is foreground with probability q: the expected loss is minimised at p = w q / (w q + 1 - q),
    which crosses 0.5 at q = 1 / (1 + w)."""
    w = 3.0
    head = instantiate_head(name, pos_weight=w)
    z = torch.linspace(-6, 6, 120001, dtype=torch.float64).view(1, 1, 1, -1)
    # per-pixel dL/dz when every pixel is foreground, and when every pixel is background (undo the mean)
    g1, g0 = (_loss_and_grad(head, z, torch.full_like(z, y))[1] for y in (1.0, 0.0))
    for q in (0.2, 0.25, 0.3):
        expected_gradient = (q * g1 + (1 - q) * g0).flatten()
        best = head.probability(z.flatten()[expected_gradient.abs().argmin()]).item()  # where d E[loss] / dz = 0
        assert best == pytest.approx(w * q / (w * q + 1 - q), abs=1e-4)
        assert (best >= 0.5) == (q >= 1 / (1 + w))


def test_pos_weight_auto_is_settled_from_the_foreground_fraction():
    head = instantiate_head("sigmoid_bce", pos_weight="auto")
    with pytest.raises(RuntimeError, match="never settled"):
        head.loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert head.settle_pos_weight(0.2) == pytest.approx(4.0)  # (1 - 0.2) / 0.2
    assert head.settle_pos_weight(0.5) == pytest.approx(4.0)  # settled once: a number stays
    assert build_head("sigmoid_bce").settle_pos_weight(0.2) == 1.0


def instantiate_head(name: str, **overrides) -> Head:
    return instantiate(compose_config([f"head={name}", *(f"head.{k}={v}" for k, v in overrides.items())]).head)


def test_pos_weight_auto_is_settled_from_the_training_split_before_training(tiny_cfg):
    from seg.run.train import build

    module, datamodule, _ = build(tiny_cfg("head=sigmoid_bce", "head.pos_weight=auto", "logger=csv"))
    masks = [datamodule.splits["train"].cached[i][1] for i in range(len(datamodule.splits["train"]))]
    f = sum(int((m == 1).sum()) for m in masks) / sum(m.size for m in masks)
    assert 0 < f < 0.5
    assert module.head.pos_weight == pytest.approx((1 - f) / f)
    assert module.config["head"]["pos_weight"] == pytest.approx((1 - f) / f)  # what checkpoints record


@pytest.mark.slow  # three U-Nets in float64 (~25 s); the two-layer version above runs by default
def test_the_unet_with_last_layer_x2_and_its_lr_x2_under_adamw_is_tanh_mse(tiny_cfg):
    """The atlas's exact control on the real U-Net, through the module's own parameter groups: sigmoid_mse with
    model=unet_last_init2 and last_layer_lr_scale=2 gives, step for step, twice tanh_mse's logits under AdamW
    with weight decay (the group's decay / 2 keeps AdamW's shrink lr x wd). Without the lr group it does not."""
    from seg.run.train import build

    torch.manual_seed(0)
    image = torch.randn(4, 1, 32, 32, dtype=torch.float64)
    mask = (torch.rand(4, 1, 32, 32) > 0.7).double()
    valid = torch.ones_like(mask, dtype=torch.bool)

    def trained(*overrides: str) -> torch.Tensor:
        torch.manual_seed(1)  # the same initial network for every arm (before the last layer's x2)
        cfg = tiny_cfg("~scheduler", "optimizer.weight_decay=0.05", "+optimizer.eps=1e-30", *overrides)
        module = build(cfg)[0].double()
        optimizer = module.configure_optimizers()
        for _ in range(4):
            optimizer.zero_grad()
            module.head.loss(module.net(image), mask, valid).backward()
            optimizer.step()
        with torch.no_grad():
            return module.net(image)

    tanh = trained("head=tanh_mse")
    control = trained("head=sigmoid_mse", "model=unet_last_init2", "last_layer_lr_scale=2")
    torch.testing.assert_close(control, 2 * tanh, rtol=1e-7, atol=1e-9)
    init_only = trained("head=sigmoid_mse", "model=unet_last_init2")
    assert (init_only - 2 * tanh).abs().max() > 1e-3  # the last layer's step x2 is what the group adds
