"""AT driver for a SIMCom SIM7600 / A7670-class LTE modem on a UART.

Two layers, as everywhere bytes move in this project:

* `AtCore`: the pure core. It is fed the bytes the modem sent and returns
  events; it knows which command is in flight and matches the modem's lines
  to it. No I/O, no clock: the time is passed in (`begin(..., now_ms)`,
  `poll(now_ms)`), so it runs the same on CPython and MicroPython and is
  tested with fixed vectors.
* `AtModem`: the thin asyncio shell. It owns the UART streams (a
  `machine.UART` wrapped in an asyncio stream on the ESP32, a TCP connection
  to the modem simulator on the unix port), a reader task that feeds the core,
  one lock so that one command is in flight at a time, and the SIMCom
  commands the LTE link needs.

The dialect (SIM7500/SIM7600 Series AT Command Manual, TCP/IP chapter; the
A76XX series answers the same way for everything used here):

    command                        answer
    AT / ATE0 / AT+CMEE=1          OK
    AT+CPIN?                       +CPIN: READY  OK        | +CME ERROR: 10 (no SIM)
    AT+CSQ                         +CSQ: <rssi>,<ber>  OK
    AT+CREG? / AT+CEREG?           +CREG: <n>,<stat>  OK   (stat 1 home, 5 roaming)
    AT+CGDCONT=1,"IP","<apn>"      OK
    AT+NETOPEN                     OK, later +NETOPEN: <err>  (0 = opened)
                                   or +IP ERROR: Network is already opened / ERROR
    AT+CIPOPEN=0,"TCP","h",p       OK, later +CIPOPEN: 0,<err>  (0 = connected)
    AT+CIPSEND=0,<len>             "> " prompt, <len> raw bytes, OK, +CIPSEND: 0,<req>,<cnf>
    AT+CIPCLOSE=0                  OK, later +CIPCLOSE: 0,<err>
    AT+NETCLOSE                    OK, later +NETCLOSE: <err>
    AT+CMGF=1                      OK
    AT+CMGS="<number>"             "> " prompt, text, Ctrl-Z, +CMGS: <mr>  OK
                                   or +CMS ERROR: <err>

Unsolicited result codes (URCs) may arrive at any time, also between a
command's lines:

    +RECEIVE,<link>,<len>          followed by exactly <len> raw bytes of TCP data
                                   (automatic receive mode, AT+CIPRXGET=0)
    +IPCLOSE: <link>,<reason>      socket closed (0 local, 1 remote, 2 send timeout)
    +CIPEVENT: NETWORK CLOSED UNEXPECTEDLY
    RDY, +CPIN: READY, SMS DONE, PB DONE (boot), +CREG: <stat>, +CMTI: ...

The raw data after +RECEIVE may contain CR, LF, "OK" or anything else: the
line parser switches to a data state for exactly <len> bytes, so data is never
mistaken for a line. Lines longer than _MAX_LINE are garbage (a baud-rate
mismatch, line noise): dropped up to the next LF and counted, never buffered
without bound.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_ms, ticks_diff, ticks_add
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b


import asyncio

# ---------------------------------------------------------------- limits

# The longest line the modem sends for the commands we use is well under 100
# characters (+CIPOPEN? lists one socket per line); 256 leaves room for
# operator names and ATI text. Anything longer is noise.
_MAX_LINE = const(256)
# SIM7600 reports at most 1500 bytes per +RECEIVE (one IP packet). A larger
# count is a corrupted header: it is still honoured (the modem will send that
# many bytes) but counted.
MAX_RECEIVE = const(1500)
# Largest chunk the shell reads from the UART at once (the ESP32 UART driver's
# RX ring is 256 bytes by default; larger reads only cost RAM).
_READ_CHUNK = const(256)
# Text-mode SMS: 160 GSM 7-bit characters.
SMS_MAX = const(160)

# Per-command timeouts (ms), from the manual's "maximum response time" where
# it gives one, otherwise generous for a loaded modem.
T_SHORT_MS = const(2000)  # local commands: AT, ATE0, +CSQ, +CREG?, +CGDCONT
T_CPIN_MS = const(5000)  # the manual allows 5 s while the SIM is read
T_NETOPEN_MS = const(30000)  # PDP activation; the manual allows 120 s
T_CIPOPEN_MS = const(30000)  # TCP handshake through the network
T_CIPSEND_MS = const(15000)  # prompt + buffer; CIPTIMEOUT default is larger
T_CLOSE_MS = const(10000)  # CIPCLOSE / NETCLOSE
T_CMGS_MS = const(60000)  # SMS submission: the manual allows 60 s

# Core states.
S_IDLE = const(0)  # no command in flight
S_WAIT_PROMPT = const(1)  # sent a command that answers with "> " first
S_WAIT_RESP = const(2)  # waiting for OK / ERROR
S_WAIT_FINAL = const(3)  # got OK; waiting for the command's result URC
S_PROMPTED = const(4)  # "> " seen; the shell writes the payload now

# Parser states.
_P_LINE = const(0)  # collecting a line up to LF
_P_HUNT = const(1)  # dropping an overlong line up to the next LF
_P_DATA = const(2)  # passing <len> raw bytes after +RECEIVE

# Events returned by AtCore.feed / poll: tuples whose first item is one of:
EV_URC = const(1)  # (EV_URC, line)
EV_DATA = const(2)  # (EV_DATA, link, bytes): a piece of TCP data (may be split)
EV_PROMPT = const(3)  # (EV_PROMPT,): "> " seen; write the payload now
EV_DONE = const(4)  # (EV_DONE, status, lines): status "OK", "ERROR", "+CME ERROR: 10", "TIMEOUT"
EV_GARBAGE = const(5)  # (EV_GARBAGE, line): counted and dropped

STATUS_OK = "OK"
STATUS_TIMEOUT = "TIMEOUT"

# Lines that may arrive unsolicited. A line matching the in-flight command's
# prefix is its answer even if it is listed here (+CREG: is both).
URC_PREFIXES = (
    "+IPCLOSE:",
    "+CIPEVENT:",
    "+CREG:",
    "+CEREG:",
    "+CGREG:",
    "+CPIN:",
    "+CMTI:",
    "+CGEV:",
    "+CTZV:",
    "RECV FROM:",
    "RDY",
    "SMS DONE",
    "PB DONE",
    "*ATREADY:",
    # Result URCs of a command that already timed out arrive late:
    "+NETOPEN:",
    "+CIPOPEN:",
    "+CIPSEND:",
    "+CIPCLOSE:",
    "+NETCLOSE:",
    "+CMGS:",
)

_ERROR_PREFIXES = ("+CME ERROR:", "+CMS ERROR:", "+CIPERROR:")

# Error codes worth a hint (27.007 / 27.005 numeric, AT+CMEE=1).
CME_HINTS = {
    10: "SIM not inserted; check the SIM card is seated",
    11: "SIM PIN required; use a SIM without a PIN",
    13: "SIM failure; replace the SIM",
    14: "SIM busy; retry",
    30: "no network service; check the antenna and coverage",
}
CMS_HINTS = {
    310: "SIM not inserted; check the SIM card is seated",
    330: "SMS centre unknown; set it with AT+CSCA",
    331: "no network service; check the antenna and coverage",
    332: "network timeout; retry",
    500: "unknown error",
}
# +CIPOPEN / +NETOPEN / +CIPCLOSE <err> values.
IP_ERRORS = {
    0: "ok",
    1: "network failure",
    2: "network not opened",
    3: "wrong parameter",
    4: "operation not supported (link already open?)",
    5: "failed to create socket",
    6: "failed to bind socket",
    7: "TCP server already listening",
    8: "busy",
    9: "sockets opened",
    10: "timeout",
    11: "DNS parse failed",
    255: "unknown error",
}

# ---------------------------------------------------------------- errors


class ModemError(Exception):
    """Anything the modem did not do. `name` names the box (and modem),
    `command` the AT command, `status` the final result ("ERROR",
    "+CME ERROR: 10", "TIMEOUT", ...)."""

    def __init__(self, name, command, status, hint="", lines=()):
        self.name = name
        self.command = command
        self.status = status
        self.hint = hint
        self.lines = lines
        msg = "%s: %s failed: %s" % (name, command, status)
        if hint:
            msg = msg + " (" + hint + ")"
        super().__init__(msg)


class AtTimeout(ModemError):
    """No final answer within the command's timeout: the modem is busy, hung,
    or the UART is cut."""


class AtCommandError(ModemError):
    """The modem answered ERROR, +CME ERROR, +CMS ERROR or a non-zero result
    URC (+CIPOPEN: 0,<err>)."""


class ModemGone(ModemError):
    """The UART stream ended (on the unix port: the simulator closed the
    connection)."""


def hint_for(status):
    """A human hint for a final status, or ""."""
    for prefix, table in (("+CME ERROR:", CME_HINTS), ("+CMS ERROR:", CMS_HINTS)):
        if status.startswith(prefix):
            try:
                return table.get(int(status[len(prefix) :]), "")
            except ValueError:
                return ""
    if status == STATUS_TIMEOUT:
        return "modem not answering; check power and the UART wiring"
    return ""


# ---------------------------------------------------------------- pure helpers


def _ints_after(line, prefix):
    """The comma-separated integers after `prefix` in `line`."""
    out = []
    for part in line[len(prefix) :].split(","):
        out.append(int(part.strip()))
    return out


def parse_csq(line):
    """'+CSQ: 17,99' -> (17, 99)."""
    v = _ints_after(line, "+CSQ:")
    return v[0], v[1]


def csq_to_dbm(rssi):
    """AT+CSQ <rssi> to dBm; -128 for unknown (99, 199).

    0..31: -113 dBm + 2 per step (0 = -113 or less, 31 = -51 or more).
    100..191 (TD-SCDMA on SIM7600): -116 dBm + 1 per step."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    if 100 <= rssi <= 191:
        return -116 + (rssi - 100)
    return -128


