"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium, and a
whole simulated booth with its HMI, for the end-to-end tests and the benchmarks."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from devkit.booth import BoothStack
from devkit.config import free_port
from tests._util import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Without these, Chromium as root in a container without network hangs on connections.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
UP_TIMEOUT_S = 30.0
WAIT_S = 10.0
PASSWORD = "correct-horse-1"
USERS = {"viewer": "viewer", "oper": "operator", "eng": "engineer", "victim": "operator"}


def chromium(profile: Path, size: tuple[int, int] = (1280, 800)) -> webdriver.Chrome:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} missing: `make test` installs chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={size[0]},{size[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    return driver


def add_user(config: Path, name: str, role: str, password: str = PASSWORD) -> None:
    boothctl = str(Path(sys.executable).with_name("boothctl"))
    r = subprocess.run(
        [boothctl, "user", "add", name, "--role", role, "--config", str(config)],
        input=password + "\n", text=True, capture_output=True, timeout=30, check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"user add {name}: {r.stderr}")


class HmiBooth:
    """BoothStack with an ``[hmi]`` table and the users of USERS; ``base`` is the page's URL."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()

        def with_hmi(d: dict[str, Any]) -> None:
            d["hmi"] = {"port": self.port}

        self.stack = BoothStack(workdir, overrides=with_hmi)
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HmiBooth:
        for name, role in USERS.items():
            add_user(self.stack.config, name, role)
        self.stack.__enter__()
        try:
            wait_until(self._ready, UP_TIMEOUT_S, "the HMI answering with a status")
        except BaseException:
            self.stack.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()

    def _ready(self) -> bool:
        if not self.stack.supervisor.running:
            raise RuntimeError(f"supervisor ended:\n{self.stack.supervisor.log_tail()}")
        try:
            cookie, _ = login_http(self.base, "eng")
        except OSError:
            return False
        # A read goes through the command authority: ok once the booth has a status.
        status, reply = http(self.base + "/api/recipes", headers={"Cookie": cookie})
        return status == 200 and reply["ok"]


def http(
    url: str, body: Any = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, Any]:
    """A plain HTTP request (no browser): status and JSON body."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return resp.status, _json(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())


def login_http(base: str, user: str, password: str = PASSWORD) -> tuple[str, str]:
    """(cookie header, csrf) of a fresh session, without a browser."""
    req = urllib.request.Request(
        base + "/api/login",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        return cookie, json.loads(resp.read())["csrf"]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def by_testid(driver: webdriver.Chrome, testid: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def wait_testid(
    driver: webdriver.Chrome,
    testid: str,
    cond: Callable[[WebElement], bool] = lambda e: e.is_displayed(),
    timeout_s: float = WAIT_S,
    what: str = "",
) -> WebElement:
    def found() -> WebElement | bool:
        for el in by_testid(driver, testid):
            try:
                if cond(el):
                    return el
            except Exception:  # a stale element: redrawn since it was found
                return False
        return False

    got: WebElement = WebDriverWait(driver, timeout_s, poll_frequency=0.02).until(
        lambda _d: found(), message=f"{testid}: {what or 'shown'} within {timeout_s} s"
    )
    return got


def click(driver: webdriver.Chrome, testid: str, timeout_s: float = WAIT_S) -> None:
    """Click the element once it is shown; again if the page redrew it meanwhile (stale)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            wait_testid(driver, testid, timeout_s=max(0.1, deadline - time.monotonic())).click()
            return
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise


def login(driver: webdriver.Chrome, base: str, user: str, password: str = PASSWORD) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/")
    wait_testid(driver, "login-username").send_keys(user)
    by_testid(driver, "login-password")[0].send_keys(password)
    by_testid(driver, "login-submit")[0].click()


@contextlib.contextmanager
def chromium_session(size: tuple[int, int] = (1280, 800)) -> Iterator[webdriver.Chrome]:
    """A headless Chromium on a profile of its own, quit and its profile removed at the end."""
    profile = Path(tempfile.mkdtemp(prefix="hmi-chromium-"))
    try:
        driver = chromium(profile, size)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
