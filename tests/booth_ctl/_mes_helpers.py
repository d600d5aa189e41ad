"""Helpers for the MES link tests: a fake controller, the MES side of MQTT, a running link."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from booth_ctl.commands import Authority, CommandRefused, RecipeBook, recipe_check
from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.links.mqtt import MesLink, mes_side_client
from booth_ctl.records import Records, RecordStore
from tests._util import render_config

REPLY_TIMEOUT_S = 5.0

T = TypeVar("T")


@dataclass
class FakeController:
    """Stands in for the controller where the test is about the link, not the booth's logic."""

    state: str = "stopped"
    interlocks: dict[str, bool] = field(
        default_factory=lambda: {"o2_ok": True, "solder_temp_ok": True, "door_closed": True}
    )
    busy: bool = False
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    job: dict[str, Any] | None = None

    def _go(self, name: str, allowed: tuple[str, ...], to: str) -> dict[str, Any]:
        self.calls.append((name, ()))
        if self.busy:
            raise CommandRefused("busy", "the controller is busy")
        if self.state not in allowed:
            raise CommandRefused(
                "invalid_state", f"{name} is not allowed in state {self.state}",
                {"state": self.state},
            )
        self.state = to
        return {"state": to}

    def reset(self) -> dict[str, Any]:
        return self._go("reset", ("stopped", "complete", "idle"), "idle")

    def hold(self) -> dict[str, Any]:
        return self._go("hold", ("execute",), "held")

    def unhold(self) -> dict[str, Any]:
        return self._go("unhold", ("held",), "execute")

    def stop(self) -> dict[str, Any]:
        return self._go("stop", ("idle", "execute", "held", "complete"), "stopped")

    def abort(self) -> dict[str, Any]:
        return self._go("abort", ("idle", "execute", "held", "stopped", "complete"), "aborted")

    def clear(self) -> dict[str, Any]:
        return self._go("clear", ("aborted",), "stopped")

    def start_job(self, lot_id: str, recipe_name: str, recipe: Any, units: int) -> dict[str, Any]:
        self.calls.append(("start_job", (lot_id, recipe_name, units)))
        if self.state != "idle":
            raise CommandRefused("invalid_state", f"start_job needs idle, not {self.state}")
        unmet = sorted(k for k, v in self.interlocks.items() if not v)
        if unmet:
            raise CommandRefused(
                "interlock", f"permissives not met: {', '.join(unmet)}", {"unmet": unmet}
            )
        self.state = "execute"
        self.job = {"lot_id": lot_id, "recipe": recipe_name, "units": units}
        return {"state": "execute"}

    def ack_alarm(self, alarm_id: str | None) -> dict[str, Any]:
        self.calls.append(("ack_alarm", (alarm_id,)))
        return {"acked": [alarm_id] if alarm_id else ["a1", "a2"]}

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "ready": self.state == "idle",
            "job": self.job,
            "alarms": [],
            "interlocks": dict(self.interlocks),
        }

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)


def booth_config(tmp_path: Path, port: int, **mqtt: Any) -> LoadedConfig:
    def over(d: dict[str, Any]) -> None:
        d["mqtt"]["port"] = port
        d["mqtt"]["reconnect_min_s"] = 0.02
        d["mqtt"]["reconnect_max_s"] = 0.3
        d["mqtt"].update(mqtt)

    return load_config(render_config(tmp_path, overrides=over))


#: The booth of the tests whose broker has users and an ACL, and the users' passwords.
SECURE_BOOTH = "sim-01"
SECURE_USERS = {"mes": "mes-secret", f"booth-{SECURE_BOOTH}": "booth-secret"}
#: What the booth publishes, each a topic under booth/<id>/.
BOOTH_TOPICS = ("online", "status", "telemetry", "events", "reply")


def secure_acl(*booth_writes: str) -> str:
    """The broker's ACL: the MES commands every booth and reads everything; the booth reads its
    commands and may publish `booth_writes` only."""
    lines = [
        "user mes",
        "topic write booth/+/cmd/#",
        "topic read booth/#",
        "",
        f"user booth-{SECURE_BOOTH}",
        f"topic read booth/{SECURE_BOOTH}/cmd/#",
    ]
    lines += [f"topic write booth/{SECURE_BOOTH}/{t}" for t in booth_writes]
    return "\n".join(lines) + "\n"


def secure_booth_config(
    tmp_path: Path, port: int, *, password: str | None = None, pw_mode: int = 0o600, **mqtt: Any
) -> LoadedConfig:
    """The booth's config as its broker user, the password (its own unless `password`) in a file
    of mode `pw_mode`."""
    pw = tmp_path / "booth.pw"
    pw.write_text((password or SECURE_USERS[f"booth-{SECURE_BOOTH}"]) + "\n", encoding="utf-8")
    pw.chmod(pw_mode)
    return booth_config(
        tmp_path, port, username=f"booth-{SECURE_BOOTH}", password_file=str(pw), **mqtt
    )


