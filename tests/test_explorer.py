"""scripts/explorer.py: the page computes seg.heads' numbers (read back from a real browser), and a person can use it.

The browser tests skip (fail under CI=true) without Playwright and Chromium; see the `chromium` fixture.
"""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

from seg.heads import Head, SigmoidFocal, logits_with_decision
from seg.paths import PROJECT_DIR

spec = importlib.util.spec_from_file_location("explorer", PROJECT_DIR / "scripts" / "explorer.py")
explorer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(explorer)

HEADS = {head.name: head for head in explorer.load_heads()}
CONFIGS = sorted(path.stem for path in (PROJECT_DIR / "conf" / "head").glob("*.yaml"))


def couples_pixels(head: Head) -> bool:
    """Whether a two-pixel image's loss differs from the mean of its pixels' own losses (Dice, Lovasz: it does)."""
    z = torch.tensor([1.5, -4.0], dtype=torch.float64).view(1, 1, 1, 2)
    mask = torch.tensor([0.0, 1.0], dtype=torch.float64).view(1, 1, 1, 2)
    both = head.loss(logits_with_decision(head, z), mask).item()
    alone = [head.loss(logits_with_decision(head, z[..., i : i + 1]), mask[..., i : i + 1]).item() for i in (0, 1)]
    return abs(both - sum(alone) / 2) > 1e-9


SHOWN = [name for name in CONFIGS if not couples_pixels(HEADS[name])]  # every per-pixel head in conf/head
Z_GRID = np.linspace(-8, 8, 321)  # step 0.05
TOLERANCE = 1e-6  # absolute, on losses, gradients, probabilities and descent trajectories


def f64(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64).view(1, 1, 1, 1)


def head_at(head: Head, z: float, y: int) -> tuple[float, float, float]:
    """Per-pixel loss, dL/dz (autograd) and probability of a one-pixel image whose decision logit is z, in float64."""
    d = f64(z).requires_grad_()
    logits = logits_with_decision(head, d)  # z, or (0, z) for softmax_ce
    loss = head.loss(logits, f64(y))
    (grad,) = torch.autograd.grad(loss, d)
    return loss.item(), grad.item(), head.probability(logits).item()


def descend_reference(head: Head, z0: float, y: int, lr: float, steps: int) -> list[float]:
    """Gradient descent on the head's own output channels, as training would: the decision logit after each step."""
    logits = logits_with_decision(head, f64(z0)).clone().requires_grad_()
    zs = [z0]
    for _ in range(steps):
        (grad,) = torch.autograd.grad(head.loss(logits, f64(y)), logits)
        with torch.no_grad():
            logits -= lr * grad
        zs.append((logits[0, -1] - (logits[0, 0] if head.out_channels == 2 else 0)).item())
    return zs


def number(text: str) -> float:
    """A number as the page prints it (a typographic minus, maybe in exponent form)."""
    return float(text.replace("\u2212", "-"))


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    """The page as `python scripts/explorer.py --out ...` writes it now."""
    return explorer.main(["--out", str(tmp_path_factory.mktemp("explorer") / "explorer.html")])


@pytest.fixture
def page_url(page_file):
    return page_file.resolve().as_uri()


def split_page(text: str) -> tuple[str, object]:
    """The page with its embedded JSON cut out, and that JSON (the template's `const PAGE = ` takes it)."""
    start = text.index("const PAGE = ") + len("const PAGE = ")
    data, end = json.JSONDecoder().raw_decode(text, start)
    return text[:start] + text[end:], data


def assert_same_numbers(committed, current, message: str) -> None:
    if isinstance(committed, dict):
        assert isinstance(current, dict) and committed.keys() == current.keys(), message
        for key in committed:
            assert_same_numbers(committed[key], current[key], message)
    elif isinstance(committed, list):
        assert isinstance(current, list) and len(committed) == len(current), message
        for a, b in zip(committed, current, strict=True):
            assert_same_numbers(a, b, message)
    elif isinstance(committed, float) or isinstance(current, float):
        assert current == pytest.approx(committed, rel=1e-9, abs=1e-12), message
    else:
        assert committed == current, message


