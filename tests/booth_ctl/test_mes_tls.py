"""TLS to the broker: the booth checks the broker against the configured CA and shows its own
client certificate."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.broker import Broker, running_broker
from tests._util import wait_for
from tests.booth_ctl._mes_helpers import FakeController, booth_config, running_link

pytestmark = pytest.mark.mqtt


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _sign(name: str, cn: str, pki: Path, ext: str | None = None) -> None:
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=pki)
    extra = ["-extfile", ext] if ext else []
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra, cwd=pki)
    (pki / f"{name}.key").chmod(0o600)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=booth test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _sign("server", "127.0.0.1", d, "san.ext")
    _sign("client", "booth-sim-01", d)
    return d


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Broker]:
    options = [
        f"cafile {pki / 'ca.crt'}",
        f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}",
        "require_certificate true",
    ]
    with running_broker(tmp_path_factory.mktemp("tls-mosquitto"), listener_options=options) as b:
        yield b


async def test_the_booth_connects_over_tls_with_its_client_certificate(
    tmp_path: Path, tls_broker: Broker, pki: Path
) -> None:
    loaded = booth_config(
        tmp_path, tls_broker.port,
        tls_ca=str(pki / "ca.crt"),
        tls_cert=str(pki / "client.crt"),
        tls_key=str(pki / "client.key"),
    )
    async with running_link(loaded, FakeController()) as (link, _):
        assert link.connected.is_set() and link.connections == 1


async def test_without_its_client_certificate_the_booth_is_refused(
    tmp_path: Path, tls_broker: Broker, pki: Path
) -> None:
    loaded = booth_config(tmp_path, tls_broker.port, tls_ca=str(pki / "ca.crt"))
    refused = "did not return a certificate"
    before = tls_broker.log_text().count(refused)
    async with running_link(loaded, FakeController(), wait_connected=False) as (link, _):
        await wait_for(
            lambda: tls_broker.log_text().count(refused) > before,
            timeout_s=10, what="the broker refusing the TLS handshake",
        )
        assert not link.connected.is_set() and link.connections == 0


async def test_the_cli_reaches_a_tls_broker_with_the_booth_ca_and_its_own_certificate(
    tmp_path: Path, tls_broker: Broker, pki: Path
) -> None:
    """``boothctl send`` checks the broker against the booth config's CA and shows the
    operator's certificate (``--tls-cert``/``--tls-key``) when the broker requires one."""
    import asyncio
    import json
    import os
    import sys

    loaded = booth_config(
        tmp_path, tls_broker.port,
        tls_ca=str(pki / "ca.crt"),
        tls_cert=str(pki / "client.crt"),
        tls_key=str(pki / "client.key"),
    )
    _sign("operator", "operator", pki)
    boothctl = str(Path(sys.executable).with_name("boothctl"))

    async def send(*extra: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            boothctl, "send", "get_status", "--config", str(loaded.path), "--timeout", "5",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ},
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async with running_link(loaded, FakeController()):
        code, out, err = await send(
            "--tls-cert", str(pki / "operator.crt"), "--tls-key", str(pki / "operator.key")
        )
        assert code == 0, err
        assert json.loads(out)["ok"] is True
        # Without a certificate the broker refuses the operator: one line naming the broker.
        code, out, err = await send()
        assert code == 2 and f"127.0.0.1:{tls_broker.port}" in err, (code, out, err)
