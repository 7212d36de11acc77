"""A SIMCom SIM7600-class LTE modem, simulated on a TCP port.

One `ModemSim` stands in for one virtual box's modem: the box's UART to the
modem is a TCP connection to `127.0.0.1:sim.port` (on the unix port the
firmware opens it as `socket://127.0.0.1:PORT`). The simulator answers the
AT dialect that firmware/at_modem.py uses, as the SIM7500/SIM7600 AT Command
Manual documents it, bridges AT+CIPOPEN sockets to real TCP connections (to
the gateway), records every SMS (inspectable from tests, and logged), and
injects the faults a box meets in the street:

    sim.set_sim_present(False)      no SIM: +CME ERROR: 10, registration 0
    sim.set_registration(stat)      0 not registered, 1 home, 2 searching,
                                    3 denied, 5 roaming; losing it with the
                                    network open closes it (+CIPEVENT)
    sim.network_closed()            +CIPEVENT: NETWORK CLOSED UNEXPECTEDLY
    sim.remote_close(link)          the gateway side drops: +IPCLOSE: <link>,1
    sim.set_response_delay(ms)      every answer comes this late
    sim.blackout(seconds)           data vanishes both ways, silently, and new
                                    connections hang, for that long
    sim.set_rssi(csq)               the AT+CSQ <rssi> value (0..31, 99)
    sim.inject(bytes)               raw bytes to the box (garbage, URCs)

Deviations from a real modem are listed in docs/lte.md. Run standalone:

    python -m callbox_rig.modem_sim --port 7601
"""

import argparse
import asyncio
import logging
import re
import time

log = logging.getLogger(__name__)

# Limits, as the SIM7600 documents them.
MAX_LINKS = 10  # link numbers 0..9
MAX_SEND = 1500  # AT+CIPSEND <length> maximum
MAX_RECEIVE = 1500  # one +RECEIVE at most
SMS_MAX = 160  # text mode, GSM 7-bit
MAX_COMMAND = 560  # longest command line the modem buffers
CTRL_Z = 0x1A
ESC = 0x1B

# CME/CMS error texts for AT+CMEE=2.
_CME_TEXT = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted", 30: "no network service", 100: "unknown"}
_CMS_TEXT = {302: "operation not allowed", 304: "invalid PDU mode parameter", 310: "SIM not inserted", 331: "no network service", 500: "unknown error"}

_CMD_RE = re.compile(r"^AT([+*^&]?[A-Z]*[0-9]*)(\?|=\?|=.*)?$", re.IGNORECASE)


class Sms:
    """One SMS the box submitted."""

    def __init__(self, number, text, mr, at):
        self.number = number
        self.text = text
        self.mr = mr
        self.time = at

    def __repr__(self):
        return "Sms(%r, %r, mr=%d)" % (self.number, self.text, self.mr)


class _Link:
    def __init__(self, link, host, port, reader, writer):
        self.link = link
        self.host = host
        self.port = port
        self.reader = reader
        self.writer = writer
        self.task = None
        self.closing = False


