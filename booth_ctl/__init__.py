"""The booth's supervisor: one fixed-period scan between the devices and the links.

Rooms, in the order the data flows (each room's ``__init__`` says what it may import):

- ``config``: the booth TOML, recipes and alloys, validated at load (imports ``drivers``).
- ``control``: the process image, interlocks, heater verifier, PackML, sequencer, alarms and the
  controller's pure ``scan``; no I/O, no clock (imports ``config``).
- ``runtime``: the daemon around the scan: device pollers, output writers, heartbeats, the scan's
  clock, sd_notify, metrics (imports ``control``, ``commands``, ``records``, ``links``).
- ``commands``: the one command authority every link and the CLI go through (imports
  ``config``, ``records`` and ``codes``; the controller is a protocol to it).
- ``links``: transports that translate a wire format into commands and back: ``mqtt`` today
  (imports ``commands``, ``records``, ``config``; never ``control`` internals).
- ``records``: the SQLite store: lots, dips, alarms, the events outbox, the command audit.
- ``cli``: ``boothctl`` and its views.
- ``codes``: the contract's error codes and ``CommandRefused``, a leaf every room may import.
"""
