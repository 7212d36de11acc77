// The operators' board: one page, live over a WebSocket. No framework; every
// string from /ui/i18n.json; text from gateways is always set with
// textContent, never parsed as HTML.
"use strict";

// seen: event id -> Date.now() when its card was put in the DOM; painted: when
// the frame after that was presented; arrived: when its WebSocket message came
// in (the benchmark and the tests read these).
const CB = window.__callbox = {beeps: 0, seen: {}, painted: {}, arrived: {}, callState: "", ready: false};
const S = {me: null, strings: {}, lang: localStorage.getItem("callbox_lang") || "en", incidents: new Map(),
  recent: [], boxes: new Map(), map: null, audio: null, ws: null, tab: "board", healthDirty: true,
  mapDirty: true, call: null};

function t(key) { return (S.strings[S.lang] || {})[key] || key; }
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
// Times are shown in the control room's zone (IST unless configured), and
// say so: "2026-11-29 01:29:20 IST".
function fmt(epoch) {
  if (!epoch) return "";
  const off = (S.me ? S.me.tz_offset_min : 330) * 60000;
  return new Date(epoch * 1000 + off).toISOString().replace("T", " ").slice(0, 19) + " " + (S.me ? S.me.tz_label : "IST");
}
function fmtIso(iso) { const d = Date.parse(iso); return isNaN(d) ? (iso || "") : fmt(d / 1000); }
// On a card: the time alone when it is today, the date too otherwise.
function fmtShort(epoch) {
  const full = fmt(epoch), today = fmt(Date.now() / 1000);
  return full.slice(0, 10) === today.slice(0, 10) ? full.slice(11) : full;
}
function can(p) { return S.me && S.me.permissions.includes(p); }

async function api(method, url, body) {
  const opts = {method, headers: {"X-CSRF-Token": S.me ? S.me.csrf : ""}, credentials: "same-origin"};
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(url, opts);
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

// ---- sound: WebAudio beeps (a browser allows sound after the first click) ----
function ensureAudio() {
  if (!S.audio) { try { S.audio = new AudioContext(); } catch (e) { return; } }
  if (S.audio.state === "suspended") S.audio.resume();
  document.getElementById("sound").textContent = t(S.audio.state === "running" ? "sound_is_on" : "sound_on");
}
function beep(kind) {
  CB.beeps += 1;
  ensureAudio();
  if (!S.audio) return;
  const n = kind === "panic" ? 4 : 2, f = kind === "panic" ? 1320 : 880;
  const now = S.audio.currentTime;
  for (let i = 0; i < n; i++) {
    const o = S.audio.createOscillator(), g = S.audio.createGain();
    o.frequency.value = f; o.type = "square"; g.gain.value = 0.15;
    o.connect(g).connect(S.audio.destination);
    o.start(now + i * 0.25); o.stop(now + i * 0.25 + 0.15);
  }
}

// ---- i18n ----
function applyStrings() {
  document.documentElement.lang = S.lang;
  document.querySelectorAll("[data-t]").forEach(e => { e.textContent = t(e.dataset.t); });
  document.title = t("app_title");
  fillSelect("h-kind", [""].concat(S.me.kinds), k => k ? t("kind_" + k) : t("any"));
  fillSelect("h-status", ["", "new", "acknowledged", "dispatched", "closed"], k => k ? t("status_" + k) : t("any"));
  fillSelect("op-role", ["operator", "supervisor", "admin"], k => t("role_" + k));
  renderAll();
}
function fillSelect(id, values, label) {
  const s = document.getElementById(id), keep = s.value;
  s.replaceChildren(...values.map(v => el("option", {value: v, text: label(v)})));
  s.value = keep;
}

// ---- board ----
function kindLabel(inc) { return t("kind_" + inc.kind) + (inc.restore ? " - " + t("outcome_restored") : ""); }
// Waiting alarms first: Panic, then Emergency, then troubles; among those the
// most escalated, then the one waiting longest. Then the ones being worked
// on, newest first.
function sortKey(inc) {
  const rank = {new: 0, acknowledged: 1, dispatched: 2}[inc.status] ?? 3;
  const kind = inc.kind === "panic" ? 0 : inc.kind === "emergency" ? 1 : 2;
  return inc.status === "new" ? [rank, kind, -(inc.escalations || 0), inc.id] : [rank, kind, 0, -inc.id];
}
function cmp(a, b) { const x = sortKey(a), y = sortKey(b); for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i]; return 0; }

