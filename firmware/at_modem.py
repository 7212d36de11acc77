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

A command's answer line starts with the command's name: AT+CSQ answers
+CSQ:, AT+CIPOPEN=... answers +CIPOPEN: (`AtModem.ask` relies on it).

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

RAM: the box runs this from a heap of 64 KB, so tables that only need to be
searched are kept as one string each (one heap object, instead of one per
entry in a tuple or dict), and the clock and asyncio differences between
MicroPython and CPython are settled once at import. Every distinct name
(function, attribute, argument, short string) becomes a qstr that stays in
RAM for good, and the qstr pool grows in blocks (the box's sixth, at 620
names, is 8 KB): the classes' own attributes and helpers reuse names the
firmware already has (`lock`, `task`, `write`, `wait`, `link`, `lines`)
rather than adding underscored ones.
"""

import asyncio

try:  # MicroPython
    from micropython import const
    from time import ticks_ms, ticks_diff, ticks_add

    sleep_ms = asyncio.sleep_ms
except ImportError:  # CPython, where the tests run the same code: no wrap-around
    from time import monotonic

    def const(x):
        return x

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_add(a, b):
        return a + b

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


# ---------------------------------------------------------------- limits

# The longest line the modem sends for the commands we use is well under 100
# characters; 256 leaves room for operator names and ATI text. Anything
# longer is noise.
_MAX_LINE = const(256)
# Largest chunk the shell reads from the UART at once (the ESP32 UART driver's
# RX ring is 256 bytes by default; larger reads only cost RAM).
_READ_CHUNK = const(256)
# How often the shell looks at the command in flight: bounds how late an
# answer is taken up (a few ms next to the modem's own tens of ms). Polling
# with asyncio.sleep_ms allocates nothing, where waiting for an Event with a
# timeout (asyncio.wait_for_ms) creates two tasks each time.
_POLL_MS = const(5)
# Tries of AT before the modem counts as not answering (it may be booting).
_PROBE_TRIES = const(5)
# Text-mode SMS: 160 GSM 7-bit characters.
SMS_MAX = const(160)

# Per-command timeouts (ms), from the manual's "maximum response time" where
# it gives one, otherwise generous for a loaded modem.
_T_SHORT_MS = const(2000)  # local commands: AT, ATE0, +CSQ, +CREG?, +CGDCONT
_T_CPIN_MS = const(5000)  # the manual allows 5 s while the SIM is read
_T_OPEN_MS = const(30000)  # NETOPEN (PDP activation, the manual allows 120 s), CIPOPEN (TCP handshake)
_T_CIPSEND_MS = const(15000)  # prompt + buffer; CIPTIMEOUT default is larger
_T_CLOSE_MS = const(10000)  # CIPCLOSE / NETCLOSE
_T_CMGS_MS = const(60000)  # SMS submission: the manual allows 60 s

# Core states. In the first two the shell has work to do; in the others the
# core waits for the modem.
S_IDLE = const(0)  # no command in flight (or it is done: see `result`)
_S_PROMPTED = const(1)  # "> " seen; the shell writes the payload now
_S_WAIT_PROMPT = const(2)  # sent a command that answers with "> " first
_S_WAIT_RESP = const(3)  # waiting for OK / ERROR
_S_WAIT_FINAL = const(4)  # got OK; waiting for the command's result URC

# Events returned by AtCore.feed / poll: tuples whose first item is one of:
EV_URC = const(1)  # (EV_URC, line)
EV_DATA = const(2)  # (EV_DATA, link, bytes): a piece of TCP data (may be split)
EV_PROMPT = const(3)  # (EV_PROMPT,): "> " seen; write the payload now
EV_DONE = const(4)  # (EV_DONE, status, lines): status "OK", "ERROR", "+CME ERROR: 10", "TIMEOUT"
EV_GARBAGE = const(5)  # (EV_GARBAGE, line): counted and dropped

# A line's head is its text up to and including the first ':', or the whole
# line when it has none ("+CREG: 2" -> "+CREG:", "RDY" -> "RDY").

# Heads of lines that may arrive unsolicited. A line that belongs to the
# command in flight (its answer or result line) is its answer even if it is
# listed here (+CREG: is both).
_URCS = const(
    "|+IPCLOSE:|+CIPEVENT:|+CREG:|+CEREG:|+CGREG:|+CPIN:|+CMTI:|+CGEV:|+CTZV:"
    "|RECV FROM:|RDY|SMS DONE|PB DONE|*ATREADY:"
    # the result URCs of a command that already timed out arrive late:
    "|+NETOPEN:|+CIPOPEN:|+CIPSEND:|+CIPCLOSE:|+NETCLOSE:|+CMGS:|"
)

# Hints for the final statuses worth one: 27.007 / 27.005 numeric codes
# (AT+CMEE=1), a +CPIN: state other than READY, a timeout, and "IP <err>"
# for the <err> of +NETOPEN: / +CIPOPEN:. Entries "|<status>|<status>|=<hint>".
_HINTS = const(
    "|+CME ERROR: 10|+CMS ERROR: 310|=SIM not inserted; check the SIM card is seated"
    "|+CME ERROR: 11|SIM PIN|=SIM PIN required; use a SIM without a PIN"
    "|+CME ERROR: 13|=SIM failure; replace the SIM"
    "|+CME ERROR: 30|+CMS ERROR: 331|=no network service; check the antenna and coverage"
    "|+CMS ERROR: 330|=SMS centre unknown; set it with AT+CSCA"
    "|TIMEOUT|=modem not answering; check power and the UART wiring"
    "|IP 1|=network failure|IP 2|=network not opened|IP 4|=link already open"
    "|IP 10|=timeout|IP 11|=DNS lookup failed|"
)

# ---------------------------------------------------------------- errors


class ModemError(Exception):
    """Anything the modem did not do. The message names the box and modem
    (`name`, "box 42 modem"), the AT command, the final result (`status`:
    "ERROR", "+CME ERROR: 10", "TIMEOUT", ...) and a hint; `lines` are the
    command's information lines."""

    def __init__(self, name, command, status, hint="", lines=()):
        self.status = status
        self.lines = lines
        super().__init__("%s: %s failed: %s%s" % (name, command, status, " (%s)" % hint if hint else ""))


