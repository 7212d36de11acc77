"""One box's media: a camera thread, a mic thread and a speaker thread
around the pre-event buffers. The pure parts (ring.py, mixer.py) do the
bookkeeping; this is the thin threaded shell that does the blocking I/O.

Listeners get every new item, called from the capture thread (keep them
short: append to a queue, or loop.call_soon_threadsafe):

    add_packet_listener(fn, since_t)   fn(VideoPacket); fn first gets the
                                       buffered packets from the keyframe at or
                                       before since_t, atomically with
                                       subscribing: nothing missed or seen twice
    add_audio_listener(fn, since_t)    fn(AudioChunk); same contract
    add_frame_listener(fn)             fn(t, av.VideoFrame): decoded frames for
                                       the live call (decoding only runs while
                                       someone listens)
"""

import logging
import threading
import time

import av

from .config import MAX_RING_BYTES
from .errors import SourceError
from .mixer import SpeakerMixer
from .ring import AudioChunk, AudioRing, PacketRing, VideoPacket
from .sources import Pacer, open_audio, open_camera

log = logging.getLogger(__name__)

# Reopen a failed camera or mic after 0.5, 1, 2 ... s, at most this often.
RETRY_MAX_S = 30.0
RETRY_FIRST_S = 0.5


class _Backoff:
    def __init__(self):
        self.tries = 0

    def next_delay(self):
        d = min(RETRY_MAX_S, RETRY_FIRST_S * (2 ** self.tries))
        self.tries += 1
        return d

    def reset(self):
        self.tries = 0


