"""The HMI end to end: a real headless Chromium against ``boothctl run`` on the simulated booth.

One booth and one browser for the module (starting them is most of the time); the tests run in
file order and each leaves the booth as the next expects (idle in local mode after the command
test). CONTRACT section 7.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from booth_ctl.records._store import RecordStore
from tests.booth_ctl._browser import (
    PASSWORD,
    HmiBooth,
    by_testid,
    chromium_session,
    click,
    http,
    login,
    login_http,
    wait_testid,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.hil, pytest.mark.mqtt]

IDLE_TIMEOUT_S = 40.0


@pytest.fixture(scope="module")
def booth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HmiBooth]:
    with HmiBooth(tmp_path_factory.mktemp("hmi")) as b:
        yield b


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium_session() as driver:
        yield driver


def _text(driver: webdriver.Chrome, testid: str) -> str:
    els = by_testid(driver, testid)
    return els[0].text if els else ""


def test_login_wrong_password_then_lockout_refuses_the_right_one(
    booth: HmiBooth, browser: webdriver.Chrome
) -> None:
    login(browser, booth.base, "victim", "wrong-password")
    wait_testid(browser, "login-error", lambda e: "wrong" in e.text, what="the refusal")
    for _ in range(4):
        status, body = http(
            booth.base + "/api/login", {"username": "victim", "password": "nope-nope"}
        )
    assert status == 429, body  # the fifth failure in a row locks
    login(browser, booth.base, "victim", PASSWORD)
    wait_testid(browser, "login-error", lambda e: "locked" in e.text, what="the lockout")
    assert not by_testid(browser, "state")[0].is_displayed()
    # Another user is not locked, and the page's cookie is HttpOnly and SameSite=Strict.
    login(browser, booth.base, "viewer")
    wait_testid(browser, "state", lambda e: e.text not in ("", "unknown"), what="a live state")
    cookie = next(c for c in browser.get_cookies() if c["name"] == "booth_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""


@pytest.mark.parametrize(
    ("user", "present", "absent"),
    [
        ("viewer", [], ["reset", "stop", "abort", "hold", "ack_alarm", "set_mode", "start_job"]),
        (
            "oper",
            ["stop", "abort", "hold", "unhold", "ack_alarm", "set_mode"],
            ["reset", "clear", "start_job", "refresh"],
        ),
        (
            "eng",
            ["stop", "abort", "hold", "unhold", "ack_alarm", "set_mode", "reset", "clear",
             "start_job", "refresh"],
            [],
        ),
    ],
)
def test_each_role_sees_the_buttons_it_may_press(
    booth: HmiBooth, browser: webdriver.Chrome, user: str, present: list[str], absent: list[str]
) -> None:
    login(browser, booth.base, user)
    wait_testid(browser, "cmd-get_status", what=f"the command panel of {user}")
    for name in present:
        assert by_testid(browser, f"cmd-{name}"), f"{user} should see cmd-{name}"
    for name in absent:
        assert not by_testid(browser, f"cmd-{name}"), f"{user} must not see cmd-{name}"
    readings = ["solder_temp_c", "o2_ppm", "heater_output_pct", "holder_z_mm", "vacuum_kpa"]
    for key in readings:
        wait_testid(browser, f"reading-{key}", lambda e: e.text not in ("", "-"), what="a value")
    lamp = wait_testid(browser, "permissive-door_closed")
    assert lamp.get_attribute("data-ok") == "true"


def test_commands_from_the_page_change_the_booth(
    booth: HmiBooth, browser: webdriver.Chrome
) -> None:
    login(browser, booth.base, "eng")
    wait_testid(browser, "state", lambda e: e.text == "stopped", what="stopped after start")
    # Remote mode (the MES owns the booth): reset from the page is refused, and nothing runs.
    click(browser, "cmd-reset")
    wait_testid(browser, "cmd-reply", lambda e: "invalid_state" in e.text, what="the refusal")
    assert _text(browser, "state") == "stopped"
    click(browser, "cmd-set_mode")
    wait_testid(browser, "mode", lambda e: e.text == "local", what="local mode")
    click(browser, "cmd-reset")
    wait_testid(browser, "cmd-reply", lambda e: "reset: ok" in e.text, what="reset accepted")
    wait_testid(
        browser, "state", lambda e: e.text == "idle", timeout_s=IDLE_TIMEOUT_S, what="idle"
    )
    # Stop asks first: cancel runs nothing.
    click(browser, "cmd-stop")
    wait_testid(browser, "confirm")
    click(browser, "cancel")
    wait_testid(browser, "cmd-reply", lambda e: e.text == "cancelled")
    assert _text(browser, "state") == "idle"
    # Each command is on the audit trail with its user and role; the cancelled stop is not.
    audit = _audit(booth)
    by = {
        (a["command"], a["who"], a["source"]["link"], a["source"]["role"], a["reply"]["ok"])
        for a in audit
    }
    assert ("reset", "eng", "hmi", "engineer", False) in by  # refused in remote mode
    assert ("set_mode", "eng", "hmi", "engineer", True) in by
    assert ("reset", "eng", "hmi", "engineer", True) in by
    assert not [a for a in audit if a["command"] == "stop"]


def _audit(booth: HmiBooth) -> list[dict[str, Any]]:
    path = booth.stack.data["records"]["path"]
    with RecordStore(path) as store:
        return store.command_audit()


def test_forged_requests_are_refused_and_nothing_runs(
    booth: HmiBooth, browser: webdriver.Chrome
) -> None:
    url = booth.base + "/api/cmd/stop"
    assert http(url, {})[0] == 401  # no session at all
    eng_cookie, eng_csrf = login_http(booth.base, "eng")
    assert http(url, {}, {"Cookie": eng_cookie})[0] == 403  # no CSRF token
    assert http(url, {}, {"Cookie": eng_cookie, "X-CSRF-Token": "forged"})[0] == 403
    viewer_cookie, viewer_csrf = login_http(booth.base, "viewer")
    status, reply = http(url, {}, {"Cookie": viewer_cookie, "X-CSRF-Token": viewer_csrf})
    assert status == 403 and reply["error"]["code"] == "forbidden"
    # Another session's token does not do either.
    assert http(url, {}, {"Cookie": viewer_cookie, "X-CSRF-Token": eng_csrf})[0] == 403
    # The right cookie and token from another site's page: refused by origin and media type.
    eng = {"Cookie": eng_cookie, "X-CSRF-Token": eng_csrf}
    assert http(url, {}, {**eng, "Origin": "http://evil.example"})[0] == 403
    assert http(url, {}, {**eng, "Content-Type": "text/plain"})[0] == 415
    login_body = {"username": "eng", "password": PASSWORD}
    assert http(booth.base + "/api/login", login_body, {"Origin": "http://evil.example"})[0] == 403
    status, me = http(booth.base + "/api/me", headers={"Cookie": eng_cookie})
    assert status == 200 and me["role"] == "engineer"
    # Nothing ran: the booth is still idle (a stop would have left it stopping/stopped).
    login(browser, booth.base, "oper")
    wait_testid(browser, "state", lambda e: e.text == "idle", what="still idle")
    # The page itself (with its token) may stop it.
    click(browser, "cmd-stop")
    click(browser, "confirm")
    wait_testid(browser, "cmd-reply", lambda e: "stop: ok" in e.text, what="stop accepted")
    wait_testid(
        browser, "state", lambda e: e.text in ("stopping", "stopped"), what="stopping"
    )
    stops = [a for a in _audit(booth) if a["command"] == "stop" and a["reply"]["ok"]]
    # the forged ones never ran
    assert [(a["who"], a["source"]["link"], a["source"]["role"]) for a in stops] == [
        ("oper", "hmi", "operator")
    ]


def test_an_alarm_appears_and_is_acked_from_the_page(
    booth: HmiBooth, browser: webdriver.Chrome
) -> None:
    login(browser, booth.base, "oper")
    wait_testid(browser, "state", lambda e: e.text not in ("", "unknown"))
    booth.stack.fault("door_open")
    try:
        alarm = wait_testid(browser, "alarm-door_open", what="the door alarm")
        assert alarm.get_attribute("data-acked") == "false"
        lamp = wait_testid(
            browser, "permissive-door_closed", lambda e: e.get_attribute("data-ok") == "false"
        )
        assert lamp is not None
        click(browser, "ack-door_open")
        wait_testid(
            browser, "alarm-door_open", lambda e: e.get_attribute("data-acked") == "true",
            what="the alarm acked",
        )
        assert not by_testid(browser, "ack-door_open")
    finally:
        booth.stack.clear("door_open")
    wait_until(
        lambda: not by_testid(browser, "alarm-door_open"), 10.0, "the alarm gone with its cause"
    )


def test_a_terminal_message_of_the_host_is_shown(
    booth: HmiBooth, browser: webdriver.Chrome
) -> None:
    login(browser, booth.base, "viewer")
    wait_testid(browser, "state", lambda e: e.text not in ("", "unknown"))
    # The GEM link puts a host's S10F3 in the events outbox as host_message (tests/booth_ctl/gem);
    # here it is written there directly, and the supervisor's next events (an alarm set and
    # cleared) have the page's feed read the outbox on.
    with RecordStore(booth.stack.data["records"]["path"]) as store:
        store.record_event("host_message", {"link": "gem", "terminal": 0, "text": "PM at 14:00"})
    booth.stack.fault("door_open")
    try:
        wait_testid(browser, "alarm-door_open", what="the door alarm")
    finally:
        booth.stack.clear("door_open")
    wait_testid(browser, "host-message", lambda e: "PM at 14:00" in e.text, what="the message")


def test_recipe_edit_shows_validation_errors_by_field(
    booth: HmiBooth, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    login(browser, booth.base, "eng")
    click(browser, "tab-recipes")
    click(browser, "recipe-demo")
    field = wait_testid(browser, "field-o2_limit_ppm")
    field.clear()
    field.send_keys("20000")
    click(browser, "cmd-put_recipe")
    wait_testid(
        browser, "recipe-reply", lambda e: "invalid_recipe" in e.text, what="the refusal"
    )
    err = wait_testid(browser, "field-error-o2_limit_ppm", lambda e: e.text != "")
    assert "10000" in err.text
