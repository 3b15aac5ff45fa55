"""The README's FiftyOne screenshot: `roadwork review RUN` in the App, taken by headless Chromium.

Starts the review App on a loopback port for an eval run, opens its `mistakes` view in Chromium
(Debian's `chromium`, driven by Playwright: `.venv-review/bin/pip install playwright`; no browser
download), waits for the grid and saves a PNG. FiftyOne shows a one-time "Explore Enterprise"
pop-up over the grid until a browser has dismissed it (its `localStorage`); the script marks it
seen first, as a user's browser does after one click on "Dismiss".

    .venv-review/bin/python docs/screenshot_review.py runs/dev-full --out docs/img/fiftyone-review.png
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEN_KEY = "fiftyone-enterprise-tooltip-seen"
"""The localStorage key FiftyOne 1.22's App sets when its Enterprise pop-up is dismissed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the review App exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"no answer from {url} in {timeout_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="An eval run folder (roadwork eval --out RUN).")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "fiftyone-review.png")
    ap.add_argument("--view", default="mistakes")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--size", default="1600x1000", help="Window WxH.")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port, name = free_port(), "roadwork-screenshot"
    work = Path(tempfile.mkdtemp(prefix="fo-shot-"))
    env = {
        **os.environ,
        "FIFTYONE_DATABASE_DIR": str(work / "db"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        "PYTHONPATH": str(REPO),
    }
    log = open(work / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.review_cli", str(args.run), "--name", name, "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        w, h = (int(x) for x in args.size.split("x"))
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=args.chromium,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page(viewport={"width": w, "height": h})
            page.add_init_script(f"window.localStorage.setItem('{SEEN_KEY}', 'true')")
            page.goto(f"http://127.0.0.1:{port}/datasets/{name}?view={args.view}", wait_until="load", timeout=120_000)
            page.wait_for_timeout(15_000)  # the grid fills after the page loads: its tiles fetch their images
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        print(f"wrote {args.out}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
