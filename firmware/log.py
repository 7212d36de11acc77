"""A tiny leveled logger for the box: one line per message on the console,
`<uptime ms> <level letter> box <id>: <message>`. Secrets never go in."""

import time

DEBUG = 0
INFO = 1
WARNING = 2
ERROR = 3
NAMES = ("debug", "info", "warning", "error")
_LETTERS = "DIWE"

level = INFO
prefix = "box ?"


def set_box(box_id):
    global prefix
    prefix = "box %d" % box_id


def set_level(name):
    global level
    for i in range(len(NAMES)):
        if NAMES[i] == name:
            level = i


def log(lvl, msg):
    if lvl >= level:
        print("%d %s %s: %s" % (time.ticks_ms(), _LETTERS[lvl], prefix, msg))


def debug(msg):
    log(DEBUG, msg)


def info(msg):
    log(INFO, msg)


def warning(msg):
    log(WARNING, msg)


def error(msg):
    log(ERROR, msg)
