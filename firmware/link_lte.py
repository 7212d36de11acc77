"""The LTE link: box frames over a TCP connection through a SIMCom modem.

Implements the Link contract of link.py. Three layers:

* pure policy, testable on both interpreters with a fake clock:
  `next_delay_ms(tries)` (capped exponential backoff), `Keepalive` (is the
  gateway still answering?), `format_alarm_sms(...)` (the SMS fallback text);
* the AT driver (at_modem.py), which owns the UART;
* `LteLink.run()`, the state machine that brings the link up and keeps it up:

      PROBE -> SIM -> REGISTER -> PDP -> CONNECT -> UP
        ^                                             |
        +------------- BACKOFF <---- any failure -----+

  UP ends when the gateway stops answering (keepalive), the modem reports
  +IPCLOSE / +CIPEVENT, registration is lost, or an AT command fails. Every
  end is followed by a teardown (CIPCLOSE, NETCLOSE) and a capped exponential
  backoff, reset once the gateway has answered on the new connection. A
  connection attempt closes the socket and network first as well: a box
  reset leaves them open on the modem.

Keepalive. network.PPP (and a modem's TCP stack) can take minutes to notice
that a path is dead, so the link watches the application: the gateway answers
every box frame with an ACK. When a frame was sent and nothing verified came
back within `answer_timeout_ms`, the link is dead. Without traffic the
host's heartbeat is the keepalive; in between, every `probe_interval_ms` the
link asks the modem for AT+CSQ and the registration, which also proves the
modem is alive and keeps `rssi_dbm` fresh.

Frames are never lost silently: the link clears `host.pending` and asks the
host for one frame per wake-up (a host with more to send sets `pending`
again); if sending fails the link sets `host.pending` again before it tears
down, and it sets it once more when the link comes back UP, so the host's
unacknowledged frame goes out on the new connection at once.

SMS fallback: `await link.send_sms(text)` (the host decides when, e.g. for an
alarm not acknowledged within its configured time); `format_alarm_sms()` is
the text. SMS works while only the data path is down (the modem is still
registered), which is the case it exists for.

RAM: as in at_modem.py, the link's own attributes and helpers reuse names the
firmware already has (`reader`, `reason`, `on_data`, `poll`) rather than
adding underscored ones: every distinct name is a qstr that stays in RAM.
"""

try:
    import at_modem
    from link import Link
    from wire import WireError, FrameReader, MSG_POLL
except ImportError:  # CPython: the firmware folder is the package callbox_firmware
    from . import at_modem
    from .link import Link
    from .wire import WireError, FrameReader, MSG_POLL

from random import getrandbits

const = at_modem.const
ticks_ms = at_modem.ticks_ms
ticks_diff = at_modem.ticks_diff
sleep_ms = at_modem.sleep_ms
registered = at_modem.registered
ModemError = at_modem.ModemError

# ---------------------------------------------------------------- limits

_LINK = const(0)  # the modem's socket number for the gateway connection
# Gateway round trip over LTE is 50-500 ms; the gateway may spend a few
# seconds storing an alarm. 20 s catches a dead path long before the host's
# alarm retry gives up, without flapping on a slow cell.
_ANSWER_TIMEOUT_MS = const(20000)
# Modem health and RSSI poll while UP (three AT commands, < 50 ms of UART).
_PROBE_INTERVAL_MS = const(30000)
# Reconnect backoff: 1 s, 2 s, 4 s ... capped at 60 s (a box must be back
# within a minute of the network returning; a cell that refuses us must not
# be hammered).
_BACKOFF_BASE_MS = const(1000)
_BACKOFF_CAP_MS = const(60000)
# Registration after power-on can take a minute or two on a weak cell.
_REGISTER_TIMEOUT_MS = const(120000)
_REG_POLL_MS = const(2000)
# How often the UP loop looks at host.pending, URC-reported drops and the
# keepalive: bounds how late a frame goes out after the host has it. Polling
# with asyncio.sleep_ms allocates nothing, where waiting for host.pending
# with a timeout (asyncio.wait_for_ms) creates two tasks each time.
_TICK_MS = const(20)
# Indian Standard Time: the SMS is read by a person in Kanpur.
_IST_MINUTES = const(330)

# ---------------------------------------------------------------- pure policy


def next_delay_ms(tries, backoff_base_ms=_BACKOFF_BASE_MS, backoff_cap_ms=_BACKOFF_CAP_MS, jitter8=0):
    """Delay before reconnect attempt number `tries` (0 = first retry):
    backoff_base_ms * 2**tries, capped at backoff_cap_ms, then shortened by
    up to 25 % by jitter8 (0..255, random in the firmware) so boxes that
    lost the same cell do not come back in lockstep."""
    d = backoff_base_ms << min(max(tries, 0), 20)  # the shift is bounded: no huge ints
    if d > backoff_cap_ms:
        d = backoff_cap_ms
    return d - (d * jitter8) // 1024


