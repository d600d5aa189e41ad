"""Following the control mode in the records (``boothctl mode`` and ``set_mode`` write it there)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from booth_ctl.records._recorder import Records

log = logging.getLogger("booth_ctl.records")


async def follow_mode(
    records: Records, who: str, changed: Callable[[str], None], period_s: float
) -> None:
    """Reads the mode every ``period_s`` and hands each reading to ``changed``, forever.

    A failed read is logged once per episode (naming ``who`` reads it) and tried again.
    """
    store = records.store
    failing = False
    while True:
        await asyncio.sleep(period_s)
        try:
            mode = await records.call(store.get_mode)
        except Exception as exc:
            if not failing:
                log.error("%s: cannot read the control mode: %s", who, exc)
                failing = True
            continue
        failing = False
        changed(mode)
