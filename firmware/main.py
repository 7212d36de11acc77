# The box's entry point (runs after boot.py): the guard around the firmware.
# A crash is logged and followed by a hard reset: a box in the street must
# come back by itself. Ctrl-C (KeyboardInterrupt, from mpremote or a
# technician) stops it at the REPL.
#
# Kept this small on purpose: main.py is compiled from source at every boot
# and its code stays in RAM for as long as the box runs. The boot work
# (finishing an interrupted update, config.json, the board) is in startup.py,
# whose code leaves RAM once the box runs (docs/firmware.md, memory).
import sys
import startup

# An update cut by a power loss is finished first (before any other firmware
# module loads); a journal that cannot be finished leaves the box at the REPL.
startup.finish_update()
try:
    cfg, board = startup.load()  # config, board, logger, pins
    del startup  # startup.load() dropped the module: its code leaves RAM
    import asyncio
    import app

    asyncio.run(app.App(cfg, board).run())
except KeyboardInterrupt:
    import hw

    hw.wdt_hold(600000)  # the technician's session: 10 minutes
    print("main: stopped by Ctrl-C; the watchdog resets the box in 10 min")
except Exception as e:
    print("main: firmware crashed, resetting in 5 s:")
    sys.print_exception(e)
    import time

    time.sleep(5)
    import hw

    hw.reset()