function card(inc) {
  const mine = inc.assigned_to && S.me && inc.assigned_to === S.me.username && inc.status === "new";
  const c = el("article", {class: ["alarm", "kind-" + inc.kind, "status-" + inc.status, mine ? "mine" : "",
    inc.escalations ? "escalated" : ""].join(" "), id: "incident-" + inc.id, "data-event": inc.event_id,
    "data-status": inc.status});
  c.append(el("header", {},
    el("span", {class: "kind", text: kindLabel(inc)}),
    el("span", {class: "status", text: t("status_" + inc.status)}),
    inc.escalations ? el("span", {class: "badge esc", text: t("escalated") + " x" + inc.escalations}) : null,
    mine ? el("span", {class: "badge mine", text: t("assigned_to_you")}) : null));
  const press = Date.parse(inc.press_time);
  const place = el("dd", {class: "junction"}, el("span", {class: "junction-name", text: inc.junction || "?"}));
  if (inc.lat !== null && inc.lat !== undefined && inc.lon !== null && inc.lon !== undefined)
    place.append(el("span", {class: "coords", text: inc.lat.toFixed(4) + ", " + inc.lon.toFixed(4)}));
  const facts = el("dl", {},
    el("dt", {text: t("junction")}), place,
    el("dt", {text: t("box")}), el("dd", {class: "box", text: "#" + inc.box_id + (inc.link ? " - " + linkLabel(inc.link) : "")}),
    el("dt", {text: t("press_time")}), el("dd", {class: "press-time"}, el("span", {text: isNaN(press) ? (inc.press_time || "") : fmtShort(press / 1000)}),
      inc.press_time_synced ? null : el("span", {class: "unsynced", title: t("clock_unsynced_help"), text: t("clock_unsynced")})),
    el("dt", {text: t("received")}), el("dd", {class: "received-time", text: fmtShort(inc.console_time)}));
  if (inc.status === "new") facts.append(el("dt", {text: t("assigned_to")}), el("dd", {class: "assigned", text: inc.assigned_to || t("every_console")}));
  if (inc.ack_by) facts.append(el("dt", {text: t("status_acknowledged")}), el("dd", {text: inc.ack_by + " " + fmtShort(inc.ack_at)}));
  if (inc.unit) facts.append(el("dt", {text: t("unit")}), el("dd", {text: inc.unit + (inc.dispatch_note ? " - " + inc.dispatch_note : "")}));
  if (inc.call_duration_s !== null && inc.call_duration_s !== undefined) facts.append(el("dt", {text: t("call_duration")}), el("dd", {class: "call-duration", text: inc.call_duration_s + " s"}));
  if (inc.recording_url) facts.append(el("dt", {text: t("recording")}), el("dd", {}, el("button", {class: "link recording-btn", text: t("play_recording"),
    onclick: () => playMedia(inc, "recording")})));
  const media = el("div", {class: "media"});
  if (inc.snapshot_url) media.append(el("a", {href: "/ui/media/" + inc.id + "/snapshot", target: "_blank", rel: "noopener", title: t("snapshot")},
    el("img", {src: "/ui/media/" + inc.id + "/snapshot", alt: t("snapshot") + " " + (inc.junction || ""), class: "snapshot"})));
  else media.append(el("div", {class: "no-media", text: t("no_media")}));
  if (inc.clip && inc.clip.url) media.append(el("button", {class: "clip primary-outline", text: "\u25B6 " + t("play_clip") +
    (inc.clip.duration_s ? " (" + Math.round(inc.clip.duration_s) + " s)" : ""), onclick: () => playMedia(inc, "clip")}));
  else if (inc.snapshot_url) media.append(el("div", {class: "clip-pending", text: t("clip_pending")}));  // the clip follows the snapshot
  c.append(el("div", {class: "body"}, facts, media), actions(inc));
  return c;
}
function linkLabel(link) { return {rs485: "RS-485", lte: "LTE"}[link] || link; }

// The clip (and a call's recording) plays in a panel outside the board, so a
// card redrawn by a new alarm does not stop it.
function playMedia(inc, what) {
  const v = document.getElementById("player-video");
  document.getElementById("player-title").textContent = (what === "clip" ? t("clip") : t("recording")) + ": " +
    kindLabel(inc) + " - " + (inc.junction || "?") + " #" + inc.box_id + " - " + fmtShort(inc.console_time);
  document.getElementById("player-open").href = "/ui/media/" + inc.id + "/" + what;
  v.src = "/ui/media/" + inc.id + "/" + what;
  document.getElementById("player").classList.remove("hidden");
  v.play().catch(() => { /* the controls are there */ });
}
function closePlayer() {
  const v = document.getElementById("player-video");
  v.pause(); v.removeAttribute("src"); v.load();
  document.getElementById("player").classList.add("hidden");
}

