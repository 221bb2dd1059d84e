"""An interactive page for the picture in docs/gradient_anatomy.png: drag a logit, watch each head push the pixel.

    python scripts/explorer.py                                   # -> docs/explorer.html (open it in a browser)
    python scripts/explorer.py --screenshot docs/explorer.png    # and a screenshot through headless Chromium

The page is one self-contained HTML file (inline JS, CSS and SVG; no network): open it straight from disk.
Panel 1 shows, for every per-pixel head in conf/head, the loss and dL/dz of one pixel against its logit;
panel 2 runs gradient descent on one pixel's logit with each head. The page's formulas are written in
JavaScript (scripts/explorer_page.html); the heads' parameters (focal's gamma and alpha) come from
conf/head, and tests/test_explorer.py checks in a real browser that the page's numbers equal seg.heads'.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from seg.errors import UserError  # noqa: E402
from seg.heads import Head, SigmoidBCE, SigmoidFocal, SigmoidMSE, SoftmaxCE, TanhMSE  # noqa: E402
from seg.paths import PROJECT_DIR  # noqa: E402
from seg.run.cli import report_user_errors  # noqa: E402

TEMPLATE = Path(__file__).with_name("explorer_page.html")
PAGE_SLOT = "/*@PAGE@*/{}"  # where the template takes the page's data (JSON)

# The page's JavaScript formula for each head class (FORMULAS in the template), in the order the page lists
# them: the two heads the project compares first. A per-pixel head missing here stops the generator.
FORMULA_OF: dict[type[Head], str] = {
    SigmoidBCE: "sigmoid_bce",
    TanhMSE: "tanh_mse",
    SigmoidMSE: "sigmoid_mse",
    SigmoidFocal: "focal",
    SoftmaxCE: "softmax_ce",
}

# What a browser needs here: no GPU, no sandbox (root in CI), and none of Chromium's own network chatter.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def load_heads() -> list[Head]:
    names = sorted(p.stem for p in (PROJECT_DIR / "conf" / "head").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(PROJECT_DIR / "conf" / "head"), version_base="1.3"):
        return [instantiate(compose(config_name=name)) for name in names]


def head_spec(head: Head) -> dict:
    """What the page needs of a head: its name, which JS formula computes it, and that formula's parameters."""
    if type(head) not in FORMULA_OF:
        raise UserError(
            f"head {head.name!r} ({type(head).__name__}) is per-pixel but the explorer has no formula for it: "
            "add one to FORMULAS in scripts/explorer_page.html and to FORMULA_OF in scripts/explorer.py"
        )
    return {
        "name": head.name,
        "formula": FORMULA_OF[type(head)],
        # the constructor's numbers, e.g. focal's gamma and alpha from conf/head/focal.yaml (not its loss objects)
        "params": {key: value for key, value in vars(head).items() if value is None or isinstance(value, (int, float))},
    }


def page_heads(heads: list[Head]) -> list[dict]:
    """The per-pixel heads (Dice, BCE+Dice and Lovasz couple pixels: no per-pixel curve), in FORMULA_OF's order."""
    order = list(FORMULA_OF.values())
    specs = [head_spec(head) for head in heads if head.pixelwise]
    return sorted(specs, key=lambda spec: order.index(spec["formula"]))


def stuck_threshold() -> float:
    """The |dL/dz| under which the project's diagnostics call a wrong pixel stuck (conf/callbacks/diagnostics.yaml)."""
    return float(OmegaConf.load(PROJECT_DIR / "conf" / "callbacks" / "diagnostics.yaml").diagnostics.stuck_below)


def render(heads: list[Head]) -> str:
    template = TEMPLATE.read_text()
    assert PAGE_SLOT in template, f"{TEMPLATE} lost its {PAGE_SLOT} slot"
    return template.replace(PAGE_SLOT, json.dumps({"heads": page_heads(heads), "stuckBelow": stuck_threshold()}))


def find_chromium() -> str | None:
    """Debian's Chromium (Playwright's own browser download is not used: it needs the network)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def screenshot(page: Path, out: Path, *, width: int = 1280) -> None:
    """The two panels after the default scenario of panel 2 has run, as a reader sees them."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise UserError("--screenshot needs Chromium: install it (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": width, "height": 900}, reduced_motion="reduce")
        tab.goto(page.resolve().as_uri())
        tab.click("#run")  # the default: a confidently wrong foreground pixel, z = -5 (panel 1) and -6 (panel 2)
        tab.wait_for_selector("#panel2[data-state=done]")
        bottom = tab.evaluate("document.querySelector('#panel2').getBoundingClientRect().bottom + window.scrollY")
        out.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom + 12})
        browser.close()


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
