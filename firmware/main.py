# The box's entry point (runs after boot.py). A crash is logged and followed
# by a hard reset: a box in the street must come back by itself. Ctrl-C
# (KeyboardInterrupt, from mpremote or a technician) stops it at the REPL.
import os

# A `callbox deploy` or `provision` cut by a power loss during its switch
# left commit.journal: finish its renames and removals before anything else
# is imported (tools/board.py writes it; applying it twice is harmless).
try:
    os.stat("commit.journal")
except OSError:
    pass
else:
    import json

    with open("commit.journal") as f:
        J = json.loads(f.read())
    for p in J["rename"]:
        try:
            os.stat(p + ".new")
        except OSError:
            continue
        try:
            os.rename(p + ".new", p)
        except OSError:
            os.remove(p)
            os.rename(p + ".new", p)
    for p in J["remove"]:
        try:
            os.remove(p)
        except OSError:
            pass
    os.remove("commit.journal")
    print("main: finished an interrupted update (commit.journal)")
    del J, json

import sys
import time

# A technician's REPL session keeps the watchdog fed this long (ms), then
# the box resets itself back into its firmware.
REPL_WDT_HOLD_MS = 10 * 60 * 1000

try:
    # Configuration first, then the firmware: config.py (validation) is
    # dropped before app.py and the codec load, so boot never holds both.
    import config

    try:
        cfg = config.load()
        board = config.load_board(cfg["board"], cfg["box_id"])
        why = None
    except config.ConfigError as e:
        why = str(e)
        try:
            board = config.load_board("devkit_rs485")
        except config.ConfigError:
            board = None
    del config
    del sys.modules["config"]
    del sys.modules["errors"]
    import gc

    gc.collect()
    if why is not None:
        import asyncio
        import unprovisioned

        asyncio.run(unprovisioned.run(why, board))
    import log

    log.set_box(cfg["box_id"])
    log.set_level(cfg["log_level"])
    import app

    app.main(cfg, board)
except KeyboardInterrupt:
    import hw

    hw.wdt_hold(REPL_WDT_HOLD_MS)
    print("main: stopped by Ctrl-C; the REPL is yours for 10 minutes before the watchdog resets the box")
except Exception as e:
    print("main: firmware crashed, resetting in 5 s:")
    sys.print_exception(e)
    time.sleep(5)
    import hw

    hw.reset()
