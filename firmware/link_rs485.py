"""RS-485 link: the box answers the gateway's POLL for its bus address.

The bus is half duplex and shared by every box at the junction; the gateway
is the only master, so the box never talks unpolled: when a POLL addressed to
its bus address arrives, it replies with exactly one frame (its pending
alarm, heartbeat or command result, else IDLE; a short POLL gets a short
IDLE, protocol.md 5.6). Frames addressed to other
boxes, their replies, stray 0x00 bytes at turnaround and line garbage are
skipped (FrameReader hunts for the next delimiter) and counted.

Driver enable by hand (ESP32 UART has no RS-485 mode, brief section 3): DE
on, _DE_SETUP_US, one write, wait until the UART has sent the last bit, one
character time more, DE off. DE is forced off when the UART (re)opens, so a
reset never leaves the transceiver driving the bus.
"""

import time
import asyncio

import wire
import hw
from link import Link

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_READ_CHUNK = const(64)
_DE_SETUP_US = const(200)  # transceiver enable time before the first bit
_REOPEN_FIRST_MS = const(500)
_REOPEN_MAX_MS = const(10000)


class Rs485Link(Link):
    name = "rs485"

    def __init__(self, host, addr, uart):
        super().__init__(host)
        self.addr = addr
        self.de = uart.get("de", "de")
        self.char_us = 10000000 // uart.get("baud", 19200) + 1  # 10 bits per byte
        self.last_poll_ms = None
        self.polls = 0

    def polled_within(self, ms):
        return self.last_poll_ms is not None and time.ticks_diff(time.ticks_ms(), self.last_poll_ms) < ms

    async def run(self):
        failures = 0
        while True:
            hw.output(self.de, 0)
            try:
                reader, writer = await hw.open_uart("rs485")
            except OSError as e:
                failures += 1
                self.host.log(2 if failures == 1 else 0, "rs485: no UART: %r" % (e,))
                await asyncio.sleep_ms(min(_REOPEN_FIRST_MS << min(failures, 5), _REOPEN_MAX_MS))
                continue
            if failures:
                self.host.log(1, "rs485: UART open")
            failures = 0
            fr = wire.FrameReader()
            try:
                while True:
                    data = await reader.read(_READ_CHUNK)
                    if not data:
                        raise OSError("bus closed")
                    for piece in fr.feed(data):
                        await self._piece(piece, writer)
                    if fr.oversize:
                        self.counters["oversize"] = fr.oversize
            except OSError as e:
                self.count("io")
                self.host.log(2, "rs485: UART error %r; reopening" % (e,))
            hw.output(self.de, 0)
            try:
                writer.close()
            except (OSError, AttributeError):
                pass
            self.up = False
            await asyncio.sleep_ms(_REOPEN_FIRST_MS)

    async def _piece(self, piece, writer):
        try:
            body = wire.cobs_decode(piece)
        except wire.WireError as e:
            self.count(e.reason)
            return
        # A short POLL/IDLE (protocol.md 5.6) has its address at offset 2, a
        # full frame at offset 3; skip other boxes' traffic before any hash.
        short = len(body) == 6 and body[0] == wire.SHORT_MARK
        if (body[2] if short else (body[3] if len(body) >= wire.OVERHEAD else -1)) != self.addr:
            self.count("other_addr")
            return
        try:
            f = self.host.decode(piece)
        except wire.WireError as e:
            self.count(e.reason)
            self.host.log(0, "rs485: dropped a frame: %s" % (e,))
            return
        if f.mtype != wire.MSG_POLL:
            self.host.on_frame(f, self)
            return
        self.last_poll_ms = time.ticks_ms()
        self.polls += 1
        self.up = True
        frame = self.host.next_up_frame(self)
        if frame is None:
            # Answer a short POLL with a short IDLE echoing its sequence
            # (9 bytes instead of 28: the 32-box cycle stays under 100 ms).
            frame = wire.encode_short(wire.MSG_IDLE, self.addr, f.counter) if f.box_id is None else self.host.idle_frame(self)
        # The reply: DE on, one write, wait for the last bit to leave, DE off.
        hw.output(self.de, 1)
        time.sleep_us(_DE_SETUP_US)
        try:
            writer.write(frame)
            await writer.drain()
            await hw.uart_tx_done("rs485")
            time.sleep_us(self.char_us)
        finally:
            hw.output(self.de, 0)
