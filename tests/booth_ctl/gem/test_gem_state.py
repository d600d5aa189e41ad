"""What a host configures (reports, links, enables, constants, spooling): the acknowledge codes
of SEMI E30, all-or-nothing changes and the round trip through the persisted settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from booth_ctl.links.gem._gem_state import GemState
from booth_ctl.links.gem._gem_vars import ECS, SVS, sv_values, value_item
from booth_ctl.links.gem._secs2 import Fmt, encode
from booth_ctl.records import _gem_store
from booth_ctl.records._store import RecordStore


def test_report_definition_codes() -> None:
    st = GemState()
    assert st.define_reports([(1, [1001, 1])]) == 0
    assert st.define_reports([(1, [1002])]) == 3  # already defined
    assert st.define_reports([(2, [1002]), (2, [1003])]) == 3  # twice in one message
    assert st.define_reports([(2, [4242])]) == 4  # no such VID
    assert st.define_reports([(2, list(range(1001, 1027)) * 10)]) == 1  # too many VIDs
    assert 2 not in st.reports  # all or nothing
    assert st.link_reports([(1, [1])]) == 0
    assert st.define_reports([(1, [])]) == 0  # deleting a report unlinks it
    assert st.reports == {} and st.links == {}
    assert st.define_reports([(1, [1001])]) == 0
    assert st.define_reports([]) == 0
    assert st.reports == {}


def test_link_and_enable_codes() -> None:
    st = GemState()
    st.define_reports([(5, [1001])])
    assert st.link_reports([(999, [5])]) == 4
    assert st.link_reports([(1, [6])]) == 5
    assert st.link_reports([(1, [5]), (1, [5])]) == 3
    assert st.link_reports([(1, [5])]) == 0
    assert st.link_reports([(1, [5])]) == 3
    assert st.link_reports([(1, [])]) == 0 and 1 not in st.links
    assert st.enable_events(False, [1, 2]) == 0 and st.disabled_ceids == {1, 2}
    assert st.enable_events(True, [999]) == 1 and st.disabled_ceids == {1, 2}
    assert st.enable_events(True, []) == 0 and not st.disabled_ceids
    assert st.enable_alarm(False, None) == 0 and 20 in st.disabled_alids
    assert st.enable_alarm(True, 20) == 0 and 20 not in st.disabled_alids
    assert st.enable_alarm(True, 4242) == 1


def test_constants_are_all_or_nothing() -> None:
    st = GemState()
    assert st.set_ecs([(2001, 30), (2002, 7)]) == 3
    assert st.ecs[2001] == 10
    assert st.set_ecs([(2001, 30), (4242, 1)]) == 1
    assert st.set_ecs([(2001, True)]) == 3
    assert st.set_ecs([(2001, 30), (2002, 2)]) == 0
    assert (st.ecs[2001], st.ecs[2002]) == (30, 2)


def test_spool_streams() -> None:
    st = GemState()
    assert st.spooled(6, 11) and st.spooled(5, 1)
    assert st.set_spool([(1, [])]) == (1, [(1, 1, [])])
    assert st.set_spool([(7, [])]) == (1, [(7, 2, [])])
    assert st.set_spool([(6, [12])]) == (1, [(6, 4, [12])])
    assert st.set_spool([(6, [13])]) == (1, [(6, 3, [13])])
    assert st.spooled(6, 11)  # a refused S2F43 changes nothing
    assert st.set_spool([(6, [])]) == (0, [])
    assert st.spooled(6, 11) and not st.spooled(5, 1)
    assert st.set_spool([]) == (0, [])
    assert not st.spooled(6, 11)


def test_settings_survive_the_store(tmp_path: Path) -> None:
    st = GemState()
    st.define_reports([(3, [1001, 2])])
    st.link_reports([(4, [3])])
    st.enable_events(False, [7])
    st.enable_alarm(False, 26)
    st.set_ecs([(2003, 1)])
    st.set_spool([(6, [11])])
    st.online = False
    st.clock_offset_s = 12.5
    with RecordStore(tmp_path / "r.sqlite") as store:
        _gem_store.put_gem_settings(store, st.settings())
    with RecordStore(tmp_path / "r.sqlite") as store:
        again = GemState.from_settings(_gem_store.gem_settings(store))
    assert again == st


def test_the_link_cursor_never_moves_back_unless_purged(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "r.sqlite") as store:
        assert _gem_store.link_cursor(store, "gem") is None
        _gem_store.set_link_cursor(store, "gem", 5)
        _gem_store.set_link_cursor(store, "gem", 3)
        assert _gem_store.link_cursor(store, "gem") == 5
        _gem_store.reset_link_cursor(store, "gem", 2)
        assert _gem_store.link_cursor(store, "gem") == 2
        assert _gem_store.link_cursor(store, "hmi") is None


def test_status_variables_in_the_contracts_formats() -> None:
    status = {"state": "execute", "job": {"lot_id": "LOT-é", "units_done": 3}}
    values = sv_values(status, {"solder_temp_c": 250.1, "o2_ppm": None}, mode="remote",
                       control_state="online_remote", clock="x", seq=9)
    items = [value_item(v, values[v.id]) for v in SVS]
    assert [i.fmt for i in items[:6]] == [Fmt.A, Fmt.A, Fmt.F8, Fmt.F8, Fmt.A, Fmt.U4]
    assert items[2].value == (250.1,) and items[3].value == ()  # no reading: zero-length
    assert items[4].value == "LOT-?"  # A is ASCII: never a refused message
    assert items[6].value == (5,)
    for i in items:
        encode(i)


@pytest.mark.parametrize("ec", ECS)
def test_constant_defaults_are_in_range(ec: object) -> None:
    from booth_ctl.links.gem._gem_vars import Ec

    assert isinstance(ec, Ec) and ec.min <= ec.default <= ec.max


def test_the_gem_table_is_checked_at_load() -> None:
    import tomllib

    from booth_ctl.config._booth import config_from_dict
    from drivers import ConfigError
    from tests._util import CONFIG_DIR

    path = CONFIG_DIR / "booth-sim.toml"
    data = tomllib.loads(path.read_text())
    assert config_from_dict(data, path).config.gem is None
    data["gem"] = {"port": 5000}
    gem = config_from_dict(data, path).config.gem
    assert gem is not None and (gem.host, gem.device_id, gem.t3_s) == ("127.0.0.1", 0, 45.0)
    for bad, why in [
        ({"port": 5000, "session": 1}, r"gem\.session: Extra inputs"),
        ({"port": 0}, r"gem\.port: .*1"),
        ({"port": 5000, "device_id": 40000}, r"gem\.device_id: .*32767"),
        ({"host": "127.0.0.1"}, r"gem\.port: Field required"),
    ]:
        data["gem"] = bad
        with pytest.raises(ConfigError, match=why):
            config_from_dict(data, path)
