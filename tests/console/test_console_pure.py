"""The console's pure parts: password hashing, roles, workflow, escalation,
availability, junction layout, input validation, strings, configuration."""

import datetime

import pytest

import asyncio

from callbox_console import auth, config, i18n, junctions, live, report, validate, workflow
from callbox_console.errors import BadRequest, ConfigError, Conflict

N = 2 ** 10  # fast scrypt for tests; same code path


def test_password_hash_verifies_and_rejects():
    h = auth.hash_password("correct horse battery", n=N)
    assert h.startswith("scrypt$1024$8$1$")
    assert auth.verify_password("correct horse battery", h)
    assert not auth.verify_password("correct horse batterY", h)
    assert auth.hash_password("correct horse battery", n=N) != h  # salted
    for bad in ("", "md5$x", "scrypt$a$b$c$d$e", None, "scrypt$1024$8$1$zz$zz"):
        assert auth.verify_password("x", bad) is False


def test_password_policy():
    with pytest.raises(auth.PasswordPolicyError):
        auth.check_password_policy("short")
    with pytest.raises(auth.PasswordPolicyError):
        auth.check_password_policy("asha-operator", "asha-operator")
    auth.check_password_policy("a long enough password", "asha")


def test_roles_are_ordered():
    assert auth.can("operator", "incident.act") and not auth.can("operator", "history.export")
    assert auth.can("supervisor", "report.view") and not auth.can("supervisor", "operators.manage")
    assert all(auth.can("admin", p) for p in auth.PERMISSIONS)
    assert not auth.can("nobody", "board.view")


def test_tokens_and_lockout():
    assert auth.tokens_equal("abc", "abc") and not auth.tokens_equal("abc", "abd")
    assert not auth.tokens_equal("", "") and not auth.tokens_equal(None, "x")
    assert auth.token_hash("t") != "t" and len(auth.token_hash("t")) == 64
    assert auth.locked_out([100, 101, 102, 103, 104], 110, 5, 300)
    assert not auth.locked_out([100, 101, 102, 103, 104], 500, 5, 300)
    assert not auth.locked_out([100, 101, 102, 103], 110, 5, 300)


def _inc(**kw):
    d = {"id": 1, "box_id": 42, "status": "new", "kind": "panic", "console_time": 1000.0, "restore": False,
         "escalations": 0, "escalated_at": None, "assigned_to": None}
    d.update(kw)
    return d


def test_workflow_happy_path():
    exp, ch = workflow.plan_transition(_inc(), "acknowledge", "asha", 1005.0, {})
    assert exp == "new" and ch == {"status": "acknowledged", "ack_by": "asha", "ack_at": 1005.0, "assigned_to": "asha"}
    exp, ch = workflow.plan_transition(_inc(status="acknowledged"), "dispatch", "asha", 1010.0,
                                       {"unit": " PRV 12 ", "note": "two officers"})
    assert exp == "acknowledged" and ch["unit"] == "PRV 12" and ch["dispatch_note"] == "two officers"
    exp, ch = workflow.plan_transition(_inc(status="dispatched"), "close", "ravi", 1100.0, {"outcome": "resolved"})
    assert exp == "dispatched" and ch["status"] == "closed" and ch["closed_by"] == "ravi"


def test_workflow_refuses_wrong_steps_with_reasons():
    with pytest.raises(Conflict, match="acknowledged.*by asha"):
        workflow.plan_transition(_inc(status="acknowledged", ack_by="asha"), "acknowledge", "ravi", 1, {})
    with pytest.raises(Conflict):
        workflow.plan_transition(_inc(), "close", "ravi", 1, {"outcome": "resolved"})  # acknowledge first
    with pytest.raises(BadRequest, match="unit is required"):
        workflow.plan_transition(_inc(status="acknowledged"), "dispatch", "ravi", 1, {"unit": "  "})
    with pytest.raises(BadRequest, match="outcome must be"):
        workflow.plan_transition(_inc(status="acknowledged"), "close", "ravi", 1, {"outcome": "bored"})
    with pytest.raises(BadRequest, match="longer than"):
        workflow.plan_transition(_inc(status="acknowledged"), "dispatch", "ravi", 1, {"unit": "x" * 501})
    with pytest.raises(BadRequest, match="unknown action"):
        workflow.plan_transition(_inc(), "delete", "ravi", 1, {})


def test_choose_operator_least_loaded_then_name():
    assert workflow.choose_operator([], {}) is None
    assert workflow.choose_operator(["ravi", "asha"], {}) == "asha"
    assert workflow.choose_operator(["ravi", "asha"], {"asha": 2}) == "ravi"
    assert workflow.choose_operator(["asha"], {}, exclude=("asha",)) is None