def parse_reg(line):
    """'+CREG: 0,1' or '+CEREG: 1' (URC) -> <stat> as int."""
    i = line.index(":")
    v = _ints_after(line, line[: i + 1])
    return v[1] if len(v) >= 2 else v[0]


REG_NOT = const(0)
REG_HOME = const(1)
REG_SEARCHING = const(2)
REG_DENIED = const(3)
REG_UNKNOWN = const(4)
REG_ROAMING = const(5)


def registered(stat):
    return stat == REG_HOME or stat == REG_ROAMING


def parse_result(line, prefix):
    """'+CIPOPEN: 0,0' -> [0, 0]; '+NETOPEN: 0' -> [0]."""
    return _ints_after(line, prefix)


def sms_safe(text):
    """Text-mode SMS body: printable ASCII only (Ctrl-Z ends the message, ESC
    cancels it, and the GSM 7-bit alphabet lacks most of the rest), at most
    SMS_MAX characters."""
    out = []
    for ch in text:
        o = ord(ch)
        if o == 10 or 32 <= o < 127:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)[:SMS_MAX]


# ---------------------------------------------------------------- the core


class AtCore:
    """Line/URC parser and command/response matcher. Pure: fed bytes, returns
    events; the time comes in as arguments.

    One command is in flight at a time (the shell's lock guarantees it):
    `begin()` returns the bytes to write, `feed()` turns modem bytes into
    events, `poll(now_ms)` reports a timeout, `result` holds the outcome
    (status, lines) once the command is done and `take()` clears it."""

    def __init__(self):
        # parser
        self._pstate = _P_LINE
        self._buf = bytearray()
        self._data_link = 0
        self._data_left = 0
        # matcher
        self.state = S_IDLE
        self.command = None
        self._prefix = None
        self._final = None
        self._lines = []
        self._deadline = 0
        self.result = None
        # counters
        self.garbage = 0
        self.echoes = 0
        self.timeouts = 0
        self.bad_receive = 0

    # -------------------------------------------------- commands

    def begin(self, command, now_ms, timeout_ms, prefix=None, final=None, prompt=False):
        """Start `command` (text without CR). prefix: the information lines
        that belong to it ("+CSQ:"); final: a result URC that must follow its
        OK ("+NETOPEN:"); prompt: it answers "> " first (CIPSEND, CMGS).
        Returns the bytes to write."""
        if self.state != S_IDLE:
            raise ValueError("AT command %r still in flight" % (self.command,))
        self.command = command
        self._prefix = prefix
        self._final = final
        self._lines = []
        self.result = None
        self._deadline = ticks_add(now_ms, timeout_ms)
        self.state = S_WAIT_PROMPT if prompt else S_WAIT_RESP
        return command.encode() + b"\r"

    def payload_sent(self):
        """The shell wrote the payload after the prompt."""
        if self.state == S_PROMPTED:
            self.state = S_WAIT_RESP

    def remaining_ms(self, now_ms):
        if self.state == S_IDLE:
            return 0
        return ticks_diff(self._deadline, now_ms)

    def poll(self, now_ms):
        """Events due at now_ms: a TIMEOUT for the command in flight."""
        if self.state != S_IDLE and ticks_diff(now_ms, self._deadline) >= 0:
            self.timeouts += 1
            return [self._done(STATUS_TIMEOUT)]
        return []

    def abort(self):
        """Forget the command in flight (the UART is gone)."""
        self.state = S_IDLE
        self.command = None
        self._lines = []
        self.result = None

    def take(self):
        """(status, lines) of the finished command; clears it."""
        r = self.result
        self.result = None
        return r

    def _done(self, status):
        self.result = (status, self._lines)
        self.state = S_IDLE
        self.command = None
        self._lines = []
        return (EV_DONE, status, self.result[1])

    # -------------------------------------------------- parser

    def feed(self, data):
        """Bytes from the modem -> list of events."""
        events = []
        i = 0
        n = len(data)
        while i < n:
            if self._pstate == _P_DATA:
                take = min(self._data_left, n - i)
                events.append((EV_DATA, self._data_link, bytes(data[i : i + take])))
                self._data_left -= take
                i += take
                if self._data_left == 0:
                    self._pstate = _P_LINE
                continue
            lf = data.find(b"\n", i)
            end = n if lf < 0 else lf
            if self._pstate == _P_HUNT:
                if lf >= 0:
                    self._pstate = _P_LINE
                i = end + 1
                continue
            if len(self._buf) + end - i > _MAX_LINE:
                self._buf = bytearray()
                self._pstate = _P_HUNT
                self.garbage += 1
                events.append((EV_GARBAGE, "<overlong line>"))
                continue
            self._buf.extend(data[i:end])
            i = end + 1
            if lf < 0:
                # No LF yet. The prompt is the only thing the modem sends
                # without a line end: "\r\n> ".
                if self.state == S_WAIT_PROMPT and self._buf[:1] == b">":
                    self._buf = bytearray()
                    self.state = S_PROMPTED
                    events.append((EV_PROMPT,))
                break
            raw = self._buf
            self._buf = bytearray()
            self._line(raw, events)
        return events

    def _line(self, raw, events):
        # Strip CRs and spaces at the ends (echo ends "\r", lines "\r\n",
        # and the space of a "> " prompt split from its ">" is left over).
        start = 0
        end = len(raw)
        while start < end and (raw[start] == 13 or raw[start] == 32):
            start += 1
        while end > start and (raw[end - 1] == 13 or raw[end - 1] == 32):
            end -= 1
        if start == end:
            return
        try:
            line = bytes(raw[start:end]).decode()
        except UnicodeError:
            self.garbage += 1
            events.append((EV_GARBAGE, repr(bytes(raw[start:end]))))
            return
        # The prompt can also arrive as a line of its own ("> " then LF on
        # some firmware, or LF before the shell saw it).
        if self.state == S_WAIT_PROMPT and line[:1] == ">":
            self.state = S_PROMPTED
            events.append((EV_PROMPT,))
            return
        if line.startswith("+RECEIVE,"):
            try:
                v = _ints_after(line, "+RECEIVE,")
                link, size = v[0], v[1]
                if size < 0:
                    raise ValueError
            except (ValueError, IndexError):
                self.garbage += 1
                events.append((EV_GARBAGE, line))
                return
            if size > MAX_RECEIVE:
                self.bad_receive += 1
            if size > 0:
                self._pstate = _P_DATA
                self._data_link = link
                self._data_left = size
            return
        self._match(line, events)

    # -------------------------------------------------- matcher

    def _match(self, line, events):
        st = self.state
        if st == S_IDLE:
            if _is_urc(line):
                events.append((EV_URC, line))
            else:
                self.garbage += 1
                events.append((EV_GARBAGE, line))
            return
        if line == self.command:
            self.echoes += 1  # echo (ATE1)
            return
        if line == "OK":
            if self._final is not None and st != S_WAIT_FINAL:
                self.state = S_WAIT_FINAL
                if self._has_final():
                    events.append(self._done(STATUS_OK))
            else:
                events.append(self._done(STATUS_OK))
            return
        if line == "ERROR" or _starts_any(line, _ERROR_PREFIXES):
            events.append(self._done(line))
            return
        if self._final is not None and line.startswith(self._final):
            self._lines.append(line)
            if st == S_WAIT_FINAL:
                events.append(self._done(STATUS_OK))
            return
        if self._prefix is not None and line.startswith(self._prefix):
            self._lines.append(line)
            return
        if _is_urc(line):
            events.append((EV_URC, line))
            return
        # Information text of the command (ATI, +IP ERROR: ...).
        self._lines.append(line)

    def _has_final(self):
        for ln in self._lines:
            if ln.startswith(self._final):
                return True
        return False


