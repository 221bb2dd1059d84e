"""Shared helpers: compose the real configs the way the CLI does, shrunk to seconds on a CPU."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from seg.heads import Head, logits_with_decision
from seg.paths import PROJECT_DIR
from seg.run.resolvers import register_resolvers

CONF_DIR = PROJECT_DIR / "conf"
register_resolvers()  # composed configs resolve `seg.times` (optimizer.lr) as train.py's would


@pytest.fixture(autouse=True)
def scan_cache_in_tmp(tmp_path, monkeypatch):
    """Each test's validation-pass cache lives in its tmp_path, not in the project's data/.cache."""
    monkeypatch.setattr("seg.data.scan.CACHE_DIR", tmp_path / "scan-cache")


def tiny_overrides(tmp_path: Path) -> list[str]:
    """A 32 px dataset of 32/16/16 images, 3 epochs, written under tmp_path: a fit takes a few seconds."""
    return [
        f"paths.output_dir={tmp_path / 'run'}",
        f"data.root={tmp_path / 'data'}",
        "data.source.counts={train: 32, val: 16, test: 16}",
        "data.source.size=32",
        "data.batch_size=8",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "~callbacks.progress_bar",  # keep test output readable
    ]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str) -> DictConfig:
        return compose_config(tiny_overrides(tmp_path) + list(overrides))

    return make


def head_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "head").glob("*.yaml"))


def logged_rows(run_dir: Path) -> list[dict[str, str]]:
    """The CSV logger's rows (`epoch`, `step` and one column per metric, empty where not logged in that row)."""
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def write_tiny_folder_dataset(root: Path, counts: tuple[int, int, int] = (6, 2, 2), size: int = 32) -> Path:
    """`root/{train,val,test}/{images,masks}/img_NNN.png`: grey images of a bright square on noise, 0/255 masks.

    Train images are numbered from 0, val from 100, test from 200.
    """
    for split, count, start in zip(("train", "val", "test"), counts, (0, 100, 200), strict=True):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + count):
            rng = np.random.default_rng(i)
            mask = np.zeros((size, size), np.uint8)
            top, left = rng.integers(0, size // 2, 2)
            mask[top : top + size // 3, left : left + size // 3] = 1
            image = (60 + 120 * mask + rng.integers(0, 40, (size, size))).astype(np.uint8)
            cv2.imwrite(str(root / split / "images" / f"img_{i:03d}.png"), image)
            cv2.imwrite(str(root / split / "masks" / f"img_{i:03d}.png"), mask * 255)
    return root


def run_cli(
    *args: str, cwd: Path = PROJECT_DIR, timeout: int = 600, script: str = "train.py", **env: str
) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` (train.py unless told) in a subprocess, as a user runs it (exit status, stderr);
    `env` adds variables."""
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / script), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _no_browser(reason: str) -> None:
    """Skip where no browser can be had; under CI (which installs one, see .ci/run) a missing browser is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI installs Chromium and Playwright (.ci/run), so the browser tests must run")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session, launched as scripts/explorer.py launches it (scripts/browser.py)."""
    from scripts.browser import NoBrowser, chromium

    try:
        with chromium() as browser:
            yield browser
    except NoBrowser as missing:
        _no_browser(str(missing))


@pytest.fixture
def browser_page(chromium):
    """A fresh laptop-sized page and the list of URLs it requests (filled as it loads): `page, requested`."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page, requested
    context.close()
    assert not errors, f"the page raised: {errors}"


def build_head(name: str) -> Head:
    """The head of conf/head/<name>.yaml, composed as the CLI composes it."""
    return instantiate(compose_config([f"head={name}"]).head)


# Two 1x4 "images" for metric and diagnostics tests. Logits are chosen so that tanh output and tanh targets
# would fool torchmetrics.
LOGITS = torch.tensor([[[[2.0, -0.5, 0.3, -3.0]]], [[[0.1, 0.2, -0.1, -2.0]]]])  # (B=2, 1, 1, 4)
MASK = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]], [[[0.0, 0.0, 0.0, 0.0]]]])
VALID = torch.ones_like(MASK, dtype=torch.bool)  # every pixel counts


class FixedLogits(nn.Module):
    """A 'network' that returns the prepared LOGITS of each image, found by its index in the first pixel."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head
        self.scale = nn.Parameter(torch.ones(()))  # something for the optimizer to hold

    def forward(self, image):
        return logits_with_decision(self.head, LOGITS[image[:, 0, 0, 0].long()] * self.scale)