class AtTimeout(ModemError):
    """No final answer within the command's timeout: the modem is busy, hung,
    or the UART is cut."""


class AtCommandError(ModemError):
    """The modem answered ERROR, +CME ERROR, +CMS ERROR or a non-zero result
    URC (+CIPOPEN: 0,<err>)."""


def hint_for(status):
    """A human hint for a final status, or for "IP <err>"; "" if none."""
    h = _HINTS  # one copy of the table in this function's constants
    i = h.find("|%s|" % status)
    if i < 0:
        return ""
    i = h.find("=", i) + 1
    return h[i : h.find("|", i)]


# ---------------------------------------------------------------- pure helpers


def ints(line):
    """The numbers after a line's head: '+CSQ: 17,99' -> [17, 99],
    '+RECEIVE,0,6' -> [0, 6] (that one has no ':'). Raises ValueError."""
    i = line.find(":")
    if i < 0:
        i = line.find(",")
    return list(map(int, line[i + 1 :].split(",")))


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
    """'+CREG: 0,1' (answer) or '+CEREG: 1' (URC) -> <stat> as int."""
    v = ints(line)
    return v[1] if len(v) > 1 else v[0]


def registered(stat):
    """<stat> 1 (home network) or 5 (roaming)."""
    return stat == 1 or stat == 5


def sms_safe(text):
    """Text-mode SMS body: printable ASCII only (Ctrl-Z ends the message, ESC
    cancels it, and the GSM 7-bit alphabet lacks most of the rest), at most
    SMS_MAX characters."""
    out = ""
    for ch in text[:SMS_MAX]:
        out += ch if ch == "\n" or 32 <= ord(ch) < 127 else "?"
    return out


# ---------------------------------------------------------------- the core