def test_escalation_rolls_over_and_repeats():
    inc = _inc(assigned_to="asha")
    assert workflow.plan_escalation(inc, 1029.9, 30, ["asha", "ravi"], {}) is None
    plan = workflow.plan_escalation(inc, 1030.0, 30, ["asha", "ravi"], {})
    assert plan == {"assigned_to": "ravi", "escalated_at": 1030.0, "escalations": 1}
    inc.update(plan)
    assert workflow.plan_escalation(inc, 1059.0, 30, ["asha", "ravi"], {}) is None
    assert workflow.plan_escalation(inc, 1060.0, 30, ["asha", "ravi"], {})["assigned_to"] == "asha"
    # alone on shift: still re-alerts, stays with the same operator
    assert workflow.plan_escalation(_inc(assigned_to="asha"), 1031, 30, ["asha"], {})["assigned_to"] == "asha"
    # the one it rang at has closed the console and nobody else is there:
    # it rings on every console (None), never at someone who cannot hear it
    plan = workflow.plan_escalation(_inc(assigned_to="asha"), 1031, 30, [], {})
    assert plan["assigned_to"] is None and plan["escalations"] == 1
    assert workflow.plan_escalation(_inc(assigned_to="asha"), 1031, 30, ["ravi"], {})["assigned_to"] == "ravi"
    # acknowledged or restore: never
    assert workflow.plan_escalation(_inc(status="acknowledged"), 5000, 30, ["ravi"], {}) is None
    assert workflow.plan_escalation(_inc(restore=True), 5000, 30, ["ravi"], {}) is None


def test_availability():
    day0, day1 = 0.0, 86400.0
    # online all day
    assert report.availability([], day0, day1, 10 ** 9, True) == 1.0
    # offline for the last quarter
    assert report.availability([(64800.0, False)], day0, day1, 10 ** 9, True) == pytest.approx(0.75)
    # offline 6 h in the middle
    tr = [(21600.0, False), (43200.0, True)]
    assert report.availability(tr, day0, day1, 10 ** 9, True) == pytest.approx(0.75)
    # the day is not over: counted up to now
    assert report.availability([(21600.0, False)], day0, day1, 43200.0, True) == pytest.approx(0.5)
    # first seen at noon, online since: 100 % of the time it was known
    assert report.availability([(43200.0, True)], day0, day1, 10 ** 9, None) == 1.0
    # never known in the window
    assert report.availability([], day0, day1, 10 ** 9, None) is None


def test_day_bounds_kanpur_time():
    start, end = report.day_bounds("2026-11-28", 330)
    assert end - start == 86400
    assert datetime.datetime.fromtimestamp(start, datetime.timezone.utc).strftime("%H:%M") == "18:30"
    with pytest.raises(BadRequest):
        report.day_bounds("28/11/2026", 330)


def test_summary_counts_alarms_not_restores():
    s = report.summarize([
        {"kind": "panic", "status": "closed", "restore": False, "ack_at": 1010, "console_time": 1000},
        {"kind": "panic", "status": "new", "restore": False, "ack_at": None, "console_time": 1000},
        {"kind": "tamper", "status": "closed", "restore": True, "ack_at": None, "console_time": 1000},
    ])
    assert s["alarms"] == 2 and s["by_kind"] == {"panic": 2} and s["ack_median_s"] == 10


def test_schematic_layout_places_every_junction_inside_the_canvas():
    pts = junctions.schematic_layout(junctions.KANPUR_JUNCTIONS)
    assert len(pts) == len(junctions.KANPUR_JUNCTIONS) == 47
    assert len(set(pts.values())) == len(pts)
    assert all(0 < x < junctions.MAP_WIDTH and 0 < y < junctions.MAP_HEIGHT for x, y in pts.values())


def test_layout_uses_coordinates_only_when_complete():
    coords = {"A": (26.50, 80.30), "B": (26.40, 80.40)}
    lay = junctions.layout(["A", "B"], coords)
    assert lay["mode"] == "coordinates"
    (ax, ay), (bx, by) = lay["points"]["A"], lay["points"]["B"]
    assert ax < bx and ay < by  # A is west and north of B
    assert junctions.layout(["A", "B", "C"], coords)["mode"] == "schematic"


def test_validate_event_names_the_box_and_field():
    good = {"event_id": "0000002a-00000007", "box_id": 42, "kind": "panic", "press_time": "2026-11-28T19:20:01.123Z"}
    e = validate.event(good, 0)
    assert e["restore"] is False and e["junction"] == "" and e["press_epoch"] > 0
    with pytest.raises(BadRequest, match="box 42.*kind 'fire'"):
        validate.event(dict(good, kind="fire"), 0)
    with pytest.raises(BadRequest, match="press_time"):
        validate.event(dict(good, press_time="yesterday"), 0)
    with pytest.raises(BadRequest, match="box_id"):
        validate.event(dict(good, box_id=-1), 0)
    with pytest.raises(BadRequest, match="event_id"):
        validate.event(dict(good, event_id="a b"), 0)
    with pytest.raises(BadRequest, match="events"):
        validate.events_body({"alarms": []})
    with pytest.raises(BadRequest, match="at most 500"):
        validate.events_body({"events": [good] * 501})
    # duplicates inside one batch are kept once
    assert len(validate.events_body({"events": [good, good]})) == 1


