"""The box's identity and settings: /config.json on flash, written by the
technician's `callbox provision`; the board description from boards/.

Fields (docs/firmware.md): box_id, key (64 hex chars), junction, board,
link ("rs485" | "lte" | "rs485+lte"), bus_addr (1..247), gateway_host,
gateway_port, apn, sms_number, heartbeat_s, event_start, and optional
backup_after_s, stuck_s, log_level, sms_after_s, lte_dead_s.

Only main() and the config_set command import this module; the app drops it
after boot (docs/firmware.md, memory).
"""

import json

try:
    from errors import ConfigError
except ImportError:
    from .errors import ConfigError

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
_HEX = "0123456789abcdefABCDEF"


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
    return board


def save(cfg, path=CONFIG_PATH):
    """Write the config atomically (temporary file, then rename)."""
    import os

    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(cfg))
    os.rename(tmp, path)
