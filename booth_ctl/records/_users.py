"""The HMI's users: names, roles and scrypt hashes in the record store's database, and the lockout.

A password is never stored: only ``scrypt$N$r$p$salt$hash`` (hashlib.scrypt, memory-hard: 16 MiB
and tens of milliseconds per try at the defaults, so a stolen database is slow to attack). Five
failed logins in a row lock the name for five minutes; while locked, the right password is
refused too. Names nobody holds are locked the same way (in memory), so a lockout tells nothing
about which names exist.

The calls block (a hash takes tens of milliseconds, a write is an fsync): callers on the event
loop run them on a worker thread. One connection per store, used by one thread at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from booth_ctl.records._base import Database

Role = Literal["viewer", "operator", "engineer"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "engineer")
USER_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 1024
#: scrypt cost: N=2**14, r=8 -> 128 * r * N = 16 MiB of memory per hash.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
KEY_BYTES = 32
#: Failed logins in a row that lock a name, and for how long (CONTRACT section 7: 5, >= 5 min).
LOCKOUT_FAILURES = 5
LOCKOUT_S = 300.0


class UserError(Exception):
    """A user cannot be added as asked (bad name, role or password); the message says why."""


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    #: Set when ok.
    role: Role | None = None
    #: Set while the name is locked out (epoch seconds).
    locked_until: float | None = None


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    salt = os.urandom(SALT_BYTES)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM, dklen=KEY_BYTES,
    )
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt_b64, key_b64 = stored.split("$")
        if kind != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        want = base64.b64decode(key_b64)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
            maxmem=SCRYPT_MAXMEM, dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


#: Hashed against when a name is unknown, so that an unknown name takes as long as a known one.
_DUMMY_HASH = hash_password("not a password of anyone", n=SCRYPT_N)


def check_new_user(name: str, role: str, password: str) -> None:
    if not USER_NAME_RE.match(name):
        raise UserError(
            f"user name {name!r}: 1-64 characters of letters, digits and _ . @ - only"
        )
    if role not in ROLES:
        raise UserError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise UserError(
            f"password: {len(password)} characters; must be {PASSWORD_MIN_CHARS} to "
            f"{PASSWORD_MAX_CHARS}"
        )


class UserStore(Database):
    """The ``hmi_users`` table of one record store database (opened, and migrated, as the
    record store opens it)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        #: Unknown names: failures in a row and lock end, in memory only.
        self._ghosts: dict[str, tuple[int, float]] = {}

    @property
    def connection(self) -> sqlite3.Connection:
        """For read-only lookups of the same database (the lot search), under :attr:`lock`."""
        return self._conn

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def add(self, name: str, role: str, password: str, *, replace: bool = False) -> None:
        check_new_user(name, role, password)
        pw_hash = hash_password(password)
        now = time.time()
        with self._tx() as c:
            exists = c.execute("SELECT 1 FROM hmi_users WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise UserError(f"user {name!r} exists already (--replace sets a new password)")
            c.execute(
                "INSERT OR REPLACE INTO hmi_users (name, role, pw_hash, created_at, "
                "changed_at, failures, locked_until) VALUES (?, ?, ?, "
                "COALESCE((SELECT created_at FROM hmi_users WHERE name = ?), ?), ?, 0, 0)",
                (name, role, pw_hash, name, now, now),
            )

    def users(self) -> list[tuple[str, str]]:
        with self._read() as c:
            rows = c.execute("SELECT name, role FROM hmi_users ORDER BY name").fetchall()
        return [(str(n), str(r)) for n, r in rows]

    def login(self, name: str, password: str, now: float | None = None) -> LoginResult:
        """Check a login; count a failure, lock after LOCKOUT_FAILURES in a row."""
        now = time.time() if now is None else now
        with self._read() as c:
            row = c.execute(
                "SELECT role, pw_hash, failures, locked_until FROM hmi_users WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return self._ghost_login(name, password, now)
        role, pw_hash, failures, locked_until = row
        if locked_until > now:
            return LoginResult(False, locked_until=float(locked_until))
        if locked_until:
            failures = 0  # a lockout that ran out starts the count again
        if verify_password(password, pw_hash):
            self._set_failures(name, 0, 0.0)
            return LoginResult(True, role=role)
        failures += 1
        lock = now + LOCKOUT_S if failures >= LOCKOUT_FAILURES else 0.0
        self._set_failures(name, 0 if lock else failures, lock)
        return LoginResult(False, locked_until=lock or None)

    def _ghost_login(self, name: str, password: str, now: float) -> LoginResult:
        verify_password(password, _DUMMY_HASH)
        failures, locked_until = self._ghosts.get(name, (0, 0.0))
        if locked_until > now:
            return LoginResult(False, locked_until=locked_until)
        if locked_until:
            failures = 0
        failures += 1
        if failures >= LOCKOUT_FAILURES:
            self._ghosts[name] = (0, now + LOCKOUT_S)
            return LoginResult(False, locked_until=now + LOCKOUT_S)
        if len(self._ghosts) > 10_000:  # bounded: a flood of names forgets the oldest
            self._ghosts.pop(next(iter(self._ghosts)))
        self._ghosts[name] = (failures, 0.0)
        return LoginResult(False)

    def _set_failures(self, name: str, failures: int, locked_until: float) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE hmi_users SET failures = ?, locked_until = ? WHERE name = ?",
                (failures, locked_until, name),
            )
