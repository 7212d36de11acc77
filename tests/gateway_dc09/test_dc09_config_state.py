"""The sink's pure parts: configuration, addressing, receiver choice, clock
offset, sequence numbers. No sockets, time passed in."""

import datetime

import pytest

from callbox_gateway import dc09
from callbox_gateway.errors import ConfigError
from callbox_gateway.forward_dc09 import ClockOffset, Dc09Config, ReceiverSelector, SequenceCounter

from _dc09_receivers import event


def config(**extra):
    table = {"receivers": [{"host": "127.0.0.1", "port": 5000}, {"name": "backup", "host": "127.0.0.1", "port": 5001}]}
    table.update(extra)
    return Dc09Config.from_dict(table)


def test_defaults():
    cfg = config()
    assert cfg.token == "SIA-DCS" and cfg.account_mode == "box"
    assert [r.name for r in cfg.receivers] == ["primary", "backup"]
    assert cfg.receivers[0].receiver == "0" and cfg.receivers[0].line == "0" and cfg.receivers[0].key is None


def test_key_needs_an_explicit_format(tmp_path):
    with pytest.raises(ConfigError, match="key_format is required"):
        Dc09Config.from_dict({"receivers": [{"host": "h", "port": 1, "key": "0123456789ABCDEF"}]})
    key_file = tmp_path / "arc.key"
    key_file.write_text("000102030405060708090A0B0C0D0E0F\n")
    cfg = Dc09Config.from_dict({"receivers": [{"host": "h", "port": 1, "key_file": "arc.key", "key_format": "hex"}]}, tmp_path)
    assert cfg.receivers[0].key.bits == 128
    assert "0001020304" not in repr(cfg.receivers[0])


@pytest.mark.parametrize(
    "table, words",
    [
        ({"receivers": []}, "at least one receiver"),
        ({"receivers": [{"host": "h"}]}, "host and port"),
        ({"receivers": [{"host": "h", "port": 70000}]}, "port must be"),
        ({"receivers": [{"host": "h", "port": 1, "receiver": "XYZ"}]}, "receiver must be 1-6 hex"),
        ({"receivers": [{"host": "h", "port": 1, "colour": "red"}]}, "unknown setting"),
        ({"receivers": [{"host": "h", "port": 1}, {"host": "h", "port": 2, "name": "primary"}]}, "unique"),
        ({"receivers": [{"host": "h", "port": 1}], "format": "SIA-DC03"}, "SIA-DCS' or 'ADM-CID"),
        ({"receivers": [{"host": "h", "port": 1}], "account_mode": "street"}, "account_mode"),
        ({"receivers": [{"host": "h", "port": 1}], "ack_timeout_s": 0}, "ack_timeout_s"),
        ({"receivers": [{"host": "h", "port": 1}], "junction_accounts": {"X": "GG"}}, "junction_accounts"),
        ({"receivers": [{"host": "h", "port": 1}], "box_zones": {"4": 1000}}, "box_zones"),
        ({"receivers": [{"host": "h", "port": 1}], "box_accounts": {"box4": "0004"}}, "keys are box ids"),
        ({"receivers": [{"host": "h", "port": 1}], "ack_timeout": 3}, "unknown setting"),
        ({"receivers": [{"host": "h", "port": 1, "key_file": "/nonexistent/k", "key_format": "hex"}]}, "cannot read key_file"),
    ],
)
def test_config_errors_name_the_setting(table, words):
    with pytest.raises(ConfigError, match=words):
        Dc09Config.from_dict(table)


def test_per_box_addressing():
    cfg = config(box_accounts={"7": "A007"})
    assert cfg.address(event("panic", box_id=42)) == ("0042", 1, 2)
    assert cfg.address(event("emergency", box_id=42)) == ("0042", 1, 1)
    assert cfg.address(event("tamper", box_id=42)) == ("0042", 1, 0)
    assert cfg.address(event("panic", box_id=7)) == ("A007", 1, 2)
    assert cfg.address(event("panic", box_id=123456)) == ("123456", 1, 2)


def test_per_junction_addressing():
    cfg = config(account_mode="junction", junction_accounts={"Ghantaghar Square": "1001"}, box_zones={"4242": 12})
    assert cfg.address(event("panic", box_id=42)) == ("1001", 1, 42)
    assert cfg.address(event("panic", box_id=4242)) == ("1001", 1, 12)
    with pytest.raises(dc09.Dc09FormatError, match="junction_accounts"):
        cfg.address(event("panic", junction="Rocket Tiraha"))
    with pytest.raises(dc09.Dc09FormatError, match="box 5000.*box_zones"):
        cfg.address(event("panic", box_id=5000))


def test_sequence_counter_wraps():
    counter = SequenceCounter(9998)
    assert [counter.take() for _ in range(4)] == [9998, 9999, 1, 2]


