"""An interactive page for the picture in docs/gradient_anatomy.png: drag a logit, watch each head push the pixel.

    python scripts/explorer.py                                   # -> docs/explorer.html (open it in a browser)
    python scripts/explorer.py --screenshot docs/explorer.png    # and a screenshot through headless Chromium

The page is one self-contained HTML file (inline JS, CSS and SVG; no network): open it straight from disk.
Panel 1 shows, for every per-pixel head in conf/head, the loss and dL/dz of one pixel against its logit;
panel 2 runs gradient descent on one pixel's logit with each head. The page holds no formula: this script samples
each head's own `loss` and `probability` (float64, with their derivatives from autograd) on a grid of logits, and
the page interpolates those tables. A new per-pixel head appears on the page by itself; a head whose loss couples
the pixels of a batch (Dice, Lovasz) has no per-pixel curve, and the page names it as left out.
tests/test_explorer.py checks in a real browser that the page's numbers equal the heads'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from scripts.browser import chromium  # noqa: E402
from seg.heads import logits_with_decision  # noqa: E402
from seg.paths import PROJECT_DIR  # noqa: E402
from seg.run.cli import report_user_errors  # noqa: E402

TEMPLATE = Path(__file__).with_name("explorer_page.html")
PAGE_SLOT = "/*@PAGE@*/{}"  # where the template takes the page's data (JSON)
CONF = PROJECT_DIR / "conf"

# The tables' logits: the slider's range [-8, 8] and room for descent to run past it. The page interpolates each
# curve (loss, dL/dz, probability) from its value and two derivatives at the nodes (quintic Hermite), whose error at
# this step is far inside the test's 1e-6 even where tanh_mse bends most; dL/dz is interpolated from its own
# values, not differentiated from the loss's, so that 300 descent steps do not add up the loss's rounding.
Z_LIMIT, Z_STEP = 12.0, 0.05
DIGITS = (
    10  # significant digits kept: finer than the interpolation, coarse enough that last-bit CPU differences rarely show
)
# Okabe-Ito colours (distinct under colour blindness), in the page's order of heads.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#000000", "#E69F00", "#56B4E9", "#F0E442"]


def load_heads() -> list:
    """Every head of conf/head, built from its YAML."""
    names = sorted(p.stem for p in (CONF / "head").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(CONF / "head"), version_base="1.3"):
        return [instantiate(compose(config_name=name)) for name in names]


def compared_heads() -> list[str]:
    """The heads the project's study compares (conf/experiment/compare_heads.yaml): the page lists them first."""
    study = OmegaConf.load(CONF / "experiment" / "compare_heads.yaml")
    return str(study.hydra.sweeper.params.head).split(",")


def stuck_threshold() -> float:
    """The |dL/dz| under which the project's diagnostics call a wrong pixel stuck (conf/callbacks/diagnostics.yaml)."""
    return float(OmegaConf.load(CONF / "callbacks" / "diagnostics.yaml").diagnostics.stuck_below)


def pixel(head, z: torch.Tensor) -> torch.Tensor:
    """Logit maps (N, C, 1, 1) whose decision logits are z (N,): N one-pixel images in one batch."""
    return logits_with_decision(head, z.view(-1, 1, 1, 1))


def decision(head, logits: torch.Tensor) -> torch.Tensor:
    """The decision logit of each pixel of `logits`: the inverse of seg.heads.logits_with_decision, (N,)."""
    return (logits[:, -1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]).flatten()


def is_per_pixel(head) -> bool:
    """Whether the head's loss of an image is the mean of its pixels' losses (Dice and Lovasz couple them)."""
    z = torch.tensor([[-2.0, 0.5, 3.0, -0.3]], dtype=torch.float64).view(1, 1, 1, 4)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64).view(1, 1, 1, 4)
    whole = head.loss(logits_with_decision(head, z), mask)
    alone = [head.loss(logits_with_decision(head, z[..., i : i + 1]), mask[..., i : i + 1]) for i in range(4)]
    return bool(torch.isclose(whole, torch.stack(alone).mean(), rtol=1e-9, atol=1e-12))


def with_slopes(values: torch.Tensor, z: torch.Tensor, orders: int = 2) -> list[list[float]]:
    """[v, dv/dz, d2v/dz2] for values that depend on z element by element (autograd, keeping the graph)."""
    out = [values]
    for _ in range(orders):
        (slope,) = torch.autograd.grad(out[-1].sum(), z, create_graph=True)
        out.append(slope)
    return [[float(f"{v:.{DIGITS}g}") for v in column.detach().tolist()] for column in out]


