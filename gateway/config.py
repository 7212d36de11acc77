"""Gateway configuration: a TOML file (tomllib) over embedded defaults.

Every key is optional; `callbox gateway` with no file runs the demo on
127.0.0.1. The file's layout (docs/gateway.md has the full list):

    gateway_id = "gw-kanpur-01"
    data_dir = "/var/lib/callbox"        # SQLite database, admin token file

    [http]     host, port, admin_token, console_token
    [lte]      enabled, host, port, tls_cert, tls_key, idle_timeout_s, auth_timeout_s,
               max_connections, frames_per_s, burst_frames, max_write_buffer_bytes,
               max_bad_frames
    [rs485]    url ("socket://127.0.0.1:9000", "/dev/ttyUSB0", "" = off), baud,
               turnaround_ms, addresses (list; default: every registered rs485 box)
    [storage]  synchronous ("FULL" | "NORMAL"), max_db_mb (0 = unlimited)
    [supervision] heartbeat_interval_s, missed_heartbeats, battery_low_mv, battery_ok_mv
    [forward]  base_s, cap_s (retry backoff towards each sink)
    [[sinks]]  type = "console" | "dc09", and the sink's own keys
    [media]    passed unchanged to callbox_gateway.media.setup()
    [[boxes]]  box_id, key (hex) or key_file, junction, lat, lon, link, bus_addr

Unknown keys are an error (a typo must not silently fall back to a default).
"""

import dataclasses
import os
import pathlib
import tomllib

from .errors import ConfigError


@dataclasses.dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8480
    # Bearer token for /api/v1/admin. Empty: generated on first start and kept
    # in <data_dir>/admin.token (mode 0600); the technician CLI reads it there.
    admin_token: str = ""
    # Token the console presents when it calls the gateway (media, calls,
    # commands); also what the console sink sends, unless the sink has its own.
    console_token: str = ""


@dataclasses.dataclass
class LteConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8470
    tls_cert: str = ""
    tls_key: str = ""
    # A box heartbeats every heartbeat_interval_s; a connection silent for
    # three of them is dead (half-open after a modem lost its PDP context).
    idle_timeout_s: float = 200.0
    # A connection must send one authenticated frame within this time, so a
    # port scanner or a slowloris client cannot hold a slot for long.
    auth_timeout_s: float = 10.0
    # 1,000 boxes per junction gateway is the target; keep headroom.
    max_connections: int = 4096
    # A box sends an alarm or a heartbeat every few seconds at most; 50/s with
    # a burst of 100 lets an outbox of stored alarms drain at once while one
    # misbehaving box cannot take more than its share of the core.
    frames_per_s: float = 50.0
    burst_frames: int = 100
    # Downlink bytes queued for a box that does not read (a stalled TCP
    # window): above this the connection is closed; the box reconnects.
    max_write_buffer_bytes: int = 64 * 1024
    # Frames that fail the CRC, COBS or authentication before the connection
    # is closed: a box with the wrong key or a garbage source gives up its slot.
    max_bad_frames: int = 20


@dataclasses.dataclass
class Rs485Config:
    url: str = ""  # pyserial URL; empty = no bus
    baud: int = 115200
    # How long a box may take to start its reply after the POLL's last byte
    # (its UART interrupt, MicroPython scheduling, the DE pin's 200 us).
    turnaround_ms: float = 5.0
    # Bus addresses to poll; empty = every registered box with link "rs485".
    addresses: list = dataclasses.field(default_factory=list)
    # Downlink frames (ACK, CALL_STATE, COMMAND) sent per slot before POLL, so
    # one box with a long queue cannot stretch the cycle for the others.
    max_downlink_per_slot: int = 2


@dataclasses.dataclass
class StorageConfig:
    # FULL: each commit is fsynced (an ACKed alarm survives a power cut).
    # NORMAL in WAL mode survives a crash of the process but not of the power.
    synchronous: str = "FULL"
    # Cap on the database size (PRAGMA max_page_count); 0 = the disk is the cap.
    max_db_mb: float = 0.0


@dataclasses.dataclass
class SupervisionConfig:
    heartbeat_interval_s: float = 60.0
    missed_heartbeats: int = 3
    # 12 V lead-acid: below 11.5 V it is low; restored above 12.0 V (hysteresis
    # so a battery near the line does not send an event every heartbeat).
    battery_low_mv: int = 11500
    battery_ok_mv: int = 12000
    tick_s: float = 1.0


@dataclasses.dataclass
class ForwardConfig:
    # Retry backoff towards each sink: base_s, doubling, capped at cap_s (with
    # jitter). A control room that comes back is retried within cap_s.
    base_s: float = 1.0
    cap_s: float = 60.0


