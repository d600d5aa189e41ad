"""The control logic: one pure scan per tick, from a snapshot of the process image to outputs.

Process image, interlocks, heater verifier, PackML states, sequencer, alarms and the controller.
Nothing here awaits I/O or reads a clock. Imports ``config`` and ``drivers``' readings only;
never ``runtime``, ``links``, ``records``, ``commands`` or ``cli``.
"""
