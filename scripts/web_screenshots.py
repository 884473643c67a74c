"""Take the screenshots of docs/web.md: `cuas-node sim demo` with the live view on, headless Chromium
at phone (375 px) and laptop (1366 px) width, at a moment with an active zone alert.

Needs mosquitto, chromium and chromium-driver (apt) and the test extra (selenium).
Run: `.venv/bin/python scripts/web_screenshots.py [--out docs/images]`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import MosquittoBroker, free_port, wait_for_port  # noqa: E402
from tests.web_browser import browser  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cuas-shots-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work)
        broker.start()
        port = free_port()
        cfg = work / "node.toml"
        cfg.write_text(
            f'[mqtt]\nport = {broker.port}\nhost = "127.0.0.1"\n[web]\nenabled = true\nport = {port}\n'
        )
        env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
        cmd = [sys.executable, "-m", "cuas_node.cli", "sim", "demo", "--config", str(cfg)]
        node = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drivers = []
        try:
            if not wait_for_port("127.0.0.1", port, 30):
                raise SystemExit("the live view did not start")
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 70
            while not json.loads(urllib.request.urlopen(url + "api/alerts").read())["alerts"]:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit("no zone alert during the demo")
                time.sleep(0.5)
            for name, (width, height) in {"web-phone": (375, 812), "web-laptop": (1366, 800)}.items():
                driver = browser(work / name, width, height)
                drivers.append(driver)
                driver.set_window_size(width, height)
                driver.get(url)
                time.sleep(3)  # the stream's first batches and a trail
                if width > 900:
                    driver.execute_script("document.querySelector('#tracks tbody tr').click()")
                    time.sleep(0.5)
                driver.save_screenshot(str(args.out / f"{name}.png"))
                print(f"wrote {args.out / name}.png")
        finally:
            for driver in drivers:
                driver.quit()
            node.terminate()
            node.wait(timeout=20)
            broker.stop()


if __name__ == "__main__":
    main()
