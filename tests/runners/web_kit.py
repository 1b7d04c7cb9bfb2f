"""For the browser tests: headless Chromium from the system's packages (Debian's
``chromium``, installed by tests/ensure_chromium.sh), driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """Return the browser to drive ($SKYLEDGER_CHROMIUM, else the first on PATH), or fail
    naming the install step."""
    chosen = os.environ.get("SKYLEDGER_CHROMIUM")
    found = chosen or next((p for c in CANDIDATES if (p := shutil.which(c))), None)
    if not found:
        raise RuntimeError("no Chromium for the browser tests: run `bash tests/ensure_chromium.sh`"
                           " (Debian's chromium package), or set SKYLEDGER_CHROMIUM")  # fmt: skip
    return found


@contextmanager
def browser() -> Iterator[Any]:
    """Yield a headless Chromium (a Playwright ``Browser``); close it after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield launched
        finally:
            launched.close()