function actions(inc) {
  const a = el("div", {class: "actions"});
  if (!can("incident.act")) return a;
  const act = (name, form) => api("POST", "/ui/api/incidents/" + inc.id + "/" + name, form || {})
    .then(r => upsert(r.incident)).catch(e => alert(e.message));
  if (inc.status === "new") a.append(el("button", {class: "ack primary", text: t("acknowledge"), onclick: () => act("acknowledge")}));
  if (inc.status === "acknowledged" || inc.status === "dispatched") {
    const unit = el("input", {class: "unit", placeholder: t("unit"), name: "unit"});
    const note = el("input", {class: "note", placeholder: t("note"), name: "note"});
    a.append(el("div", {class: "row"}, unit, note, el("button", {class: "dispatch", text: t("dispatch"),
      onclick: () => act("dispatch", {unit: unit.value, note: note.value})})));
    const outcome = el("select", {class: "outcome", name: "outcome"}, ...S.me.outcomes.map(o => el("option", {value: o, text: t("outcome_" + o)})));
    const cnote = el("input", {class: "close-note", placeholder: t("note"), name: "close_note"});
    a.append(el("div", {class: "row"}, outcome, cnote, el("button", {class: "close", text: t("close"),
      onclick: () => act("close", {outcome: outcome.value, note: cnote.value})})));
  }
  if (inc.kind === "emergency" && inc.status !== "closed")
    a.append(el("button", {class: "call-btn", text: t("start_call"), onclick: () => startCall(inc)}));
  return a;
}

// Cards are rebuilt only for incidents that changed (S.incidents holds a new
// object per update), so an alarm costs one card, not the whole board.
const cardCache = new Map();  // incident id -> {inc, el}
function renderBoard() {
  const box = document.getElementById("alarms");
  const open = [...S.incidents.values()].filter(i => i.status !== "closed").sort(cmp);
  // keep what an operator is typing when a card is redrawn
  const typed = {};
  box.querySelectorAll("input, select").forEach(i => { const c = i.closest("article"); if (c) typed[c.id + "/" + i.name] = i.value; });
  const cards = open.map(inc => {
    const hit = cardCache.get(inc.id);
    if (hit && hit.inc === inc && hit.lang === S.lang) return hit.el;
    const e = card(inc);
    e.querySelectorAll("input, select").forEach(i => { const k = e.id + "/" + i.name; if (k in typed) i.value = typed[k]; });
    cardCache.set(inc.id, {inc, el: e, lang: S.lang});
    return e;
  });
  for (const id of [...cardCache.keys()]) if (!S.incidents.has(id)) cardCache.delete(id);
  const same = cards.length === box.children.length && cards.every((c, k) => box.children[k] === c);
  if (!same) box.replaceChildren(...cards);
  document.getElementById("no-alarms").classList.toggle("hidden", open.length > 0);
  renderAlerts();
  const rb = document.querySelector("#recent tbody");
  rb.replaceChildren(...S.recent.slice(0, 20).map(i => el("tr", {class: "kind-" + i.kind},
    el("td", {text: fmt(i.console_time)}), el("td", {text: kindLabel(i)}), el("td", {text: i.junction}),
    el("td", {text: String(i.box_id)}), el("td", {text: t("status_" + i.status)}))));
}

// Runs fn once the next frame has been rendered: a requestAnimationFrame
// callback runs just before the frame's style, layout and paint, and a
// message posted from it is handled right after them.
function afterPaint(fn) {
  requestAnimationFrame(() => { const ch = new MessageChannel(); ch.port1.onmessage = fn; ch.port2.postMessage(0); });
}

function ringsForMe(inc) {
  return !inc.assigned_to || (S.me && inc.assigned_to === S.me.username) || can("escalations.view");
}

