"""MediaService: every box's media pipeline, the clip store, voice prompts,
self-tests and calls, behind the small surface the gateway core uses:

    await media.on_alarm(box_id, event_id, press_time, kind=None, synced=True)
        -> {"snapshot_url": ..., "clip": {"id", "url", "duration_s", "sha256"}}
    await media.selftest(box_id) -> result dict (also in health(box_id))
    await media.play_prompt(box_id, "help_on_way")
    await media.hangup_box(box_id)          the citizen hung up at the box
    media.has_box(box_id) -> bool           a camera or audio is configured for the box
    media.box_press_action(box_id)          an Emergency press now: "hangup", "ignore" or None
    media.health(box_id) -> dict for the box's health report

Hooks (a dict or an object with these attributes; sync or async callables):

    send_call_state(box_id, state, event, prompt)   queue a CALL_STATE frame
    verify_console_token(request) -> bool            only the console may call/fetch
    on_media(event_id, metadata)                     optional: snapshot ready, then clip ready
    on_selftest(box_id, result)                      optional: a self-test finished
"""

import asyncio
import datetime
import inspect
import logging
import threading
import time

from . import capture, selftest as selftest_mod
from .calls import CallSession
from .errors import CallRefused, MediaError, MediaNotFound, MediaNotReady
from .pipeline import BoxMedia
from .prompts import PromptLibrary
from .store import MediaStore

log = logging.getLogger(__name__)

# An alarm's press time from the box is trusted only if it falls inside the
# buffer (plus this much slack into the future for clock skew); otherwise the
# gateway's receive time is the press moment.
PRESS_FUTURE_SLACK_S = 2.0
RETENTION_EVERY_S = 600.0
# An Emergency press during a connected call hangs it up, except in the first
# seconds after the operator answered: a citizen still holding or re-pressing
# the button must not cut the call they asked for (help points ignore the
# button for a few seconds after answer).
HANGUP_GUARD_S = 3.0


def parse_press_time(value):
    """Wall seconds from a datetime, an ISO 8601 string (…Z), or a number."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if isinstance(value, str):
        try:
            return parse_press_time(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise MediaError("press time %r is not ISO 8601 (2026-11-28T19:20:01.123Z)" % value)
    raise MediaError("press time %r: expected a datetime, an ISO string or epoch seconds" % (value,))


def event_number(event_id):
    """The box's event counter from "%08x-%08x"; 0 for gateway-made ids."""
    try:
        box_hex, ev_hex = str(event_id).split("-", 1)
        return int(ev_hex, 16) & 0xFFFFFFFF
    except (ValueError, AttributeError):
        return 0


class _Hooks:
    def __init__(self, hooks):
        self._h = hooks or {}

    def get(self, name):
        if isinstance(self._h, dict):
            return self._h.get(name)
        return getattr(self._h, name, None)

    async def call(self, name, *args):
        fn = self.get(name)
        if fn is None:
            return None
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result


