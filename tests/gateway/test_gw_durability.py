"""No ACKed alarm is lost when the gateway process is killed with SIGKILL at
random moments under load. The load and the record of ACKs live in a separate
process (gw_ack_recorder.py); after the last restart every ACKed event must
be in the gateway's database, exactly once."""

import os
import pathlib
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from callbox_gateway.sim import SimBox

HERE = pathlib.Path(__file__).parent
N_BOXES = 20
KILLS = 6


def start_gateway(cfgfile, portfile):
    p = subprocess.Popen([sys.executable, "-m", "callbox_tools.cli", "gateway", "--config", str(cfgfile)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.search(r"lte 127\.0\.0\.1:(\d+)", line)
    assert m, "gateway did not start: %r" % line
    portfile.write_text(m.group(1))
    return p


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acked_alarm(tmp_path):
    boxes = "".join('[[boxes]]\nbox_id = %d\nkey = "%s"\nlink = "lte"\n' % (b.box_id, b.secret.hex())
                    for b in (SimBox(0x500 + i) for i in range(N_BOXES)))
    cfg = tmp_path / "gw.toml"
    cfg.write_text('data_dir = "%s"\n[http]\nport = 0\nadmin_token = "t"\nconsole_token = "c"\n[lte]\nport = 0\n%s' % (tmp_path / "data", boxes))
    portfile, acklog, stopfile = tmp_path / "port", tmp_path / "acks.log", tmp_path / "stop"
    portfile.write_text("")
    rec = subprocess.Popen([sys.executable, str(HERE / "gw_ack_recorder.py"), str(portfile), str(acklog), str(stopfile), str(N_BOXES)])
    rng = random.Random(4)
    acks_at_kill = []
    try:
        for _ in range(KILLS):
            gw = start_gateway(cfg, portfile)
            time.sleep(rng.uniform(0.3, 1.2))
            os.kill(gw.pid, signal.SIGKILL)
            gw.wait(10)
            acks_at_kill.append(len(acklog.read_text().splitlines()) if acklog.exists() else 0)
        gw = start_gateway(cfg, portfile)
        time.sleep(1.0)
        stopfile.write_text("stop")
        rec.wait(30)
        gw.send_signal(signal.SIGTERM)
        gw.wait(30)
    finally:
        stopfile.write_text("stop")
        for p in (rec, gw):
            if p.poll() is None:
                p.kill()
    acked = set()
    for line in acklog.read_text().splitlines():
        box, event, status = line.split()
        acked.add("%08x-%08x" % (int(box), int(event)))
    db = sqlite3.connect(str(tmp_path / "data" / "gateway.db"))
    stored = [r[0] for r in db.execute("SELECT event_id FROM events")]
    # Under load while being killed: real traffic went through every life.
    assert acks_at_kill[-1] > 100 and len(acked) > 200
    missing = acked - set(stored)
    assert not missing, "ACKed but lost: %s" % sorted(missing)[:10]
    assert len(stored) == len(set(stored))  # each alarm once
    # The forward queue has one row per stored event (no sinks configured:
    # none); the replay counters are persisted for every box that sent.
    assert db.execute("SELECT COUNT(*) FROM replay WHERE rx_top > 0").fetchone()[0] == N_BOXES
