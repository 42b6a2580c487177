"""The run report in a real headless browser (Debian chromium): it loads offline with no console
errors, and a screenshot shows the plots. The console-error check is itself checked on a page
with a failing script and a network image."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeprune.cli import main

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="chromium not installed (make setup installs it)")


def _chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless chromium on `page` with console messages logged to stderr; no network (a
    bogus proxy) so that a page needing one shows errors instead of hanging."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--log-level=0", f"--user-data-dir={tmp / 'profile'}",
         "--proxy-server=127.0.0.1:9", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=3000", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list:
    """Console errors and failed loads chromium logs: uncaught exceptions, console.error, a
    resource that could not load."""
    bad = []
    for line in stderr.splitlines():
        if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line \
                or "net::ERR_" in line:
            bad.append(line.strip())
    return bad


@needs_chromium
def test_console_error_detection_works(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='http://example.invalid/x.png'>"
                    "<script>undefined_function_called()</script></body></html>")
    p = _chromium(page, tmp_path, "--dump-dom")
    assert console_errors(p.stderr), p.stderr[-2000:]


@needs_chromium
def test_report_opens_offline_without_errors_and_shows_plots(tmp_path):
    out = tmp_path / "est"
    assert main(["run", str(ROOT / "recipes" / "estimate.toml"), "-o", str(out)]) == 0
    page = out / "report.html"
    p = _chromium(page, tmp_path, "--dump-dom")
    assert p.returncode == 0, p.stderr[-2000:]
    assert console_errors(p.stderr) == [], p.stderr[-2000:]
    dom = p.stdout
    n_img = dom.count("<img ")
    assert n_img == 2 and dom.count('src="data:image/png;base64,') == n_img  # one per target
    shot = tmp_path / "shot.png"
    p = _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2600")
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    assert console_errors(p.stderr) == [], p.stderr[-2000:]
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # The plots are the only saturated colours on the page (text is grey/black, tables white):
    # the stacked bars of tab20 colours must cover a real area of the screenshot.
    sat = img.max(axis=2) - img.min(axis=2)
    coloured = sat > 60
    assert coloured.mean() > 0.01, f"only {coloured.mean():.4f} of the screenshot is coloured"
    rows = np.flatnonzero(coloured.any(axis=1))
    # both targets' figures are drawn: coloured regions far apart vertically
    assert rows.max() - rows.min() > 400