def test_committed_page_is_current(page_file):
    committed = (PROJECT_DIR / "docs" / "explorer.html").read_text()
    stale = "docs/explorer.html is stale: run python scripts/explorer.py"
    (committed_page, committed_data), (page, data) = split_page(committed), split_page(page_file.read_text())
    assert committed_page == page, stale
    # The tables are float64 samples: another CPU's kernels may move a last bit, and a 10-digit rounding with it.
    assert_same_numbers(committed_data, data, stale)
    # Self-contained: nothing to fetch (the SVG namespace string is a name, not a request).
    assert not re.search(r"\b(src|href)\s*=|@import|url\(\s*['\"]?http|fetch\(|XMLHttpRequest", committed)


def test_every_head_of_conf_is_shown_or_named_as_left_out():
    data = explorer.page_data(list(HEADS.values()))
    shown, left_out = [spec["name"] for spec in data["heads"]], data["leftOut"]
    assert sorted(shown) == SHOWN and sorted(shown + left_out) == CONFIGS
    assert left_out and all(couples_pixels(HEADS[name]) for name in left_out)
    compared = explorer.compared_heads()  # the study's pair (conf/experiment/compare_heads.yaml) comes first
    assert shown[: len(compared)] == compared and shown[len(compared) :] == sorted(shown[len(compared) :])


class HalfBCE:
    """A head no code of the explorer knows: half sigmoid_bce's loss, through the public methods only."""

    name, out_channels = "half_bce", 1

    def loss(self, logits, mask):
        return HEADS["sigmoid_bce"].loss(logits, mask) / 2

    def probability(self, logits):
        return HEADS["sigmoid_bce"].probability(logits)


def test_a_new_per_pixel_head_appears_with_its_own_numbers(browser_page, tmp_path):
    page_file = tmp_path / "new.html"
    page_file.write_text(explorer.render([HalfBCE(), HEADS["dice"]]))
    page, requested = browser_page
    page.goto(page_file.as_uri())
    assert page.evaluate("[explorer.heads, explorer.leftOut]") == [["half_bce"], ["dice"]]
    assert "Left out: dice" in page.text_content("footer")
    z_grid = Z_GRID[::4].tolist()
    for y in (0, 1):
        computed = page.evaluate(
            "([zs, y]) => zs.map((z) => [explorer.loss('half_bce', z, y), explorer.grad('half_bce', z, y)])",
            [z_grid, y],
        )
        reference = [head_at(HalfBCE(), z, y)[:2] for z in z_grid]
        np.testing.assert_allclose(computed, reference, rtol=0, atol=TOLERANCE, err_msg=f"half_bce y={y}")
    assert requested == [page_file.as_uri()]


def test_page_numbers_are_the_heads(browser_page, page_url):
    page, requested = browser_page
    page.goto(page_url)
    assert sorted(page.evaluate("explorer.heads")) == sorted(SHOWN)
    z_grid = Z_GRID.tolist()
    computed = page.evaluate(
        """(zs) => Object.fromEntries(explorer.heads.map((h) => [h, [0, 1].map((y) => ({
            loss: zs.map((z) => explorer.loss(h, z, y)),
            grad: zs.map((z) => explorer.grad(h, z, y)),
            prob: zs.map((z) => explorer.probability(h, z)),
        }))]))""",
        z_grid,
    )
    for name in SHOWN:
        for y in (0, 1):
            reference = np.array([head_at(HEADS[name], z, y) for z in z_grid])  # (321, 3): loss, grad, probability
            page_values = computed[name][y]
            for column, key in enumerate(("loss", "grad", "prob")):
                np.testing.assert_allclose(
                    page_values[key], reference[:, column], rtol=0, atol=TOLERANCE, err_msg=f"{name} y={y} {key}"
                )
    for z0, y, lr, steps in [(-6.0, 1, 1.0, 300), (3.0, 0, 2.5, 40)]:
        trajectories = page.evaluate(
            "([z0, y, lr, steps]) => explorer.heads.map((h) => explorer.descend(h, z0, y, lr, steps))",
            [z0, y, lr, steps],
        )
        for name, trajectory in zip(page.evaluate("explorer.heads"), trajectories, strict=True):
            reference = descend_reference(HEADS[name], z0, y, lr, steps)
            np.testing.assert_allclose(
                trajectory, reference, rtol=0, atol=TOLERANCE, err_msg=f"{name} descent from {z0}"
            )
    assert requested == [page_url], f"the page requested more than itself: {requested}"


