"""The rig's ports: a port handed to a service must still be free when the service binds it.

CI once lost a run because `bind(0)` picked the gateway's HTTP port from the kernel's
ephemeral range and, before the gateway bound it, one of 32 virtual boxes connecting to
the bus emulator got the same number as its local port."""
import random
import socket

from callbox_rig import services


def test_ports_come_from_below_the_ephemeral_range_and_are_never_handed_out_twice():
    eph_lo, _ = services._ephemeral_range()
    ports = [services.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= p < eph_lo for p in ports), ports
    for p in ports[:5]:  # and each one really binds
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_a_port_in_use_is_skipped():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]

        class Picks(random.Random):
            """Offers the busy port first, then another one."""
            def __init__(self):
                super().__init__(7)
                self.offers = [taken]

            def randint(self, a, b):
                return self.offers.pop() if self.offers else super().randint(a, b)

        port = services.free_port(rng=Picks())
        assert port != taken


def test_many_outgoing_connections_never_land_on_a_handed_out_port():
    """What went wrong in CI, reproduced: open many client connections while ports are reserved."""
    reserved = {services.free_port() for _ in range(20)}
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(300)
    clients = []
    try:
        for _ in range(200):
            c = socket.create_connection(srv.getsockname())
            clients.append(c)
            assert c.getsockname()[1] not in reserved
    finally:
        for c in clients:
            c.close()
        srv.close()