def test_validate_health():
    with pytest.raises(BadRequest, match="box 7: online"):
        validate.health_body({"boxes": [{"box_id": 7, "online": "yes"}]})
    with pytest.raises(BadRequest, match="bytes"):
        validate.health_body({"boxes": [{"box_id": 7, "online": True, "faults": ["x" * 5000]}]})
    assert validate.health_body({"boxes": [{"box_id": 7, "online": True}]})[0]["box_id"] == 7


def test_health_is_checked_in_steps_and_refused_whole():
    boxes = [{"box_id": i, "online": True} for i in range(250)]
    steps = list(validate.health_chunks({"boxes": boxes}, size=100))
    assert [len(s) for s in steps] == [100, 100, 50]
    assert [b["box_id"] for s in steps for b in s] == list(range(250))
    # one bad box in the last step: every step is still yielded (the server
    # yields between them) and then the whole report is refused, naming it
    boxes[230]["online"] = "yes"
    got = []
    with pytest.raises(BadRequest, match="box 230: online"):
        for step in validate.health_chunks({"boxes": boxes}, size=100):
            got.append(step)
    assert len(got) == 3


def _drain(client):
    async def run():
        out = []
        while client._queue:
            out.append(await client.next_message())
        return out
    return asyncio.run(run())


def test_live_client_merges_box_updates_capped_and_never_past_an_alarm():
    c = live.Client("asha")
    c.put({"type": "boxes", "boxes": [{"box_id": i, "v": 1} for i in range(300)]})
    c.put({"type": "boxes", "boxes": [{"box_id": 5, "v": 2}]})
    c.put({"type": "incident", "incident": {"id": 1}})
    c.put({"type": "boxes", "boxes": [{"box_id": 5, "v": 3}]})
    msgs = _drain(c)
    assert [m["type"] for m in msgs] == ["boxes", "boxes", "incident", "boxes"]
    first, second = msgs[0]["boxes"], msgs[1]["boxes"]
    assert len(first) == live.BOXES_PER_MESSAGE  # a 1,000-box report goes out in short frames
    # every box of the report arrives, and the last word on box 5 before the
    # alarm is its latest state (a box is never repeated within one message)
    assert sorted({b["box_id"] for b in first + second}) == list(range(300))
    assert all(len({b["box_id"] for b in m["boxes"]}) == len(m["boxes"]) for m in msgs if m["type"] == "boxes")
    assert [b["v"] for b in first + second if b["box_id"] == 5][-1] == 2
    assert msgs[3]["boxes"] == [{"box_id": 5, "v": 3}]  # the update after the alarm stays after it


def test_live_client_that_falls_behind_is_flagged_not_grown():
    c = live.Client("asha")
    for i in range(live.CLIENT_QUEUE_MAX + 5):
        c.put({"type": "incident", "incident": {"id": i}})
    assert c.overflowed.is_set() and len(c._queue) == live.CLIENT_QUEUE_MAX


def test_every_string_has_english_and_hindi():
    for key, (en, hi) in i18n.STRINGS.items():
        assert en.strip() and hi.strip(), key
    # Hindi strings are in Devanagari (not a copy of the English)
    assert any("\u0900" <= ch <= "\u097f" for ch in i18n.table("hi")["acknowledge"])
    assert i18n.pick("fr") == "en"


def test_config_file_reads_tokens_from_env_and_refuses_bad_keys(tmp_path, monkeypatch):
    p = tmp_path / "console.toml"
    p.write_text('[console]\nlisten = "0.0.0.0:9000"\nescalation_s = 12\n'
                 '[gateways.gw-1]\ntoken_env = "GW1_TOKEN"\nbase_url = "http://10.0.0.5:8480/"\n'
                 '[junctions."Ghantaghar Square"]\nlat = 26.4553\nlon = 80.3498\n')
    monkeypatch.setenv("GW1_TOKEN", "ab" * 32)
    cfg = config.load(str(p))
    assert (cfg.host, cfg.port, cfg.escalation_s) == ("0.0.0.0", 9000, 12)
    assert cfg.gateways["gw-1"].base_url == "http://10.0.0.5:8480"
    assert cfg.junction_coords["Ghantaghar Square"] == (26.4553, 80.3498)
    assert "ab" * 32 not in repr(cfg)  # tokens stay out of logs and tracebacks
    monkeypatch.delenv("GW1_TOKEN")
    with pytest.raises(ConfigError, match="GW1_TOKEN is not set"):
        config.load(str(p))
    p.write_text('[console]\nescalaton_s = 3\n')
    with pytest.raises(ConfigError, match="unknown key"):
        config.load(str(p))
    with pytest.raises(ConfigError, match="at least 32"):
        config.GatewayConfig("gw-1", "short")