def test_head_parameters_reach_the_page(browser_page, tmp_path):
    """focal's gamma and alpha come from the head (conf/head/focal.yaml): other values give the other numbers."""
    focal = SigmoidFocal(gamma=3.0, alpha=0.25)
    page_file = tmp_path / "focal.html"
    page_file.write_text(explorer.render([focal]))
    page, requested = browser_page
    page.goto(page_file.as_uri())
    z_grid = Z_GRID[::4].tolist()
    for y in (0, 1):
        computed = page.evaluate(
            "([zs, y]) => zs.map((z) => [explorer.loss('focal', z, y), explorer.grad('focal', z, y)])", [z_grid, y]
        )
        reference = [head_at(focal, z, y)[:2] for z in z_grid]
        np.testing.assert_allclose(
            computed, reference, rtol=0, atol=TOLERANCE, err_msg=f"focal(gamma=3, alpha=0.25) y={y}"
        )
    assert requested == [page_file.as_uri()]


def readout(page, table: str, head: str, column: str) -> float:
    return number(page.text_content(f"#{table} tr[data-head={head}] td.{column}"))


def push_direction(page, head: str) -> int:
    """+1 when the readout's push bar points right (z up, toward foreground), -1 when it points left."""
    bar, push = (page.locator(f"#readout tr[data-head={head}] {css}").bounding_box() for css in (".bar", ".bar span"))
    middle = bar["x"] + bar["width"] / 2
    assert push["width"] > 1
    return 1 if push["x"] >= middle - 0.5 else -1 if push["x"] + push["width"] <= middle + 0.5 else 0


def marker(page, plot: str, head: str) -> tuple[float, float]:
    circle = page.locator(f"#{plot} circle.marker[data-head={head}]")
    return float(circle.get_attribute("cx")), float(circle.get_attribute("cy"))


