# A tiny host for LteLink on the real MicroPython unix port (run by
# test_lte_link.py). It stands in for the firmware's app: it keeps frames
# until they are ACKed, retries them, sends a heartbeat as the keepalive, and
# sends an SMS for an alarm that is not ACKed in time.
#
# argv: sim_port gateway_port box_id key_hex config_json_file
# stdin:  "alarm <event>" | "sms <event>" | "quit"
# stdout: one JSON object per line: {"ev": "state"|"acked"|"sms"|"sms_error"|"frame"|"mem", ...}

import sys
import json
import gc
import asyncio

import wire
import at_modem
import link_lte

SIM_PORT = int(sys.argv[1])
GW_PORT = int(sys.argv[2])
BOX_ID = int(sys.argv[3])
KEY = wire.BoxKey(bytes.fromhex(sys.argv[4]))
with open(sys.argv[5]) as _f:
    CFG = json.load(_f)


def emit(**kw):
    print(json.dumps(kw))


class Host:
    def __init__(self):
        self.pending = asyncio.Event()
        self.counter = 0
        self.replay = wire.ReplayWindow()
        self.queue = []  # [kind, payload_dict, counter_in_flight or 0, sent_ms, first_ms]
        self.link = None

    def log(self, level, msg):
        if level != "debug" or CFG.get("debug"):
            emit(ev="log", level=level, msg=msg)

    def queue_msg(self, msg):
        self.queue.append([msg["type"], msg, 0, 0, at_modem.ticks_ms()])
        self.pending.set()

    def next_up_frame(self, link):
        for item in self.queue:
            if item[2] == 0:
                self.counter += 1
                item[2] = self.counter
                item[3] = at_modem.ticks_ms()
                # More waiting? Ask to be called again.
                for other in self.queue:
                    if other[2] == 0:
                        self.pending.set()
                return wire.encode_message(KEY, item[1], BOX_ID, self.counter)
        return None

    def decode(self, piece):
        frame = wire.decode_frame(piece, lambda b: KEY if b == BOX_ID else None, True)
        self.replay.accept(frame.counter, frame.box_id)
        return frame

    def on_frame(self, frame, link):
        msg = frame.msg
        emit(ev="frame", type=frame.type_name)
        if msg["type"] != "ACK":
            return
        for item in self.queue:
            if item[2] == msg["acked_counter"]:
                self.queue.remove(item)
                emit(ev="acked", type=item[0], counter=msg["acked_counter"], event=item[1].get("event", 0))
                break

    async def retry(self):
        # Frames in flight too long are sent again (new counter each time).
        while True:
            await asyncio.sleep_ms(100)
            now = at_modem.ticks_ms()
            for item in self.queue:
                if item[2] and at_modem.ticks_diff(now, item[3]) >= CFG["retry_ms"]:
                    item[2] = 0
                    self.pending.set()

    async def heartbeat(self):
        while True:
            has_hb = False
            for item in self.queue:
                if item[0] == "HEARTBEAT":
                    has_hb = True
            if not has_hb:
                self.queue_msg(
                    {"type": "HEARTBEAT", "uptime_s": at_modem.ticks_ms() // 1000, "power": "mains", "battery_mv": 12800, "tamper": False,
                     "link": "lte", "rssi_dbm": self.link.rssi_dbm, "fw": "1.0.0", "outbox": len(self.queue), "boot_reason": "power_on",
                     "faults": [], "time_s": 0}
                )
            await asyncio.sleep_ms(CFG["hb_ms"])

    async def sms_fallback(self):
        done = set()
        while True:
            await asyncio.sleep_ms(100)
            now = at_modem.ticks_ms()
            for item in self.queue:
                ev = item[1].get("event")
                if item[0] == "ALARM" and ev not in done and at_modem.ticks_diff(now, item[4]) >= CFG["sms_after_ms"]:
                    done.add(ev)
                    await self.send_sms(ev)

    async def send_sms(self, event):
        text = link_lte.format_alarm_sms(BOX_ID, CFG["junction"], "panic", event, 1795000000, True)
        try:
            mr = await self.link.send_sms(text)
            emit(ev="sms", mr=mr, event=event)
        except at_modem.ModemError as e:
            emit(ev="sms_error", error=str(e), event=event)


async def monitor(link):
    last = None
    peak = 0
    n = 0
    while True:
        cur = (link.state, link.up)
        if cur != last:
            last = cur
            emit(ev="state", state=link.state, up=link.up, error=link.last_error, tries=link.tries, rssi=link.rssi_dbm, counters=link.counters)
        n += 1
        if n % 25 == 1:  # every 0.5 s: the live heap after a collection
            gc.collect()
            used = gc.mem_alloc()
            if used > peak:
                peak = used
                emit(ev="mem", peak=peak)
        await asyncio.sleep_ms(20)


async def commands(host):
    reader = asyncio.StreamReader(sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        parts = line.decode().split()
        if not parts:
            continue
        if parts[0] == "alarm":
            host.queue_msg({"type": "ALARM", "event": int(parts[1]), "kind": "panic", "time_s": 1795000000, "time_ms": 0})
        elif parts[0] == "sms":
            await host.send_sms(int(parts[1]))
        elif parts[0] == "quit":
            return


async def main():
    host = Host()

    async def open_uart():
        return await asyncio.open_connection("127.0.0.1", SIM_PORT)

    link = link_lte.LteLink(
        host, open_uart, "127.0.0.1", GW_PORT, apn="internet", sms_number=CFG["sms_number"], box_id=BOX_ID,
        answer_timeout_ms=CFG["answer_timeout_ms"], probe_interval_ms=CFG["probe_interval_ms"],
        backoff_base_ms=CFG["backoff_base_ms"], backoff_cap_ms=CFG["backoff_cap_ms"], register_timeout_ms=CFG["register_timeout_ms"],
    )
    host.link = link
    tasks = [asyncio.create_task(t) for t in (link.run(), monitor(link), host.retry(), host.heartbeat(), host.sms_fallback())]
    await commands(host)
    for t in tasks:
        t.cancel()
    gc.collect()
    emit(ev="mem", peak=gc.mem_alloc())
    emit(ev="bye", sent=link.frames_sent, received=link.frames_received, connects=link.connects)


asyncio.run(main())
