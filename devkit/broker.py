"""A private Mosquitto for tests: free loopback port, generated config, optional users and ACL.

``Broker`` starts ``mosquitto -c <generated conf>`` and waits until it accepts connections;
``stop()`` ends it (SIGTERM, or SIGKILL with ``kill=True``) and waits for it; ``start()`` again
brings it back on the same port (a broker outage in the middle of a test).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from devkit._proc import stop_process
from devkit.config import free_port

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    for cand in MOSQUITTO_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("mosquitto is not installed (make test installs it with apt-get)")


def make_password_file(path: Path, users: Mapping[str, str]) -> None:
    """A Mosquitto password file (hashed) for ``users``, made with ``mosquitto_passwd``."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise RuntimeError("mosquitto_passwd not found (it comes with the mosquitto package)")
    path.write_text("", encoding="utf-8")
    path.chmod(0o600)
    for user, password in users.items():
        subprocess.run(
            [tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=10
        )


class Broker:
    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        persistent: bool = False,
        listener_options: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {self.host}",
            # Per-listener options (TLS files, ...) must follow their listener line.
            *listener_options,
            # Without it QoS 1 round trips take ~40-90 ms (Nagle + delayed ACK).
            "set_tcp_nodelay true",
            # Persistent: sessions and queued messages survive a stop (SIGTERM saves them).
            *(
                [
                    "persistence true",
                    f"persistence_location {workdir}/",
                ]
                if persistent
                else ["persistence false"]
            ),
            # The default (1000) drops QoS 1 messages for a subscriber that falls behind.
            "max_queued_messages 1000000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto would drop to its own user, which cannot reach a test's
            # private temp folder (persistence, password file). A private test broker only.
            lines.append("user root")
        if users is not None:
            pw = workdir / "passwd"
            make_password_file(pw, users)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_path = workdir / "acl"
            acl_path.write_text(acl, encoding="utf-8")
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self._proc.returncode}: {self.log_text()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} "
                    f"within {START_TIMEOUT_S} s: {self.log_text()[-2000:]}"
                )
            time.sleep(0.01)

    def stop(self, *, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, kill=kill, timeout_s=STOP_TIMEOUT_S)

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@contextmanager
def running_broker(
    workdir: Path,
    *,
    users: Mapping[str, str] | None = None,
    acl: str | None = None,
    persistent: bool = False,
    listener_options: Sequence[str] = (),
) -> Iterator[Broker]:
    """A started Broker (see Broker for the options), stopped on the way out."""
    broker = Broker(
        workdir, users=users, acl=acl, persistent=persistent, listener_options=listener_options
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
