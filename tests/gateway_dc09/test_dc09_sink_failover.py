"""The sink against small real TCP receivers on 127.0.0.1 that ACK, NAK, DUH,
never answer, close the connection, or answer wrongly. What must hold: an
event is reported delivered only after a matching ACK; failures fail over to
the backup; the DeliveryError says whether to retry; every failure is counted
and logged."""

import asyncio
import logging

import pytest

from callbox_gateway import dc09
from callbox_rig.services import free_port
from callbox_gateway.errors import DeliveryError
from callbox_gateway.forward_dc09 import Dc09Config, Dc09Sink

from _dc09_receivers import FakeReceiver, event, run

# Short enough to keep the suite fast, long enough for a loaded machine: the
# ACKing receivers answer in milliseconds; only silent ones wait it out.
ACK_TIMEOUT_S = 1.5
KEY = dc09.Dc09Key.parse("000102030405060708090A0B0C0D0E0F", "hex")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_sink(*receivers, key=None, token="SIA-DCS", clock=None, **extra):
    table = {
        "format": token,
        "ack_timeout_s": ACK_TIMEOUT_S,
        "connect_timeout_s": 5,
        "supervision_interval_s": 0,
        "receivers": [
            dict({"name": name, "host": "127.0.0.1", "port": rx.port}, **({"key": key, "key_format": "hex"} if key else {}))
            for name, rx in zip(["primary", "backup", "backup2"], receivers)
        ],
    }
    table.update(extra)
    return Dc09Sink(Dc09Config.from_dict(table), clock=clock or FakeClock())


class ClosedPort:
    """A port nobody listens on: connection refused."""

    def __init__(self):
        self.port = free_port()


def test_ack_delivers_and_counts():
    async def main():
        async with FakeReceiver("ack") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup)
            await sink.deliver(event("panic"))
            await sink.deliver(event("tamper", restore=True, seq=8))
            await sink.close()
            assert [f["seq"] for f in primary.frames] == [1, 2]  # per-receiver sequence numbers
            assert primary.connections == 1  # one connection kept open
            assert "Nri1/PA002" in primary.frames[0]["plain"] and "Nri1/TR000" in primary.frames[1]["plain"]
            assert backup.frames == []
            m = sink.metrics()
            assert m["callbox_dc09_delivered_total"] == 2
            assert m['callbox_dc09_ack_total{receiver="primary"}'] == 2
            assert m['callbox_dc09_active{receiver="primary"}'] == 1

    run(main())


def test_silent_primary_times_out_and_backup_takes_over(caplog):
    async def main():
        clock = FakeClock()
        async with FakeReceiver("silent") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup, clock=clock)
            with caplog.at_level(logging.WARNING, logger="callbox_gateway.forward_dc09"):
                await sink.deliver(event("panic"))
            assert len(primary.frames) == 1 and len(backup.frames) == 1
            assert sink.count("primary", "timeout") == 1 and sink.selector.active == 1
            assert any("primary" in r.getMessage() and "no reply within" in r.getMessage() for r in caplog.records)
            assert any("failed over to backup" in r.getMessage() for r in caplog.records)
            # While the primary is not due back, the backup goes first and the primary is not tried.
            clock.now += 10
            await sink.deliver(event("panic", seq=8))
            assert len(primary.frames) == 1 and len(backup.frames) == 2
            # The primary recovers; after primary_retry_s it is tried first and takes over again.
            primary.behaviour = "ack"
            clock.now += 60
            await sink.deliver(event("panic", seq=9))
            assert len(primary.frames) == 2 and len(backup.frames) == 2
            assert sink.selector.active == 0
            m = sink.metrics()
            assert m["callbox_dc09_failovers_total"] == 1 and m["callbox_dc09_failbacks_total"] == 1
            assert m["callbox_dc09_delivered_total"] == 3
            await sink.close()

    run(main())


def test_nobody_answers_is_retryable_and_not_delivered():
    async def main():
        async with FakeReceiver("silent") as primary, FakeReceiver("close") as backup:
            sink = make_sink(primary, backup)
            with pytest.raises(DeliveryError) as info:
                await sink.deliver(event("panic"))
            err = info.value
            assert err.retryable and err.box_id == 42
            assert "box 42" in str(err) and "0000002a-00000007" in str(err)
            assert "no reply within" in str(err) and "closed the connection" in str(err)
            m = sink.metrics()
            assert m["callbox_dc09_delivered_total"] == 0 and m["callbox_dc09_failed_retryable_total"] == 1
            assert m['callbox_dc09_timeout_total{receiver="primary"}'] == 1
            assert m['callbox_dc09_closed_total{receiver="backup"}'] == 1
            await sink.close()

    run(main())


