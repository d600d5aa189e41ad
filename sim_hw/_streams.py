"""What the simulator's stream servers (Modbus TCP, the control socket) share: closing one ends
its open connections first, so that a test's `async with` leaves no task behind."""

from __future__ import annotations

import asyncio


async def close_server(server: asyncio.Server | None, connections: set[asyncio.Task[None]]) -> None:
    """Stop listening, cancel every connection handler still running, then wait for the server."""
    if server is not None:
        server.close()
    for task in list(connections):
        task.cancel()
    if connections:
        await asyncio.gather(*connections, return_exceptions=True)
    if server is not None:
        await server.wait_closed()