def _args(text):
    """Split AT arguments at commas outside quotes; strip the quotes."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


class ModemSim:
    def __init__(self, name="modem", host="127.0.0.1", port=0, rssi=20, boot_urcs=True, connect_timeout_s=10.0):
        self.name = name
        self.host = host
        self.port = port
        self.boot_urcs = boot_urcs
        self.connect_timeout_s = connect_timeout_s
        # Modem state (as after power-on).
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.creg_n = 0
        self.cereg_n = 0
        self.sim_present = True
        self.reg_stat = 1
        self.rssi = rssi
        self.apn = None
        self.net_open = False
        self.links = {}
        self.response_delay_s = 0.0
        self.blackout_until = 0.0
        self._mr = 0
        # Record for tests.
        self.sms = []
        self.commands = []
        self.sent_bytes = 0  # box -> gateway, delivered
        self.received_bytes = 0  # gateway -> box, delivered
        self.dropped_bytes = 0  # lost in a blackout
        self.connections = 0
        self._server = None
        self._uart = None  # the box's writer
        self._uart_task = None
        self._eof = False
        self._buf = bytearray()
        self._data = asyncio.Event()
        self._changed = asyncio.Condition()
        self._out_lock = asyncio.Lock()

    # -------------------------------------------------- lifecycle

    async def start(self):
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("modem %s: UART on %s:%d", self.name, self.host, self.port)
        return self

    async def close(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._close_links()
        if self._uart is not None:
            self._uart.close()
            self._uart = None
        if self._uart_task is not None:
            self._uart_task.cancel()
            try:
                await self._uart_task
            except (asyncio.CancelledError, Exception):
                pass

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    @property
    def url(self):
        return "socket://%s:%d" % (self.host, self.port)

    # -------------------------------------------------- faults

    def set_sim_present(self, present):
        self.sim_present = present
        if not present:
            self.set_registration(0)

    def set_registration(self, stat):
        old = self.reg_stat
        self.reg_stat = stat
        log.info("modem %s: registration %d -> %d", self.name, old, stat)
        if self.creg_n:
            self._urc("+CREG: %d" % stat)
        if self.cereg_n:
            self._urc("+CEREG: %d" % stat)
        if not self._registered() and self.net_open:
            self.network_closed()

    def network_closed(self):
        """The packet network dropped the PDP context."""
        log.info("modem %s: network closed unexpectedly", self.name)
        self._close_links()
        self.net_open = False
        self._urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")

    def remote_close(self, link=0):
        """The far end closes the TCP connection on `link`."""
        lk = self.links.get(link)
        if lk is not None:
            lk.writer.close()  # the reader task sees EOF and reports +IPCLOSE

    def set_response_delay(self, ms):
        self.response_delay_s = ms / 1000

    def set_rssi(self, csq):
        self.rssi = csq

    def blackout(self, seconds):
        self.blackout_until = time.monotonic() + seconds
        log.info("modem %s: blackout for %.1f s", self.name, seconds)

    def in_blackout(self):
        return time.monotonic() < self.blackout_until

    def inject(self, data):
        if self._uart is not None:
            self._uart.write(bytes(data))

    async def wait_sms(self, count=1, timeout=30.0):
        """Wait until `count` SMS have been sent; return the list."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sms) >= count), timeout)
        return list(self.sms)

    async def wait_command(self, pattern, timeout=30.0):
        """Wait until a command matching the regex has been received."""
        rx = re.compile(pattern)
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: any(rx.search(c) for c in self.commands)), timeout)

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()

    # -------------------------------------------------- UART

    async def _client(self, reader, writer):
        if self._uart_task is not None:
            # A new connection is the box rebooting onto the same modem: the
            # modem keeps its state (network, sockets), as a real one does.
            self._uart_task.cancel()
        self.connections += 1
        self._uart = writer
        self._buf = bytearray()
        self._eof = False
        self.echo = True  # a fresh host session starts with defaults
        if self.boot_urcs and self.connections == 1:
            for u in ("RDY", "+CPIN: READY" if self.sim_present else "+CPIN: SIM REMOVED", "SMS DONE", "PB DONE"):
                self._urc(u)
        feeder = asyncio.ensure_future(self._feed(reader))
        self._uart_task = asyncio.ensure_future(self._serve(writer))
        try:
            await self._uart_task
        except asyncio.CancelledError:
            pass
        finally:
            feeder.cancel()
            if self._uart is writer:
                self._uart = None
            writer.close()

    async def _feed(self, reader):
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self._buf.extend(data)
                self._data.set()
        except (ConnectionError, OSError):
            pass
        self._eof = True
        self._data.set()

    async def _more(self):
        if self._eof:
            raise ConnectionResetError("box closed the UART")
        self._data.clear()
        await self._data.wait()

    async def _read_line(self):
        """A command line, terminated by CR (S3); LF is ignored."""
        while True:
            i = self._buf.find(b"\r")
            if i >= 0:
                raw = bytes(self._buf[:i])
                del self._buf[: i + 1]
                if self.echo:
                    self._write(raw + b"\r")
                return raw.replace(b"\n", b"")
            if len(self._buf) > MAX_COMMAND:
                del self._buf[:]
            await self._more()

    async def _read_exact(self, n):
        while len(self._buf) < n:
            await self._more()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def _read_until_ctrl_z(self):
        """SMS text: up to Ctrl-Z (send) or ESC (cancel)."""
        while True:
            for i, b in enumerate(self._buf):
                if b in (CTRL_Z, ESC):
                    text = bytes(self._buf[:i])
                    del self._buf[: i + 1]
                    return text, b == CTRL_Z
            await self._more()

    def _write(self, data):
        if self._uart is not None:
            self._uart.write(data)

    def _line(self, line):
        self._write(b"\r\n" + line.encode() + b"\r\n")

    def _urc(self, line):
        # URCs wait while the box is typing data after a prompt.
        if self._out_lock.locked():
            asyncio.ensure_future(self._urc_later(line))
        else:
            self._line(line)

    async def _urc_later(self, line):
        async with self._out_lock:
            self._line(line)

    def _cme(self, code):
        if self.cmee == 1:
            self._line("+CME ERROR: %d" % code)
        elif self.cmee == 2:
            self._line("+CME ERROR: %s" % _CME_TEXT.get(code, "unknown"))
        else:
            self._line("ERROR")

    def _cms(self, code):
        if self.cmee == 1:
            self._line("+CMS ERROR: %d" % code)
        elif self.cmee == 2:
            self._line("+CMS ERROR: %s" % _CMS_TEXT.get(code, "unknown error"))
        else:
            self._line("ERROR")

    def _registered(self):
        return self.sim_present and self.reg_stat in (1, 5)

    async def _serve(self, writer):
        try:
            while True:
                raw = await self._read_line()
                try:
                    line = raw.decode().strip()
                except UnicodeDecodeError:
                    line = None
                if not line:
                    continue
                self.commands.append(line)
                await self._notify()
                if self.response_delay_s:
                    await asyncio.sleep(self.response_delay_s)
                await self._command(line)
        except ConnectionResetError:
            log.info("modem %s: box closed the UART", self.name)

    # -------------------------------------------------- commands

    async def _command(self, line):
        m = _CMD_RE.match(line)
        if m is None:
            self._line("ERROR")
            return
        name = m.group(1).upper()
        tail = m.group(2) or ""
        query = tail == "?"
        arg = _args(tail[1:]) if tail.startswith("=") and tail != "=?" else []
        handler = getattr(self, "_at_" + (name.lstrip("+*^&") or "plain").lower(), None)
        if name in ("E0", "E1"):
            self.echo = name == "E1"
            self._line("OK")
            return
        if handler is None:
            self._line("ERROR")
            return
        try:
            await handler(query, arg, tail)
        except (ValueError, IndexError):
            self._cme(4)

    async def _at_plain(self, query, arg, tail):
        self._line("OK")

    async def _at_i(self, query, arg, tail):
        for ln in ("Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600G-H (simulated)", "Revision: SIM-CALLBOX-1"):
            self._line(ln)
        self._line("OK")

    async def _at_cmee(self, query, arg, tail):
        if query:
            self._line("+CMEE: %d" % self.cmee)
        else:
            self.cmee = int(arg[0])
        self._line("OK")

    async def _at_cpin(self, query, arg, tail):
        if not self.sim_present:
            self._cme(10)
            return
        self._line("+CPIN: READY")
        self._line("OK")

    async def _at_csq(self, query, arg, tail):
        rssi = self.rssi if self.sim_present else 99
        self._line("+CSQ: %d,99" % rssi)
        self._line("OK")

    async def _reg(self, which, query, arg):
        attr = which.lower().strip("+") + "_n"
        if query:
            stat = self.reg_stat if self.sim_present else 0
            self._line("%s: %d,%d" % (which, getattr(self, attr), stat))
        elif arg:
            setattr(self, attr, int(arg[0]))
        self._line("OK")

    async def _at_creg(self, query, arg, tail):
        await self._reg("+CREG", query, arg)

    async def _at_cereg(self, query, arg, tail):
        await self._reg("+CEREG", query, arg)

    async def _at_cgdcont(self, query, arg, tail):
        if query:
            if self.apn is not None:
                self._line('+CGDCONT: 1,"IP","%s","0.0.0.0",0,0' % self.apn)
        elif arg:
            if int(arg[0]) != 1 or len(arg) < 3:
                raise ValueError
            self.apn = arg[2]
        self._line("OK")

    async def _ok(self, query, arg, tail):
        self._line("OK")

    # Settings the simulator accepts and ignores (their documented defaults
    # are what it does anyway, except CIPSRIP: see docs/lte.md).
    _at_csocksetpn = _ok
    _at_cipmode = _ok
    _at_cipsrip = _ok
    _at_cipccfg = _ok
    _at_ciptimeout = _ok
    _at_cipsendmode = _ok
    _at_cscs = _ok

    async def _at_ciprxget(self, query, arg, tail):
        if arg and arg[0] != "0":
            self._cme(4)  # manual receive mode is not simulated
            return
        self._line("OK")

    async def _at_netopen(self, query, arg, tail):
        if query:
            self._line("+NETOPEN: %d" % (1 if self.net_open else 0))
            self._line("OK")
            return
        if self.net_open:
            self._line("+IP ERROR: Network is already opened")
            self._line("ERROR")
            return
        self._line("OK")
        await asyncio.sleep(0.01)
        if not self._registered():
            self._line("+NETOPEN: 1")
            return
        self.net_open = True
        self._line("+NETOPEN: 0")

    async def _at_netclose(self, query, arg, tail):
        if not self.net_open:
            self._line("+NETCLOSE: 2")
            self._line("ERROR")
            return
        self._close_links()
        self.net_open = False
        self._line("OK")
        self._line("+NETCLOSE: 0")

    async def _at_cipopen(self, query, arg, tail):
        if query:
            for i in range(MAX_LINKS):
                lk = self.links.get(i)
                if lk is None:
                    self._line("+CIPOPEN: %d" % i)
                else:
                    self._line('+CIPOPEN: %d,"TCP","%s",%d,-1' % (i, lk.host, lk.port))
            self._line("OK")
            return
        link = int(arg[0])
        if not 0 <= link < MAX_LINKS or arg[1].upper() != "TCP" or len(arg) < 4:
            self._line("+CIPOPEN: %d,3" % link)
            self._line("ERROR")
            return
        if not self.net_open:
            self._line("+CIPOPEN: %d,2" % link)
            self._line("ERROR")
            return
        if link in self.links:
            self._line("+CIPOPEN: %d,4" % link)
            self._line("ERROR")
            return
        host, port = arg[2], int(arg[3])
        self._line("OK")
        deadline = time.monotonic() + self.connect_timeout_s
        while self.in_blackout() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # SYNs lost; TCP retransmits
        err = 10
        if not self.in_blackout() and self.net_open:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), max(0.1, deadline - time.monotonic()))
                err = 0
            except asyncio.TimeoutError:
                err = 10
            except OSError as e:
                log.info("modem %s: link %d to %s:%d refused: %s", self.name, link, host, port, e)
                err = 1
        if err:
            self._line("+CIPOPEN: %d,%d" % (link, err))
            return
        lk = _Link(link, host, port, reader, writer)
        self.links[link] = lk
        lk.task = asyncio.ensure_future(self._pump(lk))
        log.info("modem %s: link %d open to %s:%d", self.name, link, host, port)
        self._line("+CIPOPEN: %d,0" % link)

    async def _at_cipclose(self, query, arg, tail):
        link = int(arg[0])
        lk = self.links.pop(link, None)
        if lk is None:
            self._line("+CIPCLOSE: %d,4" % link)
            self._line("ERROR")
            return
        lk.closing = True
        lk.writer.close()
        lk.task.cancel()
        self._line("OK")
        self._line("+CIPCLOSE: %d,0" % link)

    async def _at_cipsend(self, query, arg, tail):
        link, size = int(arg[0]), int(arg[1])
        lk = self.links.get(link)
        if lk is None or not 1 <= size <= MAX_SEND:
            self._line("ERROR")
            return
        async with self._out_lock:
            self._write(b"\r\n> ")
            data = await self._read_exact(size)
        if self.in_blackout():
            self.dropped_bytes += size
        else:
            try:
                lk.writer.write(data)
                await lk.writer.drain()
                self.sent_bytes += size
            except (ConnectionError, OSError):
                self._line("+CIPERROR: 4")
                return
        self._line("OK")
        self._line("+CIPSEND: %d,%d,%d" % (link, size, size))

    async def _at_cmgf(self, query, arg, tail):
        if query:
            self._line("+CMGF: %d" % self.cmgf)
        else:
            self.cmgf = int(arg[0])
        self._line("OK")

    async def _at_cmgs(self, query, arg, tail):
        if self.cmgf != 1:
            self._cms(304)  # PDU mode is not simulated
            return
        number = arg[0]
        async with self._out_lock:
            self._write(b"\r\n> ")
            raw, send = await self._read_until_ctrl_z()
        if not send:
            self._line("OK")  # ESC: cancelled
            return
        if not self.sim_present:
            self._cms(310)
            return
        if not self._registered():
            self._cms(331)
            return
        text = raw.decode("ascii", "replace")
        if len(text) > SMS_MAX:
            self._cms(500)
            return
        self._mr = (self._mr + 1) % 256
        self.sms.append(Sms(number, text, self._mr, time.time()))
        log.info("modem %s: SMS to %s: %s", self.name, number, text)
        await asyncio.sleep(0.05)  # submission to the SMSC
        self._line("+CMGS: %d" % self._mr)
        self._line("OK")
        await self._notify()

    # -------------------------------------------------- data bridge

    async def _pump(self, lk):
        """Gateway -> box: +RECEIVE,<link>,<len> then the bytes."""
        reason = 1
        try:
            while True:
                data = await lk.reader.read(MAX_RECEIVE)
                if not data:
                    break
                if self.in_blackout():
                    self.dropped_bytes += len(data)
                    continue
                self.received_bytes += len(data)
                async with self._out_lock:
                    self._write(b"\r\n+RECEIVE,%d,%d\r\n" % (lk.link, len(data)) + data)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        if self.links.get(lk.link) is lk and not lk.closing:
            del self.links[lk.link]
            log.info("modem %s: link %d closed by the remote end", self.name, lk.link)
            self._urc("+IPCLOSE: %d,%d" % (lk.link, reason))

    def _close_links(self):
        for lk in list(self.links.values()):
            lk.closing = True
            lk.writer.close()
            if lk.task is not None:
                lk.task.cancel()
        self.links.clear()


