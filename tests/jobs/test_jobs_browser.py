"""The HTML report and an executed notebook, rendered in a real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.jobs import JobConfig, run
from workbench.jobs.report import write_report

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); `make test` installs it"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _chromium(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_report_renders_with_grid_and_plots(tmp_path):
    job = JobConfig.from_text(
        "name: browser\nspec: {properties: {mw: [200, 400]}, require: ['C(=O)N']}\n"
        "proposers: [{type: library, source: moses-test, n: 10}]\nembed: {enabled: false}\n"
    )
    store = str(tmp_path / "r.db")
    run(job, store, progress=False)
    html = write_report(store, str(tmp_path / "report.html"))
    dom = _chromium(f"file://{html}", tmp_path, "--dump-dom").stdout
    assert dom.count("<svg") >= 10  # one depiction per candidate
    assert dom.count("<img") >= 1 and "property distributions" in dom
    shot = tmp_path / "report.png"
    _chromium(f"file://{html}", tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot.exists() and shot.stat().st_size > 20_000


def test_executed_notebook_renders(tmp_path):
    out = tmp_path / "nb.html"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "html",
            "--execute",
            str(ROOT / "notebooks" / "00_chemistry_core.ipynb"),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    dom = _chromium(f"file://{out}", tmp_path, "--dump-dom").stdout
    assert dom.count("<svg") >= 12  # the aspirin card, the alert example and the 12-drug grid
    assert "valence" in dom
