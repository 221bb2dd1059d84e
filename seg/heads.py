"""Heads: how a {0,1} mask becomes a target, how logits become a loss, and how logits become a probability.

The U-Net ends in raw logits `z` (no activation) and knows nothing of heads; everything that differs
between "sigmoid + BCE" and "tanh + MSE" lives here. The math, with derivations, and the hypotheses the study tests are in
docs/heads.md.

Decision rule, shared by every head: a pixel is foreground when `probability(z) >= 0.5`. For every
one-channel head below that is `z >= 0` (sigmoid(0) = (tanh(0) + 1) / 2 = 0.5), and for `softmax_ce` it is
`z1 >= z0`, so the network's decision boundary is the same and only training differs.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses as smp_losses
from torch import Tensor

IGNORE_TARGET = -1  # the target value smp's losses are built to skip (ignore_index)


LOW_PRECISION = (torch.float16, torch.bfloat16)


def in_float32(method: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a head's `loss` or `probability` in float32 with autocast off, whatever the caller's precision.

    Under bf16 mixed precision the network's logits are bf16, and bf16 rounds tanh(z) to exactly +-1 beyond
    |z| ~ 3.5: tanh_mse's small gradient for a confidently wrong pixel would become exactly 0, a dead zone that
    fp32 training does not have. The head's few element-wise ops cost nothing next to the network, so they run
    in fp32; the gradient flows back through the cast in the network's dtype. float64 stays float64 (tests).
    """

    @functools.wraps(method)
    def wrapper(self, logits: Tensor, *args, **kwargs) -> Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            full = logits.float() if logits.dtype in LOW_PRECISION else logits
            return method(self, full, *args, **kwargs)

    wrapper.in_float32 = True
    return wrapper


class Head(ABC):
    """A loss and a probability for a logit map.

    logits: (B, out_channels, H, W) raw network output; mask: (B, 1, H, W) float in {0, 1};
    valid: (B, 1, H, W) bool or None (all valid): pixels that count. Ignored pixels (a trimap's border, an
    image's padding) add nothing to the loss and its gradient; the mean is over valid pixels only.

    Every subclass's `loss` and `probability` run in float32 under autocast (`in_float32`, applied here so that
    a new head cannot forget it).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("loss", "probability"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "in_float32", False):
                setattr(cls, name, in_float32(method))

    name: str  # the name runs and reports use, equal to the config option (conf/head/<name>.yaml)
    out_channels: int = 1  # channels the network must output for this head
    pixelwise: bool = True  # the loss is a mean of per-pixel terms (False: Dice, Lovasz couple the pixels)

    @abstractmethod
    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        """Scalar training loss, mean over (valid) pixels."""

    @abstractmethod
    def probability(self, logits: Tensor) -> Tensor:
        """(B, 1, H, W) foreground probability in [0, 1]."""

    def predict(self, logits: Tensor) -> Tensor:
        """(B, 1, H, W) bool foreground decision: the rule every metric uses."""
        return self.probability(logits) >= 0.5

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def valid_mean(per_pixel: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of a per-pixel loss map over the valid pixels (all of them when `valid` is None)."""
    if valid is None:
        return per_pixel.mean()
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1)


def ignored_as(mask: Tensor, valid: Tensor | None, value: float = IGNORE_TARGET) -> Tensor:
    """The mask with `value` at ignored pixels: how smp's set-level losses (Dice, Lovasz) are told to skip them."""
    return mask if valid is None else mask.masked_fill(~valid, value)


def logits_with_decision(head: Head, z: Tensor) -> Tensor:
    """A logit map for `head` whose decision logit is `z` (B, 1, H, W): z itself, or (0, z) for two channels."""
    return z if head.out_channels == 1 else torch.cat([torch.zeros_like(z), z], 1)


