"""A separate process for the SIGKILL test: N boxes on LTE send alarms one
after another, each kept until ACKed (resent with the same event id and a new
counter after a reconnect, as a box does), and every ACK is appended to a
file and fsynced before the next alarm.

usage: python gw_ack_recorder.py PORTFILE ACKLOG STOPFILE N_BOXES"""

import asyncio
import os
import sys

from callbox_firmware import wire
from callbox_gateway.sim import SimBox


async def box_task(box, portfile, log, stopfile):
    event = 0
    pending = None
    while not os.path.exists(stopfile):
        try:
            port = int(open(portfile).read().strip() or 0)
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        except (OSError, ValueError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
            continue
        fr = wire.FrameReader()
        try:
            while not os.path.exists(stopfile):
                if pending is None:
                    event += 1
                    pending = event
                w.write(box.alarm("panic", event=pending))
                await w.drain()
                acked = False
                while not acked:
                    data = await asyncio.wait_for(r.read(4096), 3.0)
                    if not data:
                        raise ConnectionError
                    for p in fr.feed(data):
                        f = box.decode_down(p)
                        if f.type_name == "ACK" and f.msg["event"] == pending:
                            log.write("%d %d %s\n" % (box.box_id, pending, f.msg["status"]))
                            log.flush()
                            os.fsync(log.fileno())
                            acked = True
                pending = None
        except (OSError, ConnectionError, asyncio.TimeoutError, wire.WireError):
            pass
        finally:
            w.close()


async def main():
    portfile, acklog, stopfile, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    log = open(acklog, "a")
    boxes = [SimBox(0x500 + i) for i in range(n)]
    await asyncio.gather(*(box_task(b, portfile, log, stopfile) for b in boxes))


if __name__ == "__main__":
    asyncio.run(main())
