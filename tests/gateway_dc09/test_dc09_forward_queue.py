"""The DC-09 sink behind the gateway's real forward queue (SQLite outbox,
Forwarder): an event leaves the outbox only when a receiver ACKed it; a
timeout keeps it pending; DUH everywhere parks it; later events of the box
go on."""

from callbox_gateway import dc09
from callbox_gateway.clock import FakeClock
from callbox_gateway.forward import ForwardPolicy, Forwarder
from callbox_gateway.forward_dc09 import Dc09Config, Dc09Sink
from callbox_gateway.observe import Metrics
from callbox_gateway.store import Store

from _dc09_receivers import FakeReceiver, event, run


def queued_store(tmp_path, events):
    store = Store(tmp_path / "gw.db")
    for ev in events:
        ev = dict(ev, _received_s=0.0, _source="box")
        store.transaction(lambda ev=ev: store.add_event(ev, ["arc"]))
    return store


def sink_for(*receivers):
    return Dc09Sink(
        Dc09Config.from_dict(
            {
                "ack_timeout_s": 1.5,
                "supervision_interval_s": 0,
                "receivers": [{"name": n, "host": "127.0.0.1", "port": r.port} for n, r in zip(["primary", "backup"], receivers)],
            }
        )
    )


def test_outbox_drains_through_backup_in_order(tmp_path):
    events = [event("panic", seq=1), event("panic", restore=True, seq=2), event("tamper", seq=3)]
    store = queued_store(tmp_path, events)

    async def main():
        async with FakeReceiver("silent") as primary, FakeReceiver("ack") as backup:
            sink = sink_for(primary, backup)
            fwd = Forwarder("arc", sink, store, Metrics(), FakeClock(), ForwardPolicy())
            await fwd.deliver(store.pending("arc", 1))  # primary times out, backup ACKs
            while store.pending("arc", 10):
                await fwd.deliver(store.pending("arc", 1))
            codes = [f["plain"].split("|N", 1)[1][:9] for f in backup.frames]
            assert codes == ["ri1/PA002", "ri1/PH002", "ri1/TA000"]  # in order per box
            assert len(backup.acked) == 3 and fwd.delivered == 3
            await sink.close()

    run(main())


def test_no_ack_keeps_the_event_pending(tmp_path):
    store = queued_store(tmp_path, [event("panic", seq=1)])

    async def main():
        async with FakeReceiver("silent") as primary, FakeReceiver("nak") as backup:
            sink = sink_for(primary, backup)
            fwd = Forwarder("arc", sink, store, Metrics(), FakeClock(), ForwardPolicy())
            await fwd.deliver(store.pending("arc", 1))
            rows = store.pending("arc", 10)
            assert [r["event_id"] for r in rows] == ["0000002a-00000001"] and rows[0]["attempts"] == 1
            assert fwd.delivered == 0 and primary.acked == [] and backup.acked == []
            await sink.close()

    run(main())


def test_duh_everywhere_parks_and_the_next_event_goes_on(tmp_path):
    store = queued_store(tmp_path, [event("panic", seq=1), event("tamper", seq=2)])

    async def main():
        def duh_for_panic(record):
            if "PA002" in record["plain"]:
                return dc09.build_reply("DUH", record["seq"], "0", "0", record["account"])
            rx.acked.append((record["seq"], record["account"]))
            return dc09.build_reply("ACK", record["seq"], "0", "0", record["account"], rx.now())

        async with FakeReceiver(duh_for_panic) as rx:
            sink = sink_for(rx)
            metrics = Metrics()
            fwd = Forwarder("arc", sink, store, metrics, FakeClock(), ForwardPolicy())
            await fwd.deliver(store.pending("arc", 1))  # DUH: parked
            await fwd.deliver(store.pending("arc", 1))  # the tamper goes on
            assert store.pending("arc", 10) == []
            assert metrics.get("forward_parked", sink="arc") == 1 and fwd.delivered == 1
            assert len(rx.acked) == 1
            await sink.close()

    run(main())