class Keepalive:
    """Is the gateway still answering? Pure; the time is passed in.

    sent(now) when a frame went out, answered(now) when a verified frame came
    back; dead(now) once a frame has waited answer_timeout_ms for any answer.
    `since` is the time of the oldest unanswered send (None: none).
    """

    def __init__(self, answer_timeout_ms=_ANSWER_TIMEOUT_MS):
        self.answer_timeout_ms = answer_timeout_ms
        self.since = None

    def sent(self, now_ms):
        if self.since is None:
            self.since = now_ms

    def answered(self, now_ms):  # (now_ms: the contract's clock; not needed)
        self.since = None

    def dead(self, now_ms):
        return self.since is not None and ticks_diff(now_ms, self.since) >= self.answer_timeout_ms


def civil_from_unix(t):
    """(year, month, day, hour, minute, second) of a Unix time, UTC. Pure
    integer arithmetic (H. Hinnant's days_from_civil inverse): no dependence
    on the port's time epoch."""
    days = t // 86400
    secs = t - days * 86400
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d, secs // 3600, (secs // 60) % 60, secs % 60


def format_alarm_sms(box_id, junction, kind, event, time_s, time_synced=True):
    """The SMS sent for an alarm the gateway has not acknowledged:

        CALLBOX PANIC box 42 Ghantaghar Square 28-11-2026 19:20:01 IST ev 0000002a-00000007 no data link

    kind in upper case, the box id, the junction, the press time (local time,
    or "uptime 123s" when the box clock is not synced), the event id as the
    console shows it (`%08x-%08x`). Printable ASCII, at most 160 characters:
    the junction name is shortened first."""
    if time_synced:
        y, mo, d, h, mi, s = civil_from_unix(time_s + _IST_MINUTES * 60)
        when = "%02d-%02d-%04d %02d:%02d:%02d IST" % (d, mo, y, h, mi, s)
    else:
        when = "uptime %ds" % time_s
    head = "CALLBOX %s box %d " % (str(kind).upper(), box_id)
    tail = " %s ev %08x-%08x no data link" % (when, box_id, event)
    room = max(0, at_modem.SMS_MAX - len(head) - len(tail))
    return at_modem.sms_safe(head + at_modem.sms_safe(junction or "?")[:room] + tail)


# ---------------------------------------------------------------- the link


