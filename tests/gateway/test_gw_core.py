"""The pure cores on a real SQLite store: ingest (verify, replay, dedupe,
ACK decision, commit), supervision, forwarding policy, config, registry."""

import pytest

from callbox_firmware import wire
from callbox_gateway import config as gwconfig
from callbox_gateway.clock import FakeClock
from callbox_gateway.errors import ConfigError, DeliveryError, RegistryError, StorageError, StorageFullError
from callbox_gateway.forward import ForwardPolicy
from callbox_gateway.ingest import Ingest
from callbox_gateway.observe import Metrics
from callbox_gateway.registry import Registry
from callbox_gateway.sim import SimBox
from callbox_gateway.store import Store
from callbox_gateway.supervision import Supervisor

from gw_helpers import box_rec


def make(tmp_path, boxes, sinks=("console",), sup=None):
    store = Store(tmp_path / "g.db")
    reg = Registry(store)
    for b in boxes:
        reg.add(box_rec(b))
    sup = sup or Supervisor(heartbeat_interval_s=60, missed_heartbeats=3)
    return store, reg, sup, Ingest(reg, store, sup, sinks, Metrics())


def piece(frame):
    return frame[1:-1]


def test_alarm_stored_then_duplicate_acked_as_duplicate(tmp_path):
    box = SimBox(42)
    store, reg, sup, ing = make(tmp_path, [box])
    f = box.alarm("panic")
    out = ing.process(piece(f), "lte", 0.0, 1_790_000_000.0)
    assert out.status == "stored" and out.ack["status"] == "stored" and out.ack["event"] == 1
    assert store.event_count() == 0  # not on disk before the commit: no ACK may go yet
    ing.commit()
    assert [e["event_id"] for e in store.events()] == ["0000002a-00000001"]
    assert store.pending("console", 10)[0]["event_id"] == "0000002a-00000001"
    # The box did not get the ACK and resends the same event with a new counter.
    again = box.alarm("panic", event=1)
    out = ing.process(piece(again), "lte", 1.0, 1_790_000_001.0)
    assert out.status == "duplicate" and out.ack["status"] == "duplicate"
    ing.commit()
    assert store.event_count() == 1 and len(store.pending("console", 10)) == 1


def test_replay_wrong_key_unknown_box_rejected_and_counted(tmp_path):
    box = SimBox(7)
    store, reg, sup, ing = make(tmp_path, [box])
    f = box.alarm()
    ing.process(piece(f), "lte", 0, 0)
    ing.commit()
    with pytest.raises(wire.WireError) as e:
        ing.process(piece(f), "lte", 0, 0)  # the same bytes again
    assert e.value.reason == wire.E_REPLAY
    forged = SimBox(7, key=bytes(32), counter=100).alarm()
    with pytest.raises(wire.WireError) as e:
        ing.process(piece(forged), "lte", 0, 0)
    assert e.value.reason == wire.E_AUTH
    with pytest.raises(wire.WireError) as e:
        ing.process(piece(SimBox(999).alarm()), "lte", 0, 0)
    assert e.value.reason == wire.E_UNKNOWN_BOX
    m = ing.metrics
    assert m.get("frames_rejected", reason="replay", link="lte") == 1
    assert m.get("frames_rejected", reason="auth", link="lte") == 1
    assert m.get("frames_rejected", reason="unknown_box", link="lte") == 1
    # A forged frame did not move the window: the real box's next frame passes.
    assert ing.process(piece(box.heartbeat()), "lte", 0, 0).ack["acked_type"] == "HEARTBEAT"


def test_replay_window_survives_restart(tmp_path):
    box = SimBox(5)
    store, reg, sup, ing = make(tmp_path, [box])
    old = [box.heartbeat() for _ in range(3)]
    for f in old:
        ing.process(piece(f), "lte", 0, 0)
    ing.commit()
    store.close()
    store2 = Store(tmp_path / "g.db")
    ing2 = Ingest(Registry(store2), store2, Supervisor(), ["console"], Metrics())
    for f in old:
        with pytest.raises(wire.WireError) as e:
            ing2.process(piece(f), "lte", 0, 0)
        assert e.value.reason == wire.E_REPLAY
    assert ing2.process(piece(box.heartbeat()), "lte", 0, 0).frame.counter == 4