def test_clock_offset_from_nak():
    clock = ClockOffset()
    now = datetime.datetime(2026, 11, 28, 19, 20, 0, tzinfo=datetime.timezone.utc)
    assert clock.stamp(now) == now
    assert clock.resync(now + datetime.timedelta(seconds=300), now)
    assert clock.stamp(now) == now + datetime.timedelta(seconds=300)
    # A receiver whose clock is days off is not followed.
    assert not clock.resync(now + datetime.timedelta(days=3), now)
    assert clock.offset_s == 300


def test_selector_failover_and_failback():
    sel = ReceiverSelector(3, primary_retry_s=60)
    assert sel.order(0) == [0, 1, 2]
    sel.failed(0, 10)
    assert sel.succeeded(1, 10) == "failover"
    assert sel.active == 1 and sel.failovers == 1
    assert sel.order(20) == [1, 0, 2]  # primary not due yet: backup first, primary still tried
    assert sel.primary_due_in(20) == 50
    assert sel.order(70) == [0, 1, 2]  # due: primary first again
    sel.failed(0, 70)
    assert sel.order(71) == [1, 0, 2]  # failed again: wait another 60 s
    assert sel.succeeded(0, 140) == "failback"
    assert sel.active == 0 and sel.failbacks == 1 and sel.order(141) == [0, 1, 2]


def test_selector_backup_to_second_backup():
    sel = ReceiverSelector(3, primary_retry_s=60)
    sel.failed(0, 0)
    sel.succeeded(2, 0)
    assert sel.order(1) == [2, 0, 1]
    assert sel.order(61) == [0, 2, 1]


def test_docs_example_loads_through_the_gateway_config(repo_root, tmp_path):
    # The [[sinks]] example in docs/dc09.md is valid TOML, passes the
    # gateway's config loader, and builds a Dc09Config as app.py does.
    import re
    import tomllib

    from callbox_gateway import config as gateway_config

    text = (repo_root / "docs" / "dc09.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    key_file = tmp_path / "arc1.key"
    key_file.write_text("000102030405060708090A0B0C0D0E0F")
    block = block.replace("/etc/callbox/arc1.key", str(key_file))
    cfg = gateway_config.from_dict(tomllib.loads(block))
    table = dict(cfg.sinks[0])
    assert table.pop("type") == "dc09" and table.pop("name") == "arc"
    dc = Dc09Config.from_dict(table)
    assert [r.name for r in dc.receivers] == ["primary", "backup"]
    assert dc.receivers[0].key.bits == 128 and dc.receivers[1].key is None
    assert dc.junction_accounts == {"Ghantaghar Square": "1001"} and dc.box_zones == {4242: 12}


# ---- sequence numbers across a gateway restart (SequenceCounter with a path)


def test_sequence_numbers_go_on_across_a_restart_and_are_never_reused(tmp_path):
    path = tmp_path / "state" / "seq-primary"
    first = SequenceCounter(path=path)
    taken = [first.take() for _ in range(3)]
    assert taken == [1, 2, 3]
    # Killed now (nothing more written): the restart continues after the
    # reserved block, so 1..100 are never handed out again.
    second = SequenceCounter(path=path)
    after = [second.take() for _ in range(3)]
    assert after == [101, 102, 103]
    assert not set(after) & set(taken)


def test_the_file_is_written_once_per_block_not_per_frame(tmp_path):
    path = tmp_path / "seq-primary"
    counter = SequenceCounter(path=path)
    assert path.read_text() == "0101\n"
    for _ in range(SequenceCounter.BLOCK - 1):
        counter.take()
    assert path.read_text() == "0101\n"  # 99 frames, no write
    counter.take()  # the 100th: the next block is reserved
    assert path.read_text() == "0201\n"


def test_a_restart_near_the_end_of_the_range_wraps(tmp_path):
    path = tmp_path / "seq-primary"
    path.write_text("9950\n")
    counter = SequenceCounter(path=path)
    assert path.read_text() == "0051\n"  # 9950..9999 and 1..50 reserved
    assert [counter.take() for _ in range(53)][-4:] == [9999, 1, 2, 3]


@pytest.mark.parametrize("content", ["", "x12", "0", "10000", "-5"])
def test_a_damaged_file_is_reported_and_numbering_goes_on(tmp_path, caplog, content):
    path = tmp_path / "seq-primary"
    path.write_text(content)
    with caplog.at_level("WARNING"):
        counter = SequenceCounter(path=path)
    assert counter.take() == 1
    assert "not a sequence number" in caplog.text
    assert path.read_text() == "0101\n"  # and it is good again


def test_an_unwritable_place_costs_the_persistence_not_the_delivery(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level("WARNING"):
        counter = SequenceCounter(path=blocker / "seq-primary")  # a directory that cannot exist
        assert [counter.take() for _ in range(250)][-1] == 250
    assert caplog.text.count("cannot store the sequence number") == 1  # logged once, not per block
