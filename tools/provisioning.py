"""Give a box its identity: box id, junction, board, link, key; register it
with the junction gateway; write /config.json last and atomically.

Order of a provision (each step safe to interrupt):

1. read the box: a config.json.new left by an interrupted provision of the
   same box id is resumed (same key, same event_start), anything else
   staged is dropped; check the board file is deployed;
2. stage config.json.new on the box and verify its SHA-256 on the box;
3. register (or re-key) the box at the gateway's admin API; the gateway
   now knows the new key, the box still runs its old config;
4. one on-board rename puts config.json in place (board.commit); verify.

Interrupted before 3: the box and the gateway are as they were. Between 3
and 4: the box is as it was, and the next provision (or replace) of the same
box id resumes with the staged key, so both sides end up agreeing.

A box that had another box id (a used box moved to another junction) keeps
on its flash what belongs to that identity: alarms never acknowledged
(outbox.log) and the old gateway's replay window (replay.dat). Under the new
identity the alarms would reach the control room as presses at the new
junction, and the window would refuse the new gateway's frames. Step 4 removes
both in the same on-board commit as the switch to the new config.json, and the
provision says which alarms stay behind.

`replace OLD` is a provision that inherits the junction's identity (box id,
junction, place, link, bus address) from the gateway's registry, with a fresh
key (the gateway's re-key revokes the old one at once) and an event_start
above every event number the old box can have used.
"""

import json
import logging
import secrets

from callbox_firmware import config as box_config
from callbox_firmware.errors import ConfigError

from .board import sha256_hex
from .errors import EXIT_FAIL, EXIT_GATEWAY_UNREACHABLE, EXIT_USAGE, EXIT_WRONG_BOARD, CommandError

log = logging.getLogger(__name__)

CONFIG = box_config.CONFIG_PATH  # "config.json", relative to the box's root
KEY_BYTES = 32  # HMAC-SHA256 key: the hash's block-size-independent strength
# A replacement box numbers its events from the old box's event_start plus
# this block: a box raises a few alarms or troubles a day, so a million
# events is centuries, and the 32-bit counter allows 4294 replacements.
EVENT_BLOCK = 1_000_000
# Seconds for one admin API request; the gateway answers in milliseconds.
GATEWAY_TIMEOUT_S = 10
# What the firmware keeps on flash for its identity (firmware/bringup.py:
# Outbox("outbox.log"); firmware/replay.py: PATH): removed when the box id changes.
OUTBOX = "outbox.log"
IDENTITY_STATE = (OUTBOX, OUTBOX + ".tmp", "replay.dat", "replay.dat.tmp")


def new_key_hex():
    """A fresh per-box key from the OS's CSPRNG (64 hex characters)."""
    return secrets.token_hex(KEY_BYTES)


def build_config(box_id, key, junction, board, link, bus_addr=None, gateway_host="", gateway_port=0, apn="", sms_number="", heartbeat_s=60, event_start=1):
    """The box's config.json as a dict, checked by the firmware's own
    validator (callbox_firmware.config), so the CLI cannot write a config
    the box would refuse. Raises CommandError(EXIT_USAGE)."""
    raw = {
        "box_id": box_id,
        "key": key,
        "junction": junction,
        "board": board,
        "link": link,
        "bus_addr": bus_addr if bus_addr is not None else 1,
        "gateway_host": gateway_host or "",
        "gateway_port": gateway_port or 0,
        "apn": apn or "",
        "sms_number": sms_number or "",
        "heartbeat_s": heartbeat_s,
        "event_start": event_start,
    }
    if "rs485" in link and bus_addr is None:
        raise CommandError("box %s: an RS-485 box needs --bus-addr 1..247 (its address on the junction's bus)" % box_id, EXIT_USAGE)
    try:
        box_config.validate(raw)
    except ConfigError as e:
        raise CommandError(_config_error_text(e), EXIT_USAGE) from None
    return raw


def _config_error_text(e):
    """The firmware's message without its hint (which tells the box's
    reader to provision again: we are provisioning)."""
    text = str(e)
    if e.hint and text.endswith(" (%s)" % e.hint):
        text = text[: -len(e.hint) - 3]
    return text


def config_bytes(cfg):
    return (json.dumps(cfg, sort_keys=True) + "\n").encode()


def check_board(board_name, link, boards_dir):
    """The board definition from boards/, checked against the link asked
    for. Raises CommandError(EXIT_WRONG_BOARD)."""
    import pathlib

    path = pathlib.Path(boards_dir) / ("%s.json" % board_name)
    if not path.exists():
        names = sorted(p.stem for p in pathlib.Path(boards_dir).glob("*.json"))
        raise CommandError("board %r is not defined; known boards: %s" % (board_name, ", ".join(names) or "none"), EXIT_WRONG_BOARD)
    board = json.loads(path.read_text())
    uarts = board.get("uarts", {})
    needs = []
    if "rs485" in link and "rs485" not in uarts:
        needs.append("an RS-485 UART")
    if "lte" in link and "modem" not in uarts:
        needs.append("an LTE modem UART")
    if needs:
        raise CommandError(
            "board %s has no %s, so it cannot use link %r; pick a board with it or --link %s"
            % (board_name, " or ".join(needs), link, board.get("link", "rs485")),
            EXIT_WRONG_BOARD,
        )
    return board


