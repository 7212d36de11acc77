"""The box's identity and settings: /config.json on flash, written by the
technician's `callbox provision`; the board description from boards/.

Fields (docs/firmware.md): box_id, key (64 hex chars), junction, board,
link ("rs485" | "lte" | "rs485+lte"), bus_addr (1..247), gateway_host,
gateway_port, apn, sms_number, heartbeat_s, event_start, and optional
backup_after_s, stuck_s, log_level, sms_after_s, lte_dead_s.

On the box only startup.load() (at boot) and the config_set COMMAND
(command(), below) import this module; both drop it after use
(docs/firmware.md, memory). The technician's tools import it on CPython to
validate a config before they write it.
"""

import json

try:
    from errors import ConfigError
except ImportError:
    from .errors import ConfigError
try:
    from micropython import const
except ImportError:  # CPython: the tools read and write this format too

    def const(x):
        return x

CONFIG_PATH = "config.json"
LINKS = ("rs485", "lte", "rs485+lte")
DEFAULTS = {
    "junction": "",
    "bus_addr": 1,
    "gateway_host": "",
    "gateway_port": 0,
    "apn": "",
    "sms_number": "",
    "heartbeat_s": 60,
    "event_start": 1,
    "backup_after_s": 30,
    "stuck_s": 120,
    "sms_after_s": 60,
    "lte_dead_s": 20,
    "log_level": "info",
}
_INT_RANGES = {
    "box_id": (1, 0xFFFFFFFF),
    "bus_addr": (1, 247),
    "gateway_port": (0, 65535),
    "heartbeat_s": (5, 86400),
    "event_start": (1, 0xFFFFFFF0),
    "backup_after_s": (1, 3600),
    "stuck_s": (1, 86400),
    "sms_after_s": (5, 3600),
    # LTE keepalive (protocol.md 7): a frame unanswered this long = dead link.
    "lte_dead_s": (5, 600),
}
_HEX = const("0123456789abcdefABCDEF")
# The short names a board file uses (docs/firmware.md, boards/*.json). Naming
# them here interns them when this module loads, before json parses the
# board: each parsed key is then this one shared name (a few bytes, once)
# instead of a heap string of its own for every pin (64 bytes each on the
# 64-bit unix port). Names longer than 10 characters are not interned this
# way, so they are not listed.
_BOARD_NAMES = (
    # the parts, and the pins and UARTs the firmware uses by name
    "inputs", "outputs", "uarts", "power", "name", "emergency", "panic", "tamper", "light", "buzzer", "de", "rs485", "modem",
    # the fields of a pin, a UART and the power supply
    "pin", "pull", "up", "active", "id", "tx", "rx", "baud", "mains_pin",
)


_FIX = "provision the box again with `callbox provision`"


def validate(raw):
    """Return a complete config dict or raise ConfigError naming the field."""
    if not isinstance(raw, dict):
        raise ConfigError("config.json is not a JSON object", hint=_FIX)
    box_id = raw.get("box_id")
    for name in ("box_id", "key", "board", "link"):
        if name not in raw:
            raise ConfigError("config.json has no %s" % name, box_id if isinstance(box_id, int) else None, _FIX)
    cfg = {}
    for k in DEFAULTS:
        cfg[k] = DEFAULTS[k]
    for k in raw:
        cfg[k] = raw[k]
    bid = box_id if isinstance(box_id, int) else None
    for k in _INT_RANGES:
        lo, hi = _INT_RANGES[k]
        v = cfg[k]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError("%s = %r is not an integer in %d..%d" % (k, v, lo, hi), bid, _FIX)
    key = cfg["key"]
    if not isinstance(key, str) or len(key) != 64 or [c for c in key if c not in _HEX]:
        raise ConfigError("key must be 64 hex characters (32 bytes)", bid, _FIX)
    if cfg["link"] not in LINKS:
        raise ConfigError("link %r is not one of %s" % (cfg["link"], ", ".join(LINKS)), bid, _FIX)
    if "lte" in cfg["link"] and not (cfg["gateway_host"] and cfg["gateway_port"]):
        raise ConfigError("an LTE link needs gateway_host and gateway_port", bid, _FIX)
    if not isinstance(cfg["board"], str) or "/" in cfg["board"]:
        raise ConfigError("board %r is not a board name" % (cfg["board"],), bid, _FIX)
    return cfg