// ---- the alert bar: on every tab, so an operator on the history or map tab
// sees (not only hears) that an alarm is waiting; supervisors also see every
// escalated one ----
function renderAlerts() {
  const waiting = [...S.incidents.values()].filter(i => i.status === "new" && !i.restore).sort(cmp);
  const boardTab = document.querySelector(".tab[data-tab=board]");
  setText(boardTab, t("board") + (waiting.length ? " (" + waiting.length + ")" : ""));
  boardTab.classList.toggle("has-alarms", waiting.length > 0);
  const bar = document.getElementById("alert-bar");
  bar.classList.toggle("hidden", !waiting.length);
  if (!waiting.length) return;
  // The bar's elements stay and only their text changes (it ticks every
  // second): a click on it is never lost to a redraw, and a screen reader
  // announces the count, not the clock.
  const first = waiting[0], now = Date.now() / 1000 - (S.clockSkew || 0);
  setText(bar.querySelector(".alert-count"), waiting.length + " " + t(waiting.length === 1 ? "alarm_waiting" : "alarms_waiting"));
  setText(bar.querySelector(".alert-first"), kindLabel(first) + " - " + (first.junction || "?") + " - " + t("box") + " " +
    first.box_id + " - " + t("waiting_for") + " " + fmtWait(now - first.console_time));
  bar.querySelector(".alert-go").classList.toggle("hidden", S.tab === "board");
  const escalated = waiting.filter(i => i.escalations > 0);
  const sup = document.getElementById("alert-supervisor");
  sup.classList.toggle("hidden", !(escalated.length && can("escalations.view")));
  if (escalated.length && can("escalations.view"))
    setText(sup, t("supervisor_attention") + ": " + escalated.map(i => kindLabel(i) + " " + (i.junction || "?") + " (" +
      t("escalated") + " x" + i.escalations + ", " + (i.assigned_to ? t("assigned_to") + " " + i.assigned_to : t("ringing_everyone")) + ")").join("; "));
  bar.classList.toggle("kind-panic", first.kind === "panic");
  bar.classList.toggle("escalated", escalated.length > 0);
  bar.dataset.first = first.event_id;
}
function fmtWait(seconds) {
  const n = Math.max(0, Math.round(seconds));
  return n < 90 ? n + " s" : Math.floor(n / 60) + " " + t("minutes_short") + " " + (n % 60) + " s";
}
function setText(e, text) { if (e.textContent !== text) e.textContent = text; }

function upsert(inc, alertKind) {
  const had = S.incidents.get(inc.id);
  if (S.live) S.live.set(inc.id, inc);  // the board's state is being (re)loaded
  S.incidents.set(inc.id, inc);
  S.recent = [inc].concat(S.recent.filter(r => r.id !== inc.id)).sort((a, b) => b.id - a.id).slice(0, 20);
  if (inc.status === "closed") S.incidents.delete(inc.id);
  renderBoard();
  if (!(inc.event_id in CB.seen)) {
    const eid = inc.event_id;
    CB.seen[eid] = Date.now();
    afterPaint(() => { CB.painted[eid] = Date.now(); });  // drawn: the benchmark's clock stops
  }
  S.mapDirty = true; scheduleRender();
  if (alertKind === "new" || alertKind === "escalated") {
    // A new alarm rings on every console. An escalated one rings where it
    // now rolls to (or everywhere when nobody has it) and at every
    // supervisor; the other boards show its "escalated" badge.
    if (alertKind === "new" || ringsForMe(inc)) beep(inc.kind);
    const c = document.getElementById("incident-" + inc.id);
    if (c) { c.classList.add("flash"); setTimeout(() => c.classList.remove("flash"), 3000); }
  }
  if (S.call && S.call.inc.id === inc.id) S.call.inc = inc;
  if (S.tab === "history" && !S.historyTimer)  // keep the open history current, at most once a second
    S.historyTimer = setTimeout(() => { S.historyTimer = null; if (S.tab === "history") loadHistory().catch(() => {}); }, 1000);
  return had;
}