def default_link(board_name, boards_dir):
    """The link a board definition names (rs485 if it names none or the
    board is unknown: check_board reports the latter)."""
    import pathlib

    path = pathlib.Path(boards_dir) / ("%s.json" % board_name)
    if not path.exists():
        return "rs485"
    return json.loads(path.read_text()).get("link", "rs485")


def registration(cfg, lat=None, lon=None):
    """The admin API record for a box config. A box with both links
    registers as "rs485+lte": the gateway polls it on the bus and accepts
    its LTE backup connection too (same box id and key)."""
    link = cfg["link"]
    return {
        "box_id": cfg["box_id"],
        "key": cfg["key"],
        "junction": cfg["junction"],
        "lat": lat,
        "lon": lon,
        "link": link,
        "bus_addr": cfg["bus_addr"] if "rs485" in link else 0,
        "event_start": cfg["event_start"],
    }


def label(cfg, port=""):
    """The text for the sticker inside the box door (no secrets)."""
    lines = [
        "+--------------------------------------------+",
        "| EMERGENCY CALL BOX   %-22s|" % ("box %d" % cfg["box_id"]),
        "| junction: %-33s|" % cfg["junction"][:33],
        "| board: %-14s link: %-15s|" % (cfg["board"][:14], cfg["link"]),
        "| bus address: %-30s|" % (cfg["bus_addr"] if "rs485" in cfg["link"] else "-"),
        "| first event: %-30d|" % cfg["event_start"],
        "+--------------------------------------------+",
    ]
    return "\n".join(lines)


# -- the gateway's admin API --------------------------------------------


class GatewayAdmin:
    """The gateway's admin API (docs/gateway.md): bearer-token protected,
    JSON. Synchronous urllib: a CLI makes three requests."""

    def __init__(self, base_url, token):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def _request(self, method, path, body=None):
        import urllib.error
        import urllib.request

        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=GATEWAY_TIMEOUT_S) as resp:
                text = resp.read().decode()
                return resp.status, (json.loads(text) if text else {})
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, {"error": text.strip()[:200]}
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise CommandError(
                "gateway unreachable at %s (%s); check that the gateway runs (`callbox gateway`), "
                "the address (--gateway-url) and the network, then retry: the box was not changed" % (self.base_url, reason),
                EXIT_GATEWAY_UNREACHABLE,
            ) from None

    def _check(self, status, body, what, box_id=None):
        if status == 401:
            raise CommandError(
                "the gateway refused the admin token while trying to %s; use the token from the gateway's "
                "data_dir/admin.token (--gateway-token-file or $CALLBOX_GATEWAY_TOKEN)" % what,
                EXIT_FAIL,
            )
        if status >= 500:
            raise CommandError(
                "the gateway failed to %s (HTTP %d: %s); check its log, then retry" % (what, status, body.get("error", "")),
                EXIT_GATEWAY_UNREACHABLE,
            )
        if status >= 400:
            prefix = ("box %s: " % box_id) if box_id is not None else ""
            raise CommandError("%sthe gateway refused to %s: %s" % (prefix, what, body.get("error", "HTTP %d" % status)), EXIT_FAIL)
        return body

    def boxes(self):
        status, body = self._request("GET", "/api/v1/admin/boxes")
        return self._check(status, body, "list its boxes").get("boxes", [])

    def box(self, box_id):
        for rec in self.boxes():
            if rec.get("box_id") == box_id:
                return rec
        return None

    def add(self, rec):
        status, body = self._request("POST", "/api/v1/admin/boxes", rec)
        return self._check(status, body, "register box %s" % rec.get("box_id"), rec.get("box_id"))

    def revoke(self, box_id):
        status, body = self._request("DELETE", "/api/v1/admin/boxes/%d" % box_id)
        return self._check(status, body, "revoke box %s" % box_id, box_id)


# -- the provision itself ---------------------------------------------------


def read_pending(board):
    """A config staged by an interrupted provision (config.json.new), or None."""
    raw = board.read(CONFIG + ".new")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        box_config.validate(cfg)
    except (ValueError, ConfigError):
        return None
    return cfg