def load(path=CONFIG_PATH):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("no %s: the box is not provisioned" % path, hint=_FIX)
    try:
        raw = json.loads(text)
    except ValueError:
        raise ConfigError("%s is not valid JSON" % path, hint=_FIX)
    return validate(raw)


def load_board(name, box_id=None):
    path = "boards/%s.json" % name
    try:
        with open(path) as f:
            board = json.loads(f.read())
    except OSError:
        raise ConfigError("board file %s is missing" % path, box_id, "deploy the firmware with its boards/ folder")
    except ValueError:
        raise ConfigError("board file %s is not valid JSON" % path, box_id, "deploy the firmware again")
    for part in ("inputs", "outputs", "uarts"):
        if part not in board:
            raise ConfigError("board %s has no %s" % (name, part), box_id, "fix boards/%s.json" % name)
        # The notes are for people reading the file; the box keeps the rest.
        for spec in board[part].values():
            spec.pop("note", None)
    board.pop("description", None)
    return board


def save(cfg, path=CONFIG_PATH):
    """Write the config atomically (temporary file, then rename)."""
    import os

    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(cfg))
    os.rename(tmp, path)


# ------------------------------------------------------------ config_set
# The gateway's config_set COMMAND (protocol.md 5.5). commands.py hands it
# over and App.on_frame runs command() once commands.py has left RAM (the
# two never share the box's heap); this module is dropped after it.

# Keys the gateway may set; box_id, key, board, link and addresses need the
# technician (`callbox provision`).
_SETTABLE = const(("heartbeat_s", "backup_after_s", "stuck_s", "junction", "log_level", "sms_after_s", "lte_dead_s", "sms_number"))


def _parse_settings(args):
    if args[:1] == b"{":
        return json.loads(args)
    changes = {}
    for line in args.decode().split("\n"):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError("not key=value: " + line)
        k, v = line.split("=", 1)
        changes[k.strip()] = v.strip()
    return changes


def command(app, m):
    """config_set on a running box: key=value lines (or a JSON object) of
    _SETTABLE keys, validated, written atomically, applied at once; a refused
    key comes back as bad_args naming it."""
    import sys
    import log

    sys.modules.pop("errors", None)  # loaded with this module, dropped with it (App.on_frame)
    try:
        try:
            changes = _parse_settings(bytes(m["args"]))
        except (ValueError, UnicodeError) as e:
            raise ConfigError("config_set: %s" % (e,))
        new = load()  # the file: app.cfg has no "key" (App dropped its hex)
        for k in changes:
            if k not in _SETTABLE:
                raise ConfigError("unknown or protected key: %s" % k)
            v = changes[k]
            if k in _INT_RANGES and isinstance(v, str):
                try:
                    v = int(v)
                except ValueError:
                    raise ConfigError("%s = %r is not an integer" % (k, v))
            new[k] = v
        new = validate(new)
        save(new)
    except (ConfigError, OSError) as e:
        log.warning("config_set refused: %s" % (e,))
        return app.result(m, "bad_args", str(e).encode()[:180])
    del new["key"]
    app.cfg = new
    app.sender.hb_interval_ms = new["heartbeat_s"] * 1000
    for name, active, deb in app.inputs:
        if name != "tamper":
            deb.stuck_ms = new["stuck_s"] * 1000
    log.set_level(new["log_level"])
    if app.lte is not None:
        app.lte.sms_number = new["sms_number"] or None
        app.lte.keepalive.answer_timeout_ms = new["lte_dead_s"] * 1000
    app.result(m, "ok")
