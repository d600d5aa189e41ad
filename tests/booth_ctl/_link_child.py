"""Child process of the kill -9 link tests: a booth's records and MES link around a fake controller.

``python -m tests.booth_ctl._link_child CONFIG [--dip]``: at start, records jobs left running as
aborted (as the supervisor does); with ``--dip`` it then records a job cut in the middle of a dip.
Prints ``ready <last seq>`` once every event is stored and the link is connected, then runs until
killed.
"""

from __future__ import annotations

import asyncio
import sys

from booth_ctl.config._booth import load_config
from booth_ctl.records import RecordStore
from tests.booth_ctl._mes_helpers import FakeController, running_link


async def main(config: str, dip: bool) -> None:
    loaded = load_config(config)
    cfg = loaded.config
    with RecordStore(cfg.records.path, request_id_keep_s=cfg.mqtt.request_id_keep_s) as store:
        store.mark_aborted_jobs_at_start()
        async with running_link(loaded, FakeController(), store=store) as (_, records):
            if dip:
                await records.record("job_started", {"lot_id": "K9", "recipe": "demo", "units": 2})
                await records.record("unit_started", {"lot_id": "K9", "unit": 1})
                await records.record(
                    "dip",
                    {"lot_id": "K9", "unit": 1, "vessel": "solder1", "o2_ppm": 90.0,
                     "solder_temp_c": 250.0, "depth_mm": 3.0, "dwell_s": 1.0},
                )
            last = await records.call(store.last_seq)
            sys.stdout.write(f"ready {last}\n")
            sys.stdout.flush()
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--dip" in sys.argv[2:]))
