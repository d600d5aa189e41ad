"""The running daemon: the task group that owns pollers, writers, heartbeats and the scan's clock.

It joins ``control`` to the devices (``drivers``) and to the links; sd_notify and the metrics
endpoint live here too. It may import every other room but ``cli``.
"""
