"""The HTML report in a real headless Chromium: it loads, and its plots are drawn, at desktop and phone width.

Needs Debian's `chromium-headless-shell` (scripts/system-packages.sh installs it); skipped with that
reason where it is missing.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from PIL import Image

from evaluators.plots import COLOURS
from evaluators.report import render_report
from tests.evaluators.test_report import write_cards

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


def screenshot(page, out, width: int, height: int):
    subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(out).convert("RGB")


def plot_pixels(image) -> int:
    """Pixels in the first method's colour: only a drawn plot has them (the page's own CSS has none)."""
    red, green, blue = (int(COLOURS[0][i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        count
        for count, (r, g, b) in image.getcolors(maxcolors=1 << 24)
        if abs(r - red) < 30 and abs(g - green) < 30 and abs(b - blue) < 30
    )


@pytest.mark.skipif(BROWSER is None, reason="needs Debian's chromium-headless-shell (scripts/system-packages.sh)")
@pytest.mark.parametrize("width,height", [(1400, 4200), (390, 9000)], ids=["desktop-1400px", "phone-390px"])
def test_report_page_loads_with_its_plots_drawn(tmp_path, width, height):
    index = render_report(write_cards(tmp_path), tmp_path / "report")
    image = screenshot(index, tmp_path / "shot.png", width, height)
    assert image.size == (width, height)
    assert plot_pixels(image) > 100  # the embedded PNGs decoded and were laid out (a broken image: 0)
    # the page's text is there: not a blank or an error page
    dark = sum(count for count, rgb in image.getcolors(maxcolors=1 << 24) if max(rgb) < 80)
    assert dark > 5_000