def current_config(board):
    raw = board.read(CONFIG)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def check_box_ready(board, board_name):
    """The firmware's board file must be on the box (deployed); the box must
    run MicroPython on an ESP32 or be a virtual box (unix port)."""
    info = board.eval_json("[__import__('sys').platform, getattr(__import__('sys').implementation, '_machine', '?')]")
    platform, machine = info[0], info[1]
    if platform not in ("esp32", "linux"):
        raise CommandError(
            "%s: this board runs MicroPython for %s (%s), not an ESP32; flash the ESP32 image with `callbox flash`" % (board.port, platform, machine),
            EXIT_WRONG_BOARD,
        )
    if board.sha256("boards/%s.json" % board_name) is None:
        raise CommandError(
            "%s: the box has no boards/%s.json; deploy the firmware first (`callbox deploy --port %s`)" % (board.port, board_name, board.port),
            EXIT_WRONG_BOARD,
        )
    return platform, machine


def undelivered_alarms(outbox_bytes):
    """[(event, kind name)] of the alarms an outbox.log holds that its
    gateway never acknowledged (the firmware's own parser, on the host)."""
    import os
    import tempfile

    from callbox_firmware import wire
    from callbox_firmware.outbox import Outbox

    with tempfile.TemporaryDirectory(prefix="callbox-outbox-") as tmp:
        path = os.path.join(tmp, OUTBOX)
        with open(path, "wb") as f:
            f.write(outbox_bytes)
        box = Outbox(path)
        box.load()
        return [(a[0], wire.ALARM_KINDS.get(a[1], str(a[1]))) for a in box.pending]


def identity_leftovers(board, existing, cfg, report):
    """Files of another identity to remove with the switch (see the module
    docstring), and a report of the alarms that stay behind."""
    if not existing or existing.get("box_id") in (None, cfg["box_id"]):
        return []
    present = [p for p, h in board.sha256_many(IDENTITY_STATE).items() if h is not None]
    if not present:
        return []
    was = "this box was box %s (%s)" % (existing.get("box_id"), existing.get("junction", "?"))
    raw = board.read(OUTBOX) if OUTBOX in present else None
    alarms = undelivered_alarms(raw) if raw else []
    if alarms:
        listed = ", ".join("event %d %s" % a for a in alarms[:10]) + (", ..." if len(alarms) > 10 else "")
        report("%s: its %d undelivered alarm%s (%s) stay%s behind with that identity; removing %s"
               % (was, len(alarms), "" if len(alarms) == 1 else "s", listed, "s" if len(alarms) == 1 else "", ", ".join(sorted(present))))
        log.warning("box %s: %d undelivered alarms of box %s dropped on re-provisioning", cfg["box_id"], len(alarms), existing.get("box_id"))
    else:
        report("%s: removing its %s" % (was, ", ".join(sorted(present))))
    return sorted(present)


def provision(board, cfg, admin, lat=None, lon=None, force=False, report=print, hooks=None):
    """Carry out a provision (see the module docstring). `cfg` comes from
    build_config; if the box holds a staged config of the same box id, its
    key and event_start are reused. Returns the config written."""
    hooks = hooks or {}
    pending = read_pending(board)
    if pending and pending.get("box_id") == cfg["box_id"]:
        report("resuming an interrupted provision of box %d (same key)" % cfg["box_id"])
        cfg = dict(cfg, key=pending["key"], event_start=pending["event_start"])
    board.finish_interrupted_commit()
    check_box_ready(board, cfg["board"])
    existing = current_config(board)
    registered = admin.box(cfg["box_id"])
    if registered and not force and not (existing and existing.get("box_id") == cfg["box_id"]) and not (pending and pending.get("box_id") == cfg["box_id"]):
        raise CommandError(
            "box %d is already registered at the gateway (%s) and this box is not it; to put this box in its "
            "place run `callbox replace %d`, or pass --force to re-key box %d here"
            % (cfg["box_id"], registered.get("junction", "?"), cfg["box_id"], cfg["box_id"]),
            EXIT_FAIL,
        )
    leftovers = identity_leftovers(board, existing, cfg, report)
    data = config_bytes(cfg)
    board.stage(CONFIG, data)
    report("staged config.json (sha256 %s, verified on the box)" % sha256_hex(data)[:16])
    if "after_stage" in hooks:
        hooks["after_stage"]()
    admin.add(registration(cfg, lat, lon))
    report("registered box %d at the gateway (%s)" % (cfg["box_id"], admin.base_url))
    if "after_register" in hooks:
        hooks["after_register"]()
    board.commit([CONFIG], remove=leftovers)
    got = board.sha256(CONFIG)
    if got != sha256_hex(data):
        raise CommandError("%s: config.json did not verify after the switch; run the same provision again" % board.port, EXIT_FAIL)
    report("wrote config.json (verified)")
    return cfg


def replacement_event_start(record):
    """First event number of a replacement box: above anything the old box
    can have numbered (its event_start plus a block, or above the last event
    the gateway saw if the registry reports it)."""
    start = int(record.get("event_start") or 0) + EVENT_BLOCK
    last = record.get("last_event")
    if isinstance(last, int):
        start = max(start, last + 1)
    if start > 0xFFFFFFF0:
        raise CommandError("box %s: event numbers exhausted; give the junction a new box id" % record.get("box_id"), EXIT_FAIL)
    return start
