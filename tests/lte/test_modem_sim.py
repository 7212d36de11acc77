"""The modem simulator speaks the SIMCom dialect (exact bytes on a raw
socket) and injects its faults; the CPython run of the AT driver against it."""

import asyncio

import pytest

from callbox_firmware import at_modem
from callbox_rig.modem_sim import ModemSim


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _raw(sim):
    r, w = await asyncio.open_connection("127.0.0.1", sim.port)
    return r, w


async def _expect(r, want, timeout=10):
    got = b""
    while not got.endswith(want):
        chunk = await asyncio.wait_for(r.read(1), timeout)
        assert chunk, "simulator closed; got %r" % got
        got += chunk
    return got


async def _echo_server():
    async def h(r, w):
        while True:
            d = await r.read(100)
            if not d:
                break
            w.write(d[::-1])
        w.close()

    return await asyncio.start_server(h, "127.0.0.1", 0)


def test_exact_dialect_bytes():
    async def main():
        async with ModemSim() as sim:
            r, w = await _raw(sim)
            assert await _expect(r, b"PB DONE\r\n") == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n"
            w.write(b"AT+CSQ\r")  # echo is on after power-up
            assert await _expect(r, b"OK\r\n") == b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
            w.write(b"ATE0\r")
            assert await _expect(r, b"OK\r\n") == b"ATE0\r\r\nOK\r\n"
            w.write(b"AT+CREG?\r")
            assert await _expect(r, b"OK\r\n") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
            w.write(b"AT+BOGUS\r")
            assert await _expect(r, b"ERROR\r\n") == b"\r\nERROR\r\n"
            w.write(b"AT+NETOPEN\r")
            assert await _expect(r, b"+NETOPEN: 0\r\n") == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
            w.write(b"AT+NETOPEN\r")
            assert await _expect(r, b"ERROR\r\n") == b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
            w.write(b"AT+CMGF=1\r")
            await _expect(r, b"OK\r\n")
            w.write(b'AT+CMGS="+911"\r')
            assert await _expect(r, b"> ") == b"\r\n> "
            w.write(b"help at Rocket Tiraha\x1a")
            assert await _expect(r, b"OK\r\n") == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
            assert [(s.number, s.text) for s in sim.sms] == [("+911", "help at Rocket Tiraha")]
            w.close()

    run(main())


def test_driver_tcp_bridge_binary_and_remote_close():
    async def main():
        srv = await _echo_server()
        gport = srv.sockets[0].getsockname()[1]
        async with ModemSim() as sim:
            r, w = await _raw(sim)
            got, urcs = [], []
            m = at_modem.AtModem(r, w, "box 7 modem", on_data=lambda link, d: got.append((link, d)), on_urc=urcs.append)
            m.start()
            await m.probe()
            assert await m.sim_ready()
            assert await m.registration() == 1
            assert await m.signal() == (20, 99)
            await m.setup_pdp("internet")
            await m.net_open()
            await m.net_open()  # already open counts as success
            await m.tcp_open(0, "127.0.0.1", gport)
            with pytest.raises(at_modem.AtCommandError, match="already open"):
                await m.tcp_open(0, "127.0.0.1", gport)
            payload = b"\x00\r\nOK\r\nERROR\x00+RECEIVE,0,99\r\n"
            assert await m.tcp_send(0, payload) == len(payload)
            for _ in range(100):
                if sum(len(d) for _, d in got) >= len(payload):
                    break
                await asyncio.sleep(0.05)
            assert b"".join(d for _, d in got) == payload[::-1]
            assert {link for link, _ in got} == {0}
            sim.remote_close(0)
            for _ in range(100):
                if "+IPCLOSE: 0,1" in urcs:
                    break
                await asyncio.sleep(0.05)
            assert "+IPCLOSE: 0,1" in urcs
            with pytest.raises(at_modem.AtCommandError):
                await m.tcp_send(0, b"x")
            assert "RDY" in urcs  # boot URCs were not mistaken for answers
            m.stop()
            w.close()
        srv.close()

    run(main())


def test_faults_sim_missing_registration_blackout_slow():
    async def main():
        srv = await _echo_server()
        gport = srv.sockets[0].getsockname()[1]
        async with ModemSim(connect_timeout_s=0.5) as sim:
            r, w = await _raw(sim)
            urcs = []
            m = at_modem.AtModem(r, w, "box 7 modem", on_urc=urcs.append)
            m.start()
            await m.probe()
            sim.set_sim_present(False)
            with pytest.raises(at_modem.AtCommandError, match="SIM not inserted"):
                await m.sim_ready()
            with pytest.raises(at_modem.AtCommandError, match=r"\+CMS ERROR: 310"):
                await m.send_sms("+911", "x")
            sim.set_sim_present(True)
            sim.set_registration(1)
            await m.net_open()
            # Registration lost with the network open: the network closes.
            sim.set_registration(2)
            await asyncio.sleep(0.1)
            assert "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY" in urcs
            assert await m.registration() == 2
            with pytest.raises(at_modem.AtCommandError, match="331"):
                await m.send_sms("+911", "no network")
            with pytest.raises(at_modem.AtCommandError, match="NETOPEN: 1"):
                await m.net_open()
            sim.set_registration(1)
            await m.net_open()
            # Blackout: new connections time out (err 10) while it lasts.
            sim.blackout(30)
            with pytest.raises(at_modem.AtCommandError, match=r"\+CIPOPEN: 0,10"):
                await m.tcp_open(0, "127.0.0.1", gport)
            # ... but SMS still goes out: only the data path is dark.
            assert await m.send_sms("+911", "data down") == 1
            sim.blackout(0)
            await m.tcp_open(0, "127.0.0.1", gport)
            # Slow modem: an answer later than the command's timeout.
            sim.set_response_delay(700)
            with pytest.raises(at_modem.AtTimeout, match="not answering"):
                await m.command("AT", 300)
            sim.set_response_delay(0)
            await asyncio.sleep(1.0)  # the late OK arrives and is dropped as garbage
            await m.command("AT")
            # Injected garbage between commands is survived.
            sim.inject(b"\r\n\xff\xfenoise\r\n" + b"Z" * 600 + b"\r\n")
            assert await m.signal() == (20, 99)
            assert m.core.garbage >= 2
            m.stop()
            w.close()
        srv.close()

    run(main())


def test_refused_connection_is_network_failure():
    async def main():
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        async with ModemSim() as sim:
            r, w = await _raw(sim)
            m = at_modem.AtModem(r, w, "box 7 modem")
            m.start()
            await m.probe()
            await m.net_open()
            with pytest.raises(at_modem.AtCommandError, match="network failure"):
                await m.tcp_open(0, "127.0.0.1", port)
            m.stop()
            w.close()

    run(main())
