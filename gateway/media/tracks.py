"""aiortc tracks over a BoxMedia: the camera and the box mic to the browser,
and the consumer that takes the browser's mic to the box speaker.

The capture threads hand items to the event loop with call_soon_threadsafe;
each track keeps a small queue and drops the oldest item when the encoder
falls behind, so latency stays bounded instead of growing (a call is live:
late frames are worth nothing)."""

import asyncio
import fractions
import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .config import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from .ring import AudioChunk

log = logging.getLogger(__name__)

VIDEO_QUEUE_FRAMES = 2  # at 15 fps: at most ~130 ms of video latency from queueing
AUDIO_QUEUE_CHUNKS = 5  # 100 ms
_VIDEO_TB = fractions.Fraction(1, 90000)
_AUDIO_TB = fractions.Fraction(1, SAMPLE_RATE)


class _QueueFromThread:
    def __init__(self, loop, maxsize):
        self.loop = loop
        self.q = asyncio.Queue()
        self.maxsize = maxsize
        self.dropped = 0

    def put_threadsafe(self, item):
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _put(self, item):
        self.q.put_nowait(item)
        while self.q.qsize() > self.maxsize:
            self.q.get_nowait()
            self.dropped += 1


class CameraTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, box, loop):
        super().__init__()
        self.box = box
        self._q = _QueueFromThread(loop, VIDEO_QUEUE_FRAMES)
        self._t0 = None
        self._last_pts = -1
        self.frames_sent = 0
        box.add_frame_listener(self._on_frame)

    def _on_frame(self, t, frame):
        self._q.put_threadsafe((t, frame))

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        t, frame = await self._q.q.get()
        if self._t0 is None:
            self._t0 = t
        pts = int((t - self._t0) * 90000)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = _VIDEO_TB
        self.frames_sent += 1
        return frame

    def stop(self):
        self.box.remove_frame_listener(self._on_frame)
        super().stop()


class MicTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, box, loop):
        super().__init__()
        self.box = box
        self._q = _QueueFromThread(loop, AUDIO_QUEUE_CHUNKS)
        self._pts = 0
        box.add_audio_listener(self._on_chunk, box.clock() + 3600)  # live only

    def _on_chunk(self, chunk):
        self._q.put_threadsafe(chunk)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        chunk = await self._q.q.get()
        f = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        f.planes[0].update(chunk.pcm)
        f.sample_rate = SAMPLE_RATE
        f.pts = self._pts
        f.time_base = _AUDIO_TB
        self._pts += FRAME_SAMPLES
        return f

    def stop(self):
        self.box.remove_audio_listener(self._on_chunk)
        super().stop()


async def consume_operator_audio(track, box, clock, sinks, stats):
    """Read the browser's audio track until it ends: 48 kHz mono chunks to
    the box speaker and to each sink(AudioChunk). stats["frames"] counts."""
    rs = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    buf = bytearray()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        stats["frames"] = stats.get("frames", 0) + 1
        for f in rs.resample(frame):
            buf += bytes(f.planes[0])[: f.samples * 2]
        while len(buf) >= FRAME_BYTES:
            data = bytes(buf[:FRAME_BYTES])
            del buf[:FRAME_BYTES]
            box.mixer.push_call_audio(data)
            chunk = AudioChunk(clock(), data)
            for sink in sinks:
                sink(chunk)
