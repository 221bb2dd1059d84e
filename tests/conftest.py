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
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from seg.paths import PROJECT_DIR

CONF_DIR = PROJECT_DIR / "conf"


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
