"""Writes MP4 files with PyAV, from a thread fed by a bounded queue: alarm
clips (video packets copied as they are, never re-encoded, plus the box mic
encoded to AAC) and call recordings (video, box mic, operator mic).

aiortc's MediaRecorder once in four runs wrote an MP4 without video (brief
§7), so the gateway muxes itself and the tests check that every stream is
there. Time stamps: every item carries its capture time in wall seconds; the
file's zero is the first video packet (a keyframe). Audio before that is
dropped; each audio stream is then laid out sample by sample from its first
chunk's offset, so small capture jitter never makes a time stamp go back.
"""

import fractions
import logging
import queue
import threading

import av

from .config import FRAME_SAMPLES, SAMPLE_RATE

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# 30 s of 15 fps video and two 50/s audio streams is 4,500 items; the writer
# keeps up easily, so a full queue means the disk stalled: drop, count, log.
MAX_QUEUE_ITEMS = 20000
AAC_BITRATE = 64000


class Mp4Writer:
    """Start with start(); feed video(packet) and audio(index, chunk) from any
    thread; finish() (blocking) returns the duration in seconds."""

    def __init__(self, path, width, height, fps, audio_streams=(), box_id=None, extradata=None):
        self.path = str(path)
        self.extradata = extradata  # avcC of a camera whose packets are length-prefixed (MP4/RTSP)
        self.width = width
        self.height = height
        self.fps = fps
        self.audio_names = list(audio_streams)
        self.box_id = box_id
        self._q = queue.Queue(MAX_QUEUE_ITEMS)
        self._thread = None
        self.dropped = 0
        self.error = None
        self.duration_s = 0.0
        self.video_packets = 0
        self.audio_samples = [0] * len(self.audio_names)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="mp4-%s" % self.path.rsplit("/", 1)[-1], daemon=True)
        self._thread.start()
        return self

    def video(self, packet):
        self._put(("v", packet))

    def audio(self, index, chunk):
        self._put(("a", index, chunk))

    def _put(self, item):
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("box %s: recording %s falls behind (disk slow?); dropping media", self.box_id, self.path)

    def finish(self, timeout_s=30.0):
        self._q.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("recording %s did not finish in %.0f s" % (self.path, timeout_s))
        if self.error is not None:
            raise self.error
        return self.duration_s

    # ------------------------------------------------------------ writer thread

    def _run(self):
        try:
            self._write()
        except Exception as e:  # reported by finish()
            log.error("box %s: writing %s failed: %s", self.box_id, self.path, e)
            self.error = e
            while True:  # drain so producers never block
                try:
                    if self._q.get(timeout=1.0) is None:
                        break
                except queue.Empty:
                    break

    def _write(self):
        out = av.open(self.path, "w", format="mp4")
        try:
            vs = out.add_stream("h264", rate=self.fps)
            vs.width = self.width
            vs.height = self.height
            vs.time_base = VIDEO_TIME_BASE
            if self.extradata:
                vs.codec_context.extradata = self.extradata
            streams = []
            for name in self.audio_names:
                s = out.add_stream("aac", rate=SAMPLE_RATE)
                s.layout = "mono"
                s.bit_rate = AAC_BITRATE
                s.metadata["title"] = name
                streams.append(s)
            t0 = None
            last_v = None
            pending_audio = []  # audio that arrived before the first video packet
            next_pts = [None] * len(streams)
            while True:
                item = self._q.get()
                if item is None:
                    break
                if item[0] == "v":
                    p = item[1]
                    if t0 is None:
                        if not p.key:
                            continue
                        t0 = p.t
                        for a in pending_audio:
                            self._audio(streams, next_pts, t0, out, *a)
                        pending_audio = None
                    pts = int(round((p.t - t0) * 90000))
                    if last_v is not None and pts <= last_v:
                        pts = last_v + 1
                    last_v = pts
                    pkt = av.Packet(p.data)
                    pkt.pts = pkt.dts = pts
                    pkt.time_base = VIDEO_TIME_BASE
                    pkt.stream = vs
                    pkt.is_keyframe = p.key
                    out.mux(pkt)
                    self.video_packets += 1
                    self.duration_s = max(self.duration_s, (pts / 90000.0) + 1.0 / self.fps)
                else:
                    if t0 is None:
                        pending_audio.append(item[1:])
                        del pending_audio[:-3000]
                        continue
                    self._audio(streams, next_pts, t0, out, *item[1:])
            for s in streams:
                for pkt in s.encode(None):
                    out.mux(pkt)
        finally:
            out.close()

    def _audio(self, streams, next_pts, t0, out, index, chunk):
        if chunk.t + FRAME_SAMPLES / SAMPLE_RATE <= t0:
            return
        if next_pts[index] is None:
            next_pts[index] = max(0, int(round((chunk.t - t0) * SAMPLE_RATE)))
        f = av.AudioFrame(format="s16", layout="mono", samples=len(chunk.pcm) // 2)
        f.planes[0].update(chunk.pcm)
        f.sample_rate = SAMPLE_RATE
        f.time_base = AUDIO_TIME_BASE
        f.pts = next_pts[index]
        next_pts[index] += f.samples
        self.audio_samples[index] += f.samples
        for pkt in streams[index].encode(f):
            out.mux(pkt)


def probe(path):
    """What a written MP4 holds, by decoding every stream (a stream that is
    declared but empty shows up with count 0): {"duration_s", "streams":
    [{"type", "codec", "title", "count" (video frames or audio samples)}]}."""
    info = {"streams": []}
    with av.open(str(path)) as c:
        info["duration_s"] = float(c.duration) / 1e6 if c.duration else 0.0
        n_streams = len(c.streams)
    for n in range(n_streams):
        with av.open(str(path)) as c:
            s = c.streams[n]
            count = 0
            for frame in c.decode(s):
                count += 1 if s.type == "video" else frame.samples
            info["streams"].append({"type": s.type, "codec": s.codec_context.name, "count": count,
                                    "title": s.metadata.get("title", "")})
    return info


def decode_audio(path, stream_index, start_s=0.0):
    """One audio stream of a file as 48 kHz mono s16 bytes, from start_s."""
    out = bytearray()
    rs = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as c:
        s = c.streams[stream_index]
        for frame in c.decode(s):
            if frame.time is not None and frame.time < start_s:
                continue
            for f in rs.resample(frame):
                out += bytes(f.planes[0])[: f.samples * 2]
    return bytes(out)