def label_tables(head, y: int, z: torch.Tensor) -> dict[str, list[list[float]]]:
    """One label's per-pixel loss with its first three derivatives in z and, where it differs from dL/dz, `move`.

    `move` is how far the decision logit moves per unit of lr when descent updates the head's own output channels:
    dL/dz for one channel, twice that for softmax_ce (both channels get the push, in opposite directions).
    """
    mask = torch.full((len(z), 1, 1, 1), float(y), dtype=torch.float64)
    with torch.no_grad():  # each pixel's own loss: one image a pixel
        loss = torch.stack([head.loss(pixel(head, zi.view(1)), mask[:1]) for zi in z])
    zz = z.clone().requires_grad_()
    logits = pixel(head, zz)
    total = head.loss(logits, mask) * len(z)  # the batch's mean times N: its slope in z_i is pixel i's dL/dz
    (grad,) = torch.autograd.grad(total, zz, create_graph=True)
    (channel_grad,) = torch.autograd.grad(total, logits, create_graph=True)
    tables = {"loss": [[float(f"{v:.{DIGITS}g}") for v in loss.tolist()], *with_slopes(grad, zz, orders=2)]}
    move = decision(head, channel_grad)
    if not torch.allclose(move, grad, rtol=0, atol=1e-12):
        tables["move"] = with_slopes(move, zz)
    return tables


def head_spec(head, z: torch.Tensor) -> dict:
    """What the page draws of one head: its probability and, per label, its loss, as tables on the grid z."""
    zz = z.clone().requires_grad_()
    return {
        "name": head.name,
        "prob": with_slopes(head.probability(pixel(head, zz)).flatten(), zz),
        "labels": [label_tables(head, y, z) for y in (0, 1)],
    }


def drawn_like(spec: dict, earlier: list[dict]) -> bool:
    """Whether an earlier head has the same curves (softmax_ce in d = z1 - z0 lies on sigmoid_bce): drawn dashed."""

    def curves(s: dict) -> torch.Tensor:
        return torch.tensor([s["prob"][0], *(t["loss"][0] for t in s["labels"])])

    return any(torch.allclose(curves(spec), curves(other), rtol=0, atol=1e-9) for other in earlier)


def page_order(heads: list) -> list:
    """The compared heads first, in the study's order, then the others by name."""
    first = compared_heads()
    return sorted(heads, key=lambda h: (first.index(h.name) if h.name in first else len(first), h.name))


def style(index: int, spec: dict, earlier: list[dict], compared: bool) -> dict:
    """Colour by position; the compared heads drawn thicker; a head lying on an earlier one's curves dashed."""
    if drawn_like(spec, earlier):
        return {"color": COLORS[index % len(COLORS)], "width": 1.6, "dash": "7 4"}
    return {"color": COLORS[index % len(COLORS)], "width": 3 if compared else 2}


def page_data(heads: list) -> dict:
    """The page's JSON: the per-pixel heads with their tables and styles, the names of the others, the threshold."""
    shown = page_order([head for head in heads if is_per_pixel(head)])
    z = torch.linspace(-Z_LIMIT, Z_LIMIT, round(2 * Z_LIMIT / Z_STEP) + 1, dtype=torch.float64)
    specs: list[dict] = []
    for index, head in enumerate(shown):
        spec = head_spec(head, z)
        spec["style"] = style(index, spec, specs, compared=head.name in compared_heads())
        specs.append(spec)
    return {
        "z": {"from": -Z_LIMIT, "step": Z_STEP, "count": len(z)},
        "heads": specs,
        "leftOut": [head.name for head in heads if head not in shown],
        "stuckBelow": stuck_threshold(),
    }


def render(heads: list) -> str:
    template = TEMPLATE.read_text()
    assert PAGE_SLOT in template, f"{TEMPLATE} lost its {PAGE_SLOT} slot"
    return template.replace(PAGE_SLOT, json.dumps(page_data(heads), separators=(",", ":")))


def screenshot(page: Path, out: Path, *, width: int = 1280) -> None:
    """The two panels after the default scenario of panel 2 has run, as a reader sees them."""
    with chromium() as browser:
        tab = browser.new_page(viewport={"width": width, "height": 900}, reduced_motion="reduce")
        tab.goto(page.resolve().as_uri())
        tab.click("#run")  # the default: a confidently wrong foreground pixel, z = -5 (panel 1) and -6 (panel 2)
        tab.wait_for_selector("#panel2[data-state=done]")
        bottom = tab.evaluate("document.querySelector('#panel2').getBoundingClientRect().bottom + window.scrollY")
        out.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom + 12})


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "docs" / "explorer.html")
    parser.add_argument("--screenshot", type=Path, help="also write a PNG of the page (needs Chromium, Playwright)")
    args = parser.parse_args(argv)
    with report_user_errors():
        html = render(load_heads())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(html)
        print(f"wrote {args.out}")
        if args.screenshot:
            screenshot(args.out, args.screenshot)
            print(f"wrote {args.screenshot}")
    return args.out


if __name__ == "__main__":
    main()
