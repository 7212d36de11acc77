"""Forwarding sink: gateway events to alarm receiving centres over SIA DC-09/TCP.

Plugs into the gateway's forward queue as `await sink.deliver(event)`: returns
only when a receiver has ACKed the event's frame (right sequence number,
account, and encrypted if the frame was); raises DeliveryError otherwise,
retryable unless every receiver that answered said DUH (it will never take
this event) or the event has no DC-09 code.

Three layers, as elsewhere in the gateway:
- gateway/dc09.py, the pure codec (frames, replies, event codes);
- pure state here, with the time passed in: Dc09Config (validated
  configuration), SequenceCounter, ReceiverSelector (primary/backup choice and
  failback), ClockOffset (NAK time resync);
- Dc09Sink, the asyncio shell: one TCP connection per receiver, kept open,
  one message in flight per receiver, supervision NULL messages, counters.

Failure handling, per attempt on one receiver:
- connect refused or timed out, connection closed, no reply within
  ack_timeout_s, a corrupt reply: counted, logged, next receiver;
- NAK: the receiver's time from the NAK corrects this receiver's clock
  offset and the frame is sent once more (same sequence number, new
  timestamp); a second NAK moves on to the next receiver;
- DUH: next receiver; if all answered DUH the error is not retryable;
- an ACK with another sequence number (a late answer to an earlier attempt) is
  ignored and counted; only the matching ACK delivers.
A connection that was idle and turns out closed by the receiver is reopened
once before that counts as a failure, so an ARC that drops idle links does not
cause a failover.
"""

import asyncio
import datetime
import logging
import os
import pathlib
import time

from . import dc09
from .errors import ConfigError, DeliveryError

log = logging.getLogger(__name__)

# Defaults, each with its reason.
DEFAULT_CONNECT_TIMEOUT_S = 5.0  # TCP connect over the uplink; LTE setup can take seconds
DEFAULT_ACK_TIMEOUT_S = 10.0  # DC-09 receivers answer in well under a second; 10 s covers a slow LTE uplink
DEFAULT_SUPERVISION_INTERVAL_S = 60.0  # NULL link test when idle; ARCs flag a path after a few missed ones
DEFAULT_PRIMARY_RETRY_S = 60.0  # on backup, try the primary again at most this often
MAX_NAK_RETRIES = 1  # one resend with the receiver's time; a second NAK means something else is wrong
# Past this many seconds a NAK's clock correction is not trusted (a receiver
# with a broken clock must not drag our timestamps a day away).
MAX_CLOCK_OFFSET_S = 24 * 3600.0
_READ_CHUNK = 512


# ---------------------------------------------------------------- configuration


class Dc09Receiver:
    """One alarm receiving centre path: where it is, its R and L fields, key."""

    __slots__ = ("name", "host", "port", "receiver", "line", "key")

    def __init__(self, name, host, port, receiver="0", line="0", key=None):
        self.name = name
        self.host = host
        self.port = port
        self.receiver = receiver
        self.line = line
        self.key = key

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def __repr__(self):
        return "Dc09Receiver(%s %s R%s L%s%s)" % (self.name, self.address, self.receiver, self.line, " AES-%d" % self.key.bits if self.key else "")