@dataclasses.dataclass
class Config:
    gateway_id: str = "gw-kanpur-01"
    data_dir: str = ""
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    lte: LteConfig = dataclasses.field(default_factory=LteConfig)
    rs485: Rs485Config = dataclasses.field(default_factory=Rs485Config)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    supervision: SupervisionConfig = dataclasses.field(default_factory=SupervisionConfig)
    forward: ForwardConfig = dataclasses.field(default_factory=ForwardConfig)
    sinks: list = dataclasses.field(default_factory=list)
    media: dict = dataclasses.field(default_factory=dict)
    boxes: list = dataclasses.field(default_factory=list)
    # The folder of the TOML file this came from ("" for embedded defaults or
    # a dict): relative key_file paths ([[boxes]], DC-09 receivers) are taken
    # from it, not from the directory the gateway happens to be started in.
    config_dir: str = ""

    def data_path(self):
        if self.data_dir:
            return pathlib.Path(self.data_dir)
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return pathlib.Path(base) / "callbox-gateway"

    def __repr__(self):
        # Tokens never appear in logs or tracebacks.
        return "Config(gateway_id=%r, data_dir=%r, http=%s:%d, lte=%s, rs485=%r, sinks=%d, boxes=%d)" % (
            self.gateway_id, str(self.data_path()), self.http.host, self.http.port,
            ("%s:%d" % (self.lte.host, self.lte.port)) if self.lte.enabled else "off",
            self.rs485.url or "off", len(self.sinks), len(self.boxes))


_SECTIONS = {"http": HttpConfig, "lte": LteConfig, "rs485": Rs485Config, "storage": StorageConfig, "supervision": SupervisionConfig, "forward": ForwardConfig}


def _fill(cls, table, where):
    if not isinstance(table, dict):
        raise ConfigError("[%s] must be a table" % where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = cls()
    for k, v in table.items():
        if k not in fields:
            raise ConfigError("unknown key %s.%s; valid keys: %s" % (where, k, ", ".join(sorted(fields))))
        default = getattr(out, k)
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif isinstance(default, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(default, list):
            ok = isinstance(v, list)
        else:
            ok = isinstance(v, str)
        if not ok:
            raise ConfigError("%s.%s = %r: expected %s" % (where, k, v, type(default).__name__))
        setattr(out, k, v)
    return out


def from_dict(d):
    cfg = Config()
    for k, v in d.items():
        if k in _SECTIONS:
            setattr(cfg, k, _fill(_SECTIONS[k], v, k))
        elif k in ("gateway_id", "data_dir"):
            if not isinstance(v, str) or (k == "gateway_id" and not v):
                raise ConfigError("%s must be a non-empty string" % k)
            setattr(cfg, k, v)
        elif k in ("sinks", "boxes"):
            if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
                raise ConfigError("%s must be an array of tables ([[%s]])" % (k, k))
            setattr(cfg, k, v)
        elif k == "media":
            if not isinstance(v, dict):
                raise ConfigError("[media] must be a table")
            cfg.media = v
        else:
            raise ConfigError("unknown top-level key %r; valid: gateway_id, data_dir, %s, sinks, media, boxes" % (k, ", ".join(_SECTIONS)))
    sync = cfg.storage.synchronous.upper()
    if sync not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError("storage.synchronous = %r: use FULL (power-cut safe) or NORMAL" % cfg.storage.synchronous)
    cfg.storage.synchronous = sync
    if cfg.supervision.missed_heartbeats < 1 or cfg.supervision.heartbeat_interval_s <= 0:
        raise ConfigError("supervision: missed_heartbeats must be >= 1 and heartbeat_interval_s > 0")
    if cfg.rs485.baud < 1200:
        raise ConfigError("rs485.baud = %d is too low; the boxes run at 115200" % cfg.rs485.baud)
    for a in cfg.rs485.addresses:
        if not isinstance(a, int) or not 1 <= a <= 247:
            raise ConfigError("rs485.addresses: %r is not a bus address 1..247" % (a,))
    for s in cfg.sinks:
        if s.get("type") not in ("console", "dc09"):
            raise ConfigError("[[sinks]] type = %r: use \"console\" or \"dc09\"" % (s.get("type"),))
    return cfg


def load(path=None):
    """Config from a TOML file, or the embedded defaults when path is None."""
    if path is None:
        return from_dict({})
    p = pathlib.Path(path)
    try:
        with open(p, "rb") as f:
            d = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config file %s not found; run without --config for the demo defaults" % p) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config file %s is not valid TOML: %s" % (p, e)) from None
    cfg = from_dict(d)
    cfg.config_dir = str(p.resolve().parent)
    return cfg


def resolve(cfg, path):
    """A path from the configuration: relative ones are taken from the
    config file's folder (as is when the config did not come from a file)."""
    q = pathlib.Path(path)
    if cfg.config_dir and not q.is_absolute():
        q = pathlib.Path(cfg.config_dir) / q
    return q