class AtCore:
    """Line/URC parser and command/response matcher. Pure: fed bytes, returns
    events; the time comes in as arguments.

    One command is in flight at a time (the shell's lock guarantees it):
    `begin()` returns the bytes to write, `feed()` turns modem bytes into
    events, `poll(now_ms)` reports a timeout, `result` holds the outcome
    (status, lines) once the command is done and `take()` clears it."""

    def __init__(self):
        # parser: the line so far; what the next bytes are (raw > 0: that
        # many bytes of TCP data of `link`, after a +RECEIVE header; 0:
        # lines; -1: the rest of an overlong line, dropped up to its LF).
        self._buf = bytearray()
        self.raw = 0
        self.link = 0
        # matcher
        self.state = S_IDLE
        self.command = None
        self.result = None
        self.garbage = 0  # lines counted and dropped

    def begin(self, command, now_ms, timeout_ms, prefix=None, final=None, prompt=False):
        """Start `command` (text without CR). prefix: the head of its answer
        lines ("+CSQ:"); final: the head of a result URC that must follow its
        OK ("+NETOPEN:"); prompt: it answers "> " first (CIPSEND, CMGS).
        Returns the bytes to write."""
        if self.state != S_IDLE:
            raise ValueError(self.command)  # still in flight
        self.command = command
        self.prefix = prefix
        self.final = final  # None again once the result URC is in
        self.lines = []
        self.result = None
        self._deadline = ticks_add(now_ms, timeout_ms)
        self.state = _S_WAIT_PROMPT if prompt else _S_WAIT_RESP
        return command.encode() + b"\r"

    def payload_sent(self):
        """The shell wrote the payload after the prompt."""
        if self.state == _S_PROMPTED:
            self.state = _S_WAIT_RESP

    def poll(self, now_ms):
        """Events due at now_ms: a TIMEOUT for the command in flight."""
        if self.state != S_IDLE and ticks_diff(now_ms, self._deadline) >= 0:
            return [self.done("TIMEOUT")]
        return ()  # (allocates nothing: the shell polls every few ms)

    def take(self):
        """(status, lines) of the finished command; clears it."""
        r = self.result
        self.result = None
        return r

    def done(self, status):
        """The command in flight is done with `status`; its EV_DONE event."""
        self.result = (status, self.lines)
        self.state = S_IDLE
        self.command = None
        return (EV_DONE, status, self.lines)

    def feed(self, data):
        """Bytes from the modem -> list of events."""
        ev = []
        i = 0
        n = len(data)
        while i < n:
            if self.raw > 0:  # TCP data after +RECEIVE
                k = min(self.raw, n - i)
                ev.append((EV_DATA, self.link, bytes(data[i : i + k])))
                self.raw -= k
                i += k
                continue
            lf = data.find(b"\n", i)
            end = n if lf < 0 else lf
            buf = self._buf
            if self.raw < 0:  # dropping an overlong line
                if lf >= 0:
                    self.raw = 0
            elif len(buf) + end - i > _MAX_LINE:
                self._buf = bytearray()
                self.raw = -1
                self.garbage += 1
                ev.append((EV_GARBAGE, "overlong"))
                continue  # the rest up to the LF is dropped
            elif lf >= 0:
                buf.extend(data[i:end])
                self._buf = bytearray()
                self.match(buf, ev)
            else:
                buf.extend(data[i:end])
                # No LF yet. The prompt is the only thing the modem sends
                # without a line end: "\r\n> ".
                if self.state == _S_WAIT_PROMPT and buf[:1] == b">":
                    self._buf = bytearray()
                    self.state = _S_PROMPTED
                    ev.append((EV_PROMPT,))
            i = end + 1
        return ev

    def match(self, buf, ev):
        """One line from the modem (`buf`, without its LF): to the command
        in flight, or an event of its own."""
        urcs = _URCS  # one copy of the table in this function's constants
        try:
            # Ends stripped: echo ends "\r", lines "\r\n", and the space of
            # a "> " prompt split from its ">" is left over.
            line = buf.decode().strip()
        except UnicodeError:  # line noise, a baud-rate mismatch
            self.garbage += 1
            ev.append((EV_GARBAGE, repr(bytes(buf))))
            return
        if not line:
            return
        st = self.state
        # Its head, delimited as in the tables: "|+CREG:|", "|RDY|".
        head = "|%s|" % (line[: line.find(":") + 1] or line)
        if st == _S_WAIT_PROMPT and line[0] == ">":
            # The prompt as a line of its own ("> " then LF on some
            # firmware, or LF before the shell saw it).
            self.state = _S_PROMPTED
            ev.append((EV_PROMPT,))
        elif line.startswith("+RECEIVE,"):
            try:
                self.link, n = ints(line)
                if n < 0:
                    raise ValueError
                self.raw = n
            except ValueError:
                self.garbage += 1
                ev.append((EV_GARBAGE, line))
        elif st == S_IDLE:
            if head in urcs:
                ev.append((EV_URC, line))
            else:
                self.garbage += 1
                ev.append((EV_GARBAGE, line))
        elif line == self.command:
            pass  # echo (ATE1, the power-on default)
        elif line == "OK":
            if self.final is None:  # none expected, or it came first
                ev.append(self.done("OK"))
            else:
                self.state = _S_WAIT_FINAL
        elif head in "|ERROR|+CME ERROR:|+CMS ERROR:|+CIPERROR:|":  # final error results
            ev.append(self.done(line))
        elif self.final is not None and line.startswith(self.final):
            self.lines.append(line)
            self.final = None
            if st == _S_WAIT_FINAL:
                ev.append(self.done("OK"))
        elif self.prefix is not None and line.startswith(self.prefix):
            self.lines.append(line)
        elif head in urcs:
            ev.append((EV_URC, line))
        else:  # information text of the command (ATI, +IP ERROR: ...)
            self.lines.append(line)