class SigmoidBCE(Head):
    """sigmoid output, binary cross-entropy, targets y in {0, 1}. dL/dz = sigmoid(z) - y (per pixel, before the mean)."""

    name = "sigmoid_bce"

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        # From logits: log-sum-exp stable, unlike BCE on sigmoid(z), which saturates at |z| > ~17.
        return valid_mean(F.binary_cross_entropy_with_logits(logits, mask, reduction="none"), valid)

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class TanhMSE(Head):
    """tanh output, MSE loss, targets t = 2y - 1 in {-1, 1}. dL/dz = 2 (tanh z - t)(1 - tanh^2 z) per pixel."""

    name = "tanh_mse"

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        return valid_mean(F.mse_loss(torch.tanh(logits), 2 * mask - 1, reduction="none"), valid)

    def probability(self, logits: Tensor) -> Tensor:
        return (torch.tanh(logits) + 1) / 2  # == sigmoid(2 z)


class SigmoidMSE(Head):
    """sigmoid output, MSE on {0, 1} targets (the Brier score). dL/dz = 2 (p - y) p (1 - p): tanh_mse's shape, halved in z."""

    name = "sigmoid_mse"

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        return valid_mean(F.mse_loss(torch.sigmoid(logits), mask, reduction="none"), valid)

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class SoftmaxCE(Head):
    """Two output channels (background, foreground), softmax cross-entropy.

    probability = softmax(z)[1] = sigmoid(z1 - z0): the decision rule is z1 >= z0, and the loss and its gradient
    in the logit difference d = z1 - z0 equal sigmoid_bce's in z. The two-channel parametrization is what differs.
    """

    name = "softmax_ce"
    out_channels = 2

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:  # (B, 2, H, W), (B, 1, H, W)
        per_pixel = F.cross_entropy(logits, mask[:, 0].long(), reduction="none")  # (B, H, W)
        return valid_mean(per_pixel, None if valid is None else valid[:, 0])

    def probability(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)[:, 1:2]


class SigmoidDice(Head):
    """Soft Dice loss on sigmoid(z), computed over the whole batch (smp DiceLoss, binary mode).

    A set-level loss: a pixel's gradient depends on every other pixel of the batch.
    """

    name = "dice"
    pixelwise = False

    def __init__(self, *, smooth: float = 0.0) -> None:
        self.dice = smp_losses.DiceLoss(mode="binary", from_logits=True, smooth=smooth, ignore_index=IGNORE_TARGET)

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        return self.dice(logits, ignored_as(mask, valid))

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class SigmoidBCEDice(SigmoidDice):
    """Binary cross-entropy plus soft Dice (`bce_weight` * BCE + Dice), a common default in segmentation."""

    name = "bce_dice"

    def __init__(self, *, bce_weight: float = 1.0, smooth: float = 0.0) -> None:
        super().__init__(smooth=smooth)
        self.bce_weight = bce_weight

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        bce = valid_mean(F.binary_cross_entropy_with_logits(logits, mask, reduction="none"), valid)
        return self.bce_weight * bce + self.dice(logits, ignored_as(mask, valid))


class SigmoidFocal(Head):
    """Focal loss (Lin et al. 2017): BCE scaled by (1 - p_t)^gamma, so easy pixels count less (smp FocalLoss)."""

    name = "focal"

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = None) -> None:
        self.gamma, self.alpha = gamma, alpha  # read by scripts/explorer.py
        self.focal = smp_losses.FocalLoss(mode="binary", gamma=gamma, alpha=alpha, ignore_index=IGNORE_TARGET)

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        return self.focal(logits, ignored_as(mask, valid))  # the mean over the pixels that count

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class LovaszHinge(Head):
    """Lovász hinge (Berman et al. 2018): a convex surrogate of the batch's IoU, on margins of the raw logit.

    Not a probabilistic loss: sigmoid(z) is reported as the probability so that the decision rule (z >= 0)
    and the metrics are those of every other head, but its calibration means little.
    """

    name = "lovasz"
    pixelwise = False

    def __init__(self) -> None:
        self.lovasz = smp_losses.LovaszLoss(mode="binary", per_image=False, ignore_index=IGNORE_TARGET)

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        # smp's Lovasz builds float32 weights: compute in float32 (a float64 or bf16 map would not match them).
        return self.lovasz(logits.float(), ignored_as(mask.float(), valid))

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)
