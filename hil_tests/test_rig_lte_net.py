"""The LTE network emulator: the pure LinkModel (time passed in) and the TCP
proxy over real sockets to a real echo server."""

import select
import socket
import threading
import time

import pytest

from callbox_rig.lte_net import LinkModel, LteNet, LteNetError


def test_latency_and_jitter_bounds_and_order():
    m = LinkModel(latency_ms=50, jitter_ms=10, seed=5)
    arrivals = []
    last = 0.0
    for i in range(1000):
        now = i * 0.001
        at = m.schedule(now, last)
        assert at >= last  # in order
        assert at - now >= 0.040 - 1e-9
        arrivals.append(at - now)
        last = at
    assert max(arrivals) <= 0.060 + 1e-9
    assert min(arrivals) < 0.045 and max(arrivals) > 0.055  # the jitter is there


def test_loss_is_retransmission_delay_with_doubling_rto():
    m = LinkModel(latency_ms=0, loss=0.10, rto_ms=200, seed=11)
    delays = [m.schedule(100.0 + i) - (100.0 + i) for i in range(20000)]
    late = [d for d in delays if d > 0]
    assert 0.08 <= len(late) / len(delays) <= 0.12
    # 1 loss: 200 ms; 2 in a row: 600 ms; 3: 1400 ms (doubling)
    assert set(round(d, 3) for d in late) <= {0.2, 0.6, 1.4, 3.0, 4.4, 7.4, 10.4}
    assert m.stats["lost"] >= len(late)
    with pytest.raises(LteNetError, match="probability"):
        m.set(loss=1.0)


def test_blackout_drops_then_passes():
    m = LinkModel(latency_ms=10)
    m.blackout(5.0, 120.0)
    assert m.schedule(5.0) is None and m.schedule(124.9) is None
    assert m.schedule(125.1) == pytest.approx(125.11)
    assert m.stats["blackout_dropped"] == 2


class _Echo:
    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()


def _recv(sock, n, timeout):
    out = b""
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.05)
        if r:
            d = sock.recv(4096)
            if not d:
                return out + b"<EOF>"
            out += d
    return out


@pytest.fixture
def echo():
    e = _Echo()
    yield e
    e.srv.close()


def test_proxy_adds_latency_both_ways_and_reports_chunks(echo):
    net = LteNet("127.0.0.1", echo.port, latency_ms=80).start()
    seen = []
    net.on_data.append(lambda d, t, b, conn: seen.append((d, b)))
    try:
        c = socket.create_connection(("127.0.0.1", net.port))
        t0 = time.monotonic()
        c.sendall(b"ping")
        assert _recv(c, 4, 10) == b"ping"
        assert time.monotonic() - t0 >= 0.16  # 80 ms up, 80 ms down
        assert ("up", b"ping") in seen and ("down", b"ping") in seen
        c.close()
    finally:
        net.stop()


def test_lossy_link_loses_no_byte_and_keeps_order(echo):
    net = LteNet("127.0.0.1", echo.port, latency_ms=5, loss=0.3, rto_ms=20, seed=2).start()
    try:
        c = socket.create_connection(("127.0.0.1", net.port))
        sent = b""
        for i in range(60):
            chunk = b"<%03d>" % i
            c.sendall(chunk)
            sent += chunk
            time.sleep(0.002)
        assert _recv(c, len(sent), 30) == sent
        assert net.stats["lost"] > 0
        c.close()
    finally:
        net.stop()


def test_blackout_drops_data_and_holds_new_connections_then_recovers(echo):
    net = LteNet("127.0.0.1", echo.port, connect_timeout_s=30).start()
    try:
        c = socket.create_connection(("127.0.0.1", net.port))
        c.sendall(b"a")
        assert _recv(c, 1, 10) == b"a"
        net.blackout(1.5)
        c.sendall(b"lost")
        c2 = socket.create_connection(("127.0.0.1", net.port))  # accepted locally, held
        c2.sendall(b"early")  # vanishes: nobody upstream yet... and dropped by the blackout
        assert _recv(c, 1, 0.5) == b""
        t0 = time.monotonic()
        # After the blackout the held connection reaches the gateway.
        deadline = time.monotonic() + 10
        while echo.accepted < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert echo.accepted == 2 and time.monotonic() - t0 >= 0.5
        c2.sendall(b"late")
        got = _recv(c2, 4, 10)
        assert got.endswith(b"late") and b"lost" not in got
        c.sendall(b"b")
        assert _recv(c, 1, 10) == b"b"  # the old connection works again; "lost" stayed lost
        assert net.stats["blackout_dropped"] >= 1
        c.close()
        c2.close()
    finally:
        net.stop()


def test_reset_closes_both_ends_and_a_new_connection_works(echo):
    net = LteNet("127.0.0.1", echo.port).start()
    try:
        c = socket.create_connection(("127.0.0.1", net.port))
        c.sendall(b"x")
        assert _recv(c, 1, 10) == b"x"
        assert net.reset_connections() == 1
        assert _recv(c, 1, 10) == b"<EOF>"
        c2 = socket.create_connection(("127.0.0.1", net.port))
        c2.sendall(b"y")
        assert _recv(c2, 1, 10) == b"y"
        c.close()
        c2.close()
    finally:
        net.stop()
