"""Cameras and audio devices, through PyAV. Each is a blocking object driven
by one capture thread of its box (pipeline.py); nothing here knows asyncio.

Video sources give *encoded* H.264 packets (what the pre-event buffer keeps)
and, when they have it for free, the raw frame:

    SyntheticCamera   a test pattern (moving bar, a 40-bit time stamp in the
                      top row: read_stamp() recovers the capture time from a
                      decoded frame or snapshot), encoded by the gateway
    ContainerCamera   anything FFmpeg opens: an RTSP URL (H.264 packets passed
                      through untouched), a file (looped, paced by its time
                      stamps), a V4L2 device (raw frames, encoded by the gateway)

    source.open(); source.read() -> [(t, data, key, frame_or_None)]; source.close()

Audio: 48 kHz mono s16 in 20 ms chunks (config.FRAME_SAMPLES).

    mic.read() -> bytes           blocks for one chunk
    speaker.write(bytes)          one chunk; `paced` says whether write() blocks
                                  in real time (ALSA) or the caller must pace
"""

import array
import fractions
import logging
import random
import threading
import time
import wave

import av
from av.bitstream import BitStreamFilterContext

from . import pcm
from .config import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from .errors import SourceError

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
# RTSP/V4L2 open and read timeouts: a camera that stops sending is noticed
# and reopened instead of blocking its capture thread forever.
OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0

STAMP_BITS = 40


def make_encoder(width, height, fps, keyframe_interval_s, bitrate_kbps):
    """The gateway's H.264 encoder: no B-frames (packets in capture order, so
    the ring needs no reordering), a fixed keyframe interval, no scene-cut
    keyframes (so the interval is a bound the ring can rely on)."""
    gop = max(1, int(round(fps * keyframe_interval_s)))
    enc = av.CodecContext.create("libx264", "w")
    enc.width = width
    enc.height = height
    enc.pix_fmt = "yuv420p"
    enc.time_base = VIDEO_TIME_BASE
    enc.framerate = fractions.Fraction(fps, 1)
    enc.gop_size = gop
    enc.bit_rate = bitrate_kbps * 1000
    enc.options = {
        "preset": "ultrafast", "tune": "zerolatency",
        "x264-params": "keyint=%d:min-keyint=%d:scenecut=0:bframes=0:repeat-headers=1" % (gop, gop),
    }
    enc.open()
    return enc


