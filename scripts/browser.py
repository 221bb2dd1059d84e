"""Headless Chromium for the explorer's screenshot (scripts/explorer.py) and its browser tests (tests/conftest.py).

Debian's Chromium driven by Playwright: Playwright's own browser download needs the network, which CI lacks.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from seg.errors import UserError

# What a browser needs here: no GPU, no sandbox (root in CI), and none of Chromium's own network chatter.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")


class NoBrowser(UserError):
    """Playwright or Chromium is missing: the message says what to install."""


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, EXECUTABLES)), None)


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (a Playwright `Browser`), closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as missing:
        message = "playwright is not installed: pip install playwright (its browser download is not needed)"
        raise NoBrowser(message) from missing
    executable = find_chromium()
    if executable is None:
        raise NoBrowser("no Chromium on PATH: install it (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
