"""What the box speaker plays, one 20 ms chunk at a time: voice prompts and
test tones queued one after another, mixed with the operator's voice during
a call. Thread-safe: the speaker thread pulls, asyncio code pushes.

The call input is a jitter buffer capped at MAX_CALL_BACKLOG_MS: if the
network delivers a burst faster than the speaker plays, the oldest audio is
dropped (and counted) so the operator's voice never lags behind by more
than that (ITU-T G.114: under 150 ms one way is acceptable)."""

import array
import collections
import threading

from . import pcm
from .config import FRAME_BYTES, FRAME_MS

MAX_CALL_BACKLOG_MS = 120
_MAX_CALL_CHUNKS = MAX_CALL_BACKLOG_MS // FRAME_MS
# Prompts are a few seconds; a queue longer than this is a loop gone wrong.
MAX_QUEUED_PLAYBACKS = 8


class Playback:
    """One queued sound. `done` is called (from the speaker thread) with
    True when it finished playing, False if it was cancelled."""

    def __init__(self, name, data, done=None):
        if len(data) % 2:
            data = data[:-1]
        self.name = name
        self.data = data
        self.pos = 0
        self.done = done


class SpeakerMixer:
    def __init__(self):
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._call = collections.deque()
        self.call_dropped = 0
        self.played = []  # names of finished playbacks, newest last (bounded)

    def play(self, name, data, done=None):
        pb = Playback(name, data, done)
        with self._lock:
            if len(self._queue) >= MAX_QUEUED_PLAYBACKS:
                raise OverflowError("speaker queue full (%d sounds); not queuing %s" % (MAX_QUEUED_PLAYBACKS, name))
            self._queue.append(pb)
        return pb

    def cancel_all(self):
        with self._lock:
            gone = list(self._queue)
            self._queue.clear()
        for pb in gone:
            if pb.done:
                pb.done(False)

    def busy(self):
        with self._lock:
            return bool(self._queue)

    def push_call_audio(self, chunk):
        if len(chunk) != FRAME_BYTES:
            raise ValueError("call audio chunks are %d bytes, got %d" % (FRAME_BYTES, len(chunk)))
        with self._lock:
            self._call.append(chunk)
            while len(self._call) > _MAX_CALL_CHUNKS:
                self._call.popleft()
                self.call_dropped += 1

    def clear_call_audio(self):
        with self._lock:
            self._call.clear()

    def next_chunk(self):
        """The next 20 ms for the speaker (silence if nothing plays)."""
        finished = None
        with self._lock:
            call = self._call.popleft() if self._call else None
            prompt = None
            if self._queue:
                pb = self._queue[0]
                prompt = pb.data[pb.pos:pb.pos + FRAME_BYTES]
                pb.pos += FRAME_BYTES
                if pb.pos >= len(pb.data):
                    finished = self._queue.popleft()
                    self.played.append(pb.name)
                    del self.played[:-20]
                if len(prompt) < FRAME_BYTES:
                    prompt = prompt + bytes(FRAME_BYTES - len(prompt))
        if finished is not None and finished.done:
            finished.done(True)
        if call is None and prompt is None:
            return bytes(FRAME_BYTES)
        if call is None:
            return prompt
        if prompt is None:
            return call
        return pcm.mix([array.array("h", call), array.array("h", prompt)]).tobytes()