// ---- health and map ----
function boxFlags(b) {
  const st = b.selftest || null;
  return {offline: !b.online, selftestFailed: st && st.passed === false, tamper: !!b.tamper,
    onBattery: b.power && b.power !== "mains"};
}
function boxClass(b) {
  const f = boxFlags(b);
  const alarm = [...S.incidents.values()].some(i => i.box_id === b.box_id && i.status !== "closed" && !i.restore);
  return alarm ? "alarm" : f.offline ? "offline" : (f.selftestFailed || f.tamper) ? "warn" : f.onBattery ? "battery" : "ok";
}
// The health table draws only the rows in view (plus a margin) between two
// spacer rows: redrawing 1,000 rows (12,000 cells) every report made each
// health update a 0.3-0.7 s frame on a loaded machine, and an alarm arriving
// meanwhile waited for it. Now a redraw costs about 60 rows whatever the
// number of boxes; the "find box" filter replaces the browser's find.
const HEALTH_OVERSCAN_ROWS = 20;   // rows drawn above and below the visible ones
function renderHealth() {
  const boxes = [...S.boxes.values()];
  const online = boxes.filter(b => b.online).length;
  document.getElementById("health-summary").textContent = online + " / " + boxes.length + " " + t("boxes_online");
  if (S.tab !== "health") return;
  const q = document.getElementById("health-filter").value.trim().toLowerCase();
  const shown = q ? boxes.filter(b => String(b.box_id) === q || (b.junction || "").toLowerCase().includes(q)) : boxes;
  // offline first, then failed self-tests, then by number (keys computed once: 1,000 boxes)
  const key = b => (b.online ? 2 : 0) + (b.selftest && b.selftest.passed === false ? 0 : 1);
  S.healthRows = shown.map(b => [key(b), b.box_id, b]).sort((x, y) => (x[0] - y[0]) || (x[1] - y[1])).map(x => x[2]);
  const table = document.getElementById("health-table");
  table.dataset.boxes = String(shown.length);
  document.getElementById("health-count").textContent = shown.length + " / " + boxes.length;
  renderHealthWindow(true);
}
function renderHealthWindow(force) {
  const wrap = document.getElementById("health-scroll"), tb = document.querySelector("#health-table tbody");
  const list = S.healthRows || [], px = S.healthRowPx || 32;
  const headPx = document.querySelector("#health-table thead").offsetHeight;
  const first = Math.max(0, Math.floor((wrap.scrollTop - headPx) / px) - HEALTH_OVERSCAN_ROWS);
  const last = Math.min(list.length, Math.ceil((wrap.scrollTop + wrap.clientHeight) / px) + HEALTH_OVERSCAN_ROWS);
  if (!force && S.healthWindow && S.healthWindow[0] === first && S.healthWindow[1] === last) return;
  S.healthWindow = [first, last];
  const top = el("tr", {class: "spacer", "aria-hidden": "true"}), bottom = el("tr", {class: "spacer", "aria-hidden": "true"});
  top.style.height = (first * px) + "px";
  bottom.style.height = ((list.length - last) * px) + "px";
  tb.replaceChildren(top, ...list.slice(first, last).map(healthRow), bottom);
  // the spacers assume every row is as tall as the first one drawn
  const row = tb.rows[1];
  if (row && row !== bottom) {
    const h = row.getBoundingClientRect().height;
    if (h > 0 && Math.abs(h - px) > 0.5) { S.healthRowPx = h; renderHealthWindow(true); }
  }
}
// -128 dBm is the box's "unknown" (AT+CSQ 99, or no radio: RS-485)
function rssiText(b) {
  if (b.rssi_dbm === undefined || b.rssi_dbm === null || b.rssi_dbm <= -128) return b.link === "rs485" ? t("wired") : "-";
  return b.rssi_dbm + " dBm";
}
function healthRow(b) {
  {
    const f = boxFlags(b), st = b.selftest;
    const tr = el("tr", {id: "box-" + b.box_id, class: [f.offline ? "offline" : "", f.selftestFailed ? "selftest-failed" : ""].join(" ")},
      el("td", {text: String(b.box_id)}), el("td", {text: b.junction || ""}),
      el("td", {class: "online", text: b.online ? t("online") : t("offline") + (b.stale ? " (" + t("stale") + ")" : "")}),
      el("td", {text: fmtIso(b.last_heartbeat)}),
      el("td", {text: b.power === "mains" ? t("mains") : (b.power || "")}),
      el("td", {text: b.battery_mv ? (b.battery_mv / 1000).toFixed(1) + " V" : ""}),
      el("td", {class: f.tamper ? "bad" : "", text: b.tamper ? t("yes") : t("no")}),
      el("td", {text: b.link ? linkLabel(b.link) : ""}),
      el("td", {text: rssiText(b)}),
      el("td", {text: b.fw || ""}),
      el("td", {class: "selftest", text: st ? (st.passed ? t("passed") : t("failed")) + " " + fmtIso(st.time) +
        (st.passed ? "" : " " + Object.entries(st.items || {}).filter(([, v]) => v !== "pass").map(([k, v]) => k + ":" + v).join(" ")) : t("never")}),
      el("td", {}, can("box.command") ? el("button", {class: "selftest-btn", text: t("run_selftest"),
        onclick: () => api("POST", "/ui/api/boxes/" + b.box_id + "/selftest").catch(e => alert(e.message))}) : null));
    return tr;
  }
}
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}
function renderMap() {
  if (S.tab !== "map" || !S.map) return;
  document.getElementById("map-mode").textContent = S.map.mode === "schematic" ? t("schematic_note") : "";
  const m = document.getElementById("map");
  const byJunction = {};
  for (const b of S.boxes.values()) (byJunction[b.junction] = byJunction[b.junction] || []).push(b);
  const kids = [];
  for (const [name, [x, y]] of Object.entries(S.map.points)) {
    const boxes = byJunction[name] || [];
    const cls = boxes.length ? boxes.map(boxClass).sort((a, b) => ["alarm", "offline", "warn", "battery", "ok"].indexOf(a) - ["alarm", "offline", "warn", "battery", "ok"].indexOf(b))[0] : "none";
    const g = svg("g", {class: "junction state-" + cls, "data-junction": name});
    if (cls === "alarm") g.addEventListener("click", () => {
      const inc = [...S.incidents.values()].filter(i => i.junction === name && i.status !== "closed" && !i.restore).sort(cmp)[0];
      showTab("board");
      const c = inc && document.getElementById("incident-" + inc.id);
      if (c) c.scrollIntoView({block: "center"});
    });
    g.append(svg("title", {}, name + (boxes.length ? ": " + boxes.map(b => "#" + b.box_id + " " + (b.online ? t("online") : t("offline"))).join(", ") : "")));
    g.append(svg("circle", {cx: x, cy: y, r: cls === "alarm" ? 16 : 11}));
    g.append(svg("text", {x: x, y: y + 28, "text-anchor": "middle"}, name.length > 24 ? name.slice(0, 23) + "…" : name));
    kids.push(g);
  }
  m.replaceChildren(...kids);
}
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  // at most one health/map redraw per 0.5 s, however often gateways report
  setTimeout(() => { renderPending = false; if (S.mapDirty) { renderMap(); S.mapDirty = false; }
    if (S.healthDirty) { renderHealth(); S.healthDirty = false; } }, 500);
}

