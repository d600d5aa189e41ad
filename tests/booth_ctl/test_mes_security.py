"""Users, passwords and the ACL: only the MES commands the booth, only the booth speaks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from booth_ctl.records import RecordStore
from devkit.broker import Broker, running_broker
from drivers import ConfigError
from tests._util import wait_for
from tests.booth_ctl._mes_helpers import (
    BOOTH_TOPICS,
    SECURE_BOOTH,
    SECURE_USERS,
    FakeController,
    Mes,
    mes_client,
    running_link,
    secure_acl,
    secure_booth_config,
    secure_mes,
)

pytestmark = pytest.mark.mqtt

BOOTH = SECURE_BOOTH
USERS = {**SECURE_USERS, "intruder": "x-secret"}
#: The booth publishes what it must; a third user may read everything, publish nothing.
ACL = secure_acl(*BOOTH_TOPICS) + "\nuser intruder\ntopic read booth/#\n"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_broker(tmp_path_factory.mktemp("secure-mosquitto"), users=USERS, acl=ACL) as b:
        yield b


class SecureBooth:
    def __init__(self, ctl: FakeController, mes: Mes, store_path: Path) -> None:
        self.ctl = ctl
        self.mes = mes
        self.store_path = store_path


@pytest.fixture
async def secure_booth(tmp_path: Path, secure_broker: Broker) -> AsyncIterator[SecureBooth]:
    loaded = secure_booth_config(tmp_path, secure_broker.port)
    ctl = FakeController()
    async with (
        running_link(loaded, ctl),
        secure_mes(secure_broker.port) as mes,
    ):
        yield SecureBooth(ctl, mes, Path(loaded.config.records.path))


async def test_the_mes_user_commands_the_booth(secure_booth: SecureBooth) -> None:
    reply = await secure_booth.mes.request("reset")
    assert reply["ok"], reply
    assert secure_booth.ctl.count("reset") == 1


@pytest.mark.parametrize("user", ["intruder", f"booth-{BOOTH}"])
async def test_no_one_else_can_command_the_booth(
    secure_booth: SecureBooth, secure_broker: Broker, user: str
) -> None:
    async with secure_mes(secure_broker.port, user, USERS[user]) as other:
        await other.publish("reset", {"request_id": "not-mine"})
    # Commands are taken in order: once a later MES command is answered, the refused one would
    # have been answered before it had it reached the booth.
    reply = await secure_booth.mes.request("get_status")
    assert reply["ok"]
    assert [r["request_id"] for r in secure_booth.mes.replies] == [reply["request_id"]]
    assert secure_booth.ctl.count("reset") == 0
    with RecordStore(secure_booth.store_path) as store:
        assert all(a["request_id"] != "not-mine" for a in store.command_audit())


async def test_no_one_else_can_speak_for_the_booth(
    secure_booth: SecureBooth, secure_broker: Broker
) -> None:
    mes = secure_booth.mes
    async with secure_mes(secure_broker.port, "intruder", USERS["intruder"]) as intruder:
        for topic in ("events", "status", "reply", "online"):
            await intruder.client.publish(
                f"booth/{BOOTH}/{topic}", b'{"seq": 999, "request_id": "fake"}', qos=1
            )
    reply = await mes.request("get_status")
    assert all(r["request_id"] != "fake" for r in mes.replies)
    assert all(e.get("seq") != 999 for e in mes.events)
    assert all(s.get("seq") != 999 for s in mes.status)
    assert reply["ok"]


async def test_anonymous_clients_are_refused(secure_broker: Broker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with mes_client(secure_broker.port, BOOTH):
            pass


async def test_wrong_password_never_connects(tmp_path: Path, secure_broker: Broker) -> None:
    loaded = secure_booth_config(tmp_path, secure_broker.port, password="nope")
    refused = secure_broker.log_text().count("not authorised")
    async with running_link(loaded, FakeController(), wait_connected=False) as (link, _):
        # The broker refuses it again and again (the link retries with backoff), never lets in.
        await wait_for(
            lambda: secure_broker.log_text().count("not authorised") >= refused + 3,
            timeout_s=10, what="three refused connection attempts",
        )
        assert not link.connected.is_set() and link.connections == 0


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
async def test_a_password_file_others_can_read_is_refused_at_start(
    tmp_path: Path, secure_broker: Broker, mode: int
) -> None:
    loaded = secure_booth_config(tmp_path, secure_broker.port, pw_mode=mode)
    with pytest.raises(ConfigError, match=r"password_file .* accessible by group or others"):
        async with running_link(loaded, FakeController()):
            pass


async def test_the_booth_reconnects_with_its_credentials(
    secure_booth: SecureBooth, secure_broker: Broker
) -> None:
    # The link re-subscribes on a new connection: commands still arrive after a broker restart.
    secure_broker.stop()
    secure_broker.start()
    async with secure_mes(secure_broker.port) as mes:
        await wait_for(lambda: mes.online[-1:] == [True], timeout_s=10, what="booth online again")
        reply = await mes.request("reset")
        assert reply["ok"]
