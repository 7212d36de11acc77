"""`callbox provision` and `callbox replace` against a new board (a virtual
box, real mpremote transport) and a real `callbox gateway`: the refusals
(gateway down, wrong token, wrong board, bad settings, a box id that belongs
to another box) leave box and gateway unchanged; a provision stopped on the
laptop resumes with the same key. The happy paths, with the box then
reaching the gateway, run in test_bench_procedure.py; power cuts of the box
in test_power_cuts.py."""

import json

import pytest

from callbox_rig.bus import Rs485Bus
from callbox_tools.board import Board
from callbox_tools.deploying import BOARDS_DIR, Bundle, deploy
from callbox_tools.errors import EXIT_GATEWAY_UNREACHABLE, EXIT_USAGE, EXIT_WRONG_BOARD, CommandError
from callbox_tools.provisioning import EVENT_BLOCK, build_config, label, new_key_hex, provision, replacement_event_start

from conftest import Junction, free_port, run_cli


def args(box_id, addr):
    return ["--box-id", str(box_id), "--junction", "Ghantaghar Square", "--board", "devkit_rs485", "--bus-addr", str(addr),
            "--lat", "26.4553", "--lon", "80.3498"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One real gateway for this module (each test uses its own box id and
    bus address): starting one per test would double the module's time."""
    bus = Rs485Bus().start()
    j = Junction(tmp_path_factory.mktemp("gateway"), bus.url).start()
    try:
        yield j
    finally:
        j.stop()
        bus.stop()


@pytest.fixture
def deployed(board):
    """The board with the board definitions on it (what deploy puts there)."""
    files = {"boards/%s" % p.name: p.read_bytes() for p in BOARDS_DIR.glob("*.json")}
    with Board.connect(board.port) as b:
        deploy(b, Bundle(files), report=lambda l: None)
    return board


def box_config_on(board):
    p = board.flash / "config.json"
    return json.loads(p.read_text()) if p.exists() else None


def test_keys_are_fresh_per_box():
    keys = {new_key_hex() for _ in range(50)}
    assert len(keys) == 50 and all(len(k) == 64 for k in keys)


def test_gateway_unreachable_leaves_box_unchanged(deployed):
    port = free_port()  # nothing listens there
    env = {"CALLBOX_GATEWAY_URL": "http://127.0.0.1:%d" % port, "CALLBOX_GATEWAY_TOKEN": "x" * 64}
    r = run_cli("provision", "--port", deployed.port, *args(41, 1), env=env)
    assert r.returncode == EXIT_GATEWAY_UNREACHABLE, r.stderr
    assert "gateway unreachable" in r.stderr and "the box was not changed" in r.stderr
    assert box_config_on(deployed) is None


def test_wrong_token_is_refused_with_a_hint(deployed, gateway):
    env = dict(gateway.env, CALLBOX_GATEWAY_TOKEN="wrong")
    r = run_cli("provision", "--port", deployed.port, *args(43, 4), env=env)
    assert r.returncode == 1 and "admin token" in r.stderr and "data_dir/admin.token" in r.stderr
    assert box_config_on(deployed) is None and 43 not in gateway.boxes()


def test_wrong_board_and_bad_settings(deployed, gateway):
    r = run_cli("provision", "--port", deployed.port, *args(44, 5)[:-6], "--board", "no_such_board", env=gateway.env)
    assert r.returncode == EXIT_WRONG_BOARD and "known boards" in r.stderr
    # devkit_rs485 has no modem: an LTE link is the wrong board.
    r = run_cli("provision", "--port", deployed.port, *args(44, 5), "--link", "lte", env=gateway.env)
    assert r.returncode == EXIT_WRONG_BOARD and "modem" in r.stderr
    r = run_cli("provision", "--port", deployed.port, *args(44, 300), env=gateway.env)
    assert r.returncode == EXIT_USAGE and "bus_addr" in r.stderr
    assert box_config_on(deployed) is None and 44 not in gateway.boxes()


def test_board_files_not_deployed_is_the_wrong_board(board, gateway):
    r = run_cli("provision", "--port", board.port, *args(45, 6), env=gateway.env)
    assert r.returncode == EXIT_WRONG_BOARD and "callbox deploy" in r.stderr
    assert box_config_on(board) is None and 45 not in gateway.boxes()


def test_a_bus_address_taken_by_another_box_is_refused_by_the_gateway(deployed, gateway):
    gateway.admin().add({"box_id": 46, "key": new_key_hex(), "junction": "Bagiya Crossing", "link": "rs485", "bus_addr": 7})
    r = run_cli("provision", "--port", deployed.port, *args(47, 7), env=gateway.env)
    assert r.returncode == 1 and "box 47: the gateway refused" in r.stderr and "bus address 7 is already box 46" in r.stderr
    # Staged on the box, never switched in: the box keeps no config.
    assert box_config_on(deployed) is None and 47 not in gateway.boxes()


class Interrupt(KeyboardInterrupt):
    pass


def _raise():
    raise Interrupt()


@pytest.mark.parametrize("where", ["after_stage", "after_register"])
def test_provision_stopped_on_the_laptop_leaves_box_as_it_was_and_resumes(deployed, gateway, where):
    box_id = 48 if where == "after_stage" else 49
    admin = gateway.admin()
    old = build_config(box_id, new_key_hex(), "Ghantaghar Square", "devkit_rs485", "rs485", box_id)
    with Board.connect(deployed.port) as b:
        provision(b, old, admin, report=lambda l: None)
    assert box_config_on(deployed) == old and gateway.registered_key(box_id) == old["key"]

    new = build_config(box_id, new_key_hex(), "Ghantaghar Square", "devkit_rs485", "rs485", box_id + 100)
    with Board.connect(deployed.port) as b:
        with pytest.raises(Interrupt):
            provision(b, new, admin, report=lambda l: None, hooks={where: _raise})
    # The box still has its old, complete config.
    assert box_config_on(deployed) == old
    assert gateway.registered_key(box_id) == (old["key"] if where == "after_stage" else new["key"])
    # The same command again (with the fresh key the CLI makes) resumes the
    # staged config, so the key the gateway has is the box's key.
    r = run_cli("provision", "--port", deployed.port, *args(box_id, box_id + 100), "--no-reset", env=gateway.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming an interrupted provision of box %d (same key)" % box_id in r.stdout
    cfg = box_config_on(deployed)
    assert cfg["bus_addr"] == box_id + 100 and cfg["key"] == new["key"] == gateway.registered_key(box_id)
    assert not list(deployed.flash.rglob("*.new"))


def test_a_staged_config_torn_by_a_power_cut_is_dropped(deployed, gateway):
    # Power failed while config.json.new was being written: half a JSON
    # document on flash. It is not resumed (no key can be trusted from it);
    # the next provision drops it and starts afresh.
    (deployed.flash / "config.json.new").write_text('{"box_id": 53, "key": "ab')
    r = run_cli("provision", "--port", deployed.port, *args(53, 53), "--no-reset", env=gateway.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming" not in r.stdout
    cfg = box_config_on(deployed)
    assert cfg["box_id"] == 53 and cfg["key"] == gateway.registered_key(53)
    assert not list(deployed.flash.rglob("*.new"))


def test_a_box_id_live_on_another_box_is_not_taken_silently(deployed, gateway):
    key = new_key_hex()
    gateway.admin().add({"box_id": 50, "key": key, "junction": "Ghantaghar Square", "link": "rs485", "bus_addr": 50, "event_start": 1})
    r = run_cli("provision", "--port", deployed.port, *args(50, 51), env=gateway.env)
    assert r.returncode == 1 and "callbox replace 50" in r.stderr
    assert gateway.registered_key(50) == key and box_config_on(deployed) is None


def test_replace_of_an_unknown_box(deployed, gateway):
    r = run_cli("replace", "99", deployed.port, "--board", "devkit_rs485", env=gateway.env)
    assert r.returncode == 1 and "not registered" in r.stderr
    assert box_config_on(deployed) is None


def test_no_token_is_a_usage_error(deployed, gateway):
    r = run_cli("provision", "--port", deployed.port, *args(52, 52), env={"CALLBOX_GATEWAY_URL": gateway.url})
    assert r.returncode == EXIT_USAGE and "--gateway-token-file" in r.stderr
    r = run_cli("provision", "--port", deployed.port, *args(52, 52), "--no-reset", "--gateway-url", gateway.url, "--gateway-token-file", gateway.token_file)
    assert r.returncode == 0, r.stderr
    assert box_config_on(deployed)["key"] == gateway.registered_key(52)


def test_replacement_event_start():
    # Above the old box's block, or above the last event the gateway stored
    # if the old box numbered past its block (a box that was itself re-keyed
    # without replace).
    assert replacement_event_start({"box_id": 1, "event_start": 1, "last_event": None}) == 1 + EVENT_BLOCK
    assert replacement_event_start({"box_id": 1, "event_start": 1, "last_event": 17}) == 1 + EVENT_BLOCK
    assert replacement_event_start({"box_id": 1, "event_start": 1, "last_event": 3_000_000}) == 3_000_001
    assert replacement_event_start({"box_id": 1, "event_start": 0}) == EVENT_BLOCK  # an old gateway: no last_event
    with pytest.raises(CommandError):
        replacement_event_start({"box_id": 1, "event_start": 0xFFFFFFF0 - 10})


def test_label_has_no_secret():
    cfg = build_config(7, new_key_hex(), "IIT Gate Tiraha", "esp32_sim7600", "lte", None, "gw.example", 9000)
    text = label(cfg)
    assert "box 7" in text and "IIT Gate Tiraha" in text and cfg["key"] not in text
    with pytest.raises(CommandError) as e:
        build_config(7, new_key_hex(), "x", "devkit_rs485", "rs485", None)
    assert e.value.exit_code == EXIT_USAGE and "--bus-addr" in str(e.value)
