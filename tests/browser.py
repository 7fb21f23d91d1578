"""The MLflow UI in a real browser: Debian's Chromium driven by Playwright (no browser download).

Chromium comes from Debian's package (`make browser`, run by .ci/run): CI must have it, so there a
missing browser fails instead of skipping. Screenshots go to ``ARTIFACTS`` for people to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("OVATUNE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
CHROMIUM = Path("/usr/bin/chromium")

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason=f"{CHROMIUM} not installed (make browser)"
)


def launch_chromium(playwright):
    """A headless Chromium from ``sync_playwright()``'s ``playwright``."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
