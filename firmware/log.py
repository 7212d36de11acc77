"""A tiny leveled logger for the box: one line per message on the console,
`<uptime ms> <level letter> box <id>: <message>`. Secrets never go in.
A debug line is log.log(log.DEBUG, msg)."""

import time

DEBUG = 0
INFO = 1
WARNING = 2
ERROR = 3
NAMES = ("debug", "info", "warning", "error")

level = INFO
prefix = "box ?:"


def set_box(box_id):
    global prefix
    prefix = "box %d:" % box_id


def set_level(name):
    global level
    if name in NAMES:
        level = NAMES.index(name)


def log(lvl, msg):
    if lvl >= level:
        # print() puts the spaces in: no format string, no joined copy
        print(time.ticks_ms(), "DIWE"[lvl], prefix, msg)


def info(msg):
    log(INFO, msg)


def warning(msg):
    log(WARNING, msg)


def error(msg):
    log(ERROR, msg)