// ---- history, report, operators ----
function historyQuery() {
  const p = new URLSearchParams();
  for (const [k, id] of [["q", "h-q"], ["kind", "h-kind"], ["status", "h-status"], ["from", "h-from"], ["to", "h-to"]]) {
    const v = document.getElementById(id).value; if (v) p.set(k, v);
  }
  return p.toString();
}
async function loadHistory() {
  const q = historyQuery();
  document.getElementById("csv-link").href = "/ui/history.csv" + (q ? "?" + q : "");
  const r = await api("GET", "/ui/api/history?" + q);
  document.querySelector("#history-table tbody").replaceChildren(...r.incidents.map(i => el("tr", {class: "kind-" + i.kind, "data-id": i.id, onclick: () => showDetail(i.id)},
    el("td", {text: String(i.id)}), el("td", {text: kindLabel(i)}), el("td", {text: i.junction}), el("td", {text: String(i.box_id)}),
    el("td", {text: fmt(i.console_time)}), el("td", {text: t("status_" + i.status)}), el("td", {text: i.unit || ""}),
    el("td", {text: i.outcome ? t("outcome_" + i.outcome) : ""}), el("td", {text: i.call_duration_s != null ? i.call_duration_s + " s" : ""}))));
}
async function showDetail(id) {
  const r = await api("GET", "/ui/api/incidents/" + id);
  const d = document.getElementById("detail");
  d.replaceChildren(el("h3", {text: "#" + id + " " + kindLabel(r.incident) + " - " + r.incident.junction}),
    el("h4", {text: t("audit")}),
    el("table", {class: "grid audit"}, el("tbody", {}, ...r.audit.map(a => el("tr", {},
      el("td", {text: fmt(a.time)}), el("td", {text: a.actor}), el("td", {text: a.action}), el("td", {text: JSON.stringify(a.detail)}))))));
  d.classList.remove("hidden");
}
async function loadReport() {
  const day = document.getElementById("r-day").value;
  const r = await api("GET", "/ui/api/report" + (day ? "?day=" + day : ""));
  document.getElementById("r-day").value = r.day;
  const s = r.summary;
  document.getElementById("report-summary").replaceChildren(el("p", {id: "report-alarms",
    text: t("alarms") + ": " + s.alarms + " (" + Object.entries(s.by_kind).map(([k, n]) => t("kind_" + k) + " " + n).join(", ") + ")" +
      (s.ack_median_s != null ? " - " + t("ack_median") + ": " + s.ack_median_s.toFixed(1) + " s" : "")}));
  document.querySelector("#report-table tbody").replaceChildren(...r.boxes.map(b => el("tr", {class: b.availability !== null && b.availability < 0.99 ? "offline" : ""},
    el("td", {text: String(b.box_id)}), el("td", {text: b.junction}),
    el("td", {text: b.availability === null ? "-" : (100 * b.availability).toFixed(1) + " %"}), el("td", {text: String(b.alarms)}))));
}
async function loadOperators() {
  const r = await api("GET", "/ui/api/operators");
  document.querySelector("#op-table tbody").replaceChildren(...r.operators.map(o => el("tr", {},
    el("td", {text: o.username}), el("td", {text: o.display_name}), el("td", {text: t("role_" + o.role)}),
    el("td", {text: o.disabled ? t("yes") : t("no")}))));
}

