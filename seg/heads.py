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

IGNORE_TARGET = (
    -1
)  # the target of pixels that count nowhere: smp's losses skip it, and so do the metrics (seg.model.metrics)


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


# --- the link-loss family: sigmoid_bce, tanh_mse, sigmoid_mse and their exact controls -------------------------
#
# Every one-channel head below is loss_scale * w(y) * loss(link(logit_scale * z), y): the scale factors that tell
# tanh_mse from sigmoid_mse are explicit numbers, so an identity (tanh_mse == sigmoid_mse at logit_scale 2 and
# loss_scale 4) is a config, not a claim. docs/heads.md derives each equivalence.


class Link(ABC):
    """What the scaled logit u = logit_scale * z becomes: an output, the target it is compared with, a probability."""

    @abstractmethod
    def output(self, u: Tensor) -> Tensor:
        """The activation the squared error compares with `target`."""

    @abstractmethod
    def target(self, mask: Tensor) -> Tensor:
        """The {0,1} mask in the output's range."""

    @abstractmethod
    def probability_logit(self, u: Tensor) -> Tensor:
        """logit of the foreground probability: probability = sigmoid(probability_logit(u))."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SigmoidLink(Link):
    """sigmoid(u) against y in {0, 1}."""

    def output(self, u: Tensor) -> Tensor:
        return torch.sigmoid(u)

    def target(self, mask: Tensor) -> Tensor:
        return mask

    def probability_logit(self, u: Tensor) -> Tensor:
        return u


class TanhLink(Link):
    """tanh(u) against t = 2y - 1 in {-1, 1}; probability (tanh(u) + 1) / 2 = sigmoid(2u)."""

    def output(self, u: Tensor) -> Tensor:
        return torch.tanh(u)

    def target(self, mask: Tensor) -> Tensor:
        return 2 * mask - 1

    def probability_logit(self, u: Tensor) -> Tensor:
        return 2 * u


class PixelLoss(ABC):
    @abstractmethod
    def per_pixel(self, link: Link, u: Tensor, mask: Tensor) -> Tensor:
        """(B, 1, H, W) loss of each pixel, before weighting and the mean."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropy(PixelLoss):
    """Binary cross-entropy of the link's probability, from its logit (log-sum-exp stable, unlike BCE on a
    probability, which saturates at |z| > ~17)."""

    def per_pixel(self, link: Link, u: Tensor, mask: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(link.probability_logit(u), mask, reduction="none")


class SquaredError(PixelLoss):
    """(output - target)^2 in the link's own range: tanh's {-1, 1} or sigmoid's {0, 1}."""

    def per_pixel(self, link: Link, u: Tensor, mask: Tensor) -> Tensor:
        return F.mse_loss(link.output(u), link.target(mask), reduction="none")


AUTO = "auto"


class LinkLoss(Head):
    """loss_scale * mean over valid pixels of w(y) * loss(link(logit_scale * z), y).

    logit_scale multiplies the network's logit before the link (and so the decision rule stays z >= 0 for any
    positive scale); loss_scale multiplies the loss, and with it every gradient. pos_weight w weighs foreground
    pixels w times a background pixel (w(y) = 1 + (w - 1) y): for BCE that is torch's `pos_weight`, for the squared
    error the same per-class weight. Either way the loss's minimiser for a pixel that is foreground with
    probability q is p = w q / (w q + 1 - q), so the 0.5 decision keeps pixels with q >= 1 / (1 + w): w > 1 lowers
    the Bayes threshold, w < 1 raises it. `auto` is (1 - f) / f for the training split's foreground fraction f
    (settled by `settle_pos_weight` before training; then the Bayes threshold is f).
    """

    def __init__(
        self,
        *,
        name: str,
        link: Link,
        loss: PixelLoss,
        logit_scale: float = 1.0,
        loss_scale: float = 1.0,
        pos_weight: float | str = 1.0,
    ) -> None:
        if not float(logit_scale) > 0:
            raise ValueError(f"head.logit_scale={logit_scale}: must be > 0 (a negative scale flips the decision)")
        self.name, self.link, self.pixel_loss = name, link, loss
        self.logit_scale, self.loss_scale = float(logit_scale), float(loss_scale)
        self.pos_weight = pos_weight if pos_weight == AUTO else float(pos_weight)

    def settle_pos_weight(self, foreground_fraction: float) -> float:
        """pos_weight `auto` -> (1 - f) / f for the training split's foreground fraction f; a number stays."""
        if self.pos_weight == AUTO:
            f = min(max(float(foreground_fraction), 1e-6), 1 - 1e-6)  # an empty or full split: a finite weight
            self.pos_weight = (1 - f) / f
        return self.pos_weight

    def weights(self, mask: Tensor) -> Tensor | float:
        if self.pos_weight == AUTO:
            raise RuntimeError(
                f"head {self.name}: pos_weight=auto was never settled; training settles it from the train split"
                " (seg.run.train.build), or set head.pos_weight to a number"
            )
        return 1.0 if self.pos_weight == 1.0 else 1 + (self.pos_weight - 1) * mask

    def loss(self, logits: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        per_pixel = self.pixel_loss.per_pixel(self.link, self.logit_scale * logits, mask)  # (B, 1, H, W)
        return self.loss_scale * valid_mean(self.weights(mask) * per_pixel, valid)

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(self.link.probability_logit(self.logit_scale * logits))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, link={self.link}, loss={self.pixel_loss},"
            f" logit_scale={self.logit_scale:g}, loss_scale={self.loss_scale:g}, pos_weight={self.pos_weight})"
        )


class SigmoidBCE(LinkLoss):
    """sigmoid output, binary cross-entropy, targets y in {0, 1}. dL/dz = sigmoid(z) - y (per pixel, before the mean)."""

    def __init__(self, *, pos_weight: float | str = 1.0) -> None:
        super().__init__(name="sigmoid_bce", link=SigmoidLink(), loss=CrossEntropy(), pos_weight=pos_weight)


class TanhMSE(LinkLoss):
    """tanh output, MSE loss, targets t = 2y - 1 in {-1, 1}. dL/dz = 2 (tanh z - t)(1 - tanh^2 z) per pixel.

    Exactly sigmoid_mse at logit_scale 2 and loss_scale 4: (tanh z - t)^2 = 4 (sigmoid(2z) - y)^2."""

    def __init__(self, *, pos_weight: float | str = 1.0) -> None:
        super().__init__(name="tanh_mse", link=TanhLink(), loss=SquaredError(), pos_weight=pos_weight)


class SigmoidMSE(LinkLoss):
    """sigmoid output, MSE on {0, 1} targets (the Brier score). dL/dz = 2 (p - y) p (1 - p): tanh_mse's shape, halved in z."""

    def __init__(self, *, pos_weight: float | str = 1.0) -> None:
        super().__init__(name="sigmoid_mse", link=SigmoidLink(), loss=SquaredError(), pos_weight=pos_weight)


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