class Dc09Config:
    """Validated DC-09 forwarding configuration (the [forward.dc09] table)."""

    def __init__(
        self,
        receivers,
        token=dc09.TOKEN_SIA,
        account_mode="box",
        junction_accounts=None,
        box_accounts=None,
        box_zones=None,
        gateway_account="0000",
        connect_timeout_s=DEFAULT_CONNECT_TIMEOUT_S,
        ack_timeout_s=DEFAULT_ACK_TIMEOUT_S,
        supervision_interval_s=DEFAULT_SUPERVISION_INTERVAL_S,
        primary_retry_s=DEFAULT_PRIMARY_RETRY_S,
        event_time=True,
        keep_open=True,
    ):
        if not receivers:
            raise ConfigError("forward.dc09.receivers: at least one receiver (the primary) is needed")
        names = [r.name for r in receivers]
        if len(set(names)) != len(names):
            raise ConfigError("forward.dc09.receivers: receiver names must be unique, got %s" % names)
        if token not in (dc09.TOKEN_SIA, dc09.TOKEN_CID):
            raise ConfigError("forward.dc09.format must be 'SIA-DCS' or 'ADM-CID', not %r" % token)
        if account_mode not in ("box", "junction"):
            raise ConfigError("forward.dc09.account_mode must be 'box' (account = box id) or 'junction', not %r" % account_mode)
        for name, value in (
            ("connect_timeout_s", connect_timeout_s),
            ("ack_timeout_s", ack_timeout_s),
            ("supervision_interval_s", supervision_interval_s),
            ("primary_retry_s", primary_retry_s),
        ):
            if not isinstance(value, (int, float)) or value < 0 or (value == 0 and name != "supervision_interval_s"):
                raise ConfigError("forward.dc09.%s must be a positive number of seconds (0 turns supervision off), not %r" % (name, value))
        self.receivers = tuple(receivers)
        self.token = token
        self.account_mode = account_mode
        self.junction_accounts = {k: _account(v, "forward.dc09.junction_accounts[%r]" % k) for k, v in (junction_accounts or {}).items()}
        self.box_accounts = {
            _box_id(k, "forward.dc09.box_accounts"): _account(v, "forward.dc09.box_accounts[%r]" % k) for k, v in (box_accounts or {}).items()
        }
        self.box_zones = {}
        for k, v in (box_zones or {}).items():
            if not isinstance(v, int) or not 0 <= v <= 999:
                raise ConfigError("forward.dc09.box_zones[%r] must be a zone number 0..999, not %r" % (k, v))
            self.box_zones[_box_id(k, "forward.dc09.box_zones")] = v
        self.gateway_account = _account(gateway_account, "forward.dc09.gateway_account")
        self.connect_timeout_s = float(connect_timeout_s)
        self.ack_timeout_s = float(ack_timeout_s)
        self.supervision_interval_s = float(supervision_interval_s)
        self.primary_retry_s = float(primary_retry_s)
        self.event_time = bool(event_time)
        self.keep_open = bool(keep_open)

    @classmethod
    def from_dict(cls, table, base_dir=None):
        """Build from the parsed TOML table [forward.dc09] (see docs/dc09.md).
        Relative key_file paths are taken from base_dir (the config file's folder)."""
        table = dict(table)
        known = {
            "enabled", "format", "account_mode", "junction_accounts", "box_accounts", "box_zones", "gateway_account",
            "connect_timeout_s", "ack_timeout_s", "supervision_interval_s", "primary_retry_s", "event_time", "keep_open",
            "receivers",
        }  # fmt: skip
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError("forward.dc09: unknown setting(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(known))))
        receivers = [_receiver_from_dict(i, r, base_dir) for i, r in enumerate(table.pop("receivers", []))]
        table.pop("enabled", None)
        kwargs = {"token": table.pop("format", dc09.TOKEN_SIA)}
        kwargs.update(table)
        return cls(receivers, **kwargs)

    def address(self, event):
        """(account, area, zone) for an event.

        account_mode 'box': account = box_accounts[box] or the box id in
        decimal (at least 4 digits); zone = the input (1 Emergency, 2 Panic,
        0 the box). account_mode 'junction': account = junction_accounts[the
        event's junction]; zone = box_zones[box] or the box id (1..999)."""
        box_id = event.get("box_id")
        if not isinstance(box_id, int) or box_id < 0:
            raise dc09.Dc09FormatError("unmapped", "event has no integer box_id: %r" % (box_id,))
        if self.account_mode == "box":
            account = self.box_accounts.get(box_id, "%04d" % box_id)
            return dc09.check_account(account), 1, dc09.input_zone(event)
        junction = event.get("junction")
        account = self.junction_accounts.get(junction)
        if account is None:
            raise dc09.Dc09FormatError(
                "unmapped", "junction %r has no DC-09 account: add it to forward.dc09.junction_accounts" % (junction,), box_id
            )
        zone = self.box_zones.get(box_id, box_id)
        if not 0 <= zone <= 999:
            raise dc09.Dc09FormatError("unmapped", "box id above 999 needs a zone in forward.dc09.box_zones", box_id)
        return account, 1, zone


def _box_id(key, where):
    """TOML table keys are strings: '42' -> 42."""
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ConfigError("%s: keys are box ids (whole numbers), not %r" % (where, key)) from None


def _account(value, where):
    try:
        return dc09.check_account(value)
    except dc09.Dc09FormatError as exc:
        raise ConfigError("%s: %s" % (where, exc)) from None


def _receiver_from_dict(index, table, base_dir):
    table = dict(table)
    where = "forward.dc09.receivers[%d]" % index
    name = table.pop("name", "primary" if index == 0 else "backup%d" % index)
    if "host" not in table or "port" not in table:
        raise ConfigError("%s (%s): host and port are required" % (where, name))
    host = table.pop("host")
    port = table.pop("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("%s (%s): port must be 1..65535, not %r" % (where, name, port))
    receiver = str(table.pop("receiver", "0")).upper()
    line = str(table.pop("line", "0")).upper()
    for field, value in (("receiver", receiver), ("line", line)):
        if not dc09._HEX_FIELD.match(value):
            raise ConfigError("%s (%s): %s must be 1-6 hex digits, not %r" % (where, name, field, value))
    key_text = table.pop("key", None)
    key_file = table.pop("key_file", None)
    key_format = table.pop("key_format", None)
    if table:
        raise ConfigError("%s (%s): unknown setting(s) %s" % (where, name, ", ".join(sorted(table))))
    if key_text is not None and key_file is not None:
        raise ConfigError("%s (%s): give key or key_file, not both" % (where, name))
    if key_file is not None:
        path = pathlib.Path(key_file)
        if base_dir is not None and not path.is_absolute():
            path = pathlib.Path(base_dir) / path
        try:
            key_text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("%s (%s): cannot read key_file %s: %s" % (where, name, path, exc.__class__.__name__)) from None
    key = None
    if key_text is not None:
        if key_format is None:
            raise ConfigError(
                "%s (%s): key_format is required with a key: 'hex' (the receiver hex-decodes the key) or 'ascii'"
                " (its characters are the key bytes, as in pysiaalarm)" % (where, name)
            )
        key = dc09.Dc09Key.parse(key_text, key_format, "%s (%s)" % (where, name))
    return Dc09Receiver(name, host, port, receiver, line, key)


# ---------------------------------------------------------------- pure state


class SequenceCounter:
    """DC-09 sequence numbers for one receiver: 0001..9999, wrapping.

    With `path`, the numbers go on across a gateway restart instead of
    starting at 0001 again: a receiver that takes a repeated number for a
    duplicate would ACK the new alarm and drop it. No disk write per frame:
    the counter reserves BLOCK numbers at a time by storing the first number
    after the block (written to a temporary file, fsynced, renamed), and a
    restart continues from there. A crash skips at most BLOCK numbers and
    never reuses one. A file that cannot be read or written costs only the
    persistence (logged once), never a delivery."""

    BLOCK = 100

    def __init__(self, start=dc09.SEQ_MIN, path=None):
        self._next = start
        self._path = pathlib.Path(path) if path else None
        self._left = 0  # numbers left in the reserved block
        self._warned = set()  # kinds of trouble already logged
        if self._path is not None:
            saved = self._load()
            if saved is not None:
                self._next = saved
            self._reserve()

    def take(self):
        seq = self._next
        self._next = dc09.next_sequence(seq)
        if self._path is not None:
            self._left -= 1
            if self._left <= 0:
                self._reserve()
        return seq

    def _load(self):
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as e:
            self._warn("read", "cannot read %s (%s): numbering starts at %04d" % (self._path, e, self._next))
            return None
        if not text.isdigit() or not dc09.SEQ_MIN <= int(text) <= dc09.SEQ_MAX:
            self._warn("read", "%s holds %r, not a sequence number: numbering starts at %04d" % (self._path, text[:20], self._next))
            return None
        return int(text)

    def _reserve(self):
        after = (self._next - 1 + self.BLOCK) % dc09.SEQ_MAX + 1  # the number after the block, wrapped
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                f.write("%04d\n" % after)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except OSError as e:
            self._warn("write", "cannot store the sequence number in %s (%s): it restarts at %04d after a gateway restart" % (self._path, e, dc09.SEQ_MIN))
        self._left = self.BLOCK

    def _warn(self, kind, msg):
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("DC-09: %s", msg)


class ClockOffset:
    """The receiver's clock minus ours, learned from its NAK. Frames to this
    receiver are stamped with our time plus the offset."""

    def __init__(self):
        self.offset_s = 0.0

    def stamp(self, now):
        return now + datetime.timedelta(seconds=self.offset_s)

    def resync(self, receiver_time, now):
        """Adopt the receiver's time from a NAK. Returns True if the offset was
        taken, False if it was implausible (kept as it was)."""
        offset = (receiver_time - now).total_seconds()
        if abs(offset) > MAX_CLOCK_OFFSET_S:
            return False
        self.offset_s = offset
        return True


class ReceiverSelector:
    """Which receivers to try, in which order. Index 0 is the primary.

    While the primary works, try it first and the backups in order. After
    the primary fails and a backup delivers, the backup becomes active and is
    tried first; the primary is tried first again once primary_retry_s has
    passed since the last time it failed, and becomes active again when it
    delivers. `now` is monotonic seconds."""

    def __init__(self, count, primary_retry_s):
        self.count = count
        self.primary_retry_s = primary_retry_s
        self.active = 0
        self._primary_failed_at = None
        self.failovers = 0
        self.failbacks = 0

    def primary_due(self, now):
        return self.active != 0 and self.primary_due_in(now) <= 0

    def primary_due_in(self, now):
        """Seconds until the primary should be tried again (0 if due now)."""
        if self._primary_failed_at is None:
            return 0.0
        return max(0.0, self._primary_failed_at + self.primary_retry_s - now)

    def order(self, now):
        rest = [i for i in range(self.count) if i != self.active]
        if self.primary_due(now):
            return [0, self.active] + [i for i in rest if i != 0]
        return [self.active] + rest

    def failed(self, index, now):
        if index == 0:
            self._primary_failed_at = now

    def succeeded(self, index, now):
        """Record a delivery; returns 'failover', 'failback' or None."""
        change = None
        if index != self.active:
            change = "failback" if index == 0 else "failover"
            if change == "failover":
                self.failovers += 1
            else:
                self.failbacks += 1
            self.active = index
        if index == 0:
            self._primary_failed_at = None
        return change


# ---------------------------------------------------------------- asyncio shell


class _Attempt(Exception):
    """One attempt on one receiver failed; `reason` names the counter."""

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Link:
    """The TCP connection to one receiver, its sequence numbers and clock offset."""

    def __init__(self, receiver, state_dir=None):
        self.receiver = receiver
        self.seq = SequenceCounter(path=_seq_path(state_dir, receiver.name) if state_dir else None)
        self.clock = ClockOffset()
        self.lock = asyncio.Lock()
        self.reader = None
        self.writer = None
        self.buffer = bytearray()
        self.failing = False  # in a streak of failures: repeats are logged at debug

    def is_open(self):
        return self.writer is not None and not self.writer.is_closing()

    async def close(self):
        writer, self.writer, self.reader = self.writer, None, None
        self.buffer.clear()
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass


_COUNTERS = ("sent", "ack", "nak", "duh", "timeout", "connect_error", "closed", "bad_reply", "stale_reply", "resync")


def file_safe(name):
    """`name` (a sink or receiver name from the config) usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _seq_path(state_dir, receiver_name):
    """The file holding one receiver's next DC-09 sequence number."""
    return pathlib.Path(state_dir) / ("seq-%s" % file_safe(receiver_name))


class Dc09Sink:
    """Forward gateway events to DC-09 receivers (primary first, then backups).

    `await start()` begins supervision (NULL messages every
    supervision_interval_s while idle); `await close()` stops it and closes
    the connections. deliver() works without start(). `clock` (monotonic
    seconds) and `wall_clock` (aware UTC datetime) can be injected.
    `state_dir` keeps each receiver's sequence numbers across restarts
    (SequenceCounter); without it they start at 0001 each time."""

    name = "dc09"

    def __init__(self, config, clock=time.monotonic, wall_clock=None, padding=dc09.random_padding, state_dir=None):
        self.config = config
        self._clock = clock
        self._wall_clock = wall_clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self._padding = padding
        self._links = [_Link(r, state_dir) for r in config.receivers]
        self.selector = ReceiverSelector(len(self._links), config.primary_retry_s)
        self._counts = {(r.name, c): 0 for r in config.receivers for c in _COUNTERS}
        self._totals = {
            "delivered": 0,
            "failed_retryable": 0,
            "failed_permanent": 0,
            "unmapped": 0,
            "supervision_ok": 0,
            "supervision_failed": 0,
        }
        self._last_traffic = self._clock()
        self._supervisor = None
        self._supervision_failing = False
        self._closed = False
        self._wakeup = asyncio.Event()

    # ---- public interface

    async def deliver(self, event):
        """Send one event; return once a receiver ACKed it, else raise DeliveryError."""
        box_id = event.get("box_id") if isinstance(event.get("box_id"), int) else None
        event_id = event.get("event_id", "?")
        try:
            account, area, zone = self.config.address(event)
            data = dc09.event_data(self.config.token, event, account, zone, area)
        except dc09.Dc09FormatError as exc:
            self._totals["unmapped"] += 1
            log.warning("DC-09: event %s cannot be forwarded (parked, not retried): %s", event_id, exc)
            raise DeliveryError("DC-09: event %s: %s" % (event_id, exc), retryable=False, box_id=box_id) from None
        xdata = ()
        if self.config.event_time:
            block = dc09.occurrence_xdata(event)
            xdata = (block,) if block else ()
        what = "event %s (%s%s, account %s zone %03d)" % (event_id, event.get("kind"), " restore" if event.get("restore") else "", account, zone)
        outcome = await self._send_everywhere(self.config.token, account, data, xdata, what)
        if outcome is None:
            self._totals["delivered"] += 1
            return
        retryable, summary = outcome
        self._totals["failed_retryable" if retryable else "failed_permanent"] += 1
        hint = (
            "the event stays queued and is retried; check the receivers are reachable and their clocks"
            if retryable
            else "every receiver refused it (DUH): check the ARC knows account %s and code for %s" % (account, event.get("kind"))
        )
        log.warning("DC-09: %s not delivered: %s; %s", what, summary, hint)
        raise DeliveryError("DC-09: %s not acknowledged: %s; %s" % (what, summary, hint), retryable=retryable, box_id=box_id)

    async def supervise_once(self):
        """Send one NULL link test (to the primary if it is due back, else to
        the active receiver, then the others). Returns True if one was ACKed."""
        outcome = await self._send_everywhere(dc09.TOKEN_NULL, self.config.gateway_account, "", (), "supervision NULL")
        if outcome is None:
            self._totals["supervision_ok"] += 1
            if self._supervision_failing:
                log.info("DC-09: supervision NULL acknowledged again")
            self._supervision_failing = False
            return True
        self._totals["supervision_failed"] += 1
        # The first failure of a streak is a warning, repeats (every interval) debug.
        level = logging.DEBUG if self._supervision_failing else logging.WARNING
        self._supervision_failing = True
        log.log(level, "DC-09: supervision NULL not acknowledged by any receiver: %s; alarms stay queued until one answers", outcome[1])
        return False

    async def start(self):
        if self._supervisor is None and self.config.supervision_interval_s > 0:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise_forever(), name="dc09-supervision")

    async def close(self):
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
            self._supervisor = None
        for link in self._links:
            await link.close()

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def metric_samples(self):
        """Counters and gauges as (type, name, labels, value), type 'counter'
        or 'gauge', name without prefix or _total: for the gateway's Metrics."""
        out = []
        for (name, counter), value in self._counts.items():
            out.append(("counter", "dc09_" + counter, {"receiver": name}, value))
        for counter, value in self._totals.items():
            out.append(("counter", "dc09_" + counter, {}, value))
        out.append(("counter", "dc09_failovers", {}, self.selector.failovers))
        out.append(("counter", "dc09_failbacks", {}, self.selector.failbacks))
        for index, link in enumerate(self._links):
            out.append(("gauge", "dc09_active", {"receiver": link.receiver.name}, int(index == self.selector.active)))
            out.append(("gauge", "dc09_clock_offset_seconds", {"receiver": link.receiver.name}, link.clock.offset_s))
        return out

    def metrics(self):
        """The same, as a dict of Prometheus sample names -> value, e.g.
        'callbox_dc09_timeout_total{receiver="primary"}': 3."""
        out = {}
        for kind, name, labels, value in self.metric_samples():
            label_text = ",".join('%s="%s"' % item for item in sorted(labels.items()))
            out["callbox_" + name + ("_total" if kind == "counter" else "") + ("{%s}" % label_text if label_text else "")] = value
        return out

    def count(self, receiver_name, counter):
        return self._counts[(receiver_name, counter)]

    # ---- sending

    async def _send_everywhere(self, token, account, data, xdata, what):
        """Try receivers in the selector's order. None on ACK, else
        (retryable, summary of every attempt)."""
        failures = []
        any_transient = False
        for index in self.selector.order(self._clock()):
            link = self._links[index]
            try:
                await self._send_one(link, token, account, data, xdata, what)
            except _Attempt as exc:
                self.selector.failed(index, self._clock())
                failures.append("%s %s: %s" % (link.receiver.name, link.receiver.address, exc.detail))
                any_transient = any_transient or exc.reason != "duh"
                continue
            change = self.selector.succeeded(index, self._clock())
            if change == "failover":
                log.warning("DC-09: failed over to %s %s after: %s", link.receiver.name, link.receiver.address, "; ".join(failures))
            elif change == "failback":
                log.info("DC-09: back on primary %s %s", link.receiver.name, link.receiver.address)
            self._last_traffic = self._clock()
            return None
        return any_transient, "; ".join(failures)

    async def _send_one(self, link, token, account, data, xdata, what):
        """One message to one receiver, with the NAK resend. Raises _Attempt."""
        receiver = link.receiver
        async with link.lock:
            seq = link.seq.take()
            naks = 0
            while True:
                frame = dc09.build_frame(
                    token, seq, receiver.receiver, receiver.line, account, data,
                    link.clock.stamp(self._wall_clock()), xdata, receiver.key, self._padding,
                )  # fmt: skip
                try:
                    reply = await self._exchange(link, frame, seq, account)
                except _Attempt as exc:
                    await link.close()
                    self._fail(link, exc, what)
                    raise
                except asyncio.CancelledError:
                    # A reply may still be on its way: never reuse this connection.
                    if link.writer is not None:
                        link.writer.close()
                    link.writer = link.reader = None
                    link.buffer.clear()
                    raise
                kind = reply.kind
                if kind in ("ACK", "RSP"):
                    # A receiver that keeps a connection per message closes it now.
                    self._count(link, "ack")
                    if link.failing:
                        link.failing = False
                        log.info("DC-09: %s %s answers again", receiver.name, receiver.address)
                    if not self.config.keep_open:
                        await link.close()
                    log.debug("DC-09: %s ACKed by %s seq %04d", what, receiver.name, seq)
                    return
                if kind == "DUH":
                    self._count(link, "duh")
                    exc = _Attempt("duh", "DUH (the receiver understood the frame but will not handle it)")
                    self._fail(link, exc, what, counted=True)
                    raise exc
                # NAK: the receiver refused the timestamp (or could not parse the frame).
                self._count(link, "nak")
                naks += 1
                resynced = False
                if reply.timestamp is not None:
                    resynced = link.clock.resync(reply.timestamp, self._wall_clock())
                    if resynced:
                        self._count(link, "resync")
                        log.info("DC-09: %s clock offset now %+.1f s (from its NAK)", receiver.name, link.clock.offset_s)
                if naks > MAX_NAK_RETRIES or not resynced:
                    exc = _Attempt(
                        "nak",
                        "NAK%s%s" % (" twice" if naks > 1 else "", "" if resynced or naks > 1 else " without a usable time"),
                    )
                    self._fail(link, exc, what, counted=True)
                    raise exc

    async def _exchange(self, link, frame, seq, account):
        """Write a frame, return the matching reply. Reopens a reused idle
        connection once if the receiver had closed it."""
        receiver = link.receiver
        reused = link.is_open()
        for attempt in (0, 1):
            if not link.is_open():
                await self._connect(link)
                reused = False
            try:
                link.writer.write(frame)
                await link.writer.drain()
                self._count(link, "sent")
                return await self._read_reply(link, seq, account)
            except _Attempt as exc:
                if exc.reason == "closed" and reused and attempt == 0:
                    log.debug("DC-09: %s had closed the idle connection; reconnecting", receiver.name)
                    await link.close()
                    continue
                raise
            except (ConnectionError, OSError) as exc:
                if reused and attempt == 0:
                    await link.close()
                    continue
                raise _Attempt("closed", "connection lost while sending (%s)" % exc.__class__.__name__) from None
        raise _Attempt("closed", "connection closed")

    async def _connect(self, link):
        receiver = link.receiver
        try:
            link.reader, link.writer = await asyncio.wait_for(
                asyncio.open_connection(receiver.host, receiver.port), self.config.connect_timeout_s
            )
        except asyncio.TimeoutError:
            raise _Attempt("connect_error", "connect timed out after %g s" % self.config.connect_timeout_s) from None
        except OSError as exc:
            raise _Attempt("connect_error", "cannot connect (%s)" % (exc.strerror or exc.__class__.__name__)) from None
        link.buffer.clear()

    async def _read_reply(self, link, seq, account):
        """Read until a reply for `seq` (or a NAK) arrives, within ack_timeout_s."""
        deadline = asyncio.get_running_loop().time() + self.config.ack_timeout_s
        key = link.receiver.key
        while True:
            used, frame = dc09.find_reply(link.buffer)
            if frame is None and used and len(link.buffer) >= dc09.MAX_REPLY_BYTES:
                self._count(link, "bad_reply")
                log.warning("DC-09: %s sent %d bytes without a reply frame; dropped", link.receiver.name, used)
            del link.buffer[:used]
            if frame is not None:
                try:
                    reply = dc09.parse_reply(frame, key)
                except dc09.Dc09FormatError as exc:
                    self._count(link, "bad_reply")
                    log.warning("DC-09: %s sent a bad reply (%s): %s", link.receiver.name, exc.reason, exc)
                    continue
                if reply.kind == "NAK":
                    return reply
                if reply.seq != seq:
                    self._count(link, "stale_reply")
                    log.debug("DC-09: %s answered seq %04d while waiting for %04d; ignored", link.receiver.name, reply.seq, seq)
                    continue
                if reply.account and reply.account != account:
                    self._count(link, "bad_reply")
                    log.warning("DC-09: %s answered for account %s, sent %s; ignored", link.receiver.name, reply.account, account)
                    continue
                if reply.kind in ("ACK", "RSP") and key is not None and not reply.encrypted:
                    self._count(link, "bad_reply")
                    log.warning("DC-09: %s sent a plain ACK to an encrypted frame; not taken as delivery", link.receiver.name)
                    continue
                return reply
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise _Attempt("timeout", "no reply within %g s" % self.config.ack_timeout_s)
            try:
                chunk = await asyncio.wait_for(link.reader.read(_READ_CHUNK), remaining)
            except asyncio.TimeoutError:
                raise _Attempt("timeout", "no reply within %g s" % self.config.ack_timeout_s) from None
            except (ConnectionError, OSError) as exc:
                raise _Attempt("closed", "connection lost while waiting for the ACK (%s)" % exc.__class__.__name__) from None
            if not chunk:
                raise _Attempt("closed", "receiver closed the connection before answering")
            link.buffer += chunk

    # ---- supervision

    async def _supervise_forever(self):
        interval = self.config.supervision_interval_s
        while not self._closed:
            now = self._clock()
            due_in = self._last_traffic + interval - now
            if self.selector.active != 0:
                # On a backup: probe the primary as soon as it is due back.
                due_in = min(due_in, self.selector.primary_due_in(now))
            if due_in > 0:
                await asyncio.sleep(due_in)
                continue
            try:
                await self.supervise_once()
            except Exception:  # the supervisor must outlive any one bad round
                log.exception("DC-09: supervision round failed")
            # Failed or not, wait a full interval (or the primary retry) before the next.
            self._last_traffic = self._clock()

    # ---- counters and logs

    def _count(self, link, counter):
        self._counts[(link.receiver.name, counter)] += 1

    def _fail(self, link, exc, what, counted=False):
        if not counted:
            self._count(link, exc.reason)
        level = logging.DEBUG if link.failing else logging.WARNING
        link.failing = True
        log.log(level, "DC-09: %s to %s %s failed: %s", what, link.receiver.name, link.receiver.address, exc.detail)
