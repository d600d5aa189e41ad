"""Child process of the kill -9 tests: writes records in a loop, printing each committed seq.

A line on stdout is an acknowledgement: the record behind it was committed before it was printed.
"""

from __future__ import annotations

import sys

from booth_ctl.records import RecordStore


def main() -> None:
    path = sys.argv[1]
    with RecordStore(path) as store:
        store.mark_aborted_jobs_at_start()
        i = 0
        while True:
            i += 1
            if i % 3 == 0:
                results = store.record_events(
                    [("dip", {"n": i, "k": k, "o2_ppm": 100.0 + k}) for k in range(3)]
                )
                seq = results[-1][0]
            elif i % 50 == 1:
                store.record_event("job_started", {"lot_id": f"L{i}", "recipe": "demo", "units": 1})
                seq = store.record_event("unit_started", {"unit": 1})[0]
            else:
                seq = store.record_event("state_changed", {"n": i})[0]
            sys.stdout.write(f"{seq}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