@contextlib.asynccontextmanager
async def running_link(
    loaded: LoadedConfig,
    target: Any,
    *,
    store: RecordStore | None = None,
    wait_connected: bool = True,
    ready: asyncio.Event | None = None,
) -> AsyncIterator[tuple[MesLink, Records]]:
    """A store, its Records thread and a MesLink around ``target``, connected to the broker.

    ``ready`` stands for the runtime's readiness (set already unless one is given).
    """
    ready = ready if ready is not None else ready_now()
    cfg = loaded.config
    own = store is None
    st = store or RecordStore(
        loaded.resolve(cfg.records.path), request_id_keep_s=cfg.mqtt.request_id_keep_s
    )
    try:
        async with Records(st) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), st)
            authority = Authority(target, records, book, recipe_check(cfg), ready=ready)
            async with MesLink(loaded, records, authority) as link:
                if wait_connected:
                    await asyncio.wait_for(link.connected.wait(), 10.0)
                yield link, records
    finally:
        if own:
            st.close()


@contextlib.asynccontextmanager
async def mes_then_link(
    tmp_path: Path, broker_port: int
) -> AsyncIterator[tuple[Mes, MesLink, Records]]:
    """The MES client subscribed first (it misses nothing the link sends), then the link around
    a FakeController, on a booth config of `tmp_path`."""
    loaded = booth_config(tmp_path, broker_port)
    async with (
        mes_client(broker_port, loaded.config.booth_id) as mes,
        running_link(loaded, FakeController()) as (link, records),
    ):
        yield mes, link, records


class MesBooth:
    """A running link around a FakeController, with the MES client talking to it."""

    def __init__(self, loaded: LoadedConfig, ctl: FakeController, mes: Mes) -> None:
        self.loaded = loaded
        self.ctl = ctl
        self.mes = mes
        self.store_path = Path(loaded.config.records.path)

    def audit(self, rid: str) -> list[dict[str, Any]]:
        """The command audit's entries of request id `rid`."""
        with RecordStore(self.store_path) as store:
            return [a for a in store.command_audit() if a["request_id"] == rid]


@contextlib.asynccontextmanager
async def mes_booth(tmp_path: Path, broker_port: int) -> AsyncIterator[MesBooth]:
    """The MES link on a booth config of `tmp_path`, on the broker at `broker_port`."""
    loaded = booth_config(tmp_path, broker_port)
    ctl = FakeController()
    async with running_link(loaded, ctl), mes_client(broker_port, loaded.config.booth_id) as mes:
        yield MesBooth(loaded, ctl, mes)


def ready_now() -> asyncio.Event:
    """The runtime's readiness, already given (tests of the link and the authority alone)."""
    ready = asyncio.Event()
    ready.set()
    return ready


class Mes:
    """The MES side: publishes commands, collects replies, events, status and online."""

    def __init__(self, client: aiomqtt.Client, booth_id: str) -> None:
        self.client = client
        self.root = f"booth/{booth_id}/"
        self.replies: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.status: list[dict[str, Any]] = []
        self.online: list[bool] = []
        self.telemetry: list[dict[str, Any]] = []
        self.other: list[aiomqtt.Message] = []
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        for t in ("reply", "events", "status", "online", "telemetry"):
            await self.client.subscribe(self.root + t, qos=1)
        self._task = asyncio.create_task(self._collect(), name="mes-collect")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _collect(self) -> None:
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            topic = m.topic.value
            if not topic.startswith(self.root):
                self.other.append(m)
                continue
            body = json.loads(payload)
            {
                "reply": self.replies,
                "events": self.events,
                "status": self.status,
                "online": self.online,
                "telemetry": self.telemetry,
            }[topic[len(self.root) :]].append(body)
            self._arrived.set()

    async def until(self, check: Callable[[], T | None], timeout_s: float, what: str) -> T:
        """Wait (woken by each message, not polling) until ``check`` gives something truthy."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._arrived.clear()
                    got = check()
                    if got:
                        return got
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None

    async def publish(
        self,
        command: str,
        body: dict[str, Any] | bytes,
        props: Properties | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.client.publish(self.root + "cmd/" + command, data, qos=1, properties=props)

    async def request(
        self, command: str, args: dict[str, Any] | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        rid = request_id or uuid.uuid4().hex
        await self.publish(command, {"request_id": rid, **(args or {})})
        return await self.reply_to(rid)

    async def reply_to(self, rid: str, nth: int = 1) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            mine = [r for r in self.replies if r.get("request_id") == rid]
            return mine[nth - 1] if len(mine) >= nth else None

        return await self.until(found, REPLY_TIMEOUT_S, f"reply #{nth} to {rid}")


@contextlib.asynccontextmanager
async def mes_client(
    port: int,
    booth_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    identifier: str | None = None,
    persistent: bool = False,
) -> AsyncIterator[Mes]:
    """An MES client; ``persistent`` keeps its session (and queued messages) across outages."""
    client = mes_side_client(
        "127.0.0.1",
        port,
        identifier=identifier or f"mes-{uuid.uuid4().hex[:8]}",
        username=username,
        password=password,
        session_expiry_s=600 if persistent else None,
    )
    async with client:
        mes = Mes(client, booth_id)
        await mes.start()
        try:
            yield mes
        finally:
            await mes.stop()
    misc = getattr(client, "_misc_task", None)
    if isinstance(misc, asyncio.Task):
        misc.cancel()
        await asyncio.gather(misc, return_exceptions=True)


def secure_mes(
    port: int, user: str = "mes", password: str | None = None
) -> contextlib.AbstractAsyncContextManager[Mes]:
    """An MES-side client as `user` (its password from SECURE_USERS unless given)."""
    return mes_client(port, SECURE_BOOTH, username=user, password=password or SECURE_USERS[user])


def response_props(topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = topic
    props.CorrelationData = correlation
    return props
