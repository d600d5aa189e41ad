"""The Mosquitto configs we ship: Nagle off, and Mosquitto accepts them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from devkit.broker import Broker, make_password_file
from tests._util import CONFIG_DIR

pytestmark = pytest.mark.mqtt

CONFS = sorted((CONFIG_DIR / "mosquitto").glob("*.conf"))


def test_there_are_shipped_broker_configs() -> None:
    assert {p.name for p in CONFS} >= {"booth.conf", "dev.conf"}


@pytest.mark.parametrize("conf", CONFS, ids=lambda p: p.name)
def test_every_shipped_config_sets_tcp_nodelay(conf: Path) -> None:
    assert re.search(r"^set_tcp_nodelay true$", conf.read_text(), re.MULTILINE)


@pytest.mark.parametrize("conf", CONFS, ids=lambda p: p.name)
def test_mosquitto_accepts_the_shipped_config(conf: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    text = conf.read_text()
    text = re.sub(r"^listener \d+.*$", f"listener {broker.port} 127.0.0.1", text, flags=re.M)
    text = re.sub(r"^persistence_location .*$", f"persistence_location {tmp_path}/", text,
                  flags=re.M)
    text = re.sub(r"^log_dest .*$", "log_dest stderr", text, flags=re.M)
    pw = tmp_path / "passwd"
    make_password_file(pw, {"mes": "x", "booth-sim-01": "y"})
    text = re.sub(r"^password_file .*$", f"password_file {pw}", text, flags=re.M)
    text = re.sub(
        r"^acl_file .*$", f"acl_file {CONFIG_DIR / 'mosquitto' / 'booth.acl'}", text, flags=re.M
    )
    if os.geteuid() == 0:
        text += "user root\n"  # as in tests/_broker.py: the temp folder is private to root
    broker.conf.write_text(text)
    broker.start()
    try:
        assert broker.running
    finally:
        broker.stop()
