"""The HMI server in process over real HTTP (aiohttp client), on a record store with a lot on
record: lot search, a lot's dips and its CSV; what a viewer may not do; not_ready. No browser."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from booth_ctl.commands import Authority, RecipeBook, recipe_check
from booth_ctl.config._booth import HmiConfig, load_config
from booth_ctl.links.hmi import Feed, Hmi, HmiServer
from booth_ctl.records._lot_search import search_lots
from booth_ctl.records._recorder import Records
from booth_ctl.records._store import RecordStore
from booth_ctl.records._users import UserStore
from tests._util import free_port, render_config

PASSWORD = "viewer-password"


def _lot(store: RecordStore, lot: str, units: int) -> None:
    store.record_event("job_started", {"lot_id": lot, "recipe": "demo", "units": units})
    for u in range(1, units + 1):
        store.record_event("unit_started", {"lot_id": lot, "unit": u})
        store.record_event(
            "dip",
            {"lot_id": lot, "unit": u, "vessel": "solder1", "o2_ppm": 100.0 + u,
             "solder_temp_c": 250.0, "depth_mm": 3.0, "dwell_s": 1.0,
             "entered_at": 1000.0 + u, "withdrawn_at": 1001.0 + u},
        )
        store.record_event("unit_completed", {"lot_id": lot, "unit": u})
    store.record_event("job_completed", {"lot_id": lot})


class _NoTarget:
    """The reads under test never reach the controller."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the controller was called: {name}")


@pytest.fixture
async def hmi(tmp_path: Path) -> AsyncIterator[tuple[str, HmiServer]]:
    path = tmp_path / "records.sqlite3"
    with UserStore(path) as users:
        users.add("vic", "viewer", PASSWORD)
    store = RecordStore(path)
    try:
        _lot(store, "LOT_A-1", 2)
        _lot(store, "LOT%B", 1)
        async with Records(store) as records:
            feed = Feed(records, trend_s=60.0, telemetry_period_s=1.0)
            ready = asyncio.Event()
            authority = Authority(
                _NoTarget(), records, RecipeBook(tmp_path / "recipes", store), lambda d: d,
                ready=ready,
            )
            cfg = HmiConfig(port=free_port())
            async with feed, HmiServer(
                cfg, records=records, users_path=path, authority=authority, feed=feed,
                csv_export=store.export_lot_csv,
            ) as server:
                server.ready = ready  # type: ignore[attr-defined]
                yield f"http://127.0.0.1:{server.port}", server
    finally:
        store.close()


async def _login(s: aiohttp.ClientSession, base: str) -> str:
    async with s.post(base + "/api/login", json={"username": "vic", "password": PASSWORD}) as r:
        assert r.status == 200
        return str((await r.json())["csrf"])


async def test_lots_search_view_and_csv(hmi: tuple[str, HmiServer]) -> None:
    base, server = hmi
    server.ready.set()  # type: ignore[attr-defined]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/api/lots?q=A") as r:
            assert r.status == 401  # no session
        await _login(s, base)
        async with s.get(base + "/api/lots?q=_a") as r:
            lots = (await r.json())["lots"]
        # "_" and "%" are matched as text, not as LIKE wildcards.
        assert [lot["lot_id"] for lot in lots] == ["LOT_A-1"]
        assert lots[0]["dips"] == 2 and lots[0]["outcome"] == "completed"
        async with s.get(base + "/api/lots/LOT_A-1") as r:
            job = (await r.json())["result"]
        assert [d["o2_ppm"] for d in job["dips"]] == [101.0, 102.0]
        async with s.get(base + "/api/lots/LOT_A-1/csv") as r:
            assert r.status == 200 and r.content_type == "text/csv"
            assert 'filename="lot-LOT_A-1.csv"' in r.headers["Content-Disposition"]
            rows = (await r.text()).strip().splitlines()
        assert rows[0].startswith("lot_id,") and len(rows) == 3
        async with s.get(base + "/api/lots/NOPE/csv") as r:
            assert r.status == 404


async def test_a_viewer_is_refused_and_before_the_first_status_nothing_runs(
    hmi: tuple[str, HmiServer],
) -> None:
    base, _ = hmi
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        csrf = await _login(s, base)
        hdr = {"X-CSRF-Token": csrf}
        async with s.post(base + "/api/cmd/reset", json={}, headers=hdr) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        async with s.get(base + "/api/lots/LOT_A-1") as r:
            assert (await r.json())["error"]["code"] == "not_ready"
        async with s.get(base + "/") as r:
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
        assert 'data-testid="login-username"' in page and "default-src 'self'" in csp
        assert "://" not in page  # every asset from the package, none from the internet


def test_search_lots_escapes_like_wildcards(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "r.sqlite3") as store:
        _lot(store, "X%1", 1)
        _lot(store, "XY1", 1)
    with UserStore(tmp_path / "r.sqlite3") as users, users.lock:
        assert [lot["lot_id"] for lot in search_lots(users.connection, "%")] == ["X%1"]
        assert len(search_lots(users.connection, "")) == 2


async def test_a_port_in_use_is_logged_and_the_supervisor_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = render_config(tmp_path, overrides=lambda d: d.__setitem__("hmi", {"port": port}))
        loaded = load_config(cfg)
        assert loaded.config.hmi is not None
        with RecordStore(loaded.resolve(loaded.config.records.path)) as store:
            async with Records(store) as records:
                book = RecipeBook(loaded.resolve(loaded.config.records.recipes_dir), store)
                authority = Authority(
                    _NoTarget(), records, book, recipe_check(loaded.config), ready=asyncio.Event()
                )
                hmi = Hmi(loaded, loaded.config.hmi, authority, records)
                async with asyncio.timeout(10):
                    await hmi.serve()  # returns instead of raising into the task group
    assert f"hmi 127.0.0.1:{port}: cannot listen" in caplog.text
