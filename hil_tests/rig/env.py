"""The rig's environment file (labgrid style): one TOML file says which rig a
run uses and how it is wired, so the same tests run on virtual boxes here and
on real boards on a bench.

    [rig]        kind = "virtual" | "real"; controller_port (real)
    [timing]     heartbeat_s, missed_heartbeats, health_interval_s, forward_base_s,
                 forward_cap_s, control_room_outage_s, lte_blackout_s, delivery_timeout_s
    [rs485]      baud, turnaround_ms, ber, turnaround_zero, seed; gateway_port (real)
    [lte]        latency_ms, jitter_ms, loss, connect_timeout_s, seed
    [boxes]      board_rs485, board_lte, heapsize, romfs
    [[bench_boxes]]  (real) box_id, key_file, bus_addr, console_port, lines = {...}

`--rig virtual` and `--rig bench` name the files in hil_tests/env/; any other
value is a path. Unknown sections and keys are errors, so a typo cannot
silently fall back to a default.
"""

import pathlib
import tomllib

ENV_DIR = pathlib.Path(__file__).resolve().parent.parent / "env"

_SECTIONS = {
    "rig": {"kind", "controller_port", "controller_baud"},
    "timing": {"heartbeat_s", "missed_heartbeats", "health_interval_s", "forward_base_s", "forward_cap_s",
               "control_room_outage_s", "lte_blackout_s", "delivery_timeout_s"},
    "rs485": {"baud", "turnaround_ms", "ber", "turnaround_zero", "seed", "gateway_port"},
    "lte": {"latency_ms", "jitter_ms", "loss", "connect_timeout_s", "seed"},
    "boxes": {"board_rs485", "board_lte", "heapsize", "romfs"},
}
_BENCH_BOX = {"box_id", "key_file", "bus_addr", "console_port", "lines"}


class EnvError(ValueError):
    """The environment file is missing or wrong; the message names the key."""


class RigEnv:
    def __init__(self, path, data):
        self.path = pathlib.Path(path)
        self.data = data
        self.kind = data["rig"]["kind"]
        self.rig = data["rig"]
        self.timing = data["timing"]
        self.rs485 = data["rs485"]
        self.lte = data["lte"]
        self.boxes = data["boxes"]
        self.bench_boxes = data.get("bench_boxes", [])

    @property
    def virtual(self):
        return self.kind == "virtual"

    def __repr__(self):
        return "RigEnv(%s, kind=%s)" % (self.path, self.kind)


def resolve(name):
    p = ENV_DIR / ("%s.toml" % name)
    if "/" not in name and not name.endswith(".toml") and p.exists():
        return p
    return pathlib.Path(name)


def load(name="virtual"):
    path = resolve(name)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in ENV_DIR.glob("*.toml")))
        raise EnvError("rig environment %s not found; use --rig with one of %s or a path to a .toml file" % (path, known)) from None
    except tomllib.TOMLDecodeError as e:
        raise EnvError("rig environment %s is not valid TOML: %s" % (path, e)) from None
    for sec, keys in _SECTIONS.items():
        if sec not in data or not isinstance(data[sec], dict):
            raise EnvError("%s: missing section [%s]" % (path, sec))
        bad = set(data[sec]) - keys
        if bad:
            raise EnvError("%s: unknown key %s in [%s]; valid: %s" % (path, ", ".join(sorted(bad)), sec, ", ".join(sorted(keys))))
    bad = set(data) - set(_SECTIONS) - {"bench_boxes"}
    if bad:
        raise EnvError("%s: unknown section %s" % (path, ", ".join(sorted(bad))))
    kind = data["rig"].get("kind")
    if kind not in ("virtual", "real"):
        raise EnvError("%s: [rig] kind = %r; use \"virtual\" or \"real\"" % (path, kind))
    if kind == "real":
        if not data["rig"].get("controller_port"):
            raise EnvError("%s: a real rig needs [rig] controller_port (the rig controller's USB serial port)" % path)
        if not data["rs485"].get("gateway_port"):
            raise EnvError("%s: a real rig needs [rs485] gateway_port (the gateway's RS-485 adapter)" % path)
        for i, b in enumerate(data.get("bench_boxes", [])):
            bad = set(b) - _BENCH_BOX
            if bad or "box_id" not in b or "lines" not in b:
                raise EnvError("%s: [[bench_boxes]] #%d needs box_id and lines (keys: %s)" % (path, i + 1, ", ".join(sorted(_BENCH_BOX))))
    return RigEnv(path, data)
