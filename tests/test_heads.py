"""Head math (HEADS.md) against hand-computed values and autograd, for every conf/head/*.yaml."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from seg.heads import Head
from tests.conftest import compose_config, head_names

LN2 = math.log(2.0)  # tanh(ln 2) = 0.6 exactly, which keeps the tanh cases hand-checkable

# (logit z, mask y, loss of that one pixel, dL/dz of that pixel), each worked out by hand.
HAND_CASES = {
    "sigmoid_bce": [
        (0.0, 1.0, LN2, -0.5),  # -log(1/2); sigmoid(0) - 1
        (2.0, 0.0, math.log(1 + math.e**2), 1 / (1 + math.e**-2)),  # -log(1 - sigmoid(2)); sigmoid(2) - 0
        (-5.0, 1.0, math.log(1 + math.e**5), 1 / (1 + math.e**5) - 1),  # confident mistake: gradient ~ -1
    ],
    "tanh_mse": [
        (0.0, 1.0, 1.0, -2.0),  # (0 - 1)^2; 2 (0 - 1)(1 - 0): 4x the BCE gradient at z = 0
        (LN2, 0.0, 2.56, 2.048),  # (0.6 + 1)^2; 2 (1.6)(1 - 0.36)
        (LN2, 1.0, 0.16, -0.512),  # (0.6 - 1)^2; 2 (-0.4)(0.64)
    ],
}


def build_head(name: str) -> Head:
    return instantiate(compose_config([f"head={name}"]).head)


@pytest.mark.parametrize("name", head_names())
def test_every_head_config_has_hand_checked_cases(name):
    assert name in HAND_CASES, f"conf/head/{name}.yaml has no hand-computed cases in this test; add them"
    assert build_head(name).name == name


@pytest.mark.parametrize("name", head_names())
def test_loss_and_gradient_match_hand_values(name):
    head = build_head(name)
    for z, y, loss, grad in HAND_CASES[name]:
        logits = torch.full((1, 1, 1, 1), z, dtype=torch.float64, requires_grad=True)
        mask = torch.full((1, 1, 1, 1), y, dtype=torch.float64)
        value = head.loss(logits, mask)
        value.backward()
        assert value.item() == pytest.approx(loss, rel=1e-9), (z, y)
        assert logits.grad.item() == pytest.approx(grad, rel=1e-9), (z, y)


@pytest.mark.parametrize("name", head_names())
def test_autograd_gradient_matches_formula_on_a_map(name):
    """dL/dz from autograd equals the closed form from HEADS.md on every pixel of a random map."""
    head = build_head(name)
    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 1, 8, 8, dtype=torch.float64)).requires_grad_()
    mask = (torch.rand(2, 1, 8, 8) > 0.5).double()
    head.loss(logits, mask).backward()
    z, y, n = logits.detach(), mask, mask.numel()
    formula = {
        "sigmoid_bce": lambda: torch.sigmoid(z) - y,
        "tanh_mse": lambda: 2 * (torch.tanh(z) - (2 * y - 1)) * (1 - torch.tanh(z) ** 2),
    }[name]()
    torch.testing.assert_close(logits.grad * n, formula)  # the loss is a mean: undo the 1/n


@pytest.mark.parametrize("name", head_names())
def test_probability_is_in_unit_interval_and_decides_at_zero(name):
    head = build_head(name)
    logits = torch.tensor([-1e4, -30.0, -1e-3, 0.0, 1e-3, 30.0, 1e4]).view(1, 1, 1, -1)
    p = head.probability(logits)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert head.predict(logits).flatten().tolist() == [False, False, False, True, True, True, True]
    mask = torch.ones_like(logits)
    assert torch.isfinite(head.loss(logits, mask)), "loss must stay finite for extreme logits"


def test_tanh_probability_is_sigmoid_of_twice_the_logit():
    z = torch.linspace(-8, 8, 101, dtype=torch.float64)
    torch.testing.assert_close(build_head("tanh_mse").probability(z), torch.sigmoid(2 * z))


def test_tanh_mse_is_four_times_the_brier_score_of_sigmoid_2z():
    torch.manual_seed(1)
    z = 2 * torch.randn(4, 1, 5, 5, dtype=torch.float64)
    y = (torch.rand(4, 1, 5, 5) > 0.3).double()
    brier = ((torch.sigmoid(2 * z) - y) ** 2).mean()
    torch.testing.assert_close(build_head("tanh_mse").loss(z, y), 4 * brier)


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
