"""scripts/gradient_anatomy.py: the curves it draws are the heads' own loss and dL/dz, and it writes the PNG."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from seg.paths import PROJECT_DIR

spec = importlib.util.spec_from_file_location("gradient_anatomy", PROJECT_DIR / "scripts" / "gradient_anatomy.py")
anatomy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(anatomy)


def test_curves_at_known_logits():
    heads = {h.name: h for h in anatomy.load_heads()}
    z = torch.tensor([0.0, -6.0])
    loss, grad = anatomy.curves(heads["tanh_mse"], z)
    assert loss.tolist() == pytest.approx([1.0, (math.tanh(-6) - 1) ** 2], rel=1e-5)
    assert grad[0].item() == pytest.approx(-2.0) and abs(grad[1].item()) < 1e-4  # stuck at z = -6
    loss, grad = anatomy.curves(heads["softmax_ce"], z)
    assert loss[0].item() == pytest.approx(math.log(2)) and grad.tolist() == pytest.approx([-0.5, -0.99753], rel=1e-4)


def test_writes_the_figure(tmp_path):
    out = anatomy.main(["--out", str(tmp_path / "g.png")])
    assert out.stat().st_size > 20_000
