"""Boot, before app.py loads: main.py imports this module for
finish_update() and load(), which drops it (and config.py), so its code has
left RAM before the firmware's loads (docs/firmware.md, memory). What
happens after hw.start() is in bringup.py.

    finish_update()   an update cut by a power loss (commit.journal)
    load()            config.json and the board file (config.py, dropped
                      here), the logger, the pins; an unprovisioned box stays
                      in unprovisioned.py

Only built-in and frozen modules are imported at the top: main.py calls
finish_update() before any firmware module loads.
"""

import os
import sys
import asyncio


def finish_update():
    """A `callbox deploy` or `provision` cut by a power loss during its
    switch left commit.journal: finish its renames and removals before any
    firmware module is imported (tools/board.py writes it; applying it twice
    is harmless). This runs from the startup.py on flash, old or new: on
    littlefs a rename replaces a file atomically, and the journal's format
    does not change with the firmware. Here rather than in main.py, whose
    code stays in RAM for good."""
    try:
        f = open("commit.journal")
    except OSError:
        return
    import json

    with f:
        J = json.loads(f.read())
    for p in J["rename"]:
        try:
            os.stat(p + ".new")
        except OSError:
            continue  # renamed before the power cut
        try:
            os.rename(p + ".new", p)
        except OSError:  # FAT does not rename over a file
            os.remove(p)
            os.rename(p + ".new", p)
    for p in J["remove"]:
        try:
            os.remove(p)
        except OSError:
            pass
    os.remove("commit.journal")
    print("main: finished an interrupted update (commit.journal)")


def load():
    """(cfg, board) of a provisioned box; never returns on a box without a
    usable config.json (fault light, the reason logged every minute)."""
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
    for name in ("config", "errors", "startup"):  # their code can be collected
        sys.modules.pop(name, None)
    if why is not None:
        import unprovisioned

        asyncio.run(unprovisioned.run(why, board))
    import log
    import hw

    log.set_box(cfg["box_id"])
    log.set_level(cfg["log_level"])
    hw.init(board)
    board.pop("power", None)  # read by hw.init alone: the box keeps the rest
    return cfg, board