def test_refused_connection_fails_over():
    async def main():
        async with FakeReceiver("ack") as backup:
            sink = make_sink(ClosedPort(), backup)
            await sink.deliver(event("emergency"))
            assert sink.count("primary", "connect_error") == 1 and len(backup.frames) == 1
            await sink.close()

    run(main())


def test_nak_resyncs_clock_and_resends_once():
    async def main():
        # A receiver whose clock is 5 minutes ahead NAKs any frame stamped more
        # than 20 s from its time, and ACKs once the stamp matches.
        state = {}

        def behaviour(record):
            ts = dc09.parse_timestamp(record["plain"].rsplit("_", 1)[1])
            skew = (ts - rx.now()).total_seconds()
            state.setdefault("skews", []).append(skew)
            if not -40 <= skew <= 20:
                return dc09.build_reply("NAK", 0, "0", "0", None, rx.now())
            rx.acked.append((record["seq"], record["account"]))
            return dc09.build_reply("ACK", record["seq"], "0", "0", record["account"], rx.now())

        async with FakeReceiver(behaviour, clock_offset_s=300) as rx, FakeReceiver("ack") as backup:
            sink = make_sink(rx, backup)
            await sink.deliver(event("panic"))
            assert len(state["skews"]) == 2 and abs(state["skews"][1]) < 20
            assert rx.frames[0]["seq"] == rx.frames[1]["seq"]  # the resend keeps its number
            assert backup.frames == []
            assert sink.count("primary", "nak") == 1 and sink.count("primary", "resync") == 1
            assert 290 < sink.metrics()['callbox_dc09_clock_offset_seconds{receiver="primary"}'] < 310
            # The next event is stamped right the first time.
            await sink.deliver(event("panic", seq=8))
            assert len(state["skews"]) == 3 and sink.count("primary", "nak") == 1
            await sink.close()

    run(main())


def test_nak_twice_fails_over():
    async def main():
        async with FakeReceiver("nak") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup)
            await sink.deliver(event("panic"))
            assert len(primary.frames) == 2 and sink.count("primary", "nak") == 2
            assert len(backup.frames) == 1 and sink.selector.active == 1
            await sink.close()

    run(main())


def test_duh_everywhere_is_not_retryable():
    async def main():
        async with FakeReceiver("duh") as primary, FakeReceiver("duh") as backup:
            sink = make_sink(primary, backup)
            with pytest.raises(DeliveryError) as info:
                await sink.deliver(event("panic"))
            assert info.value.retryable is False and "DUH" in str(info.value)
            assert sink.metrics()["callbox_dc09_failed_permanent_total"] == 1
            assert sink.count("primary", "duh") == 1 and sink.count("backup", "duh") == 1
            await sink.close()

    run(main())


def test_duh_then_silence_stays_retryable():
    # The backup did not refuse, it did not answer: it may take the event later.
    async def main():
        async with FakeReceiver("duh") as primary, FakeReceiver("silent") as backup:
            sink = make_sink(primary, backup)
            with pytest.raises(DeliveryError) as info:
                await sink.deliver(event("panic"))
            assert info.value.retryable is True
            await sink.close()

    run(main())


def test_duh_on_primary_backup_acks():
    async def main():
        async with FakeReceiver("duh") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup)
            await sink.deliver(event("panic"))
            assert backup.acked == [(1, "0042")]
            await sink.close()

    run(main())


@pytest.mark.parametrize("behaviour", ["stale", "wrong_account", "plain_ack"])
def test_wrong_acks_are_not_delivery(behaviour):
    # An ACK for another sequence number, another account, or a plain ACK to
    # an encrypted frame does not deliver; the sink waits for the real one.
    async def main():
        async with FakeReceiver(behaviour, key=KEY) as primary, FakeReceiver("ack", key=KEY) as backup:
            sink = make_sink(primary, backup, key="000102030405060708090A0B0C0D0E0F")
            await sink.deliver(event("panic"))
            assert primary.acked == [] and backup.acked == [(1, "0042")]
            assert sink.count("primary", "timeout") == 1
            counter = "stale_reply" if behaviour == "stale" else "bad_reply"
            assert sink.count("primary", counter) == 1
            await sink.close()

    run(main())


def test_garbage_reply_is_counted_not_delivered():
    async def main():
        async with FakeReceiver(lambda rec: b"\n0000001Fgarbage\r") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup)
            await sink.deliver(event("panic"))
            assert sink.count("primary", "bad_reply") == 1 and len(backup.acked) == 1
            await sink.close()

    run(main())


