"""End to end against an independent receiver: pysiaalarm's threaded TCP
server (its asyncio server mishandles two frames in one read), in this test
process on 127.0.0.1. The receiver must get the right event code, account and
zone, plain and encrypted, SIA-DCS and ADM-CID."""

import asyncio
import datetime
import queue

import pytest
from pysiaalarm import SIAAccount, SIAClient

from callbox_gateway.errors import DeliveryError
from callbox_gateway.forward_dc09 import Dc09Config, Dc09Sink

from _dc09_receivers import event, run

KEY = "0123456789ABCDEF"  # pysiaalarm uses the key's ASCII characters as AES key bytes


class Receiver:
    """pysiaalarm's threaded receiver; events land in a thread-safe queue."""

    def __init__(self, accounts):
        self.events = queue.Queue()
        self.client = SIAClient("127.0.0.1", 0, accounts, self.events.put)
        self.port = self.client.sia_server.server_address[1]

    def __enter__(self):
        self.client.start()
        return self

    def __exit__(self, *exc):
        self.client.stop()

    async def next_event(self, timeout=10):
        return await asyncio.to_thread(self.events.get, True, timeout)


def sink_for(rx, token, encrypted, wall_clock=None, **extra):
    receiver = {"name": "arc", "host": "127.0.0.1", "port": rx.port, "receiver": "1", "line": "2"}
    if encrypted:
        receiver.update(key=KEY, key_format="ascii")
    table = {"format": token, "ack_timeout_s": 5, "supervision_interval_s": 0, "gateway_account": "9000", "receivers": [receiver]}
    table.update(extra)
    return Dc09Sink(Dc09Config.from_dict(table), wall_clock=wall_clock)


CASES = [
    # kind, restore, SIA code pysiaalarm reports, input zone
    ("panic", False, "PA", 2),
    ("emergency", False, "QA", 1),
    ("tamper", True, "TR", 0),
    ("power", False, "AT", 0),
    ("battery", True, "YR", 0),
    ("offline", False, "YC", 0),
    ("periodic_test", False, "RP", 0),
    ("manual_test", False, "RX", 0),
]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes"])
@pytest.mark.parametrize("token", ["SIA-DCS", "ADM-CID"])
def test_events_reach_pysiaalarm_with_code_account_zone(token, encrypted):
    accounts = [SIAAccount("0042", KEY if encrypted else None)]

    async def main():
        with Receiver(accounts) as rx:
            sink = sink_for(rx, token, encrypted)
            for n, (kind, restore, code, zone) in enumerate(CASES):
                await sink.deliver(event(kind, restore=restore, seq=n))
                got = await rx.next_event()
                assert got.code == code, kind
                assert got.account == "0042"
                assert got.encrypted is encrypted and got.valid_message
                assert (got.receiver, got.line) == ("R1", "L2")
                if token == "SIA-DCS":
                    # pysiaalarm calls the DC-03 area 'ri'; the zone is the address after the code.
                    assert got.ri == "1" and got.message == "%03d" % zone, kind
                else:
                    assert got.partition == "01" and got.ri == "%03d" % zone, kind
                # The press time travels as extended data 'H'.
                assert got.x_data == "H19:20:01,11-28-2026"
            assert sink.metrics()["callbox_dc09_delivered_total"] == len(CASES)
            assert rx.client.counts.valid_events == len(CASES)
            await sink.close()

    run(main())


def test_per_junction_account_reaches_pysiaalarm():
    accounts = [SIAAccount("1001", None)]

    async def main():
        with Receiver(accounts) as rx:
            sink = sink_for(rx, "ADM-CID", False, account_mode="junction", junction_accounts={"Ghantaghar Square": "1001"})
            await sink.deliver(event("panic", box_id=42))
            got = await rx.next_event()
            assert (got.code, got.account, got.ri) == ("PA", "1001", "042")
            await sink.close()

    run(main())


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes"])
def test_supervision_null_is_acked_by_pysiaalarm(encrypted):
    accounts = [SIAAccount("9000", KEY if encrypted else None)]

    async def main():
        with Receiver(accounts) as rx:
            sink = sink_for(rx, "SIA-DCS", encrypted)
            assert await sink.supervise_once() is True
            got = await rx.next_event()
            assert got.message_type.value == "NULL" and got.account == "9000" and got.code == "RP"
            await sink.close()

    run(main())


def test_clock_resync_from_pysiaalarm_nak():
    # Our clock is 5 minutes fast: pysiaalarm NAKs (window -40/+20 s) with its
    # time; the sink takes the offset and the resend is ACKed.
    accounts = [SIAAccount("0042", KEY)]

    def fast_clock():
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)

    async def main():
        with Receiver(accounts) as rx:
            sink = sink_for(rx, "SIA-DCS", True, wall_clock=fast_clock)
            await sink.deliver(event("panic"))
            got = await rx.next_event()
            assert got.code == "PA"
            assert sink.count("arc", "nak") == 1 and sink.count("arc", "resync") == 1
            assert rx.client.counts.error_timestamp == 1
            assert -310 < sink.metrics()['callbox_dc09_clock_offset_seconds{receiver="arc"}'] < -290
            await sink.close()

    run(main())


def test_account_unknown_to_pysiaalarm_is_not_delivered():
    # pysiaalarm answers an unknown account with a bare '"NAK"' (no frame):
    # nothing matching arrives, so it is a timeout and the event stays queued.
    accounts = [SIAAccount("0001", None)]

    async def main():
        with Receiver(accounts) as rx:
            sink = sink_for(rx, "SIA-DCS", False, ack_timeout_s=1.5)
            with pytest.raises(DeliveryError) as info:
                await sink.deliver(event("panic"))
            assert info.value.retryable
            assert sink.metrics()["callbox_dc09_delivered_total"] == 0
            assert rx.events.empty()
            await sink.close()

    run(main())