class BoxMedia:
    def __init__(self, box_cfg, keep_s, clock=time.time):
        self.cfg = box_cfg
        self.box_id = box_cfg.box_id
        self.clock = clock
        # Keep a little more than the clip's pre-roll, so a press that
        # arrives a moment late still gets its full pre_s.
        self.ring = PacketRing(keep_s, MAX_RING_BYTES)
        self.audio_ring = AudioRing(keep_s)
        self.mixer = SpeakerMixer()
        self._lock = threading.Lock()
        self._packet_listeners = []
        self._audio_listeners = []
        self._frame_listeners = []
        self._stop = threading.Event()
        self._threads = []
        self._decoder = None
        self._decoder_primed = False
        self._last_frame = None  # (t, frame)
        self.camera = None
        self.mic = None
        self.speaker = None
        self.has_video = box_cfg.video.source != "none"
        self.has_audio = box_cfg.audio.source != "none"
        self.extradata = None
        self.status = {"camera": "starting" if self.has_video else "none",
                       "audio": "starting" if self.has_audio else "none"}
        self.errors = {}
        self.frames_in = 0
        self.new_packet = threading.Condition(self._lock)

    # ------------------------------------------------------------ lifecycle

    def start(self):
        if self.has_video:
            self._spawn(self._camera_loop, "camera")
        if self.has_audio:
            self._spawn(self._audio_loop, "audio")

    def _spawn(self, fn, name):
        t = threading.Thread(target=fn, name="box%d-%s" % (self.box_id, name), daemon=True)
        self._threads.append(t)
        t.start()

    def stop(self, timeout_s=5.0):
        self._stop.set()
        with self._lock:
            self.new_packet.notify_all()
        for t in self._threads:
            t.join(timeout_s)
            if t.is_alive():
                log.warning("box %d: %s thread did not stop in %.0f s", self.box_id, t.name, timeout_s)
        self._threads = []
        self.mixer.cancel_all()

    def _failed(self, what, err, backoff):
        first = self.errors.get(what) != str(err)
        self.errors[what] = str(err)
        self.status[what] = "offline"
        delay = backoff.next_delay()
        (log.warning if first else log.debug)("box %d: %s; retrying in %.1f s", self.box_id, err, delay)
        self._stop.wait(delay)

    # ------------------------------------------------------------ camera

    def _camera_loop(self):
        backoff = _Backoff()
        while not self._stop.is_set():
            cam = open_camera(self.cfg.video, self.box_id, clock=self.clock)
            try:
                cam.open()
                self.extradata = cam.extradata
                self.status["camera"] = "ok"
                self.errors.pop("camera", None)
                backoff.reset()
                while not self._stop.is_set():
                    for t, data, key, frame in cam.read():
                        self._on_packet(VideoPacket(t, data, key), frame)
            except SourceError as e:
                self._failed("camera", e, backoff)
            except Exception as e:  # a PyAV surprise must not kill the camera for good
                self._failed("camera", SourceError("camera failed: %r" % (e,), self.box_id), backoff)
            finally:
                cam.close()

    def _on_packet(self, packet, frame):
        with self._lock:
            last = self.ring.newest_t()
            if last is not None and packet.t < last:
                packet.t = last  # wall clock stepped back (NTP): keep the ring ordered
            self.ring.push(packet)
            listeners = list(self._packet_listeners)
            want_frames = bool(self._frame_listeners)
            self.frames_in += 1
            self.new_packet.notify_all()
        for fn in listeners:
            fn(packet)
        if frame is not None:
            self._last_frame = (packet.t, frame)
        elif want_frames:
            frame = self._decode(packet)
        if frame is not None and want_frames:
            for fn in list(self._frame_listeners):
                fn(packet.t, frame)

    def _decode(self, packet):
        # Only the capture thread decodes; remove_frame_listener() may drop
        # self._decoder from another thread, so work on a local reference.
        dec = self._decoder
        if dec is None:
            dec = av.CodecContext.create("h264", "r")
            if self.extradata:
                dec.extradata = self.extradata
            self._decoder = dec
            self._decoder_primed = False
        if not self._decoder_primed and not packet.key:
            return None
        self._decoder_primed = True
        frame = None
        try:
            for f in dec.decode(av.Packet(packet.data)):
                frame = f
        except av.FFmpegError as e:
            log.debug("box %d: decode error %s; waiting for the next keyframe", self.box_id, e)
            self._decoder_primed = False
            return None
        if frame is not None:
            self._last_frame = (packet.t, frame)
        return frame

    def add_packet_listener(self, fn, since_t):
        """Subscribe fn; first, under the same lock, fn gets every buffered
        packet from the keyframe at or before since_t, so the live packets
        follow the backlog with nothing missed or repeated. Returns the
        number of backlog packets."""
        with self._lock:
            backlog = self.ring.since(since_t)
            for p in backlog:
                fn(p)
            self._packet_listeners.append(fn)
            return len(backlog)

    def remove_packet_listener(self, fn):
        with self._lock:
            if fn in self._packet_listeners:
                self._packet_listeners.remove(fn)

    def add_frame_listener(self, fn):
        with self._lock:
            self._frame_listeners.append(fn)
            last = self._last_frame
        if last is not None:
            fn(*last)

    def remove_frame_listener(self, fn):
        with self._lock:
            if fn in self._frame_listeners:
                self._frame_listeners.remove(fn)
            if not self._frame_listeners:
                self._decoder = None

    def packets_since(self, since_t):
        with self._lock:
            return self.ring.since(since_t)

    def wait_packet_after(self, t, timeout_s):
        """Block until a packet captured at or after t is buffered (or the
        timeout); returns whether one is."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                newest = self.ring.newest_t()
                if newest is not None and newest >= t:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self.new_packet.wait(left)

    # ------------------------------------------------------------ audio

    def _audio_loop(self):
        backoff = _Backoff()
        while not self._stop.is_set():
            try:
                self.mic, self.speaker = open_audio(self.cfg.audio, self.box_id)
                self.status["audio"] = "ok"
                self.errors.pop("audio", None)
                backoff.reset()
                speaker_thread = threading.Thread(target=self._speaker_loop, args=(self.speaker,),
                                                  name="box%d-speaker" % self.box_id, daemon=True)
                speaker_thread.start()
                try:
                    while not self._stop.is_set():
                        chunk = AudioChunk(self.clock(), self.mic.read())
                        with self._lock:
                            self.audio_ring.push(chunk)
                            listeners = list(self._audio_listeners)
                        for fn in listeners:
                            fn(chunk)
                finally:
                    self._speaker_stop = True
                    speaker_thread.join(2.0)
                    self._speaker_stop = False
            except SourceError as e:
                self._failed("audio", e, backoff)
            except Exception as e:
                self._failed("audio", SourceError("audio failed: %r" % (e,), self.box_id), backoff)
            finally:
                for dev in {id(self.mic): self.mic, id(self.speaker): self.speaker}.values():
                    if dev is not None:
                        try:
                            dev.close()
                        except Exception:
                            pass

    _speaker_stop = False

    def _speaker_loop(self, speaker):
        pacer = None if speaker.paced else Pacer()
        while not self._stop.is_set() and not self._speaker_stop:
            if pacer is not None:
                pacer.wait()
            speaker.write(self.mixer.next_chunk())

    def add_audio_listener(self, fn, since_t):
        """As add_packet_listener, for mic chunks captured at or after since_t."""
        with self._lock:
            backlog = self.audio_ring.since(since_t)
            for c in backlog:
                fn(c)
            self._audio_listeners.append(fn)
            return len(backlog)

    def remove_audio_listener(self, fn):
        with self._lock:
            if fn in self._audio_listeners:
                self._audio_listeners.remove(fn)

    # ------------------------------------------------------------ health

    def ring_bytes(self):
        with self._lock:
            return self.ring.bytes + self.audio_ring.bytes

    def health(self):
        out = {"camera": self.status["camera"], "audio": self.status["audio"],
               "ring_s": 0.0, "ring_bytes": 0, "max_gop_s": round(self.ring.max_gop_s, 2)}
        with self._lock:
            if len(self.ring):
                out["ring_s"] = round(self.ring.newest_t() - self.ring.oldest_t(), 2)
            out["ring_bytes"] = self.ring.bytes + self.audio_ring.bytes
        if self.errors:
            out["errors"] = dict(self.errors)
        if self.ring.max_gop_s > self.cfg.video.keyframe_interval_s * 1.5 + 0.1:
            out["warning"] = ("camera keyframe interval %.1f s is longer than %.1f s: clips start late; "
                              "set the camera's I-frame interval lower" % (self.ring.max_gop_s, self.cfg.video.keyframe_interval_s))
        return out
