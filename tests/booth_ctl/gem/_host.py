"""An independent SECS/GEM host for the GEM link's tests: secsgem's host handler (its own HSMS
and SECS-II code, on its own threads), with what it receives kept for the test to read."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import secsgem.common
import secsgem.gem
import secsgem.hsms
from secsgem.secs.functions.base import SecsStreamFunction

from tests._util import wait_until

#: Every wait on the host has this deadline unless a test says otherwise.
WAIT_S = 15.0


class S2F31(SecsStreamFunction):
    """Date and time set request (secsgem 0.3.0 lacks it)."""

    _stream, _function = 2, 31
    _data_format = "< TIME >"
    _to_host, _to_equipment = False, True
    _has_reply, _is_reply_required, _is_multi_block = True, True, False


class S2F32(SecsStreamFunction):
    """Date and time set acknowledge: TIACK, one byte (B[1] like TIAACK)."""

    _stream, _function = 2, 32
    _data_format = "< TIAACK >"
    _to_host, _to_equipment = True, False
    _has_reply, _is_reply_required, _is_multi_block = False, False, False


class Host(secsgem.gem.GemHostHandler):
    """``with Host(port) as h``: connected, selected and communicating, or an error."""

    def __init__(self, port: int, *, device_id: int = 0, communicate: bool = True) -> None:
        settings = secsgem.hsms.HsmsSettings(
            address="127.0.0.1",
            port=port,
            connect_mode=secsgem.hsms.HsmsConnectMode.ACTIVE,
            device_type=secsgem.common.DeviceType.HOST,
            session_id=device_id,
        )
        settings.streams_functions.update(S2F31)
        settings.streams_functions.update(S2F32)
        super().__init__(settings)
        self._communicate = communicate
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.alarms: list[dict[str, Any]] = []
        self.terminal: list[tuple[int, str]] = []
        #: ACKC6 this host answers S6F11 with (0 accepted).
        self.event_ack = 0

    def __enter__(self) -> Host:
        self.enable()
        if self._communicate and not self.waitfor_communicating(WAIT_S):
            self.disable()
            raise AssertionError(f"no GEM communication with the equipment within {WAIT_S} s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.disable()

    # ------------------------------------------------------------------ what arrives

    def _on_s06f11(self, handler: Any, message: Any) -> Any:
        f = self.settings.streams_functions.decode(message)
        reports = [
            {"rptid": r.RPTID.get(), "values": r.V.get()} for r in f.RPT
        ]
        with self._lock:
            self.received.append({"dataid": f.DATAID.get(), "ceid": f.CEID.get(),
                                "reports": reports, "at": time.monotonic()})
        return self.stream_function(6, 12)(self.event_ack)

    def _on_s05f01(self, handler: Any, message: Any) -> Any:
        f = self.settings.streams_functions.decode(message)
        with self._lock:
            self.alarms.append({"alcd": f.ALCD.get(), "alid": f.ALID.get(),
                                "text": f.ALTX.get(), "at": time.monotonic()})
        return self.stream_function(5, 2)(0)

    # ------------------------------------------------------------------ asking

    def ask(self, stream: int, function: int, data: Any = None) -> Any:
        """Send a primary message and return its decoded reply (secsgem's data items)."""
        sf = self.stream_function(stream, function)
        msg = sf() if data is None else sf(data)
        # W-bit always: some primaries (S5F3, S10F3) have an optional reply secsgem omits.
        dict.__setattr__(msg, "is_reply_required", True)
        reply = self.send_and_waitfor_response(msg)
        if reply is None:
            raise AssertionError(f"no reply to S{stream}F{function}")
        return self.settings.streams_functions.decode(reply)

    def wait(self, check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
        # No lock here: check() may ask the equipment, whose events arrive meanwhile.
        return wait_until(check, timeout_s, what)