def _starts_any(line, prefixes):
    for p in prefixes:
        if line.startswith(p):
            return True
    return False


def _is_urc(line):
    return _starts_any(line, URC_PREFIXES)


# ---------------------------------------------------------------- asyncio helpers


async def sleep_ms(ms):
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


async def wait_ms(awaitable, ms):
    """asyncio.wait_for with a timeout in ms on both interpreters; raises
    asyncio.TimeoutError."""
    if hasattr(asyncio, "wait_for_ms"):
        return await asyncio.wait_for_ms(awaitable, ms)
    return await asyncio.wait_for(awaitable, ms / 1000)


# ---------------------------------------------------------------- the shell


class AtModem:
    """The modem on its UART streams.

    on_data(link, bytes) receives TCP data (+RECEIVE) as it arrives, in
    pieces; on_urc(line) every other URC. Both are called from the reader
    task and must not block. `name` appears in every error ("box 42 modem").
    """

    def __init__(self, reader, writer, name="modem", on_data=None, on_urc=None, log=None):
        self._reader = reader
        self._writer = writer
        self.name = name
        self.on_data = on_data
        self.on_urc = on_urc
        self._log = log
        self.core = AtCore()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._task = None
        self.gone = False
        self.urcs = 0

    def log(self, level, msg):
        if self._log is not None:
            self._log(level, msg)

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._rx_loop())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _rx_loop(self):
        try:
            while True:
                data = await self._reader.read(_READ_CHUNK)
                if not data:
                    break
                for ev in self.core.feed(data):
                    self._dispatch(ev)
        except OSError as e:
            self.log("error", "%s: UART read failed: %r" % (self.name, e))
        self.gone = True
        self._changed.set()

    def _dispatch(self, ev):
        kind = ev[0]
        if kind == EV_DATA:
            if self.on_data is not None:
                self.on_data(ev[1], ev[2])
        elif kind == EV_URC:
            self.urcs += 1
            if self.on_urc is not None:
                self.on_urc(ev[1])
        elif kind == EV_GARBAGE:
            self.log("debug", "%s: garbage line %s" % (self.name, ev[1]))
        else:  # EV_PROMPT, EV_DONE
            self._changed.set()

    async def _write(self, data):
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as e:
            self.gone = True
            raise ModemGone(self.name, "UART write", repr(e), "check the modem's UART connection")

    async def _wait_until(self, done):
        """Wait until done() or the command's deadline (then the core reports
        a TIMEOUT)."""
        core = self.core
        while not done():
            if self.gone:
                return
            for ev in core.poll(ticks_ms()):
                self._dispatch(ev)
            if done():
                return
            self._changed.clear()
            try:
                await wait_ms(self._changed.wait(), max(1, core.remaining_ms(ticks_ms())))
            except asyncio.TimeoutError:
                pass

    async def command(self, command, timeout_ms=T_SHORT_MS, prefix=None, final=None, payload=None):
        """Send `command`; return its information lines on OK. With `payload`
        the command answers "> " first and the payload is written then.
        Raises AtTimeout, AtCommandError, ModemGone."""
        async with self._lock:
            if self.gone:
                raise ModemGone(self.name, command, "UART closed", "check the modem's UART connection")
            core = self.core
            out = core.begin(command, ticks_ms(), timeout_ms, prefix, final, payload is not None)
            await self._write(out)
            if payload is not None:
                await self._wait_until(lambda: core.state != S_WAIT_PROMPT)
                if core.state == S_PROMPTED:
                    await self._write(payload)
                    core.payload_sent()
                elif core.result is not None and core.result[0] == STATUS_TIMEOUT:
                    # The modem may still wait for data: ESC cancels.
                    await self._write(b"\x1b")
            await self._wait_until(lambda: core.result is not None)
            if core.result is None:  # the UART ended mid-command
                core.abort()
                raise ModemGone(self.name, command, "UART closed", "check the modem's UART connection")
            status, lines = core.take()
            if status == STATUS_OK:
                return lines
            if status == STATUS_TIMEOUT:
                raise AtTimeout(self.name, command, status, hint_for(status))
            raise AtCommandError(self.name, command, status, hint_for(status), lines)

    # -------------------------------------------------- SIMCom operations

    async def probe(self, tries=5):
        """AT until OK (the modem may still be booting), then echo off and
        numeric errors."""
        err = None
        for _ in range(tries):
            try:
                await self.command("AT", T_SHORT_MS)
                break
            except ModemError as e:
                err = e
                if isinstance(e, ModemGone):
                    raise
        else:
            raise err
        await self.command("ATE0")
        await self.command("AT+CMEE=1")

    async def sim_ready(self):
        """True if AT+CPIN? answers READY; raises AtCommandError with a hint
        (SIM not inserted) otherwise."""
        lines = await self.command("AT+CPIN?", T_CPIN_MS, prefix="+CPIN:")
        for ln in lines:
            if ln.startswith("+CPIN:"):
                state = ln[6:].strip()
                if state == "READY":
                    return True
                raise AtCommandError(self.name, "AT+CPIN?", state, "SIM not ready; use a SIM without a PIN")
        raise AtCommandError(self.name, "AT+CPIN?", "no +CPIN line")

    async def signal(self):
        """(rssi, ber) from AT+CSQ."""
        lines = await self.command("AT+CSQ", T_SHORT_MS, prefix="+CSQ:")
        for ln in lines:
            if ln.startswith("+CSQ:"):
                return parse_csq(ln)
        raise AtCommandError(self.name, "AT+CSQ", "no +CSQ line")

    async def registration(self):
        """Best <stat> of AT+CREG? (2G/3G) and AT+CEREG? (LTE): registered if
        either is; otherwise the LTE one."""
        best = REG_UNKNOWN
        for cmd, prefix in (("AT+CEREG?", "+CEREG:"), ("AT+CREG?", "+CREG:")):
            lines = await self.command(cmd, T_SHORT_MS, prefix=prefix)
            for ln in lines:
                if ln.startswith(prefix):
                    stat = parse_reg(ln)
                    if registered(stat):
                        return stat
                    if best == REG_UNKNOWN:
                        best = stat
        return best

    async def setup_pdp(self, apn):
        """PDP context 1 with the APN, sockets on it, non-transparent mode,
        data pushed in +RECEIVE URCs without the sender's address."""
        await self.command('AT+CGDCONT=1,"IP","%s"' % apn)
        await self.command("AT+CSOCKSETPN=1")
        await self.command("AT+CIPMODE=0")
        await self.command("AT+CIPSRIP=0")
        await self.command("AT+CIPRXGET=0")

    async def net_open(self):
        """AT+NETOPEN; an already open network counts as success."""
        try:
            lines = await self.command("AT+NETOPEN", T_NETOPEN_MS, final="+NETOPEN:")
        except AtCommandError as e:
            if e.status == "ERROR":
                # "+IP ERROR: Network is already opened" precedes the ERROR.
                st = await self.command("AT+NETOPEN?", T_SHORT_MS, prefix="+NETOPEN:")
                for ln in st:
                    if ln.startswith("+NETOPEN:") and parse_result(ln, "+NETOPEN:")[0] == 1:
                        return
            raise
        self._check_result(lines, "+NETOPEN:", 0, "AT+NETOPEN")

    async def tcp_open(self, link, host, port):
        cmd = 'AT+CIPOPEN=%d,"TCP","%s",%d' % (link, host, port)
        try:
            lines = await self.command(cmd, T_CIPOPEN_MS, final="+CIPOPEN:")
        except AtCommandError as e:
            # "+CIPOPEN: 0,4" then ERROR: link already open; ",2": no network.
            self._check_result(e.lines, "+CIPOPEN:", 1, cmd, required=False)
            raise
        self._check_result(lines, "+CIPOPEN:", 1, cmd)

    async def tcp_send(self, link, data):
        """Send bytes on a TCP link; returns the count the modem confirmed."""
        cmd = "AT+CIPSEND=%d,%d" % (link, len(data))
        lines = await self.command(cmd, T_CIPSEND_MS, final="+CIPSEND:", payload=data)
        for ln in lines:
            if ln.startswith("+CIPSEND:"):
                v = parse_result(ln, "+CIPSEND:")
                if len(v) >= 3 and v[2] < v[1]:
                    raise AtCommandError(self.name, cmd, ln, "modem buffer full or link down")
                return v[-1]
        raise AtCommandError(self.name, cmd, "no +CIPSEND line")

    async def tcp_close(self, link):
        await self.command("AT+CIPCLOSE=%d" % link, T_CLOSE_MS, final="+CIPCLOSE:")

    async def net_close(self):
        await self.command("AT+NETCLOSE", T_CLOSE_MS, final="+NETCLOSE:")

    async def send_sms(self, number, text):
        """Text-mode SMS; returns the message reference from +CMGS."""
        await self.command("AT+CMGF=1")
        body = sms_safe(text).encode()
        cmd = 'AT+CMGS="%s"' % number
        lines = await self.command(cmd, T_CMGS_MS, prefix="+CMGS:", payload=body + b"\x1a")
        for ln in lines:
            if ln.startswith("+CMGS:"):
                return parse_result(ln, "+CMGS:")[0]
        raise AtCommandError(self.name, cmd, "no +CMGS line")

    def _check_result(self, lines, prefix, index, cmd, required=True):
        """Raise AtCommandError unless the `prefix` line has 0 at `index`."""
        for ln in lines:
            if ln.startswith(prefix):
                v = parse_result(ln, prefix)
                err = v[index] if len(v) > index else 255
                if err != 0:
                    raise AtCommandError(self.name, cmd, ln, IP_ERRORS.get(err, "error %d" % err), lines)
                return
        if required:
            raise AtCommandError(self.name, cmd, "no %s line" % prefix, "", lines)
