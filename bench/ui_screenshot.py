"""Check that the Dagster UI really renders an audit's metadata: audit a demo dataset into a fresh
Dagster instance, start the webserver on 127.0.0.1, and take headless-Chromium screenshots (driven by
Playwright) of the asset pages and of the markdown metadata (worst-example tables, plots) opened.

Usage:  .venv/bin/python bench/ui_screenshot.py [--dataset mulan_flags] [--out docs/ui]
Needs Debian's chromium (`apt-get install chromium`) and the dev extra (playwright; it drives the
system chromium, no browser download). Prints the PNG paths; exits non-zero when the server, the
browser or an expected element fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: (asset page, metadata entries to open and capture) per screenshot set
PAGES = {
    "label_issues": ("assets/label_issues?partition={dataset}", ["worst_examples", "per_tag_plot", "distribution"]),
    "outliers": ("assets/outliers?partition={dataset}", ["distribution"]),
    "curated": ("assets/curated?partition={dataset}", ["class_summary"]),
    "raw_examples_checks": ("assets/raw_examples?view=checks&partition={dataset}", []),
}


def wait_for(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def capture(chromium: str, base: str, dataset: str, out_dir: Path) -> list[Path]:
    """Open each page, dismiss the first-visit dialog, screenshot it and each listed metadata entry."""
    from playwright.sync_api import sync_playwright

    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        for name, (path, entries) in PAGES.items():
            page.goto(f"{base}/{path.format(dataset=dataset)}")
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.click()
            target = out_dir / f"{name}.png"
            page.screenshot(path=str(target))
            shots.append(target)
            for entry in entries:
                page.locator("tr", has_text=entry).first.get_by_text("[Show Markdown]").click()
                page.wait_for_timeout(1000)
                target = out_dir / f"{name}__{entry}.png"
                page.locator("[role=dialog]").last.screenshot(path=str(target))
                shots.append(target)
                page.keyboard.press("Escape")
                page.wait_for_timeout(300)
        browser.close()
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mulan_flags", help="demo dataset folder under data/")
    parser.add_argument("--out", default=str(REPO / "docs" / "ui"), help="folder for the PNG files")
    parser.add_argument("--port", type=int, default=3123)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="dagster-home-"))
    shutil.copyfile(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DQ_DUCKDB_PATH": str(home / "curated.duckdb"),
           "HF_HUB_OFFLINE": "1", "DAGSTER_TELEMETRY_DISABLED": "1"}
    audit = subprocess.run([str(BIN / "dq-pipeline"), "audit", str(REPO / "data" / args.dataset)], env=env,
                           cwd=REPO, capture_output=True, text=True)
    if audit.returncode != 0:
        print(audit.stdout[-3000:], audit.stderr[-3000:], file=sys.stderr)
        return 1
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        wait_for(f"{base}/server_info")
        time.sleep(5)  # let the code location load
        for target in capture(chromium, base, args.dataset, out_dir):
            print(target)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
