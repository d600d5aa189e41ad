"""Fixtures of the supervisor's tests: a private Mosquitto shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.broker import Broker, running_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """An anonymous Mosquitto on a free loopback port, for tests that do not stop it."""
    with running_broker(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b