def test_uncommitted_frame_is_accepted_again_after_restart(tmp_path):
    # Accepted in memory, then the process died before the commit: no ACK went
    # out, so the box resends, and the same bytes must be accepted.
    box = SimBox(5)
    store, reg, sup, ing = make(tmp_path, [box])
    f = box.alarm()
    ing.process(piece(f), "lte", 0, 0)
    store.close()
    store2 = Store(tmp_path / "g.db")
    ing2 = Ingest(Registry(store2), store2, Supervisor(), ["console"], Metrics())
    assert ing2.process(piece(f), "lte", 0, 0).status == "stored"
    ing2.commit()
    assert store2.event_count() == 1


def test_disk_full_no_ack_nothing_lost_then_recovers(tmp_path):
    box = SimBox(9)
    store, reg, sup, ing = make(tmp_path, [box])
    ing.process(piece(box.heartbeat()), "lte", 0, 0)
    ing.commit()
    store.set_max_pages(store.page_count())  # the database cannot grow any more
    frames = [box.alarm("panic") for _ in range(200)]
    for f in frames:
        ing.process(piece(f), "lte", 0, 0)
    with pytest.raises(StorageFullError) as e:
        ing.commit()
    assert "full" in str(e.value) and "ACK" in str(e.value)
    assert store.event_count() == 0
    # The window went back: the same frames (same counters) are accepted
    # again once there is room; what must survive: all 200 alarms, once each.
    store.set_max_pages(1_000_000)
    outs = [ing.process(piece(f), "lte", 0, 0) for f in frames]
    assert all(o.status == "stored" for o in outs)
    ing.commit()
    assert store.event_count() == 200
    assert len({e["event_id"] for e in store.events()}) == 200


def test_commit_failure_is_storage_error_for_other_sqlite_errors(tmp_path):
    box = SimBox(9)
    store, reg, sup, ing = make(tmp_path, [box])
    ing.process(piece(box.alarm()), "lte", 0, 0)
    store.db.execute("DROP TABLE outbox")  # a broken database, not a full one
    with pytest.raises(StorageError) as e:
        ing.commit()
    assert not isinstance(e.value, StorageFullError)
    assert store.event_count() == 0


def test_wrong_box_on_connection_and_wrong_bus_address_rejected(tmp_path):
    a, b = SimBox(1), SimBox(2, addr=4)
    store, reg, sup, ing = make(tmp_path, [a])
    reg.add(box_rec(b, "rs485"))
    with pytest.raises(wire.WireError) as e:
        ing.process(piece(a.heartbeat()), "lte", 0, 0, conn_box=2)
    assert e.value.reason == wire.E_TYPE
    # A late reply from box b (address 4) while address 5 is polled is judged
    # like any other authenticated frame; the bus master ACKs it in b's slot.
    late = ing.process(piece(b.alarm("panic")), "rs485", 0, 0, bus_addr=5)
    assert late.frame.addr == 4 and late.ack["status"] == "stored"
    assert ing.process(piece(b.idle()), "rs485", 0, 0, bus_addr=4).ack is None  # IDLE needs no ACK
    # A frame whose address is not the one the box is registered at is refused.
    b.addr = 6
    with pytest.raises(wire.WireError) as e:
        ing.process(piece(b.heartbeat()), "rs485", 0, 0, bus_addr=6)
    assert e.value.reason == wire.E_TYPE


def test_supervision_offline_restore_and_troubles(tmp_path):
    box = SimBox(3)
    sup = Supervisor(heartbeat_interval_s=10, missed_heartbeats=3, battery_low_mv=11500, battery_ok_mv=12000)
    store, reg, sup, ing = make(tmp_path, [box], sup=sup)
    sup.add(3, 0.0)
    assert ing.supervise(29.0, 0) == []
    offline = ing.supervise(31.0, 0)
    assert [(e["kind"], e["restore"]) for e in offline] == [("offline", False)]
    assert ing.supervise(100.0, 0) == []  # reported once
    out = ing.process(piece(box.heartbeat(tamper=True, power="battery", battery_mv=11000)), "lte", 101.0, 0)
    kinds = sorted((e["kind"], e["restore"]) for e in out.events)
    assert kinds == [("battery", False), ("offline", True), ("power", False), ("tamper", False)]
    # Between the thresholds the battery keeps its state (hysteresis).
    out = ing.process(piece(box.heartbeat(tamper=False, power="battery", battery_mv=11800)), "lte", 102.0, 0)
    assert [(e["kind"], e["restore"]) for e in out.events] == [("tamper", True)]
    out = ing.process(piece(box.heartbeat(power="mains", battery_mv=12500)), "lte", 103.0, 0)
    assert sorted((e["kind"], e["restore"]) for e in out.events) == [("battery", True), ("power", True)]
    # A box's own tamper ALARM sets the state: the next heartbeat agreeing with
    # it makes no second event.
    ing.process(piece(box.alarm("tamper")), "lte", 104.0, 0)
    out = ing.process(piece(box.heartbeat(tamper=True)), "lte", 105.0, 0)
    assert out.events == []
    events = ing.commit()
    ids = [e["event_id"] for e in events]
    assert all(i.startswith("00000003-") for i in ids) and len(set(ids)) == len(ids)
    assert "00000003-g1" in ids