def test_idle_connection_closed_by_receiver_is_reopened_without_failover():
    async def main():
        async with FakeReceiver("ack") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup)
            await sink.deliver(event("panic"))
            await primary.drop_connections()
            await asyncio.sleep(0.05)
            await sink.deliver(event("panic", seq=8))
            assert primary.connections == 2 and len(primary.acked) == 2 and backup.frames == []
            assert sink.selector.active == 0
            await sink.close()

    run(main())


def test_unmapped_kind_is_parked_without_sending():
    async def main():
        async with FakeReceiver("ack") as primary:
            sink = make_sink(primary)
            with pytest.raises(DeliveryError) as info:
                await sink.deliver(event("fire"))
            assert info.value.retryable is False and "fire" in str(info.value)
            assert primary.frames == [] and sink.metrics()["callbox_dc09_unmapped_total"] == 1
            await sink.close()

    run(main())


def test_encrypted_adm_cid_to_own_receiver():
    async def main():
        async with FakeReceiver("ack", key=KEY) as primary:
            sink = make_sink(primary, key="000102030405060708090A0B0C0D0E0F", token="ADM-CID")
            await sink.deliver(event("offline", restore=True))
            frame = primary.frames[0]
            assert frame["encrypted"] and frame["token"] == "ADM-CID"
            assert frame["plain"].startswith("#0042|3350 01 000]")
            await sink.close()

    run(main())


def test_concurrent_deliveries_each_get_their_own_ack():
    async def main():
        async with FakeReceiver("ack") as primary:
            sink = make_sink(primary)
            await asyncio.gather(*(sink.deliver(event("panic", box_id=b, seq=1)) for b in range(1, 21)))
            assert sorted(a for _, a in primary.acked) == ["%04d" % b for b in range(1, 21)]
            assert sorted(s for s, _ in primary.acked) == list(range(1, 21))
            await sink.close()

    run(main())


def test_supervision_sends_null_when_idle():
    async def main():
        async with FakeReceiver("ack") as primary:
            table = {"supervision_interval_s": 0.2, "gateway_account": "9000"}
            sink = make_sink(primary, clock=__import__("time").monotonic, **table)
            async with sink:
                while len(primary.acked) < 2:
                    primary.frame_seen.clear()
                    await asyncio.wait_for(primary.frame_seen.wait(), 10)
            assert primary.frames[0]["token"] == "NULL" and primary.frames[0]["account"] == "9000"
            assert primary.frames[0]["plain"].startswith("]_")
            assert sink.metrics()["callbox_dc09_supervision_ok_total"] >= 2

    run(main())


def test_supervision_probes_primary_and_fails_back():
    async def main():
        import time

        async with FakeReceiver("silent") as primary, FakeReceiver("ack") as backup:
            sink = make_sink(primary, backup, clock=time.monotonic, supervision_interval_s=30, primary_retry_s=0.3)
            await sink.deliver(event("panic"))
            assert sink.selector.active == 1
            primary.behaviour = "ack"
            async with sink:
                # No event arrives: supervision alone must bring the primary back.
                for _ in range(100):
                    if sink.selector.active == 0:
                        break
                    await asyncio.sleep(0.1)
            assert sink.selector.active == 0
            assert any(f["token"] == "NULL" for f in primary.frames)

    run(main())


def test_supervision_failure_is_counted_and_warned_once(caplog):
    async def main():
        async with FakeReceiver("silent") as primary:
            sink = make_sink(primary, ack_timeout_s=0.5)
            with caplog.at_level(logging.DEBUG, logger="callbox_gateway.forward_dc09"):
                assert await sink.supervise_once() is False
                first = [r for r in caplog.records if r.levelno == logging.WARNING]
                assert any("supervision NULL not acknowledged" in r.getMessage() for r in first)
                caplog.clear()
                assert await sink.supervise_once() is False
                # The same failure again: logged, but at debug, not a warning every interval.
                assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
                assert any("supervision NULL not acknowledged" in r.getMessage() for r in caplog.records)
                primary.behaviour = "ack"
                assert await sink.supervise_once() is True
            assert any("acknowledged again" in r.getMessage() for r in caplog.records)
            m = sink.metrics()
            assert m["callbox_dc09_supervision_failed_total"] == 2 and m["callbox_dc09_supervision_ok_total"] == 1
            assert m['callbox_dc09_timeout_total{receiver="primary"}'] == 2
            await sink.close()

    run(main())
