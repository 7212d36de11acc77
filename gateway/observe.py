"""Observability: Prometheus counters and gauges, key=value log lines, and a
rate limiter for log lines a hostile peer could otherwise flood.

Log lines are `event=name key=value ...` so they grep and parse; values with
spaces are quoted. Secrets never reach this module: boxes and configs have
reprs that hide their keys and tokens."""

import bisect
import logging
import time

# Buckets (seconds) for the gateway's own ACK delay: the 50 ms target sits on
# a bucket edge, and the tail up to seconds (a starved process) is still seen.
ACK_DELAY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


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
        self._histograms = {}  # (name, labels tuple) -> [bucket counts..., +Inf count, sum]
        self._bounds = {}  # name -> bucket upper bounds

    def observe(self, name, value, buckets=ACK_DELAY_BUCKETS_S, **labels):
        """A histogram sample (cumulative buckets rendered, as Prometheus wants)."""
        bounds = self._bounds.setdefault(name, buckets)
        k = (name, tuple(sorted(labels.items())) if len(labels) > 1 else tuple(labels.items()))
        h = self._histograms.get(k)
        if h is None:
            h = self._histograms[k] = [0] * (len(bounds) + 1) + [0.0]
        h[bisect.bisect_left(bounds, value)] += 1
        h[-1] += value

    def histogram(self, name, **labels):
        """{"buckets": [(le, cumulative count)...], "count", "sum"} or None."""
        k = (name, tuple(sorted(labels.items())))
        h = self._histograms.get(k)
        if h is None:
            return None
        bounds = self._bounds[name]
        cum, out = 0, []
        for le, n in zip(list(bounds) + [float("inf")], h[:-1]):
            cum += n
            out.append((le, cum))
        return {"buckets": out, "count": cum, "sum": h[-1]}

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
        for name in sorted({n for n, _ in self._histograms}):
            full = self.prefix + name
            if name in self._help:
                lines.append("# HELP %s %s" % (full, self._help[name]))
            lines.append("# TYPE %s histogram" % full)
            for (n, labels), _h in sorted(self._histograms.items(), key=lambda kv_: str(kv_[0])):
                if n != name:
                    continue
                h = self.histogram(name, **dict(labels))
                lab = ",".join('%s="%s"' % (k, str(val).replace("\\", "\\\\").replace('"', '\\"')) for k, val in labels)
                for le, cum in h["buckets"]:
                    le_text = "+Inf" if le == float("inf") else repr(float(le))
                    lines.append('%s_bucket{%sle="%s"} %d' % (full, lab + "," if lab else "", le_text, cum))
                suffix = "{%s}" % lab if lab else ""
                lines.append("%s_sum%s %s" % (full, suffix, repr(h["sum"])))
                lines.append("%s_count%s %d" % (full, suffix, h["count"]))
        return "\n".join(lines) + "\n"


def _num(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)
