"""Alarm snapshot and clip, and call recordings: blocking work that the
service runs in worker threads (asyncio.to_thread).

Snapshot: the frame captured at the press moment (the first frame at or after
press_t; if none arrives within snapshot_wait_s, the newest before it),
decoded from the buffered GOP that holds it and encoded as JPEG.

Clip: from the keyframe at or before press_t - pre_s (so the clip starts
decodable and reaches at least pre_s back, if the buffer holds it) until the
first packet at or after press_t + post_s; video packets copied, the box mic
encoded to AAC (mux.py).
"""

import fractions
import logging
import threading

import av

from .errors import MediaNotReady
from .mux import Mp4Writer

log = logging.getLogger(__name__)

JPEG_QUALITY_Q = 4  # MJPEG qscale: 2 (best) .. 31; 4 keeps a face readable at ~40 KB for 640x480
# A clip whose camera stops sending is closed this long after its planned end.
CLIP_STALL_GRACE_S = 10.0


def snapshot(box, press_t, wait_s, path):
    """Write a JPEG of the press moment to path. Returns the chosen frame's
    capture time. Raises MediaNotReady if the box has no buffered video."""
    box.wait_packet_after(press_t, wait_s)
    packets = box.packets_since(press_t)
    if not packets:
        raise MediaNotReady("no video buffered (camera %s); check the camera" % box.status.get("camera"), box.box_id)
    dec = av.CodecContext.create("h264", "r")
    if box.extradata:
        dec.extradata = box.extradata
    chosen = None
    for p in packets:
        try:
            frames = dec.decode(av.Packet(p.data))
        except av.FFmpegError as e:
            log.debug("box %d: snapshot decode error %s", box.box_id, e)
            continue
        for f in frames:
            chosen = (p.t, f)
        if chosen is not None and chosen[0] >= press_t:
            break
    if chosen is None:
        try:
            for f in dec.decode(None):
                chosen = (packets[-1].t, f)
        except av.FFmpegError:
            pass
    if chosen is None:
        raise MediaNotReady("buffered video could not be decoded; check the camera's codec (H.264 expected)", box.box_id)
    t, frame = chosen
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width = frame.width
    enc.height = frame.height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = fractions.Fraction(1, 25)
    enc.qmin = enc.qmax = JPEG_QUALITY_Q
    jf = frame.reformat(format="yuvj420p")
    jf.pts = 0
    data = b"".join(bytes(p) for p in enc.encode(jf)) + b"".join(bytes(p) for p in enc.encode(None))
    with open(path, "wb") as f:
        f.write(data)
    return t


class Recording:
    """Feeds one Mp4Writer from a box's camera and mic (and, for calls, a
    second audio stream pushed by the caller), from since_t until stop().

    `until_t`: stop by itself at the first video packet at or after it (a
    clip); None: run until stop() (a call)."""

    def __init__(self, box, path, since_t, until_t=None, extra_audio=()):
        self.box = box
        self.until_t = until_t
        v = box.cfg.video
        names = (["box mic"] if box.has_audio else []) + list(extra_audio)
        self.writer = Mp4Writer(path, v.width, v.height, v.fps, names, box.box_id, box.extradata).start()
        self._extra_base = 1 if box.has_audio else 0
        self.reached_end = threading.Event()
        self._first_video_t = None
        self._stopped = False
        self._since_t = since_t
        self._on_video = self._video
        self._on_audio = self._audio

    def start(self):
        self.box.add_packet_listener(self._on_video, self._since_t)
        if self.box.has_audio:
            start = self._first_video_t if self._first_video_t is not None else self._since_t
            self.box.add_audio_listener(self._on_audio, start)
        return self

    def _video(self, p):
        if self._stopped:
            return
        if self.until_t is not None and p.t >= self.until_t:
            self.reached_end.set()
            return
        if self._first_video_t is None:
            self._first_video_t = p.t
        self.writer.video(p)

    def _audio(self, chunk):
        if self._stopped:
            return
        if self.until_t is not None and chunk.t >= self.until_t:
            return
        self.writer.audio(0, chunk)

    def extra_audio(self, index, chunk):
        """Push a chunk (ring.AudioChunk) into an extra audio stream."""
        if not self._stopped:
            self.writer.audio(self._extra_base + index, chunk)

    def wait_end(self, timeout_s):
        return self.reached_end.wait(timeout_s)

    def stop(self):
        """Unsubscribe and finish the file (blocking). Returns duration_s."""
        self._stopped = True
        self.box.remove_packet_listener(self._on_video)
        self.box.remove_audio_listener(self._on_audio)
        return self.writer.finish()


def clip(box, press_t, pre_s, post_s, path, cancel=None):
    """Write the alarm clip (blocking for about post_s). Returns duration_s.
    Setting `cancel` (a threading.Event) ends it early with what it has.
    Raises MediaNotReady if not one video packet was captured."""
    rec = Recording(box, path, press_t - pre_s, until_t=press_t + post_s).start()
    deadline = box.clock() + max(0.0, press_t + post_s - box.clock()) + CLIP_STALL_GRACE_S
    while not rec.wait_end(0.25):
        if cancel is not None and cancel.is_set():
            break
        if box.clock() > deadline:
            log.warning("box %d: camera stopped during the clip; writing what was captured", box.box_id)
            break
    duration = rec.stop()
    if rec.writer.video_packets == 0:
        raise MediaNotReady("no video captured for the clip (camera %s); check the camera" % box.status.get("camera"), box.box_id)
    return duration
