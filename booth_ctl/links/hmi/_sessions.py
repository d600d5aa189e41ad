"""Logged-in sessions of the HMI: random tokens in an HttpOnly, SameSite=Strict cookie, each with
its own CSRF token that every state-changing request must carry in a header.

Sessions live in memory: a restart of the supervisor logs everybody out (they log in again).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from booth_ctl.commands import Role, Source

COOKIE = "booth_session"
CSRF_HEADER = "X-CSRF-Token"
SESSIONS_MAX = 1000


@dataclass
class Session:
    user: str
    role: Role
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def source(self) -> Source:
        return Source(link="hmi", user=self.user, role=self.role)

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._by_token: dict[str, Session] = {}

    def create(self, user: str, role: Role) -> tuple[str, Session]:
        self._expire()
        while len(self._by_token) >= SESSIONS_MAX:
            self._by_token.pop(next(iter(self._by_token)))
        token = secrets.token_urlsafe(32)
        session = Session(user, role)
        self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_s:
            del self._by_token[token]
            return None
        session.last_seen = now
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token, s in list(self._by_token.items()):
            if now - s.last_seen > self.idle_s:
                del self._by_token[token]
