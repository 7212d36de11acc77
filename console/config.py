"""The console's configuration: defaults, an optional TOML file, then flags.

Example (docs/console.md has every key)::

    [console]
    listen = "127.0.0.1:8490"
    database = "sqlite:///var/lib/callbox/console.db"   # or postgresql://user@host/db
    escalation_s = 30

    [gateways.gw-kanpur-01]
    token_env = "CALLBOX_GW_KANPUR_01_TOKEN"   # or token_file = "/etc/callbox/gw1.token"
    base_url = "http://10.0.0.5:8480"

    [junctions."Ghantaghar Square"]
    lat = 26.4553
    lon = 80.3498

Gateway tokens are read from the environment or a file, never written to a log."""

import dataclasses
import os
import pathlib
import re
import tomllib

from .errors import ConfigError

DEFAULT_PORT = 8490
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A token shorter than this is refused: 32 random bytes hex-encoded is 64.
MIN_TOKEN_CHARS = 32


@dataclasses.dataclass
class GatewayConfig:
    gateway_id: str
    token: str = dataclasses.field(repr=False)
    base_url: str = ""

    def __post_init__(self):
        if not _GATEWAY_ID.match(self.gateway_id):
            raise ConfigError("gateway id %r: use 1-64 characters of [A-Za-z0-9_.-]" % self.gateway_id)
        if not isinstance(self.token, str) or len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError("gateway %s: token must have at least %d characters (32 random bytes as hex: "
                              "python3 -c 'import secrets; print(secrets.token_hex(32))')"
                              % (self.gateway_id, MIN_TOKEN_CHARS))
        self.base_url = (self.base_url or "").rstrip("/")


@dataclasses.dataclass
class ConsoleConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database: str = ""                 # sqlite:///path or postgresql://...; empty: state_dir/console.db
    state_dir: str = ""
    gateways: dict = dataclasses.field(default_factory=dict)   # id -> GatewayConfig
    junction_coords: dict = dataclasses.field(default_factory=dict)  # name -> (lat, lon)
    junction_names: tuple = ()         # empty: the Kanpur list
    escalation_s: float = 30.0         # unacknowledged this long: re-alert and roll over
    escalate_kinds: tuple = ("emergency", "panic", "tamper")
    escalation_tick_s: float = 1.0     # how often the escalation loop looks
    health_stale_s: float = 60.0       # no health report for a box this long: show it offline
    presence_s: float = 20.0           # an operator whose board has not pinged this long is not "logged in"
    session_ttl_s: float = 12 * 3600   # one shift
    login_max_failures: int = 5
    login_window_s: float = 300.0
    tz_offset_min: int = 330           # India Standard Time, for daily reports
    scrypt_n: int = 2 ** 14
    cookie_secure: bool = False        # set true behind HTTPS
    gateway_timeout_s: float = 10.0    # console -> gateway calls (media, video call)

    def db_url(self):
        if self.database:
            return self.database
        return "sqlite:///" + str(pathlib.Path(self.state_dir or ".") / "console.db")


def _read_token(gw_id, spec):
    if "token" in spec:
        return spec["token"]
    if "token_env" in spec:
        value = os.environ.get(spec["token_env"])
        if not value:
            raise ConfigError("gateway %s: environment variable %s is not set" % (gw_id, spec["token_env"]))
        return value.strip()
    if "token_file" in spec:
        try:
            return pathlib.Path(spec["token_file"]).read_text().strip()
        except OSError as e:
            raise ConfigError("gateway %s: cannot read token_file %s: %s" % (gw_id, spec["token_file"], e.strerror))
    raise ConfigError("gateway %s: give token_env, token_file or token" % gw_id)


def load(path=None, **overrides):
    """Defaults, then the TOML file (if any), then keyword overrides (flags)."""
    cfg = ConsoleConfig()
    if path:
        try:
            data = tomllib.loads(pathlib.Path(path).read_text())
        except OSError as e:
            raise ConfigError("cannot read console config %s: %s" % (path, e.strerror))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("console config %s is not valid TOML: %s" % (path, e))
        apply_dict(cfg, data)
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg


def apply_dict(cfg, data):
    section = data.get("console", {})
    fields = {f.name: f for f in dataclasses.fields(ConsoleConfig)}
    for key, value in section.items():
        if key == "listen":
            host, _, port = str(value).rpartition(":")
            cfg.host, cfg.port = host or "127.0.0.1", int(port)
        elif key in fields and key not in ("gateways", "junction_coords"):
            cur = getattr(cfg, key)
            setattr(cfg, key, tuple(value) if isinstance(cur, tuple) else value)
        else:
            raise ConfigError("unknown key [console] %s; see docs/console.md" % key)
    for gw_id, spec in data.get("gateways", {}).items():
        cfg.gateways[gw_id] = GatewayConfig(gw_id, _read_token(gw_id, spec), spec.get("base_url", ""))
    for name, spec in data.get("junctions", {}).items():
        try:
            cfg.junction_coords[name] = (float(spec["lat"]), float(spec["lon"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError('junction %r: give lat = <degrees> and lon = <degrees>' % name)
    return cfg