class LteLink(Link):
    """Frames to the gateway over the modem's TCP socket.

    open_uart: async callable returning (reader, writer) asyncio streams on
    the modem's UART (`lambda: hw.open_uart("modem")`)."""

    name = "lte"

    def __init__(
        self,
        host,
        open_uart,
        gateway_host,
        gateway_port,
        apn="internet",
        sms_number=None,
        box_id=0,
        answer_timeout_ms=_ANSWER_TIMEOUT_MS,
        probe_interval_ms=_PROBE_INTERVAL_MS,
        backoff_base_ms=_BACKOFF_BASE_MS,
        backoff_cap_ms=_BACKOFF_CAP_MS,
        register_timeout_ms=_REGISTER_TIMEOUT_MS,
    ):
        super().__init__(host)
        self.open_uart = open_uart
        self.gateway_host = gateway_host
        self.gateway_port = gateway_port
        self.apn = apn
        self.sms_number = sms_number
        self.label = "box %d modem" % box_id
        self.probe_interval_ms = probe_interval_ms
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.register_timeout_ms = register_timeout_ms
        self.keepalive = Keepalive(answer_timeout_ms)
        self.modem = None
        self.state = "off"  # off probe sim register pdp connect up backoff
        self.tries = 0
        self.last_error = None
        self.frames_sent = 0
        self.frames_received = 0
        self.connects = 0
        self.reader = FrameReader()  # the gateway's frames in the TCP data
        self.reason = None  # why UP must end, set by a URC (on_urc)

    # -------------------------------------------------- main task

    async def run(self):
        try:
            while True:
                try:
                    await self._connect()
                    await self._session()
                except Exception as e:  # a ModemError; a bug must not end the link for good
                    if isinstance(e, ModemError):
                        reason = str(e)
                    else:
                        self.count("bug")
                        reason = "%s: %r" % (self.label, e)
                    self.count("down")
                    # The first failure of a kind is a warning, repeats are debug.
                    self.host.log("debug" if reason == self.last_error else "warning", "lte: link down: " + reason)
                    self.last_error = reason
                self.up = False
                if self.modem is not None:
                    await self.modem.close(_LINK)
                delay = next_delay_ms(self.tries, self.backoff_base_ms, self.backoff_cap_ms, getrandbits(8))
                self.tries += 1
                self.state = "backoff"
                self.host.log("debug", "lte: backoff %d ms, try %d" % (delay, self.tries))
                await sleep_ms(delay)
        finally:
            self.up = False
            self.state = "off"
            if self.modem is not None:
                self.modem.stop()

    async def _connect(self):
        m = self.modem
        self.state = "probe"
        if m is None or m.closed:
            if m is not None:
                m.stop()
            reader, writer = await self.open_uart()
            m = self.modem = at_modem.AtModem(reader, writer, self.label, self.on_data, self.on_urc, self.host.log)
            m.start()
        await m.probe()
        self.state = "sim"
        await m.sim_ready()
        self.state = "register"
        waited = 0
        while True:
            stat = await self.poll()
            if registered(stat):
                break
            if stat == 3 or waited >= self.register_timeout_ms:
                hint = "registration denied: check the SIM's plan with the operator" if stat == 3 else "check the antenna and coverage"
                raise ModemError(self.label, "LTE link", "not registered after %d ms (stat %d)" % (waited, stat), hint)
            await sleep_ms(_REG_POLL_MS)
            waited += _REG_POLL_MS
        self.state = "pdp"
        await m.close(_LINK)  # left open by a box reset
        await m.setup_pdp(self.apn)
        await m.net_open()
        self.state = "connect"
        self.reader = FrameReader()
        self.reason = None
        self.keepalive.since = None
        await m.tcp_open(_LINK, self.gateway_host, self.gateway_port)
        self.connects += 1
        self.up = True
        self.state = "up"
        self.host.log("info", "lte: up to %s:%d, rssi %d dBm" % (self.gateway_host, self.gateway_port, self.rssi_dbm))
        # Anything the host still holds goes out on the new connection now.
        self.host.pending.set()

    async def poll(self):
        """AT+CSQ (kept in rssi_dbm) and the registration <stat>; also
        proves that the modem answers."""
        self.rssi_dbm = at_modem.csq_to_dbm((await self.modem.signal())[0])
        return await self.modem.registration()

    async def _session(self):
        host = self.host
        ka = self.keepalive
        last_check = ticks_ms()
        while True:
            now = ticks_ms()
            if self.reason is not None:
                raise ModemError(self.label, "LTE link", self.reason)
            if ka.dead(now):
                self.count("keepalive")
                raise ModemError(self.label, "LTE link", "no answer from the gateway for %d ms" % ticks_diff(now, ka.since), "check the gateway and the APN's routing")
            if ticks_diff(now, last_check) >= self.probe_interval_ms:
                last_check = now
                stat = await self.poll()
                if not registered(stat):
                    raise ModemError(self.label, "LTE link", "registration lost (stat %d)" % stat, "check the antenna and coverage")
            elif host.pending.is_set():
                host.pending.clear()
                frame = host.next_up_frame(self)
                if frame is not None:
                    try:
                        await self.modem.tcp_send(_LINK, frame)
                    except ModemError:
                        # The host keeps its frame; make sure it is asked again.
                        self.count("send_fail")
                        host.pending.set()
                        # The URC that says why (+CIPEVENT, +IPCLOSE) may come
                        # just after the failure it caused: it is the better
                        # reason, given at the loop's next turn.
                        await sleep_ms(_TICK_MS)
                        if self.reason is None:
                            raise
                        continue
                    self.frames_sent += 1
                    ka.sent(ticks_ms())
            else:
                await sleep_ms(_TICK_MS)

    # -------------------------------------------------- modem callbacks

    def on_data(self, link, data):
        if link != _LINK:  # (no other socket is opened)
            return
        host = self.host
        for piece in self.reader.feed(data):
            try:
                frame = host.decode(piece)
            except WireError as e:
                self.count(e.reason)
                continue
            self.frames_received += 1
            self.keepalive.answered(ticks_ms())
            # The backoff restarts only once the gateway has answered: a
            # link that connects and dies at once keeps backing off.
            self.tries = 0
            if frame.mtype != MSG_POLL:
                host.on_frame(frame, self)

    def on_urc(self, line):
        """A URC that ends UP leaves its reason for the UP loop."""
        if line.startswith("+IPCLOSE:"):
            v = at_modem.ints(line)
            if v[0] == _LINK:
                self.reason = "TCP closed (+IPCLOSE reason %d)" % v[-1]
        elif line.startswith("+CIPEVENT:"):
            self.reason = "network closed (%s)" % line
        elif line == "RDY":
            self.reason = "modem restarted"
        elif line.startswith("+CREG:") or line.startswith("+CEREG:"):
            stat = at_modem.parse_reg(line)
            if not registered(stat):
                self.reason = "registration lost (stat %d)" % stat

    # -------------------------------------------------- SMS

    async def send_sms(self, text, number=None):
        """Send an SMS (text mode) through the modem; returns the message
        reference. Raises ModemError (also if no number is configured or the
        modem is not open yet); the caller decides whether to retry."""
        number = number or self.sms_number
        if not number:
            raise ModemError(self.label, "LTE link", "no SMS number configured")
        if self.modem is None:
            raise ModemError(self.label, "LTE link", "modem not open")
        return await self.modem.send_sms(number, text)