class MediaService:
    def __init__(self, cfg, hooks=None, clock=time.time):
        self.cfg = cfg
        self.hooks = _Hooks(hooks)
        self.clock = clock
        self.keep_s = cfg.pre_s + 2.0 * max(b.video.keyframe_interval_s for b in cfg.boxes.values()) if cfg.boxes else cfg.pre_s
        self.boxes = {box_id: BoxMedia(b, self.keep_s, clock) for box_id, b in cfg.boxes.items()}
        self.store = MediaStore(cfg.media_path, cfg.retention_days * 86400.0, int(cfg.disk_cap_mb * 1024 * 1024),
                                create=bool(cfg.boxes))
        self.prompts = PromptLibrary(cfg.cache_path, cfg.espeak)
        self.calls = {}  # call_id -> CallSession (kept after the end for GET)
        self._ended_calls = []
        self._alarms = {}  # event_id -> asyncio.Task of the capture
        self._announced = set()  # event ids whose "connecting" prompt was played
        self.selftests = {}  # box_id -> last result
        self._store_lock = asyncio.Lock()
        self._tasks = []
        self.started = False

    # ------------------------------------------------------------ lifecycle

    async def start(self):
        for box in self.boxes.values():
            box.start()
        self.started = True
        if self.cfg.prompts and any(b.has_audio for b in self.boxes.values()):
            self._tasks.append(asyncio.ensure_future(self.prompts.prewarm()))
        self._tasks.append(asyncio.ensure_future(self._housekeeping()))
        if self.cfg.selftest_interval_s > 0:
            for box_id, box in self.boxes.items():
                if box.has_audio:
                    self._tasks.append(asyncio.ensure_future(self._periodic_selftest(box_id)))
        log.info("media: %d boxes, media_dir %s, clips %.0f s before / %.0f s after",
                 len(self.boxes), self.cfg.media_path, self.cfg.pre_s, self.cfg.post_s)

    async def stop(self):
        for call in list(self.calls.values()):
            if call.machine.state != "ended":
                await call.hangup("shutdown")
        for task in self._tasks + list(self._alarms.values()):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._alarms.values(), return_exceptions=True)
        self._tasks = []
        await asyncio.to_thread(lambda: [b.stop() for b in self.boxes.values()])
        self.started = False

    async def _housekeeping(self):
        while True:
            await asyncio.sleep(RETENTION_EVERY_S)
            async with self._store_lock:
                await asyncio.to_thread(self.store.enforce, self.clock())

    async def _periodic_selftest(self, box_id):
        while True:
            await asyncio.sleep(self.cfg.selftest_interval_s)
            try:
                await self.selftest(box_id)
            except MediaError as e:
                log.warning("periodic self-test: %s", e)

    def box(self, box_id):
        try:
            return self.boxes[int(box_id)]
        except (KeyError, ValueError, TypeError):
            raise MediaNotFound("no camera or audio configured for this box; add it to [[media.boxes]]",
                                box_id if isinstance(box_id, int) else None)

    # ------------------------------------------------------------ hooks

    async def send_call_state(self, box_id, state, event, prompt):
        try:
            await self.hooks.call("send_call_state", box_id, state, event, prompt)
        except Exception as e:  # the call goes on; the box light is secondary
            log.warning("box %d: could not queue CALL_STATE %s: %s", box_id, state, e)

    async def play_prompt(self, box_id, name):
        """Queue a voice prompt on the box speaker; returns when queued."""
        if not self.cfg.prompts or name == "none":
            return
        box = self.box(box_id)
        if not box.has_audio:
            return
        data = await asyncio.to_thread(self.prompts.get, name)
        try:
            box.mixer.play(name, data)
        except OverflowError as e:
            log.warning("box %d: %s", box_id, e)

    async def commit_media(self, part, box_id, media_id, kind, event_id, duration_s):
        async with self._store_lock:
            return await asyncio.to_thread(self.store.commit, part, box_id, media_id, kind, self.clock(), event_id, duration_s)

    # ------------------------------------------------------------ alarms

    def _press_t(self, box, press_time, synced):
        now = self.clock()
        t = parse_press_time(press_time) if synced else None
        oldest = box.ring.oldest_t()
        if t is None or t > now + PRESS_FUTURE_SLACK_S or (oldest is not None and t < oldest - self.cfg.pre_s):
            if t is not None:
                log.info("box %d: press time %.3f outside the buffer (now %.3f); using the receive time", box.box_id, t, now)
            return now
        return t

    async def on_alarm(self, box_id, event_id, press_time=None, kind=None, synced=True):
        """Capture the snapshot and clip of an alarm. Returns the metadata
        when both are ready (about post_s after the press): run it in a task.
        Idempotent by event_id: a repeated alarm gets the stored metadata.
        hooks.on_media(event_id, metadata) fires when the snapshot is ready
        (clip None) and again with the clip."""
        box = self.box(box_id)
        existing = self._alarms.get(event_id)
        if existing is not None:
            return await asyncio.shield(existing)
        stored = self._metadata(event_id)
        if stored["snapshot_url"] or stored["clip"]:
            return stored
        if kind == "emergency":
            # The citizen asked to talk: the box rings and says so at once.
            self._announced.add(event_id)
            await self.send_call_state(box.box_id, "ringing", event_number(event_id), "connecting")
            await self.play_prompt(box.box_id, "connecting")
        if not box.has_video:
            return stored
        task = asyncio.ensure_future(self._capture(box, event_id, self._press_t(box, press_time, synced)))
        self._alarms[event_id] = task
        task.add_done_callback(lambda _t: self._alarms.pop(event_id, None))
        return await asyncio.shield(task)

    async def _capture(self, box, event_id, press_t):
        snap_part = self.store.part_path(box.box_id, event_id, "snapshot")
        clip_part = self.store.part_path(box.box_id, event_id, "clip")
        cancel = threading.Event()
        clip_task = asyncio.ensure_future(asyncio.to_thread(
            capture.clip, box, press_t, self.cfg.pre_s, self.cfg.post_s, clip_part, cancel))
        try:
            try:
                await asyncio.to_thread(capture.snapshot, box, press_t, self.cfg.snapshot_wait_s, snap_part)
                await self.commit_media(snap_part, box.box_id, event_id, "snapshot", event_id, None)
                await self._notify_media(event_id)
            except MediaError as e:
                log.warning("%s (alarm %s: no snapshot)", e, event_id)
                if not len(box.ring):
                    cancel.set()  # no camera at all: do not wait post_s for nothing
            except Exception as e:
                log.error("box %d: alarm %s snapshot failed: %r", box.box_id, event_id, e)
            try:
                duration = await clip_task
                await self.commit_media(clip_part, box.box_id, event_id, "clip", event_id, duration)
            except MediaError as e:
                log.warning("%s (alarm %s: no clip)", e, event_id)
            except Exception as e:
                log.error("box %d: alarm %s clip failed: %s", box.box_id, event_id, e)
        finally:
            cancel.set()
            for part in (snap_part, clip_part):
                part.unlink(missing_ok=True)
        return await self._notify_media(event_id)

    async def _notify_media(self, event_id):
        meta = self._metadata(event_id)
        try:
            await self.hooks.call("on_media", event_id, meta)
        except Exception as e:
            log.warning("on_media hook failed for %s: %s", event_id, e)
        return meta

    def _metadata(self, event_id):
        snap = self.store.find(event_id, "snapshot")
        clip = self.store.find(event_id, "clip")
        return {
            "snapshot_url": "/api/v1/media/%s/snapshot.jpg" % event_id if snap else None,
            "clip": {"id": event_id, "url": "/api/v1/media/%s/clip.mp4" % event_id,
                     "duration_s": clip["duration_s"], "sha256": clip["sha256"]} if clip else None,
        }

    def media_file(self, media_id, what):
        """(path, entry) for GET snapshot.jpg / clip.mp4 (alarm clips and call
        recordings share clip.mp4). Raises MediaNotReady while capturing."""
        kinds = ("snapshot",) if what == "snapshot" else ("clip", "call")
        for kind in kinds:
            entry = self.store.find(media_id, kind)
            if entry is not None:
                return self.store.path(entry), entry
        if media_id in self._alarms or (media_id in self.calls and self.calls[media_id].machine.state != "ended"):
            raise MediaNotReady("%s for %s is still being captured; retry in a few seconds" % (what, media_id))
        if media_id in self.calls and not self.calls[media_id].closed.is_set():
            raise MediaNotReady("recording of %s is being written; retry in a few seconds" % media_id)
        raise MediaNotFound("no %s for %s (never captured, or removed by retention)" % (what, media_id))

    # ------------------------------------------------------------ calls

    async def open_call(self, box_id, offer_sdp, event_id=None, operator=""):
        box = self.box(box_id)
        active = [c for c in self.calls.values() if c.machine.state != "ended"]
        for c in active:
            if c.box.box_id == box.box_id:
                raise CallRefused("already in call %s; hang it up first (DELETE /api/v1/calls/%s)" % (c.call_id, c.call_id), box.box_id)
        if len(active) >= self.cfg.max_calls:
            raise CallRefused("the gateway carries %d calls already (media.max_calls); end one first" % len(active),
                              box.box_id, http_status=503)
        announce = event_id not in self._announced
        session = CallSession(self, box, event_id, event_number(event_id) if event_id else 0, operator, announce)
        self.calls[session.call_id] = session
        try:
            answer = await session.answer(offer_sdp)
        except BaseException:
            self.calls.pop(session.call_id, None)
            if session.pc is not None:
                await session.pc.close()
            for t in session._tracks:
                t.stop()
            if session.recording is not None:
                await asyncio.to_thread(session.recording.stop)
            raise
        log.info("box %d: call %s opened by operator %s", box.box_id, session.call_id, operator or "?")
        return session, answer

    def call(self, call_id):
        c = self.calls.get(call_id)
        if c is None:
            raise MediaNotFound("no call %s on this gateway" % call_id)
        return c

    def call_closed(self, session):
        # Keep the last 100 ended calls for GET; forget older ones.
        self._ended_calls.append(session.call_id)
        while len(self._ended_calls) > 100:
            self.calls.pop(self._ended_calls.pop(0), None)

    def has_box(self, box_id):
        try:
            return int(box_id) in self.boxes
        except (TypeError, ValueError):
            return False

    def box_press_action(self, box_id, now=None):
        """What an Emergency press at the box means now: "hangup" (its call
        is connected for HANGUP_GUARD_S or more), "ignore" (connected less
        than that), None (no connected call: an ordinary alarm)."""
        now = self.clock() if now is None else now
        for c in self.calls.values():
            m = c.machine
            if c.box.box_id == int(box_id) and m.state == "connected":
                return "hangup" if now - m.connected_at >= HANGUP_GUARD_S else "ignore"
        return None

    async def hangup_box(self, box_id):
        """The citizen ended the call at the box (button pressed again)."""
        for c in list(self.calls.values()):
            if c.box.box_id == int(box_id) and c.machine.state != "ended":
                await c.hangup("box")

    # ------------------------------------------------------------ self-test

    async def selftest(self, box_id, with_prompt=True):
        box = self.box(box_id)
        if not box.has_audio:
            raise MediaError("has no speaker or mic configured; nothing to test", box.box_id)
        if any(c.box is box and c.machine.state != "ended" for c in self.calls.values()):
            raise CallRefused("is in a call; the self-test would cut it. Try again after the call", box.box_id)
        prompt = None
        if with_prompt and self.cfg.prompts:
            await self.send_call_state(box.box_id, "idle", 0, "testing")
            prompt = await asyncio.to_thread(self.prompts.get, "testing")
        result = await asyncio.to_thread(selftest_mod.run, box, self.cfg.selftest_tone_hz, prompt)
        self.selftests[box.box_id] = result
        (log.info if result["passed"] else log.warning)("box %d: audio self-test %s %s", box.box_id,
                                                        "passed" if result["passed"] else "FAILED", result.get("reason", ""))
        try:
            await self.hooks.call("on_selftest", box.box_id, result)
        except Exception as e:
            log.warning("on_selftest hook failed for box %d: %s", box.box_id, e)
        return result

    # ------------------------------------------------------------ health

    def health(self, box_id):
        box = self.box(box_id)
        out = box.health()
        out["selftest"] = self.selftests.get(box.box_id)
        out["in_call"] = any(c.box is box and c.machine.state != "ended" for c in self.calls.values())
        return out

    def ring_buffer_bytes(self):
        return sum(b.ring_bytes() for b in self.boxes.values())