// ---- video call: the browser's RTCPeerConnection, offer/answer via the console ----
async function startCall(inc) {
  if (S.call) return;
  const panel = document.getElementById("call");
  const state = document.getElementById("call-state");
  panel.classList.remove("hidden");
  document.getElementById("call-title").textContent = t("start_call") + ": " + inc.junction + " #" + inc.box_id;
  state.textContent = t("call_connecting"); CB.callState = "connecting";
  const pc = new RTCPeerConnection({iceServers: []});
  S.call = {pc, inc, started: null, timer: null, stream: null};
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    S.call.stream = stream;
    document.getElementById("local-video").srcObject = stream;
    stream.getTracks().forEach(tr => pc.addTrack(tr, stream));
    pc.ontrack = ev => { document.getElementById("remote-video").srcObject = ev.streams[0] || new MediaStream([ev.track]); };
    pc.onconnectionstatechange = () => {
      CB.callState = pc.connectionState;
      if (pc.connectionState === "connected") {
        state.textContent = t("call_connected");
        S.call.started = Date.now();
        S.call.timer = setInterval(() => { document.getElementById("call-timer").textContent = Math.round((Date.now() - S.call.started) / 1000) + " s"; }, 1000);
      } else if (pc.connectionState === "failed") state.textContent = t("call_failed");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise(res => { if (pc.iceGatheringState === "complete") res(); else pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") res(); }); setTimeout(res, 3000); });
    const ans = await api("POST", "/ui/api/incidents/" + inc.id + "/call", {type: "offer", sdp: pc.localDescription.sdp});
    await pc.setRemoteDescription({type: "answer", sdp: ans.sdp});
  } catch (e) {
    state.textContent = t("call_failed") + ": " + e.message; CB.callState = "failed";
  }
}
async function hangUp() {
  if (!S.call) return;
  const c = S.call; S.call = null;
  clearInterval(c.timer);
  c.pc.close();
  if (c.stream) c.stream.getTracks().forEach(tr => tr.stop());
  CB.callState = "ended";
  try { const r = await api("POST", "/ui/api/incidents/" + c.inc.id + "/hangup", {}); upsert(r.incident); } catch (e) { /* shown on the card */ }
  document.getElementById("call").classList.add("hidden");
  document.getElementById("call-timer").textContent = "";
}

// ---- tabs, live connection ----
function showTab(name) {
  S.tab = name;
  document.querySelectorAll(".tab").forEach(b => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab-page").forEach(p => p.classList.toggle("hidden", p.id !== "tab-" + name));
  renderAlerts();
  if (name === "map") renderMap();
  if (name === "health") renderHealth();
  if (name === "history") loadHistory();
  if (name === "report") loadReport();
  if (name === "operators") loadOperators();
}
function renderAll() { renderBoard(); renderHealth(); renderMap(); }

// Updates that come over the WebSocket while the state is being fetched may
// be newer than that state (an alarm stored just after it was read) or older:
// keep, for each incident, the one further along (statuses only advance;
// escalations, media and calls only add), and for each box the later report.
const STATUS_RANK = {new: 0, acknowledged: 1, dispatched: 2, closed: 3};
function progress(i) {
  return [STATUS_RANK[i.status] || 0, i.escalations || 0, i.snapshot_url ? 1 : 0, i.clip ? 1 : 0,
    {connecting: 1, ended: 2}[i.call_state] || 0];
}
function further(a, b) {
  const x = progress(a), y = progress(b);
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return x[k] > y[k];
  return false;
}
async function loadState() {
  const live = S.live = new Map(), liveBoxes = S.liveBoxes = new Map();
  let st;
  try { st = await api("GET", "/ui/api/state"); } finally { S.live = S.liveBoxes = null; }
  const incidents = new Map(st.incidents.map(i => [i.id, i]));
  for (const [id, w] of live) {
    const old = incidents.get(id);
    if (old && !further(w, old)) continue;
    if (w.status === "closed") incidents.delete(id); else incidents.set(id, w);
  }
  S.incidents = incidents;
  S.recent = st.recent;
  for (const w of live.values()) S.recent = [w].concat(S.recent.filter(r => r.id !== w.id));
  S.recent.sort((a, b) => b.id - a.id); S.recent = S.recent.slice(0, 20);
  S.boxes = new Map(st.boxes.map(b => [b.box_id, b]));
  for (const [id, b] of liveBoxes) if (!S.boxes.has(id) || (b.report_time || 0) >= (S.boxes.get(id).report_time || 0)) S.boxes.set(id, b);
  S.map = st.map;
  S.clockSkew = Date.now() / 1000 - st.now;
  for (const i of S.incidents.values()) if (!(i.event_id in CB.seen)) CB.seen[i.event_id] = Date.now();
  renderAll();
  // a console opened (or reconnected) while alarms wait rings once for them
  const waiting = [...S.incidents.values()].filter(i => i.status === "new" && !i.restore);
  const mine = waiting.filter(ringsForMe);
  if (mine.length) beep(mine.some(i => i.kind === "panic") ? "panic" : mine[0].kind);
}
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ui/ws");
  S.ws = ws;
  ws.onopen = async () => { document.getElementById("banner").classList.add("hidden"); await loadState(); CB.ready = true; };
  ws.onmessage = ev => {
    const at = Date.now();
    const m = JSON.parse(ev.data);
    if (m.type === "incident" && !(m.incident.event_id in CB.arrived)) CB.arrived[m.incident.event_id] = at;
    if (m.type === "incident") upsert(m.incident, m.alert);
    else if (m.type === "boxes") { for (const b of m.boxes) { S.boxes.set(b.box_id, b); if (S.liveBoxes) S.liveBoxes.set(b.box_id, b); } S.healthDirty = true; S.mapDirty = true; scheduleRender(); }
  };
  ws.onclose = () => { CB.ready = false; document.getElementById("banner").classList.remove("hidden"); setTimeout(connect, 1000); };
}

async function init() {
  S.strings = await (await fetch("/ui/i18n.json")).json();
  S.me = await api("GET", "/ui/api/me");
  document.getElementById("whoami").textContent = S.me.username + " (" + S.me.role + ")";
  document.getElementById("logout-csrf").value = S.me.csrf;
  document.querySelectorAll("[data-perm]").forEach(e => { if (!can(e.dataset.perm)) e.classList.add("hidden"); });
  document.querySelectorAll(".tab").forEach(b => b.addEventListener("click", () => showTab(b.dataset.tab)));
  document.getElementById("lang").addEventListener("click", () => {
    S.lang = S.lang === "en" ? "hi" : "en"; localStorage.setItem("callbox_lang", S.lang);
    document.cookie = "callbox_lang=" + S.lang + "; path=/; SameSite=Strict"; applyStrings();
  });
  document.getElementById("sound").addEventListener("click", ensureAudio);
  document.addEventListener("click", () => { if (S.audio && S.audio.state === "suspended") S.audio.resume(); }, {capture: true});
  document.getElementById("hangup").addEventListener("click", hangUp);
  document.getElementById("player-close").addEventListener("click", closePlayer);
  document.getElementById("alert-bar").addEventListener("click", () => {
    const id = document.getElementById("alert-bar").dataset.first;
    showTab("board");
    const c = document.querySelector('article[data-event="' + CSS.escape(id || "") + '"]');
    if (c) c.scrollIntoView({block: "center"});
  });
  setInterval(renderAlerts, 1000);  // the "waiting for N s" counter
  let scrollPending = false;
  document.getElementById("health-scroll").addEventListener("scroll", () => {
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(() => { scrollPending = false; renderHealthWindow(false); });
  }, {passive: true});
  window.addEventListener("resize", () => { if (S.tab === "health") renderHealthWindow(false); });
  document.getElementById("health-filter").addEventListener("input", () => {
    document.getElementById("health-scroll").scrollTop = 0; renderHealth(); });
  document.getElementById("history-form").addEventListener("submit", ev => { ev.preventDefault(); loadHistory(); });
  document.getElementById("report-form").addEventListener("submit", ev => { ev.preventDefault(); loadReport(); });
  document.getElementById("op-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/ui/api/operators", {username: document.getElementById("op-username").value,
        display_name: document.getElementById("op-display").value, role: document.getElementById("op-role").value});
      const p = document.getElementById("op-result");
      p.textContent = t("one_time_password") + " " + r.username + ": " + r.one_time_password; p.classList.remove("hidden");
      loadOperators();
    } catch (e) { alert(e.message); }
  });
  applyStrings();
  // Create the audio context now (it may start suspended until the first
  // click): creating it on the first alarm would delay that alarm's card.
  try { S.audio = new AudioContext(); } catch (e) { S.audio = null; }
  connect();
}
init();
