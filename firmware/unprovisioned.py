"""A box without a usable configuration: show the fault light, say why once
a minute, and wait for the technician (the REPL stays reachable: Ctrl-C
stops this loop). Imported only on that path, so it costs a provisioned box
no RAM."""

import time
import asyncio

import hw
import log
import feedback

_SAY_EVERY = 600  # loop turns (100 ms each) between two log lines: one minute


async def run(reason, board):
    if board is not None:
        hw.init(board)
    await hw.start()
    beacon = feedback.Beacon(time.ticks_ms())
    beacon.set_fault(True)
    hw.light_state(beacon.shown())
    n = 0
    while True:
        if n % _SAY_EVERY == 0:
            log.error("unprovisioned: %s" % reason)
        now = time.ticks_ms()
        if board is not None:
            light, buzzer = beacon.output(now)
            hw.output("light", light)
        n += 1
        await asyncio.sleep_ms(100)