def test_forward_policy_backoff_and_decisions():
    p = ForwardPolicy(base_s=1, cap_s=60, rand=lambda: 0.5)
    assert [p.next_delay(i) for i in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert 0.8 <= ForwardPolicy(rand=lambda: 0.0).next_delay(0) <= 1.2
    assert p.decide(DeliveryError("x", True), 5) == "retry"
    assert p.decide(DeliveryError("x", False), 5) == "split"
    assert p.decide(DeliveryError("x", False), 1) == "park"


def test_registry_validation_repr_and_rekey(tmp_path):
    store = Store(tmp_path / "g.db")
    reg = Registry(store)
    box = SimBox(11, addr=3)
    b = reg.add(box_rec(box, "rs485"))
    assert box.secret.hex() not in repr(b) and "secret" in repr(b)
    with pytest.raises(RegistryError, match="bus address 3 is already box 11"):
        reg.add(box_rec(SimBox(12, addr=3), "rs485"))
    with pytest.raises(RegistryError, match="hex"):
        reg.add({"box_id": 13, "key": "zz"})
    with pytest.raises(RegistryError, match="16..64"):
        reg.add({"box_id": 13, "key": "00" * 8})
    # Re-keyed (a replaced box): its uplink counters start again.
    ing = Ingest(reg, store, Supervisor(), [], Metrics())
    ing.process(piece(box.heartbeat()), "rs485", 0, 0, bus_addr=3)
    ing.commit()
    assert store.load_replay(11)[0] == 1
    new = SimBox(11, key=bytes(range(100, 132)), addr=3)
    reg.add(box_rec(new, "rs485"))
    ing.forget(11)
    assert store.load_replay(11)[0] == -1
    reg.revoke(11)
    assert reg.get(11) is None and reg.by_addr(3) is None
    with pytest.raises(RegistryError):
        reg.revoke(11)


def test_config_defaults_and_errors(tmp_path):
    cfg = gwconfig.load(None)
    assert (cfg.http.host, cfg.http.port, cfg.lte.port, cfg.rs485.url) == ("127.0.0.1", 8480, 8470, "")
    p = tmp_path / "g.toml"
    p.write_text('gateway_id = "gw-x"\n[http]\nport = 9000\nadmin_token = "s3cret-token"\n[rs485]\nurl = "socket://127.0.0.1:1"\naddresses = [1, 2]\n')
    cfg = gwconfig.load(p)
    assert cfg.http.port == 9000 and cfg.rs485.addresses == [1, 2]
    assert "s3cret" not in repr(cfg)
    assert (cfg.forward.base_s, cfg.forward.cap_s) == (1.0, 60.0)
    p.write_text("[forward]\nbase_s = 0.5\ncap_s = 2.0\n")
    from callbox_gateway.app import Gateway

    policy = Gateway(gwconfig.load(p)).forward_policy  # the HIL rig compresses the control room's outage this way
    assert (policy.base_s, policy.cap_s) == (0.5, 2.0)
    for text, msg in [("[http]\nprot = 1\n", "http.prot"), ("[lte]\nport = 'x'\n", "lte.port"), ("nope = 1\n", "nope"),
                      ("[rs485]\naddresses = [300]\n", "300"), ("[[sinks]]\ntype = 'mqtt'\n", "mqtt"), ("x = [", "TOML")]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            gwconfig.load(p)
    with pytest.raises(ConfigError, match="not found"):
        gwconfig.load(tmp_path / "missing.toml")


def test_fake_clock_sleep_advances():
    import asyncio

    c = FakeClock()
    asyncio.run(c.sleep(600))
    assert c.monotonic() == 600 and c.slept == [600]
