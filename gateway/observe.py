"""Observability: Prometheus counters and gauges, key=value log lines, and a
rate limiter for log lines a hostile peer could otherwise flood.

Log lines are `event=name key=value ...` so they grep and parse; values with
spaces are quoted. Secrets never reach this module: boxes and configs have
reprs that hide their keys and tokens."""

import logging
import time


def kv(event, **fields):
    parts = ["event=%s" % event]
    for k, v in fields.items():
        s = str(v)
        if not s or any(c in s for c in ' "='):
            s = '"%s"' % s.replace('"', "'")
        parts.append("%s=%s" % (k, s))
    return " ".join(parts)


class RateLimitedLog:
    """The first occurrence of a key is logged as a warning, later ones at
    debug, and at most one warning per `interval_s` per key with the count of
    what was suppressed (aioesphomeapi's first-warning-then-debug pattern)."""

    def __init__(self, logger, interval_s=10.0, clock=time.monotonic):
        self.log = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last = {}
        self._suppressed = {}

    def warning(self, key, event, **fields):
        now = self.clock()
        last = self._last.get(key)
        if last is None or now - last >= self.interval_s:
            n = self._suppressed.pop(key, 0)
            if n:
                fields["suppressed"] = n
            self._last[key] = now
            self.log.warning(kv(event, **fields))
            return True
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug(kv(event, **fields))
        return False


class Metrics:
    """Counters and gauges with labels, rendered as Prometheus text 0.0.4."""

    def __init__(self, prefix="callbox_gateway_"):
        self.prefix = prefix
        self._counters = {}  # (name, labels tuple) -> value
        self._gauges = {}
        self._help = {}

    def describe(self, name, text):
        self._help[name] = text

    def inc(self, name, n=1, **labels):
        # On the per-frame path: sort only when there is something to sort.
        k = (name, tuple(sorted(labels.items())) if len(labels) > 1 else tuple(labels.items()))
        self._counters[k] = self._counters.get(k, 0) + n

    def set(self, name, value, **labels):
        self._gauges[(name, tuple(sorted(labels.items())))] = value

    def set_counter(self, name, value, **labels):
        """Set a counter to a total kept elsewhere (a sink's own counters,
        e.g. DC-09's): rendered as `<prefix><name>_total`, like inc()."""
        self._counters[(name, tuple(sorted(labels.items())))] = value

    def get(self, name, **labels):
        k = (name, tuple(sorted(labels.items())))
        if k in self._counters:
            return self._counters[k]
        return self._gauges.get(k, 0)

    def total(self, name):
        return sum(v for (n, _), v in self._counters.items() if n == name)

    def render(self):
        lines = []
        for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
            names = sorted({n for n, _ in table})
            for name in names:
                full = self.prefix + name + ("_total" if kind == "counter" else "")
                if name in self._help:
                    lines.append("# HELP %s %s" % (full, self._help[name]))
                lines.append("# TYPE %s %s" % (full, kind))
                for (n, labels), v in sorted(table.items(), key=lambda kv_: str(kv_[0])):
                    if n != name:
                        continue
                    lab = ""
                    if labels:
                        lab = "{%s}" % ",".join('%s="%s"' % (k, str(val).replace("\\", "\\\\").replace('"', '\\"')) for k, val in labels)
                    lines.append("%s%s %s" % (full, lab, _num(v)))
        return "\n".join(lines) + "\n"


def _num(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)
