"""Heads: how a {0,1} mask becomes a target, how logits become a loss, and how logits become a probability.

The U-Net ends in raw logits `z` (no activation) and knows nothing of heads; everything that differs
between "sigmoid + BCE" and "tanh + MSE" lives here. The math and the facts the tests check are in
HEADS.md (project's shared docs) and README "Heads".

Decision rule, shared by every head: a pixel is foreground when `probability(z) >= 0.5`. For both heads
below that is `z >= 0` (sigmoid(0) = (tanh(0) + 1) / 2 = 0.5), so the network's decision boundary is the
same and only training differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor


class Head(ABC):
    """A loss and a probability for a logit map.

    logits: (B, out_channels, H, W) raw network output; mask: (B, 1, H, W) float in {0, 1}.
    """

    name: str  # the name runs and reports use, equal to the config option (conf/head/<name>.yaml)
    out_channels: int = 1  # channels the network must output for this head

    @abstractmethod
    def loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Scalar training loss, mean over pixels."""

    @abstractmethod
    def probability(self, logits: Tensor) -> Tensor:
        """(B, 1, H, W) foreground probability in [0, 1]."""

    def predict(self, logits: Tensor) -> Tensor:
        """(B, 1, H, W) bool foreground decision: the rule every metric uses."""
        return self.probability(logits) >= 0.5

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SigmoidBCE(Head):
    """sigmoid output, binary cross-entropy, targets y in {0, 1}. dL/dz = sigmoid(z) - y (per pixel, before the mean)."""

    name = "sigmoid_bce"

    def loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        # From logits: log-sum-exp stable, unlike BCE on sigmoid(z), which saturates at |z| > ~17.
        return F.binary_cross_entropy_with_logits(logits, mask)

    def probability(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class TanhMSE(Head):
    """tanh output, MSE loss, targets t = 2y - 1 in {-1, 1}. dL/dz = 2 (tanh z - t)(1 - tanh^2 z) per pixel."""

    name = "tanh_mse"

    def loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        return F.mse_loss(torch.tanh(logits), 2 * mask - 1)

    def probability(self, logits: Tensor) -> Tensor:
        return (torch.tanh(logits) + 1) / 2  # == sigmoid(2 z)
