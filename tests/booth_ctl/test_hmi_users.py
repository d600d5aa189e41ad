"""HMI users, lockout, the role table and the ``[hmi]`` config (pure; no browser, no booth)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.cli import main
from booth_ctl.commands import Source, allowed
from booth_ctl.config._booth import load_config
from booth_ctl.links.hmi._roles import commands_of_role
from booth_ctl.records._store import RecordStore
from booth_ctl.records._users import (
    LOCKOUT_FAILURES,
    LOCKOUT_S,
    UserError,
    UserStore,
    hash_password,
    verify_password,
)
from drivers import ConfigError
from tests._util import render_config

T0 = 1_000_000.0


@pytest.fixture
def users(tmp_path: Path) -> Iterator[UserStore]:
    with UserStore(tmp_path / "records.sqlite3") as store:
        store.add("ann", "operator", "right-password")
        yield store


def test_the_password_is_stored_as_a_salted_scrypt_hash_only(users: UserStore) -> None:
    conn = sqlite3.connect(users.path)
    (stored,) = conn.execute("SELECT pw_hash FROM hmi_users WHERE name = 'ann'").fetchone()
    conn.close()
    assert stored.startswith("scrypt$16384$8$1$") and "right-password" not in stored
    assert verify_password("right-password", stored)
    assert not verify_password("right-passwore", stored)
    assert hash_password("same-password") != hash_password("same-password")  # salted
    assert not verify_password("x", "md5$abc")


def test_five_failures_lock_the_user_out_for_five_minutes_even_with_the_right_password(
    users: UserStore,
) -> None:
    assert users.login("ann", "right-password", now=T0).role == "operator"
    for i in range(LOCKOUT_FAILURES - 1):
        r = users.login("ann", "wrong", now=T0 + i)
        assert not r.ok and r.locked_until is None
    r = users.login("ann", "wrong", now=T0 + 10)
    assert not r.ok and r.locked_until == T0 + 10 + LOCKOUT_S
    assert LOCKOUT_S >= 300.0
    assert not users.login("ann", "right-password", now=T0 + 10 + LOCKOUT_S - 1).ok
    # The lockout survives a restart (it is in the database) and then runs out.
    with UserStore(users.path) as again:
        assert not again.login("ann", "right-password", now=T0 + 200).ok
        assert again.login("ann", "right-password", now=T0 + 11 + LOCKOUT_S).ok


def test_a_success_starts_the_count_again(users: UserStore) -> None:
    for i in range(LOCKOUT_FAILURES - 1):
        users.login("ann", "wrong", now=T0 + i)
    assert users.login("ann", "right-password", now=T0 + 5).ok
    for i in range(LOCKOUT_FAILURES - 1):
        assert users.login("ann", "wrong", now=T0 + 6 + i).locked_until is None


def test_unknown_names_lock_the_same_way(users: UserStore) -> None:
    results = [users.login("nobody", "x", now=T0 + i) for i in range(LOCKOUT_FAILURES)]
    assert [r.locked_until is not None for r in results] == [False] * 4 + [True]


@pytest.mark.parametrize(
    ("name", "role", "password", "says"),
    [
        ("a b", "operator", "long-enough", "user name"),
        ("ann2", "admin", "long-enough", "role 'admin'"),
        ("ann2", "viewer", "short", "password: 5 characters"),
    ],
)
def test_bad_users_are_refused_naming_what_is_wrong(
    users: UserStore, name: str, role: str, password: str, says: str
) -> None:
    with pytest.raises(UserError, match=says):
        users.add(name, role, password)


def test_boothctl_user_add_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = render_config(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["user", "add", "bob", "--role", "engineer", "--config", str(cfg)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("another-password\n"))
    assert main(["user", "add", "bob", "--role", "viewer", "--config", str(cfg)]) == 1
    assert "exists already" in capsys.readouterr().err
    path = load_config(cfg).resolve(load_config(cfg).config.records.path)
    # The record store opens the same database (one schema, migrated once).
    RecordStore(path).close()
    with UserStore(path) as users:
        assert users.users() == [("bob", "engineer")]
        assert users.login("bob", "a-long-password").role == "engineer"


def test_the_role_table() -> None:
    assert commands_of_role("viewer") == {"get_status", "get_recipe", "list_recipes", "get_job"}
    op = commands_of_role("operator") - commands_of_role("viewer")
    assert op == {"ack_alarm", "hold", "unhold", "stop", "abort", "set_mode"}
    eng = commands_of_role("engineer") - commands_of_role("operator")
    assert eng == {"reset", "clear", "start_job", "put_recipe", "refresh"}
    assert "stop" not in commands_of_role("viewer")


def test_allowed_follows_the_mode() -> None:
    eng = Source("hmi", "e", "engineer")
    assert "reset" not in allowed(eng, "remote") and "stop" in allowed(eng, "remote")
    assert {"reset", "start_job", "stop"} <= allowed(eng, "local")
    assert allowed(Source("hmi", "v", "viewer"), "local") == commands_of_role("viewer")


def _with_hmi(hmi: dict[str, Any]) -> Any:
    def edit(d: dict[str, Any]) -> None:
        d["hmi"] = hmi

    return edit


def test_hmi_config_defaults_to_loopback_and_refuses_bad_keys(tmp_path: Path) -> None:
    cfg = load_config(render_config(tmp_path, overrides=_with_hmi({"port": 8080})))
    assert cfg.config.hmi is not None and cfg.config.hmi.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="hmi"):
        load_config(render_config(tmp_path, overrides=_with_hmi({"port": 8080, "colour": 1})))
    with pytest.raises(ConfigError, match=r"tls_cert and hmi\.tls_key"):
        load_config(render_config(tmp_path, overrides=_with_hmi({"port": 1, "tls_cert": "c"})))
