"""Bad input beyond the parsers' own limits: deep nesting, over-long integers, text that is not
UTF-8 or not Unicode, non-finite numbers. Each is refused with a clear error, never raised."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from booth_ctl.config._booth import load_config
from booth_ctl.config._recipe import RecipeError, load_recipe
from booth_ctl.control._controller import Controller
from devkit.broker import Broker
from drivers import ConfigError, load_register_map
from tests._util import CONFIG_DIR
from tests.booth_ctl._mes_helpers import Mes, booth_config, mes_client, running_link

from ._dispatch import DispatchRig, check_reply_shape, dispatch_rig

DEEP = 100_000  # far beyond the JSON and TOML parsers' recursion limits
HUGE_INT = "9" * 5000  # beyond Python's int-from-string digit limit (4300)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[DispatchRig]:
    async with dispatch_rig(tmp_path) as r:
        yield r


# ---------------------------------------------------------------------- MES commands


async def test_deeply_nested_payload_is_dropped_or_refused_not_raised(rig: DispatchRig) -> None:
    """``json.loads`` raises RecursionError, not ValueError, on deep nesting: the command authority
    drops such a payload (no request_id can be read from it) and changes nothing."""
    outcome = await rig.send("get_status", b"[" * DEEP)
    assert outcome.reply is None and outcome.unchanged
    payload = b'{"request_id": "deep-1", "junk": ' + b"[" * DEEP + b"}"
    outcome = await rig.send("get_status", payload)
    assert outcome.reply is None  # the request_id cannot be read from an unparsable payload
    assert outcome.unchanged


@pytest.mark.mqtt
async def test_a_deeply_nested_payload_does_not_stop_the_command_worker(
    tmp_path: Path, broker: Broker
) -> None:
    """A deeply nested payload must not end the link's command worker (its fallback reply
    parses the payload too): the next command is still answered."""
    loaded = booth_config(tmp_path, broker.port)
    async with (
        running_link(loaded, Controller(loaded)),
        mes_client(broker.port, loaded.config.booth_id) as mes,
    ):
        await mes.publish("get_status", b"[" * DEEP)
        reply = await mes.request("get_status")
        assert reply["ok"] is True


async def test_lone_surrogate_request_id_gets_one_bad_request_reply(rig: DispatchRig) -> None:
    """A request_id holding a lone surrogate (``"\\ud800"``, valid JSON) cannot be kept on
    record: it gets one ``bad_request`` reply, not an error from the record store."""
    outcome = await rig.send("get_status", b'{"request_id": "ab\\ud800"}')
    assert outcome.reply is not None
    check_reply_shape(outcome.reply, "get_status", "ab\ud800")
    assert outcome.reply["error"]["code"] == "bad_request"
    assert outcome.unchanged


@pytest.mark.mqtt
async def test_lone_surrogate_request_id_over_mqtt_is_not_busy(
    tmp_path: Path, broker: Broker
) -> None:
    """The same through the link: the reply must be ``bad_request``, not ``busy``."""
    loaded = booth_config(tmp_path, broker.port)
    async with (
        running_link(loaded, Controller(loaded)),
        mes_client(broker.port, loaded.config.booth_id) as client,
    ):
        mes: Mes = client
        await mes.publish("get_status", b'{"request_id": "cd\\ud800"}')
        reply = await mes.reply_to("cd\ud800")
        assert reply["error"]["code"] == "bad_request", reply


@pytest.mark.parametrize(
    "text", [f"o2_limit_ppm = {HUGE_INT}", "dips = " + "[" * DEEP], ids=["huge_int", "deep"]
)
async def test_put_recipe_toml_text_beyond_parser_limits_is_invalid_recipe(
    rig: DispatchRig, text: str
) -> None:
    """tomllib raises a plain ValueError for an integer of more than 4300 digits and
    RecursionError for deep nesting: both are ``invalid_recipe``, not ``busy``."""
    payload = json.dumps({"request_id": "toml-1", "name": "big", "recipe": text}).encode()
    outcome = await rig.send("put_recipe", payload)
    assert outcome.reply is not None
    assert outcome.reply["error"]["code"] == "invalid_recipe", outcome.reply


# ---------------------------------------------------------------------- files

BAD_FILES = {
    "binary": b"\xff\xfe\x00\x01 garbage \x80\x81",
    "huge_int": f'booth_id = "b1"\nx = {HUGE_INT}\n'.encode(),
    "deep": ("x = " + "[" * DEEP).encode(),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unreadable_config_file_is_a_config_error(tmp_path: Path, kind: str) -> None:
    """A file that is not UTF-8, an over-long integer and deep nesting are each a ConfigError
    that names the file."""
    path = tmp_path / f"{kind}.toml"
    path.write_bytes(BAD_FILES[kind])
    with pytest.raises(ConfigError, match=f"{kind}.toml"):
        load_config(path)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unreadable_recipe_file_is_a_recipe_error(tmp_path: Path, kind: str) -> None:
    """The same three files as recipes: a RecipeError each."""
    cfg = load_config(CONFIG_DIR / "booth-sim.toml").config
    path = tmp_path / f"{kind}.toml"
    path.write_bytes(BAD_FILES[kind])
    with pytest.raises(RecipeError):
        load_recipe(path, cfg)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("what", ["config", "recipe"])
def test_cli_check_of_an_unreadable_file_exits_1_without_traceback(
    tmp_path: Path, kind: str, what: str
) -> None:
    """``config check`` and ``recipe check`` print a line naming the file, exit 1, and show
    no traceback."""
    path = tmp_path / f"{kind}.toml"
    path.write_bytes(BAD_FILES[kind])
    args = [what, "check", str(path)]
    if what == "recipe":
        args += ["--config", str(CONFIG_DIR / "booth-sim.toml")]
    proc = subprocess.run(
        [sys.executable, "-m", "booth_ctl.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{kind}.toml" in proc.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", ["scale", "offset"])
def test_a_register_map_with_a_non_finite_scale_or_offset_is_refused(
    tmp_path: Path, field: str, value: str
) -> None:
    """``scale = nan`` is valid TOML; accepted, it would turn every reading of the point into
    NaN. The map is refused at load, naming the field."""
    path = tmp_path / "map.toml"
    path.write_text(f'name = "m"\n[points.pv]\ntable = "input"\naddress = 0\n{field} = {value}\n')
    with pytest.raises(ConfigError, match=f"points.pv.{field}"):
        load_register_map(path)
