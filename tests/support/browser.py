"""Selenium helpers for the web console's real-browser tests: Debian's headless Chromium
driven by Debian's chromedriver (tests/bootstrap.sh installs both), never a downloaded one.

Everything here waits with explicit WebDriverWait deadlines, never fixed sleeps.
"""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 20.0


def chrome(download_dir: Path | None = None, profile: Path | None = None) -> WebDriver:
    """A fresh headless Chromium (its own profile: no cookies from any other driver)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("chromium / chromedriver missing: run `bash tests/bootstrap.sh`")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 "--disable-features=DownloadBubble,DownloadBubbleV2"):
        opts.add_argument(flag)
    if profile is not None:
        opts.add_argument(f"--user-data-dir={profile}")
    if download_dir is not None:
        opts.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # NOTE: a page left mid-upload asks "leave?" (beforeunload): leave, never hang
    opts.unhandled_prompt_behavior = "accept"
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    if download_dir is not None:  # headless Chromium also wants to be told over CDP
        drv.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(download_dir)})
    return drv


def network(driver: WebDriver, upload_bytes_s: int = -1, offline: bool = False) -> None:
    """Emulated network conditions (CDP): an upload throughput cap, or offline; the
    defaults restore the real network."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": offline, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": upload_bytes_s})


def wait(driver: WebDriver, what: Callable[[WebDriver], Any], timeout: float = WAIT_S,
         message: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(what, message)


def visible(driver: WebDriver, css: str, timeout: float = WAIT_S) -> WebElement:
    def found(d: WebDriver) -> WebElement | bool:
        els = [e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return els[0] if els else False
    return wait(driver, found, timeout, f"nothing visible matches {css}")  # type: ignore[no-any-return]


def gone(driver: WebDriver, css: str, timeout: float = WAIT_S) -> None:
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, css), timeout,
         f"{css} still present")


def text_in(driver: WebDriver, css: str, needle: str, timeout: float = WAIT_S) -> str:
    """Wait until the element's text contains ``needle``; return the text."""
    def has(d: WebDriver) -> str | bool:
        els = d.find_elements(By.CSS_SELECTOR, css)
        return els[0].text if els and needle in els[0].text else False
    try:
        return wait(driver, has, timeout)  # type: ignore[no-any-return]
    except Exception:
        els = driver.find_elements(By.CSS_SELECTOR, css)
        raise AssertionError(f"{css}: {needle!r} not in {els[0].text if els else None!r}") from None


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


# Inputs without a label, buttons and links without a name, images without alt; also
# tables without <th scope>. Approximates the accessible-name computation (aria-labelledby,
# aria-label, <label for>, a wrapping <label>, visible text, title, alt, value).
A11Y_JS = r"""
const text = (id) => ((document.getElementById(id) || {}).textContent || '').trim();
const named = (el) => {
  const by = (el.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean);
  return by.some(text) || !!(el.getAttribute('aria-label') || '').trim()
    || !!(el.getAttribute('title') || '').trim();
};
const problems = [];
const where = (el) => `${el.tagName.toLowerCase()}#${el.id || '?'}.${el.className || ''}`
  + ` "${(el.textContent || el.value || '').trim().slice(0, 40)}"`;
const all = (css) => Array.from(document.querySelectorAll(css));
for (const el of all('input, select, textarea')) {
  if (el.type === 'hidden') continue;
  const lab = (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`))
    || el.closest('label');
  if (!named(el) && !(lab && lab.textContent.trim())) problems.push('unlabelled ' + where(el));
}
for (const el of all('button, a[href], [role=button], input[type=submit], input[type=button]')) {
  const alts = all('img[alt]').filter((i) => el.contains(i)).map((i) => i.alt);
  const txt = (el.textContent || '').trim() || el.value || alts.join('');
  if (!named(el) && !txt) problems.push('nameless ' + where(el));
}
for (const el of all('img:not([alt])')) problems.push('no alt ' + where(el));
for (const el of all('svg[role=img]')) if (!named(el)) problems.push('unnamed svg ' + where(el));
for (const el of all('thead th:not([scope])')) problems.push('th without scope ' + where(el));
if (!document.querySelector('header') || !document.querySelector('main')) {
  problems.push('missing landmarks');
}
if (!document.querySelector('[aria-live]')) problems.push('no aria-live region');
return problems;
"""


def a11y_problems(driver: WebDriver) -> list[str]:
    return list(driver.execute_script(A11Y_JS))


def tab_stops(driver: WebDriver, count: int) -> list[str]:
    """Press TAB ``count`` times from the top of a freshly loaded page; the id (or text) of
    each element that got the focus, in order."""
    assert driver.execute_script("return document.activeElement === document.body"), \
        "tab_stops wants a freshly loaded page (nothing focused yet)"
    stops: list[str] = []
    for _ in range(count):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        stops.append(driver.execute_script(
            "const e = document.activeElement;"
            "return e ? (e.id || e.getAttribute('aria-label') || e.textContent.trim()) : ''"))
    return stops


def csp_violations(driver: WebDriver) -> list[str]:
    """Browser console messages since the last call that report a blocked resource (CSP)."""
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def in_order(stops: list[str], wanted: list[str]) -> bool:
    """``wanted`` occurs in ``stops`` as a subsequence (other stops may come between)."""
    it = iter(stops)
    return all(any(s == w for s in it) for w in wanted)


PERF_JS = """
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const sum = (k) => res.reduce((n, r) => n + (r[k] || 0), 0) + (nav ? nav[k] || 0 : 0);
return {transfer: sum('transferSize'), encoded: sum('encodedBodySize'),
        decoded: sum('decodedBodySize'), requests: res.length + 1,
        load_ms: nav ? nav.loadEventEnd : null, dcl_ms: nav ? nav.domContentLoadedEventEnd : null,
        names: res.map((r) => r.name)};
"""


def page_weight(driver: WebDriver) -> dict[str, Any]:
    """Bytes and load time of the current page, from the Performance API."""
    wait(driver, lambda d: d.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd > 0"))
    return dict(driver.execute_script(PERF_JS))


def wait_for_file(path: Path, size: int, timeout: float = 60.0) -> Path:
    """Until a finished download of ``size`` bytes is at ``path`` (Chromium writes to a
    .crdownload then renames it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size == size:
            return path
        time.sleep(0.1)
    present = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
    raise AssertionError(f"{path.name} not downloaded in {timeout}s; folder has {present}")


def http(method: str, url: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain urllib request that never raises on an HTTP status; header names lowercased."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def cookie_header(driver: WebDriver) -> str:
    """The browser's cookies for the current page (HttpOnly ones too) as a Cookie header."""
    return "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
