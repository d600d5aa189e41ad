"""Fixtures of the bad-input tests: a private Mosquitto for the few cases sent through MQTT."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.broker import Broker, running_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """An anonymous Mosquitto on a free loopback port."""
    with running_broker(tmp_path_factory.mktemp("mosquitto-fuzz")) as b:
        yield b
