"""Small real TCP DC-09 receivers for the sink's failure tests, and helpers.

Each FakeReceiver is an asyncio server on 127.0.0.1 (port 0) that reads
frames LF..CR, decodes them with the codec's split_frame (and the key, when
given), records them, and answers according to `behaviour`:

    "ack"      ACK the frame (encrypted when the frame was)
    "nak"      NAK with the receiver's time (seq 0000, as the standard says)
    "duh"      DUH
    "silent"   read, never answer (a receiver that hangs)
    "close"    close the connection as soon as a frame arrives
    "stale"    ACK with another sequence number (a late answer to an old frame)
    "wrong_account"  ACK with another account
    "plain_ack"      ACK in clear even when the frame was encrypted
    callable   behaviour(record) -> bytes | None | "close"

`acked` lists (seq, account) of every ACK it sent: a test compares the sink's
deliveries with it, so nothing counts as delivered that was not ACKed.
"""

import asyncio
import datetime

from callbox_gateway import dc09


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def run(coro, timeout=60):
    """Run a test coroutine with a generous overall timeout."""

    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


class FakeReceiver:
    def __init__(self, behaviour="ack", key=None, clock_offset_s=0.0):
        self.behaviour = behaviour
        self.key = key
        self.clock_offset_s = clock_offset_s
        self.frames = []  # dicts from split_frame, plus 'plain' (decrypted tail)
        self.acked = []
        self.connections = 0
        self.frame_seen = asyncio.Event()
        self._server = None
        self._writers = set()
        self.port = None

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def drop_connections(self):
        """Close every open connection (an ARC dropping idle links)."""
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        await asyncio.sleep(0)

    def now(self):
        return utc_now() + datetime.timedelta(seconds=self.clock_offset_s)

    async def _serve(self, reader, writer):
        self.connections += 1
        self._writers.add(writer)
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(1024)
                if not chunk:
                    return
                buffer += chunk
                while True:
                    start = buffer.find(b"\n")
                    end = buffer.find(b"\r", start + 1) if start >= 0 else -1
                    if end < 0:
                        break
                    frame = bytes(buffer[start : end + 1])
                    del buffer[: end + 1]
                    answer = self._answer(frame)
                    if answer == "close":
                        writer.close()
                        return
                    if answer:
                        writer.write(answer)
                        await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)

    def _answer(self, frame):
        record = dc09.split_frame(frame)
        record["raw"] = frame
        record["plain"] = dc09.decrypt_block(self.key, record["rest"]) if record["encrypted"] else record["rest"]
        self.frames.append(record)
        self.frame_seen.set()
        behaviour = self.behaviour
        if callable(behaviour):
            return behaviour(record)
        key = self.key if record["encrypted"] else None
        seq, account = record["seq"], record["account"]
        r, line = record["receiver"], record["line"]
        if behaviour == "ack":
            self.acked.append((seq, account))
            return dc09.build_reply("ACK", seq, r, line, account, self.now(), key)
        if behaviour == "nak":
            return dc09.build_reply("NAK", 0, r, line, None, self.now())
        if behaviour == "duh":
            return dc09.build_reply("DUH", seq, r, line, account)
        if behaviour == "close":
            return "close"
        if behaviour == "stale":
            return dc09.build_reply("ACK", dc09.next_sequence(seq), r, line, account, self.now(), key)
        if behaviour == "wrong_account":
            return dc09.build_reply("ACK", seq, r, line, "9999", self.now(), key)
        if behaviour == "plain_ack":
            return dc09.build_reply("ACK", seq, r, line, account, self.now())
        if behaviour == "silent":
            return None
        raise AssertionError("unknown behaviour %r" % behaviour)


def event(kind="panic", box_id=42, restore=False, seq=7, junction="Ghantaghar Square"):
    """A gateway event as docs/console-api.md describes it."""
    return {
        "event_id": "%08x-%08x" % (box_id, seq),
        "box_id": box_id,
        "junction": junction,
        "lat": 26.4553,
        "lon": 80.3498,
        "kind": kind,
        "restore": restore,
        "press_time": "2026-11-28T19:20:01.123Z",
        "press_time_synced": True,
        "received_time": "2026-11-28T19:20:01.180Z",
        "link": "rs485",
    }
