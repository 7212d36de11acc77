"""One two-way call over WebRTC (aiortc): the shell around callstate.py.

Box camera and mic go to the operator's browser; the browser's mic goes to
the box speaker. Both directions are recorded into one MP4 (camera video, box
mic, operator mic) and kept like clips (kind "call", media id = call id).

No STUN or TURN: the gateway and the console are on one LAN (or VPN), and
aiortc would otherwise wait 5 s for an unreachable public STUN server (brief
§7). The gateway's tracks are added after setRemoteDescription so they reuse
the transceivers the browser's offer created.
"""

import asyncio
import collections
import datetime
import logging
import secrets

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from . import capture
from .callstate import CONNECTED, ENDED, CallStateMachine
from .errors import CallError
from .tracks import CameraTrack, MicTrack, consume_operator_audio

log = logging.getLogger(__name__)

# The last seconds of operator audio kept in memory, for GET .../calls/{id}
# diagnostics and the tests that check what the box speaker got.
OPERATOR_TAIL_S = 3.0


def new_call_id():
    return "call-" + secrets.token_hex(8)


class CallSession:
    def __init__(self, service, box, event_id, event, operator, announce):
        self.service = service
        self.box = box
        self.event_id = event_id
        self.operator = operator
        self.call_id = new_call_id()
        now = service.clock()
        self.machine = CallStateMachine(self.call_id, box.box_id, event, now, service.cfg.connect_timeout_s, announce)
        self.pc = None
        self.recording = None
        self.recording_entry = None
        self.operator_stats = {}
        self.operator_tail = collections.deque(maxlen=int(OPERATOR_TAIL_S * 50))
        self._tasks = []
        self._tracks = []
        self.closed = asyncio.Event()
        self.connected = asyncio.Event()

    # ------------------------------------------------------------ open

    async def answer(self, offer_sdp):
        """Accept the browser's offer; returns the answer SDP."""
        loop = asyncio.get_running_loop()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc = self.pc

        @pc.on("connectionstatechange")
        async def _state():
            s = pc.connectionState
            log.debug("box %d: call %s connection %s", self.box.box_id, self.call_id, s)
            if s == "connected":
                await self._apply(self.machine.on_connected(self.service.clock()))
                self.connected.set()
            elif s in ("failed", "closed"):
                await self.hangup("browser" if s == "closed" else "failure")

        @pc.on("track")
        def _track(track):
            if track.kind == "audio":
                self._tasks.append(asyncio.ensure_future(consume_operator_audio(
                    track, self.box, self.box.clock, [self._operator_chunk], self.operator_stats)))

        hint = "send the offer from RTCPeerConnection.createOffer()"
        if not offer_sdp.lstrip().startswith("v=0") or "\nm=" not in offer_sdp:
            raise CallError("the offer is not SDP (no v=0 line or no m= section); %s" % hint, self.box.box_id)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, KeyError, AttributeError, IndexError) as e:
            raise CallError("the browser's offer is not valid SDP (%s); %s" % (e, hint), self.box.box_id)
        kinds = {t.kind for t in pc.getTransceivers()}
        if not kinds & {"audio", "video"}:
            raise CallError("the offer has no audio or video section; %s with a mic track and a video transceiver" % hint,
                            self.box.box_id)
        if self.box.has_video and "video" in kinds:
            self._tracks.append(CameraTrack(self.box, loop))
        if self.box.has_audio and "audio" in kinds:
            self._tracks.append(MicTrack(self.box, loop))
        for track in self._tracks:
            pc.addTrack(track)
        if self.box.has_video:
            part = self.service.store.part_path(self.box.box_id, self.call_id, "call")
            self.recording = capture.Recording(self.box, part, self.box.clock(), until_t=None,
                                               extra_audio=["operator"])
            await asyncio.to_thread(self.recording.start)
        await pc.setLocalDescription(await pc.createAnswer())
        await self._apply(self.machine.initial)
        self._tasks.append(asyncio.ensure_future(self._watchdog()))
        return pc.localDescription.sdp

    def _operator_chunk(self, chunk):
        self.operator_tail.append(chunk)
        if self.recording is not None:
            self.recording.extra_audio(0, chunk)

    async def _watchdog(self):
        while self.machine.state != ENDED:
            await asyncio.sleep(1.0)
            actions = self.machine.on_tick(self.service.clock())
            if actions:
                log.warning("box %d: call %s not connected in %.0f s; ended", self.box.box_id, self.call_id,
                            self.machine.connect_timeout_s)
                await self._finish(actions)

    async def _apply(self, actions):
        for state, prompt in actions:
            if state == CONNECTED:
                self.box.mixer.cancel_all()  # stop "connecting" so the operator is heard
            await self.service.send_call_state(self.box.box_id, state, self.machine.event, prompt)
            if prompt != "none":
                await self.service.play_prompt(self.box.box_id, prompt)

    # ------------------------------------------------------------ close

    async def hangup(self, by, outcome="ended"):
        actions = self.machine.on_end(self.service.clock(), by, outcome)
        if actions:
            log.info("box %d: call %s ended by %s (%s)", self.box.box_id, self.call_id, by, outcome)
            await self._finish(actions)
        else:
            await self.closed.wait()

    async def _finish(self, actions):
        for track in self._tracks:
            track.stop()
        me = asyncio.current_task()
        for task in self._tasks:
            if task is not me:
                task.cancel()
        if self.pc is not None:
            await self.pc.close()
        self.box.mixer.clear_call_audio()
        try:
            await self._apply(actions)
            if self.recording is not None:
                duration = await asyncio.to_thread(self.recording.stop)
                self.recording_entry = await self.service.commit_media(
                    self.recording.writer.path, self.box.box_id, self.call_id, "call", self.event_id, duration)
        except Exception as e:
            log.error("box %d: call %s recording not kept: %s", self.box.box_id, self.call_id, e)
        finally:
            self.closed.set()
            self.service.call_closed(self)

    # ------------------------------------------------------------ status

    def status(self):
        m = self.machine
        now = self.service.clock()
        return {
            "call_id": self.call_id, "box_id": self.box.box_id, "event_id": self.event_id,
            "operator": self.operator, "state": m.state, "started": _iso(m.created),
            "connected": _iso(m.connected_at) if m.connected_at else None,
            "ended": _iso(m.ended_at) if m.ended_at else None, "ended_by": m.ended_by, "outcome": m.outcome,
            "duration_s": round(m.duration_s(now), 1),
            "recording_url": ("/api/v1/media/%s/clip.mp4" % self.call_id) if self.recording_entry else None,
            "operator_audio_frames": self.operator_stats.get("frames", 0),
        }

    def operator_pcm(self):
        return b"".join(c.pcm for c in list(self.operator_tail))


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
