"""Test helpers shared across the suite: private configs, free ports, waiting with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from devkit.config import CONFIG_DIR, ROOT, free_port, render_config

__all__ = ["CONFIG_DIR", "ROOT", "free_port", "render_config", "wait_for"]

T = TypeVar("T")


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
