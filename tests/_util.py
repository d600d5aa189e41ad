"""Test helpers shared across the suite: private configs, free ports, waiting with deadlines."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from devkit.config import CONFIG_DIR, ROOT, free_port, render_config

__all__ = [
    "CONFIG_DIR",
    "ROOT",
    "free_port",
    "holds",
    "holds_sync",
    "render_config",
    "run_tool",
    "wait_for",
    "wait_until",
]

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.02
) -> T:
    """``wait_for`` for code that is not async (a browser, a SECS host in a thread): poll
    ``check`` until it returns a truthy value; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = check()
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval_s)


async def wait_for(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.01,
) -> T:
    """Poll ``check`` until it returns a truthy value; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        result = check()
        last = await result if asyncio.iscoroutine(result) else result
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; last: {last!r}"
            )
        await asyncio.sleep(interval_s)


def holds_sync(check: Callable[[], object], duration_s: float, interval_s: float = 0.02) -> bool:
    """``holds`` for code that is not async: whether ``check`` stayed truthy all along."""
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        if not check():
            return False
        time.sleep(interval_s)
    return bool(check())


async def holds(
    check: Callable[[], object], *, duration_s: float, interval_s: float = 0.01
) -> bool:
    """Whether ``check`` stays truthy for ``duration_s``, sampled every ``interval_s``: the
    proof that something that must not happen does not (a message that must not come, a state
    that must not be reached). False as soon as it fails; the caller names what failed."""
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        if not check():
            return False
        await asyncio.sleep(interval_s)
    return bool(check())


def run_tool(
    argv: list[str], *, timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command line as an operator would: its text output captured, its exit code left
    for the test to judge; `env` is its whole environment (this process's when None)."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