# ---------------------------------------------------------------- the shell


class AtModem:
    """The modem on its UART streams.

    on_data(link, bytes) receives TCP data (+RECEIVE) as it arrives, in
    pieces; on_urc(line) every other URC. Both are called from the reader
    task and must not block. `name` appears in every error ("box 42 modem").
    log(level, msg) is the box's logger.
    """

    def __init__(self, reader, writer, name, on_data=None, on_urc=None, log=None):
        self.reader = reader
        self.writer = writer
        self.name = name
        self.on_data = on_data
        self.on_urc = on_urc
        self.log = log
        self.core = AtCore()
        self.lock = asyncio.Lock()  # one command in flight
        self.task = None  # the reader task: run()
        self.closed = False  # the UART stream ended or failed (the simulator closed it)

    def start(self):
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    def stop(self):
        if self.task is not None:
            self.task.cancel()

    async def run(self):
        """The reader task: UART bytes into the core, events out."""
        try:
            while True:
                data = await self.reader.read(_READ_CHUNK)
                if not data:
                    break
                for ev in self.core.feed(data):
                    if ev[0] == EV_DATA:
                        if self.on_data is not None:
                            self.on_data(ev[1], ev[2])
                    elif ev[0] == EV_URC and self.on_urc is not None:
                        self.on_urc(ev[1])
                    # EV_PROMPT, EV_DONE: wait() sees the core's state;
                    # EV_GARBAGE: counted in core.garbage.
        except Exception as e:  # OSError; or a callback's bug, which must not leave a dead reader behind
            if self.log is not None:
                self.log("error", "%s: UART reader stopped: %r" % (self.name, e))
        self.closed = True  # commands fail from now on; the link opens the UART again

    async def write(self, data):
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError:
            self.closed = True  # command() reports it

    async def wait(self):
        """Until the command in flight is prompted or done (a timeout makes
        it done), or the UART is gone."""
        core = self.core
        while core.state > _S_PROMPTED and not self.closed:
            await sleep_ms(_POLL_MS)
            core.poll(ticks_ms())

    async def command(self, command, timeout_ms=_T_SHORT_MS, prefix=None, final=None, payload=None):
        """Send `command`; return its information lines on OK. With `payload`
        the command answers "> " first and the payload is written then.
        Raises AtTimeout, AtCommandError, or ModemError (UART gone)."""
        async with self.lock:
            core = self.core
            r = None
            if not self.closed:
                await self.write(core.begin(command, ticks_ms(), timeout_ms, prefix, final, payload is not None))
                await self.wait()
                if core.state == _S_PROMPTED:
                    await self.write(payload)
                    core.payload_sent()
                    await self.wait()
                elif payload is not None and core.result is not None and core.result[0] == "TIMEOUT":
                    # No prompt in time: the modem may still wait for data; ESC cancels.
                    await self.write(b"\x1b")
                r = core.take()
            if r is None:  # the UART ended (or failed) before or during the command
                raise ModemError(self.name, command, "UART closed", "check the modem's UART wiring")
            if r[0] == "OK":
                return r[1]
            raise (AtTimeout if r[0] == "TIMEOUT" else AtCommandError)(self.name, command, r[0], hint_for(r[0]), r[1])

    async def ask(self, command, timeout_ms=_T_SHORT_MS, final=False, payload=None):
        """Send `command`; return its answer line, the one that starts with
        the command's name ("AT+CSQ" -> "+CSQ: 20,99"). final: that line is a
        result URC that follows the OK (+NETOPEN:, +CIPOPEN:, ...)."""
        i = command.find("=")
        head = command[2 : i if i > 0 else None].rstrip("?") + ":"
        lines = await self.command(command, timeout_ms, None if final else head, head if final else None, payload)
        for ln in lines:
            if ln.startswith(head):
                return ln
        raise AtCommandError(self.name, command, "no %s line" % head)

    def check(self, command, line):
        """Raise AtCommandError unless a +NETOPEN: / +CIPOPEN: result line
        ends in <err> 0."""
        err = ints(line)[-1]
        if err:
            raise AtCommandError(self.name, command, line, hint_for("IP %d" % err))

    # -------------------------------------------------- SIMCom operations

    async def probe(self):
        """AT until OK (the modem may still be booting; _PROBE_TRIES tries),
        then echo off and numeric errors."""
        for i in range(_PROBE_TRIES):
            try:
                await self.command("AT")
                break
            except ModemError:
                if self.closed or i == _PROBE_TRIES - 1:
                    raise
        await self.command("ATE0")
        await self.command("AT+CMEE=1")

    async def sim_ready(self):
        """True if AT+CPIN? answers READY; raises AtCommandError with a hint
        (SIM not inserted) otherwise."""
        state = (await self.ask("AT+CPIN?", _T_CPIN_MS))[6:].strip()
        if state != "READY":  # SIM PIN, SIM PUK, ...
            raise AtCommandError(self.name, "AT+CPIN?", state, hint_for(state))
        return True

    async def signal(self):
        """(rssi, ber) from AT+CSQ."""
        v = ints(await self.ask("AT+CSQ"))
        return v[0], v[1]

    async def registration(self):
        """<stat> of AT+CEREG? (LTE), or of AT+CREG? (2G/3G) when only that
        one is registered."""
        stat = parse_reg(await self.ask("AT+CEREG?"))
        if not registered(stat):
            other = parse_reg(await self.ask("AT+CREG?"))
            if registered(other):
                return other
        return stat

    async def setup_pdp(self, apn):
        """PDP context 1 with the APN, sockets on it, non-transparent mode,
        data pushed in +RECEIVE URCs without the sender's address."""
        for cmd in ('AT+CGDCONT=1,"IP","%s" AT+CSOCKSETPN=1 AT+CIPMODE=0 AT+CIPSRIP=0 AT+CIPRXGET=0' % apn).split():
            await self.command(cmd)  # (an APN has no spaces)

    async def net_open(self):
        """AT+NETOPEN; an already open network counts as success."""
        try:
            line = await self.ask("AT+NETOPEN", _T_OPEN_MS, final=True)
        except AtCommandError as e:
            # "+IP ERROR: Network is already opened" precedes the ERROR.
            if e.status != "ERROR" or ints(await self.ask("AT+NETOPEN?"))[0] != 1:
                raise
            return
        self.check("AT+NETOPEN", line)

    async def tcp_open(self, link, host, port):
        cmd = 'AT+CIPOPEN=%d,"TCP","%s",%d' % (link, host, port)
        try:
            line = await self.ask(cmd, _T_OPEN_MS, final=True)
        except AtCommandError as e:
            # "+CIPOPEN: 0,4" then ERROR: link already open; ",2": no network.
            for ln in e.lines:
                if ln.startswith("+CIPOPEN:"):
                    self.check(cmd, ln)
            raise
        self.check(cmd, line)

    async def tcp_send(self, link, data):
        """Send bytes on a TCP link; returns the count the modem confirmed."""
        cmd = "AT+CIPSEND=%d,%d" % (link, len(data))
        line = await self.ask(cmd, _T_CIPSEND_MS, final=True, payload=data)
        v = ints(line)  # <link>,<requested>,<confirmed>
        if len(v) > 2 and v[2] < v[1]:
            raise AtCommandError(self.name, cmd, line, "modem buffer full or link down")
        return v[-1]

    async def close(self, link):
        """AT+CIPCLOSE=<link>, then AT+NETCLOSE. Failures are ignored: either
        may be closed already, or the modem gone."""
        for cmd in ("AT+CIPCLOSE=%d" % link, "AT+NETCLOSE"):
            try:
                await self.ask(cmd, _T_CLOSE_MS, final=True)
            except ModemError:
                pass

    async def send_sms(self, number, text):
        """Text-mode SMS; returns the message reference from +CMGS."""
        await self.command("AT+CMGF=1")
        line = await self.ask('AT+CMGS="%s"' % number, _T_CMGS_MS, payload=sms_safe(text).encode() + b"\x1a")
        return ints(line)[0]
