"""The console on a real PostgreSQL server (a private throwaway cluster):
the same store behaviour as on SQLite, and two console instances on one
database where an alarm posted to one reaches the other's live board."""

import asyncio
import json
import time

import aiohttp
import pytest

from console_helpers import Operator, event, gw_post, health_box, post_sync

pytestmark = pytest.mark.postgres
PW = "a long test password"


def test_store_on_postgres_idempotent_optimistic_and_health(start_console, pg_url):
    c = start_console(database=pg_url)
    assert c.console.store.dialect == "postgres"
    e = event(box_id=7, kind="emergency")
    assert post_sync(c, "/api/v1/events", {"events": [e]})[1]["accepted"] == [e["event_id"]]
    assert post_sync(c, "/api/v1/events", {"events": [e]})[1]["duplicates"] == [e["event_id"]]
    store = c.console.store
    inc = c.run(store.incident_by_event(e["event_id"]))
    assert inc["restore"] is False and inc["status"] == "new"
    # two operators acknowledge at once: exactly one wins
    a = c.run(store.update_incident(inc["id"], {"status": "acknowledged", "ack_by": "asha"}, expect={"status": "new"}))
    b = c.run(store.update_incident(inc["id"], {"status": "acknowledged", "ack_by": "ravi"}, expect={"status": "new"}))
    assert a["ack_by"] == "asha" and b is None
    big = {"boxes": [health_box(i, online=i % 10 != 0) for i in range(1, 301)]}
    assert post_sync(c, "/api/v1/health", big)[0] == 200
    boxes = c.run(store.boxes())
    assert len(boxes) == 300 and sum(not b["online"] for b in boxes) == 30
    within, before = c.run(store.status_history(0, time.time() + 100))
    assert len(within) == 300 and before == {}


def test_two_console_instances_share_live_updates(start_console, pg_url):
    a = start_console(database=pg_url)
    b = start_console(database=pg_url, token=a.token)
    assert (a.console.initial_admin_password is None) != (b.console.initial_admin_password is None)
    a.add_operator("asha", PW)  # stored once in the shared database: both instances know her

    async def scenario():
        op = Operator(b.url)
        try:
            assert (await op.login("asha", PW))[:2] == (303, "/")
            ws = await op.session.ws_connect(b.url + "/ui/ws")
            hello = json.loads((await ws.receive(timeout=10)).data)
            assert hello["type"] == "hello"
            e = event(box_id=11, kind="panic", junction="IIT Gate Tiraha")
            t0 = time.monotonic()
            status, body = await gw_post(a.url, "/api/v1/events", {"events": [e]}, a.token)  # to instance A
            assert status == 200 and body["accepted"] == [e["event_id"]]
            while True:  # ... seen on instance B's board
                m = json.loads((await ws.receive(timeout=10)).data)
                if m["type"] == "incident":
                    break
            assert time.monotonic() - t0 < 5
            assert m["incident"]["event_id"] == e["event_id"] and m["alert"] == "new"
            # health for many boxes posted to B arrives at a board on A, split to fit NOTIFY
            op_a = Operator(a.url)
            await op_a.login("asha", PW)
            ws_a = await op_a.session.ws_connect(a.url + "/ui/ws")
            await ws_a.receive(timeout=10)
            big = {"boxes": [health_box(i) for i in range(1, 101)]}
            status, _ = await gw_post(b.url, "/api/v1/health", big, b.token)
            assert status == 200
            seen = set()
            while len(seen) < 100:
                m = json.loads((await ws_a.receive(timeout=10)).data)
                if m["type"] == "boxes":
                    seen |= {x["box_id"] for x in m["boxes"]}
            # an acknowledge on B reaches A
            status, _ = await op.post("/ui/api/incidents/%d/acknowledge" % m_id(m_first=e, inst=a))
            assert status == 200
            while True:
                m = json.loads((await ws_a.receive(timeout=10)).data)
                if m["type"] == "incident" and m["incident"]["status"] == "acknowledged":
                    break
            assert m["incident"]["ack_by"] == "asha"
            await ws.close()
            await ws_a.close()
            await op_a.close()
        finally:
            await op.close()

    def m_id(m_first, inst):
        return asyncio.run_coroutine_threadsafe(inst.console.store.incident_by_event(m_first["event_id"]),
                                                inst.lt.loop).result(10)["id"]

    asyncio.run(scenario())


def test_escalation_happens_once_across_instances(start_console, pg_url):
    a = start_console(database=pg_url, escalation_s=5)
    b = start_console(database=pg_url, token=a.token, escalation_s=5, clock=a.console.clock)
    e = event(kind="panic")
    post_sync(a, "/api/v1/events", {"events": [e]})
    a.console.clock.advance(6)

    async def both():
        await asyncio.gather(a.console.escalate_once(), b.console.escalate_once())

    a.run(both())
    inc = a.run(a.console.store.incident_by_event(e["event_id"]))
    assert inc["escalations"] == 1
    audit = a.run(a.console.store.audit(inc["id"]))
    assert [x["action"] for x in audit].count("escalated") == 1
