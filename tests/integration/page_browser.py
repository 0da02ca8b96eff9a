"""Helpers for driving the page at `/` in headless Debian chromium (through chromedriver):
the browser with downloads and a network log, waits, the requests it made, screenshots."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import service_unavailable

LAPTOP = (1280, 900)
PHONE = (390, 844)


def start_browser(download_dir: Path) -> Any:
    """Chromium at laptop size, downloading into `download_dir`, logging every request."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chrome or not driver_path:
        service_unavailable(
            "no chromium/chromedriver (scripts/services.sh installs Debian's chromium and chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={LAPTOP[0]},{LAPTOP[1]}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver


def wait_until(fn: Callable[[], Any], timeout: float = 60.0, what: str = "the page") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception:  # the DOM is being replaced under us: look again
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not get there in {timeout:.0f} s")
        time.sleep(0.2)


def requests_made(driver: Any) -> list[str]:
    """Every URL the browser requested since the last call (the DevTools network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def foreign(urls: list[str], origin: str) -> list[str]:
    """The URLs that did not go to `origin` (data: and blob: URLs never leave the browser)."""
    own = urlsplit(origin)
    return [
        u
        for u in urls
        if not u.startswith(("data:", "blob:"))
        and (urlsplit(u).scheme, urlsplit(u).netloc) != (own.scheme, own.netloc)
    ]


def js_errors(driver: Any) -> list[str]:
    """Script errors (a failed request is logged too, with source "network": the tests provoke those)."""
    return [
        e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and e["source"] != "network"
    ]


def set_width(driver: Any, size: tuple[int, int], mobile: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile},
    )


def full_page_png(driver: Any, path: Path, width: int, max_height: int) -> None:
    """The whole page (up to `max_height` px) at `width`, as a PNG."""
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), max_height)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


# Text whose contrast with its background is under WCAG AA: 4.5:1, or 3:1 for large text
# (24 px, or 18.66 px bold). The background is the nearest opaque one up the tree.
LOW_CONTRAST = """
const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map((v) => {
  v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const alpha = (c) => { const m = c.match(/[\\d.]+/g); return m.length > 3 ? Number(m[3]) : 1; };
const bg = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
  if (alpha(c) === 1) return c; } return "rgb(255, 255, 255)"; };
const bad = [];
for (const e of document.querySelectorAll("body *")) {
  if (e.closest("svg") || !e.checkVisibility({visibilityProperty: true})) continue;
  if (e.getClientRects().length === 0) continue;
  if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  const s = getComputedStyle(e);
  if (Number(s.opacity) < 1 || e.closest("button:disabled")) continue;
  const [a, b] = [lum(s.color), lum(bg(e))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(s.fontSize), large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  const what = `${e.tagName}#${e.id} "${e.textContent.trim().slice(0, 30)}"`;
  if (ratio < (large ? 3 : 4.5)) bad.push(`${what} ${ratio.toFixed(2)}`);
}
return bad;
"""
