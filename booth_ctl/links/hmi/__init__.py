"""The operator's HMI in the browser (CONTRACT section 7): an aiohttp server in the supervisor.

:class:`Hmi` is what the daemon runs: its ``feed`` joins the runtime's status sinks and its
``serve()`` runs in the supervisor's task group. A port that cannot be opened is logged, and the
booth runs on without its page (like the metrics endpoint).
"""

from __future__ import annotations

import asyncio
import logging

from booth_ctl.commands import Authority, Role, Source
from booth_ctl.config._booth import HmiConfig, LoadedConfig
from booth_ctl.links.hmi._feed import FanOut, Feed
from booth_ctl.links.hmi._server import HmiServer
from booth_ctl.records import Records

__all__ = ["Authority", "FanOut", "Feed", "Hmi", "HmiServer", "Role", "Source"]

log = logging.getLogger("booth_ctl.hmi")


class Hmi:
    def __init__(
        self, loaded: LoadedConfig, cfg: HmiConfig, authority: Authority, records: Records
    ) -> None:
        booth = loaded.config
        self.loaded = loaded
        self.cfg = cfg
        self.records = records
        self.feed = Feed(
            records,
            trend_s=cfg.trend_minutes * 60.0,
            telemetry_period_s=booth.telemetry.period_s,
        )
        #: The one command authority, shared with every other link.
        self.authority = authority

        self.feed.on_mode_change = self._mode_changed
        self.server: HmiServer | None = None
        self.listening = asyncio.Event()

    def _mode_changed(self, mode: str) -> None:
        # The feed reads the mode from the records (boothctl mode may change it there): the
        # authority's buttons follow at once, without waiting for its next command.
        if mode == "remote":
            self.authority.mode = "remote"
        elif mode == "local":
            self.authority.mode = "local"

    async def serve(self) -> None:
        """Serve the page until cancelled (a task of the supervisor)."""
        cfg = self.cfg
        tls = None
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            tls = (self.loaded.resolve(cfg.tls_cert), self.loaded.resolve(cfg.tls_key))
        try:
            async with self.feed, HmiServer(
                cfg,
                records=self.records,
                users_path=self.loaded.resolve(self.loaded.config.records.path),
                authority=self.authority,
                feed=self.feed,
                csv_export=self.records.store.export_lot_csv,
                tls=tls,
            ) as server:
                self._mode_changed(self.feed.mode)
                self.server = server
                self.listening.set()
                await asyncio.Future()
        except OSError as exc:
            # The page is for people; the booth runs without it.
            log.error("hmi %s:%d: cannot listen: %s", cfg.host, cfg.port, exc)
        except Exception:
            # Nor does a fault of the page end the supervisor's tasks (the scan among them).
            log.exception("hmi: the operator's page stopped; the booth runs on without it")