def test_a_person_can_drive_it(browser_page, page_url):
    page, requested = browser_page
    page.goto(page_url)
    bce, tanh = HEADS["sigmoid_bce"], HEADS["tanh_mse"]

    # Panel 1: the slider by keyboard. It starts at z = -5 with label 1; ten presses of -> move z to -4.
    assert readout(page, "readout", "sigmoid_bce", "z") == -5.0
    before = marker(page, "loss-plot", "sigmoid_bce")
    page.focus("#z")
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert page.input_value("#z") == "-4"
    after = marker(page, "loss-plot", "sigmoid_bce")
    assert after[0] - before[0] == pytest.approx(378 / 16, abs=0.02)  # one unit of z on a 378-unit-wide axis of 16
    assert after[1] > before[1]  # lower loss: lower on the plot (SVG y grows downwards)
    for head in (bce, tanh):
        loss, grad, p = head_at(head, -4.0, 1)
        assert readout(page, "readout", head.name, "loss") == pytest.approx(loss, abs=1e-4)
        assert readout(page, "readout", head.name, "grad") == pytest.approx(grad, rel=1e-2, abs=1e-4)
        assert readout(page, "readout", head.name, "p") == pytest.approx(p, rel=1e-2, abs=1e-4)
    assert "wrong" in page.text_content("#p1-note")
    assert push_direction(page, "sigmoid_bce") == 1  # dL/dz < 0: descent raises z

    # Typed value, then the label switch (by click, then back by keyboard): the loss of z = -6 falls from ~6 to ~0.
    page.fill("#z", "-6")
    assert readout(page, "readout", "sigmoid_bce", "loss") == pytest.approx(head_at(bce, -6.0, 1)[0], abs=1e-4)
    high = marker(page, "loss-plot", "sigmoid_bce")
    page.click("#y")
    assert page.get_attribute("#y", "aria-checked") == "false"
    assert readout(page, "readout", "sigmoid_bce", "loss") == pytest.approx(head_at(bce, -6.0, 0)[0], abs=1e-4)
    assert readout(page, "readout", "tanh_mse", "grad") > 0  # label 0: pushed toward background
    assert marker(page, "loss-plot", "sigmoid_bce")[1] > high[1] + 100
    assert "right" in page.text_content("#p1-note")
    page.fill("#z", "3")  # a wrong background pixel: a strong push to the left
    assert "wrong" in page.text_content("#p1-note") and push_direction(page, "sigmoid_bce") == -1
    page.fill("#z", "-6")
    page.focus("#y")
    page.keyboard.press("Space")
    assert page.get_attribute("#y", "aria-checked") == "true"

    # The probability axis: every head at the same p, tanh_mse at half the logit.
    page.check("input[name=axis][value=p]")
    assert readout(page, "readout", "tanh_mse", "z") == pytest.approx(-3.0)
    assert readout(page, "readout", "tanh_mse", "p") == readout(page, "readout", "sigmoid_bce", "p")
    assert page.text_content("#z-out").startswith("p = ")

    # Panel 2: run the default (z0 = -6, label 1, lr 1, 300 steps): BCE rescues the pixel, tanh_mse leaves it stuck.
    page.click("#run")
    page.wait_for_selector("#panel2[data-state=running]")
    page.wait_for_selector("#panel2[data-state=done]", timeout=10_000)
    bce_path, tanh_path = (descend_reference(head, -6.0, 1, 1.0, 300) for head in (bce, tanh))
    assert readout(page, "descent", "sigmoid_bce", "z") == pytest.approx(bce_path[-1], abs=1e-3)
    assert readout(page, "descent", "tanh_mse", "z") == pytest.approx(tanh_path[-1], abs=1e-3)
    crossed = next(step for step, z in enumerate(bce_path) if z >= 0)
    assert (
        page.text_content("#descent tr[data-head=sigmoid_bce] td.verdict") == f"rescued: right side from step {crossed}"
    )
    assert page.get_attribute("#descent tr[data-head=tanh_mse] td.verdict", "data-kind") == "stuck"
    heights = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#descent-plot polyline')].map((line) => {
            const ys = line.getAttribute('points').split(' ').map((point) => Number(point.split(',')[1]));
            return [line.dataset.head, Math.max(...ys) - Math.min(...ys)];
        }))"""
    )
    assert heights["tanh_mse"] < 3 and heights["sigmoid_bce"] > 100  # flat line vs a climb, in SVG units of a 270 plot

    # Label noise: the same numbers, the other meaning: BCE learns the wrong label, tanh_mse ignores it.
    page.check("#noise")
    assert page.get_attribute("#descent tr[data-head=sigmoid_bce] td.verdict", "data-kind") == "memorized"
    assert page.get_attribute("#descent tr[data-head=tanh_mse] td.verdict", "data-kind") == "resisted"
    assert readout(page, "descent", "tanh_mse", "z") == pytest.approx(tanh_path[-1], abs=1e-3)

    # A phone: nothing wider than the screen, plots stacked.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    loss_box, grad_box = page.locator("#loss-plot").bounding_box(), page.locator("#grad-plot").bounding_box()
    assert grad_box["y"] >= loss_box["y"] + loss_box["height"] and loss_box["width"] <= 390
    assert requested == [page_url], f"the page requested more than itself: {requested}"
