"""The DC-09 sink wired into the whole gateway: a gateway started from a TOML
file with a `[[sinks]] type = "dc09"` table, a simulated box pressing Panic
over the LTE listener (real TCP, real codec), pysiaalarm's threaded receiver
as the alarm receiving centre. The alarm must arrive there with the right
code, account and zone, leave the outbox only after the receiver's ACK, and
the sink's counters must show on the gateway's /metrics.

The receiver's key is in a key_file given relative to the config file, and
the test runs from another directory: the gateway must read it from the
config file's folder."""

import asyncio
import queue

import aiohttp
import pytest
from pysiaalarm import SIAAccount, SIAClient

from callbox_firmware import wire
from callbox_gateway import config as gwconfig
from callbox_gateway.app import Gateway
from callbox_gateway.errors import ConfigError
from callbox_gateway.sim import SimBox

from _dc09_receivers import run

KEY = "0123456789ABCDEF"  # pysiaalarm: the key's ASCII characters are the AES key
BOX = 42
T = 20.0  # one awaited step on a loaded machine


class Receiver:
    def __init__(self, accounts):
        self.events = queue.Queue()
        self.client = SIAClient("127.0.0.1", 0, accounts, self.events.put)
        self.port = self.client.sia_server.server_address[1]

    def __enter__(self):
        self.client.start()
        return self

    def __exit__(self, *exc):
        self.client.stop()

    async def next_event(self, timeout=T):
        return await asyncio.to_thread(self.events.get, True, timeout)


def write_config(folder, box, arc_port, key_file="arc.key"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arc.key").write_text(KEY + "\n")
    text = f"""
gateway_id = "gw-test"
data_dir = "{folder / 'data'}"

[http]
port = 0
admin_token = "admintok"
console_token = "consoletok"

[lte]
port = 0

[[sinks]]
type = "dc09"
name = "arc"
format = "SIA-DCS"
ack_timeout_s = 5
supervision_interval_s = 0

[[sinks.receivers]]
name = "primary"
host = "127.0.0.1"
port = {arc_port}
receiver = "1"
line = "2"
key_file = "{key_file}"
key_format = "ascii"

[[boxes]]
box_id = {box.box_id}
key = "{box.secret.hex()}"
junction = "Ghantaghar Square"
lat = 26.4553
lon = 80.3498
link = "lte"
"""
    path = folder / "gw.toml"
    path.write_text(text)
    return path


async def wait_for(pred, timeout=T, step=0.05):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        if loop.time() > end:
            raise AssertionError("condition not met within %.0f s" % timeout)
        await asyncio.sleep(step)


@pytest.mark.timeout(120)
def test_panic_from_box_reaches_pysiaalarm_through_gateway_config(tmp_path, monkeypatch):
    box = SimBox(BOX)
    monkeypatch.chdir(tmp_path)  # not the config's folder: key_file must not be read from here

    async def main():
        with Receiver([SIAAccount("0042", KEY)]) as rx:
            cfg = gwconfig.load(write_config(tmp_path / "etc", box, rx.port))
            gw = Gateway(cfg)
            await gw.start()
            try:
                r, w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
                w.write(box.alarm("panic"))
                await w.drain()
                fr = wire.FrameReader()
                ack = None
                while ack is None:
                    data = await asyncio.wait_for(r.read(4096), T)
                    assert data, "gateway closed the box's connection"
                    for p in fr.feed(data):
                        ack = box.decode_down(p)
                assert ack.msg["acked_type"] == "ALARM" and ack.msg["status"] == "stored"

                got = await rx.next_event()
                assert got.code == "PA" and got.account == "0042"
                assert got.sequence == "0001"
                assert got.encrypted and got.valid_message
                assert (got.receiver, got.line) == ("R1", "L2")
                assert got.ri == "1" and got.message == "002"  # area 1, zone 002 = the Panic button

                base = "http://127.0.0.1:%d" % gw.http_port
                async with aiohttp.ClientSession() as s:
                    async def metrics_show_delivery():
                        async with s.get(base + "/metrics") as resp:
                            assert resp.status == 200
                            text = await resp.text()
                        return 'callbox_gateway_dc09_delivered_total{sink="arc"} 1' in text and text

                    await wait_for(metrics_show_delivery)
                    text = await metrics_show_delivery()
                assert 'callbox_gateway_dc09_ack_total{receiver="primary",sink="arc"} 1' in text
                assert 'callbox_gateway_dc09_sent_total{receiver="primary",sink="arc"} 1' in text
                assert 'callbox_gateway_dc09_active{receiver="primary",sink="arc"} 1' in text
                assert "# TYPE callbox_gateway_dc09_timeout_total counter" in text
                assert 'callbox_gateway_forwarded_total{sink="arc"}' in text
                # Delivered means gone from the outbox, and only then.
                assert gw.store.queue_depth().get(("arc", "pending"), 0) == 0
                assert KEY not in text and box.secret.hex() not in text
                w.close()
            finally:
                await gw.stop()

    run(main(), timeout=100)


async def _press(gw, box, kind):
    """A box's alarm over the gateway's LTE listener, until the gateway ACKs it."""
    r, w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
    try:
        w.write(box.alarm(kind))
        await w.drain()
        fr = wire.FrameReader()
        while True:
            data = await asyncio.wait_for(r.read(4096), T)
            assert data, "gateway closed the box's connection"
            for p in fr.feed(data):
                ack = box.decode_down(p)
                if ack.msg.get("acked_type") == "ALARM":
                    return ack
    finally:
        w.close()


@pytest.mark.timeout(120)
def test_sequence_numbers_go_on_after_a_gateway_restart(tmp_path):
    """A receiver may take a repeated sequence number for a duplicate and drop
    the alarm: after a restart the gateway goes on past the numbers it
    reserved (SequenceCounter), it does not start at 0001 again."""
    box = SimBox(BOX)

    async def main():
        with Receiver([SIAAccount("0042", KEY)]) as rx:
            path = write_config(tmp_path / "etc", box, rx.port)
            seqs = []
            for kind in ("panic", "emergency"):  # one alarm per gateway run
                gw = Gateway(gwconfig.load(path))
                await gw.start()
                try:
                    await _press(gw, box, kind)
                    seqs.append((await rx.next_event()).sequence)
                finally:
                    await gw.stop()
            return seqs

    assert run(main(), timeout=100) == ["0001", "0101"]
    assert (tmp_path / "etc" / "data" / "dc09-arc" / "seq-primary").read_text() == "0201\n"


def test_missing_relative_key_file_is_a_config_error_naming_the_path(tmp_path, monkeypatch):
    box = SimBox(BOX)
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path / "etc", box, 9, key_file="keys/missing.key")
    cfg = gwconfig.load(path)

    async def main():
        gw = Gateway(cfg)
        with pytest.raises(ConfigError) as info:
            await gw.start()
        await gw.stop()
        return str(info.value)

    msg = run(main())
    assert str(tmp_path / "etc" / "keys" / "missing.key") in msg and "primary" in msg
    assert KEY not in msg
