"""The picture discussions of tanh+MSE vs sigmoid+BCE promise and never show: loss and dL/dz against the logit.

    python scripts/gradient_anatomy.py --out docs/gradient_anatomy.png

For one foreground pixel (y = 1) it plots, for every per-pixel head in conf/head, the loss and its gradient
with respect to the decision logit z (autograd through the head's own loss, as training computes it).
Left of z = 0 the pixel is wrong. sigmoid+BCE pushes a wrong pixel with |dL/dz| -> 1; tanh+MSE pushes hardest
near z = 0 (4x BCE) and not at all once it is confidently wrong: the pixel is stuck.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from seg.heads import Head, logits_with_decision  # noqa: E402
from seg.paths import PROJECT_DIR  # noqa: E402
from seg.study.diagnostics import decision_gradient  # noqa: E402


def load_heads() -> list[Head]:
    names = sorted(p.stem for p in (PROJECT_DIR / "conf" / "head").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(PROJECT_DIR / "conf" / "head"), version_base="1.3"):
        return [instantiate(compose(config_name=name)) for name in names]


def curves(head: Head, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel loss and dL/dz of a foreground pixel at each logit in z (one pixel per 'image')."""
    logits = logits_with_decision(head, z.view(-1, 1, 1, 1))
    mask = torch.ones(len(z), 1, 1, 1)
    loss = torch.stack([head.loss(logits[i : i + 1], mask[i : i + 1]) for i in range(len(z))])
    every_pixel = torch.ones_like(mask, dtype=torch.bool)
    return loss.detach(), decision_gradient(head, logits, mask, every_pixel).flatten()


def plot(heads: list[Head], out: Path) -> None:
    z = torch.linspace(-6, 6, 601)
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(12, 4.6))
    for head in heads:
        loss, grad = curves(head, z)
        style = {"lw": 2.6} if head.name in ("sigmoid_bce", "tanh_mse") else {"lw": 1.2, "alpha": 0.8}
        label = head.name
        if head.out_channels == 2:  # lies exactly on sigmoid_bce: draw it dashed on top
            style, label = {"lw": 1.2, "ls": "--", "color": "black"}, f"{head.name} (z = z1 - z0; = sigmoid_bce)"
        ax_loss.plot(z, loss, label=label, **style)
        ax_grad.plot(z, grad, label=label, **style)
    for ax in (ax_loss, ax_grad):
        ax.axvline(0, color="grey", lw=0.8)
        ax.axvspan(-6, 0, color="red", alpha=0.05)
        ax.set_xlabel("logit z of a foreground pixel (y = 1); left of 0 it is predicted background")
        ax.grid(alpha=0.3)
    ax_loss.set_ylim(0, 4.5)
    ax_loss.set_title("loss of the pixel")
    ax_grad.set_title("dL/dz: the push training gives the pixel (< 0: towards foreground)")
    ax_grad.annotate(
        "tanh+MSE: confidently wrong\npixels get no push (stuck)", xy=(-3.5, -0.01), xytext=(-5.8, -0.6),
        arrowprops={"arrowstyle": "->"}, fontsize=9,
    )  # fmt: skip
    ax_grad.annotate(
        "sigmoid+BCE: push -> -1", xy=(-4.5, -0.99), xytext=(-5.8, -1.5), arrowprops={"arrowstyle": "->"}, fontsize=9
    )
    ax_grad.legend(fontsize=8, loc="lower right")
    fig.suptitle("Per-pixel heads (Dice, BCE+Dice and Lovasz couple pixels and have no per-pixel curve)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "docs" / "gradient_anatomy.png")
    args = parser.parse_args(argv)
    plot([h for h in load_heads() if h.pixelwise], args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