class ModemSimThread:
    """One ModemSim on its own asyncio loop in a background thread, for
    synchronous callers (the virtual box starts one per LTE box).

        m = ModemSimThread("box42").start()   # m.url: the box's modem UART
        m.call(m.sim.blackout, 5)             # any simulator method, on its loop
        m.call(m.sim.wait_sms, 1, 30)         # coroutines are awaited
        m.stop()
    """

    def __init__(self, name="modem", **kw):
        self.name = name
        self.kw = kw
        self.sim = None
        self.loop = None
        self._thread = None

    @property
    def url(self):
        return self.sim.url

    def start(self, timeout=20.0):
        import threading

        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name="modem-%s" % self.name, daemon=True)
        self._thread.start()
        ready.wait(timeout)
        self.sim = asyncio.run_coroutine_threadsafe(ModemSim(name=self.name, **self.kw).start(), self.loop).result(timeout)
        return self

    def call(self, fn, *args, timeout=60.0):
        """Run fn(*args) on the simulator's loop (awaited if a coroutine)."""

        async def run():
            r = fn(*args)
            if asyncio.iscoroutine(r):
                r = await r
            return r

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self):
        if self.loop is None:
            return
        try:
            self.call(self.sim.close, timeout=10)
        except Exception as e:  # stopping anyway; say why
            log.warning("modem %s: close failed: %r", self.name, e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop = None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m callbox_rig.modem_sim", description="Simulated SIM7600 modem on a TCP port (one per virtual box).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="TCP port for the box's UART (0 = any free port, printed)")
    ap.add_argument("--rssi", type=int, default=20, help="AT+CSQ <rssi> value (0..31)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run():
        sim = await ModemSim(host=args.host, port=args.port, rssi=args.rssi).start()
        print("modem simulator on %s" % sim.url, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
