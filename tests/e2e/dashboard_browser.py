"""Debian's Chromium driven by Playwright (sync API), for the dashboard tests and benchmark.

``playwright install`` cannot download here: the browser is the system's Chromium. In CI
(CI=true) a missing Chromium or Playwright fails the run; elsewhere the tests skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebGL (the parallel-coordinates lines) through SwiftShader, since there is no GPU.
    "--enable-unsafe-swiftshader",
]
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    for path in (os.environ.get("HPOSVC_CHROMIUM"), *CANDIDATES):
        if path and Path(path).exists():
            return path
    found = shutil.which("chromium")
    return found


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install -y chromium)"
    return None