def _stamp_geometry(width, height):
    bw = width // STAMP_BITS
    bh = max(8, height // 30)
    return bw, bh


def read_stamp(frame):
    """The capture time stamp (ms since the epoch, modulo 2**40) drawn into a
    SyntheticCamera frame, read back from a decoded av.VideoFrame."""
    f = frame.reformat(format="gray")
    plane = f.planes[0]
    stride = plane.line_size
    data = bytes(plane)
    bw, bh = _stamp_geometry(f.width, f.height)
    value = 0
    for i in range(STAMP_BITS):
        y = bh // 2
        x = i * bw + bw // 2
        if data[y * stride + x] > 128:
            value |= 1 << (STAMP_BITS - 1 - i)
    return value


class SyntheticCamera:
    """A moving test pattern, paced to fps in real time, encoded to H.264."""

    live = True

    def __init__(self, cfg, clock=time.time, sleep=time.sleep):
        self.cfg = cfg
        self.clock = clock
        self.sleep = sleep
        self.codec_name = "h264"
        self.extradata = None
        self._enc = None
        self._n = 0
        self._next = None

    def open(self):
        c = self.cfg
        self._enc = make_encoder(c.width, c.height, c.fps, c.keyframe_interval_s, c.bitrate_kbps)
        probe = av.VideoFrame(c.width, c.height, "yuv420p")
        self._ystride = probe.planes[0].line_size
        self._cstride = probe.planes[1].line_size
        ch = c.height // 2
        # Background: a horizontal luma ramp; chroma a fixed blue-ish tint.
        row = bytes((16 + (x * 219) // max(1, c.width - 1)) for x in range(c.width))
        row = row + bytes(self._ystride - c.width)
        self._y_base = row * c.height
        self._u = bytes([150]) * (self._cstride * ch)
        self._v = bytes([110]) * (self._cstride * ch)
        self._n = 0
        self._next = None

    def _draw(self, t):
        c = self.cfg
        s = self._ystride
        y = bytearray(self._y_base)
        # A white bar sweeping left to right, one width every 4 s.
        bar_w = max(4, c.width // 16)
        x0 = int((t % 4.0) / 4.0 * (c.width - bar_w))
        white = b"\xeb" * bar_w
        for r in range(c.height // 4, 3 * c.height // 4):
            y[r * s + x0:r * s + x0 + bar_w] = white
        # The time stamp: 40 blocks, bright = 1, dark = 0, MSB first.
        stamp = int(t * 1000) % (1 << STAMP_BITS)
        bw, bh = _stamp_geometry(c.width, c.height)
        for i in range(STAMP_BITS):
            v = b"\xeb" if stamp >> (STAMP_BITS - 1 - i) & 1 else b"\x10"
            block = v * bw
            for r in range(bh):
                y[r * s + i * bw:r * s + (i + 1) * bw] = block
        f = av.VideoFrame(c.width, c.height, "yuv420p")
        f.planes[0].update(bytes(y))
        f.planes[1].update(self._u)
        f.planes[2].update(self._v)
        return f

    def read(self):
        period = 1.0 / self.cfg.fps
        now = self.clock()
        if self._next is None:
            self._next = now
        if self._next > now:
            self.sleep(self._next - now)
        elif now - self._next > 1.0:
            self._next = now  # fell far behind (loaded machine): skip, do not burst
        t = self._next
        self._next += period
        frame = self._draw(t)
        frame.pts = int(round(t * 90000))
        frame.time_base = VIDEO_TIME_BASE
        out = []
        for p in self._enc.encode(frame):
            out.append((t, bytes(p), p.is_keyframe, frame))
        self._n += 1
        return out

    def close(self):
        self._enc = None


class ContainerCamera:
    """A camera FFmpeg can open: RTSP (TCP), a file, or V4L2.

    H.264 packets are passed through (the camera's own keyframe interval
    applies); other codecs and raw V4L2 frames are decoded and encoded with
    the gateway's encoder."""

    def __init__(self, cfg, kind, box_id, clock=time.time, sleep=time.sleep):
        self.cfg = cfg
        self.kind = kind
        self.box_id = box_id
        self.clock = clock
        self.sleep = sleep
        self.live = kind != "file"
        self.codec_name = "h264"
        self.extradata = None
        self._c = None

    def open(self):
        c = self.cfg
        try:
            if self.kind == "rtsp":
                self._c = av.open(c.url, options={"rtsp_transport": "tcp"}, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
            elif self.kind == "v4l2":
                self._c = av.open(c.url, format="video4linux2", options={
                    "video_size": "%dx%d" % (c.width, c.height), "framerate": str(c.fps)}, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
            else:
                self._c = av.open(c.url)
        except (av.FFmpegError, OSError) as e:
            raise SourceError("cannot open %s camera %s: %s; check the %s" % (
                self.kind, c.url, e, "URL, network and the camera's RTSP setting" if self.kind == "rtsp"
                else "device path and permissions (group video)" if self.kind == "v4l2" else "file path"), self.box_id)
        if not self._c.streams.video:
            self._c.close()
            raise SourceError("%s %s has no video stream" % (self.kind, c.url), self.box_id)
        self._stream = self._c.streams.video[0]
        cc = self._stream.codec_context
        self._passthrough = cc.name == "h264"
        # The ring holds self-contained Annex B packets (start codes, SPS and
        # PPS before every keyframe), so a clip, a snapshot or a call can
        # start at any buffered keyframe without the source's extradata.
        # MP4 files give length-prefixed packets (avcC extradata): rewrite
        # them with FFmpeg's h264_mp4toannexb filter (a repackaging, not a
        # re-encode). RTSP gives Annex B already, with SPS/PPS perhaps only in
        # the SDP: those are prepended to keyframes that lack them.
        self._bsf = None
        self._annexb_headers = None
        self.extradata = None
        if self._passthrough and cc.extradata:
            if cc.extradata[0] == 1:
                self._bsf = BitStreamFilterContext("h264_mp4toannexb", self._stream)
            else:
                self._annexb_headers = bytes(cc.extradata)
        self._enc = None if self._passthrough else make_encoder(c.width, c.height, c.fps, c.keyframe_interval_s, c.bitrate_kbps)
        self._demux = self._c.demux(self._stream)
        self._t0_wall = None
        self._t0_pts = None
        self._n = 0

    def _pace(self, pts_s):
        """Files: sleep so packets come out at their recorded rate."""
        now = self.clock()
        if self._t0_wall is None or pts_s is None:
            self._t0_wall, self._t0_pts = now, pts_s or 0.0
            return now
        due = self._t0_wall + (pts_s - self._t0_pts)
        if due > now:
            self.sleep(due - now)
            return due
        return now

    def read(self):
        try:
            packet = next(self._demux)
        except StopIteration:
            if self.kind == "file" and self.cfg.loop:
                self.close()
                self.open()
                return []
            raise SourceError("%s %s ended" % (self.kind, self.cfg.url), self.box_id)
        except av.FFmpegError as e:
            raise SourceError("%s %s read failed: %s" % (self.kind, self.cfg.url, e), self.box_id)
        if packet.size == 0:
            return []
        pts_s = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
        t = self._pace(pts_s) if self.kind == "file" else self.clock()
        if self._passthrough:
            if self._bsf is not None:
                return [(t, bytes(p), p.is_keyframe, None) for p in self._bsf.filter(packet) if p.size]
            data = bytes(packet)
            if packet.is_keyframe and self._annexb_headers and not _has_sps(data):
                data = self._annexb_headers + data
            return [(t, data, packet.is_keyframe, None)]
        out = []
        for frame in packet.decode():
            frame = frame.reformat(width=self.cfg.width, height=self.cfg.height, format="yuv420p")
            frame.pts = int(round(t * 90000))
            frame.time_base = VIDEO_TIME_BASE
            for p in self._enc.encode(frame):
                out.append((t, bytes(p), p.is_keyframe, frame))
        return out

    def close(self):
        if self._c is not None:
            try:
                self._c.close()
            except av.FFmpegError:
                pass
            self._c = None


def _has_sps(data):
    """Whether an Annex B packet holds a sequence parameter set (NAL type 7)."""
    i = data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 7:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def open_camera(cfg, box_id, clock=time.time, sleep=time.sleep):
    if cfg.source == "synthetic":
        return SyntheticCamera(cfg, clock, sleep)
    if cfg.source in ("file", "rtsp", "v4l2"):
        return ContainerCamera(cfg, cfg.source, box_id, clock, sleep)
    return None


# ------------------------------------------------------------------ audio


class Pacer:
    """Sleeps until the next 20 ms boundary of a real-time stream; after a
    stall longer than a second it starts again instead of bursting."""

    def __init__(self, clock=time.monotonic, sleep=time.sleep, period_s=FRAME_SAMPLES / SAMPLE_RATE):
        self.clock = clock
        self.sleep = sleep
        self.period_s = period_s
        self._next = None

    def wait(self):
        now = self.clock()
        if self._next is None or now - self._next > 1.0:
            self._next = now
        if self._next > now:
            self.sleep(self._next - now)
        self._next += self.period_s


class SyntheticAcoustics:
    """The box's mic and speaker in one simulated room. The mic hears a
    steady tone (standing in for the citizen), a little noise, and
    `loopback_gain` of whatever the speaker played (with one chunk of
    delay), which is what the tone-loopback self-test listens for."""

    paced = False

    def __init__(self, cfg, clock=time.monotonic, sleep=time.sleep):
        self.cfg = cfg
        self._pacer = Pacer(clock, sleep)
        self._lock = threading.Lock()
        self._speaker = []  # chunks written, not yet heard
        self._phase = 0
        rng = random.Random(7)
        amp = pcm.db_to_amplitude(cfg.noise_dbfs) * 1.7  # uniform noise: RMS = amp/sqrt(3)
        self._noise = array.array("h", (int(rng.uniform(-amp, amp)) for _ in range(SAMPLE_RATE)))
        self._noise_pos = 0

    # mic
    def read(self):
        self._pacer.wait()
        if self.cfg.mic_dead:
            with self._lock:
                self._speaker.clear()
            return bytes(FRAME_BYTES)
        parts, gains = [], []
        if self.cfg.mic_tone_hz > 0:
            parts.append(pcm.tone(self.cfg.mic_tone_hz, FRAME_SAMPLES, SAMPLE_RATE, self.cfg.mic_level_dbfs, self._phase))
            gains.append(1.0)
        self._phase += FRAME_SAMPLES
        n0 = self._noise_pos
        noise = self._noise[n0:n0 + FRAME_SAMPLES]
        if len(noise) < FRAME_SAMPLES:
            noise = noise + self._noise[: FRAME_SAMPLES - len(noise)]
        self._noise_pos = (n0 + FRAME_SAMPLES) % len(self._noise)
        parts.append(noise)
        gains.append(1.0)
        with self._lock:
            heard = self._speaker.pop(0) if self._speaker else None
        if heard is not None and self.cfg.loopback_gain > 0:
            parts.append(array.array("h", heard))
            gains.append(self.cfg.loopback_gain)
        return pcm.mix(parts, gains).tobytes()

    # speaker
    def write(self, chunk):
        if len(chunk) != FRAME_BYTES:
            raise ValueError("speaker chunks are %d bytes, got %d" % (FRAME_BYTES, len(chunk)))
        if not any(chunk):
            return
        with self._lock:
            self._speaker.append(chunk)
            del self._speaker[:-5]  # nobody listening: keep 100 ms

    def close(self):
        pass


class _Resampled:
    """Decoded audio frames -> 20 ms chunks of 48 kHz mono s16."""

    def __init__(self):
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._buf = bytearray()

    def feed(self, frame):
        for f in self._resampler.resample(frame):
            self._buf += bytes(f.planes[0])[: f.samples * 2]

    def chunk(self):
        if len(self._buf) < FRAME_BYTES:
            return None
        out = bytes(self._buf[:FRAME_BYTES])
        del self._buf[:FRAME_BYTES]
        return out


class ContainerMic:
    """A mic FFmpeg can open: ALSA (paced by the device) or a file (looped,
    paced here)."""

    def __init__(self, cfg, kind, box_id, clock=time.monotonic, sleep=time.sleep):
        self.cfg = cfg
        self.kind = kind
        self.box_id = box_id
        self._pacer = Pacer(clock, sleep) if kind == "file" else None
        self._c = None
        self._open()

    def _open(self):
        try:
            if self.kind == "alsa":
                self._c = av.open(self.cfg.input, format="alsa", options={"sample_rate": str(SAMPLE_RATE), "channels": "1"})
            else:
                self._c = av.open(self.cfg.input)
        except (av.FFmpegError, OSError) as e:
            raise SourceError("cannot open %s mic %s: %s; check the %s" % (
                self.kind, self.cfg.input, e, "ALSA device name (arecord -l) and group audio" if self.kind == "alsa" else "file path"), self.box_id)
        if not self._c.streams.audio:
            raise SourceError("%s %s has no audio stream" % (self.kind, self.cfg.input), self.box_id)
        self._frames = self._c.decode(self._c.streams.audio[0])
        self._rs = _Resampled()

    def read(self):
        if self._pacer is not None:
            self._pacer.wait()
        while True:
            out = self._rs.chunk()
            if out is not None:
                return out
            try:
                self._rs.feed(next(self._frames))
            except StopIteration:
                if self.kind == "file":  # a file mic always loops
                    self._c.close()
                    self._open()
                    continue
                raise SourceError("%s %s ended" % (self.kind, self.cfg.input), self.box_id)
            except av.FFmpegError as e:
                raise SourceError("%s mic %s read failed: %s" % (self.kind, self.cfg.input, e), self.box_id)

    def close(self):
        if self._c is not None:
            self._c.close()
            self._c = None


class WavSpeaker:
    """Writes what the speaker plays to a WAV file (tests, demos)."""

    paced = False

    def __init__(self, path):
        self._w = wave.open(str(path), "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(SAMPLE_RATE)

    def write(self, chunk):
        self._w.writeframes(chunk)

    def close(self):
        self._w.close()


class AlsaSpeaker:
    """An ALSA playback device; write() blocks at the device's pace."""

    paced = True

    def __init__(self, device, box_id):
        try:
            self._c = av.open(device, "w", format="alsa")
            self._s = self._c.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        except (av.FFmpegError, OSError) as e:
            raise SourceError("cannot open ALSA speaker %s: %s; check the device name (aplay -l) and group audio" % (device, e), box_id)
        self._pts = 0

    def write(self, chunk):
        f = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        f.planes[0].update(chunk)
        f.sample_rate = SAMPLE_RATE
        f.pts = self._pts
        self._pts += FRAME_SAMPLES
        for p in self._s.encode(f):
            self._c.mux(p)

    def close(self):
        self._c.close()


class NullSpeaker:
    paced = False

    def write(self, chunk):
        pass

    def close(self):
        pass


def open_audio(cfg, box_id):
    """(mic, speaker) for a box's audio config; (None, None) for "none".
    A synthetic box uses one SyntheticAcoustics for both."""
    if cfg.source == "none":
        return None, None
    if cfg.source == "synthetic":
        room = SyntheticAcoustics(cfg)
        if cfg.output:
            return room, WavSpeaker(cfg.output)
        return room, room
    mic = ContainerMic(cfg, cfg.source, box_id)
    if cfg.output and cfg.source == "alsa":
        speaker = AlsaSpeaker(cfg.output, box_id)
    elif cfg.output:
        speaker = WavSpeaker(cfg.output)
    else:
        speaker = NullSpeaker()
    return mic, speaker
