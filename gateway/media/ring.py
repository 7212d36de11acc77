"""The pre-event buffer: encoded video packets (never re-encoded) and PCM
audio chunks, kept for the last `keep_s` seconds and cut on keyframes.

Pure: no threads, no clock. Callers pass each item's capture time (wall
seconds) and hold their own lock. A clip that starts `pre_s` before a press
needs a keyframe at or before that moment, so eviction only ever drops a
whole GOP (a keyframe and the packets up to the next keyframe), and only when
the *next* GOP still starts early enough to cover `keep_s`. The camera's
keyframe interval therefore bounds the extra pre-roll; it must not exceed
the buffer length or a clip starts late (the Frigate failure, brief §7).

    VideoPacket(t, data, key)        t = capture time in wall seconds
    AudioChunk(t, pcm)               pcm = bytes, 48 kHz mono s16
"""

import collections


class VideoPacket:
    __slots__ = ("t", "data", "key")

    def __init__(self, t, data, key):
        self.t = t
        self.data = data
        self.key = bool(key)

    def __repr__(self):
        return "VideoPacket(t=%.3f, %d bytes%s)" % (self.t, len(self.data), ", key" if self.key else "")


class AudioChunk:
    __slots__ = ("t", "pcm")

    def __init__(self, t, pcm):
        self.t = t
        self.pcm = pcm


class PacketRing:
    """Video packets for at least `keep_s` seconds, starting on a keyframe.

    `max_bytes` is a hard cap against a camera that sends far more than it
    should: beyond it whole GOPs are dropped even if that shortens the
    history, and `dropped_over_cap` counts them."""

    def __init__(self, keep_s, max_bytes):
        if keep_s < 0:
            raise ValueError("keep_s must be >= 0")
        self.keep_s = float(keep_s)
        self.max_bytes = int(max_bytes)
        self._packets = collections.deque()
        self._keys = collections.deque()  # capture times of keyframes in the ring, in order
        self.bytes = 0
        self.dropped_before_key = 0  # packets that came before any keyframe (undecodable)
        self.dropped_over_cap = 0
        self.max_gop_s = 0.0  # longest keyframe interval seen: health warns if > keep_s

    def __len__(self):
        return len(self._packets)

    def push(self, packet):
        """Add a packet (times must not go backwards; a camera whose clock
        jumps back is re-stamped by the caller). Returns nothing."""
        if not self._packets and not packet.key:
            self.dropped_before_key += 1
            return
        if self._packets and packet.t < self._packets[-1].t:
            raise ValueError("packet time went backwards: %.3f after %.3f" % (packet.t, self._packets[-1].t))
        if packet.key:
            if self._keys:
                self.max_gop_s = max(self.max_gop_s, packet.t - self._keys[-1])
            self._keys.append(packet.t)
        self._packets.append(packet)
        self.bytes += len(packet.data)
        self._evict(packet.t)

    def _drop_first_gop(self):
        self._keys.popleft()
        while self._packets:
            p = self._packets[0]
            if p.key and p.t == (self._keys[0] if self._keys else None):
                break
            self._packets.popleft()
            self.bytes -= len(p.data)

    def _evict(self, now):
        # Drop the oldest GOP while the second keyframe is old enough to start
        # a clip that reaches keep_s back on its own.
        while len(self._keys) >= 2 and self._keys[1] <= now - self.keep_s:
            self._drop_first_gop()
        while self.bytes > self.max_bytes and len(self._keys) >= 2:
            self._drop_first_gop()
            self.dropped_over_cap += 1

    def oldest_t(self):
        return self._packets[0].t if self._packets else None

    def newest_t(self):
        return self._packets[-1].t if self._packets else None

    def since(self, t):
        """Packets from the last keyframe at or before t (or the first
        keyframe, if t is older than the buffer) to the newest."""
        start_key = None
        for k in self._keys:
            if k <= t:
                start_key = k
            else:
                break
        if start_key is None:
            return list(self._packets)
        out = []
        started = False
        for p in self._packets:
            if not started and p.key and p.t == start_key:
                started = True
            if started:
                out.append(p)
        return out


class AudioRing:
    """PCM chunks for the last keep_s seconds (plus one chunk)."""

    def __init__(self, keep_s):
        self.keep_s = float(keep_s)
        self._chunks = collections.deque()
        self.bytes = 0

    def __len__(self):
        return len(self._chunks)

    def push(self, chunk):
        self._chunks.append(chunk)
        self.bytes += len(chunk.pcm)
        while len(self._chunks) > 1 and self._chunks[1].t <= chunk.t - self.keep_s:
            old = self._chunks.popleft()
            self.bytes -= len(old.pcm)

    def since(self, t):
        return [c for c in self._chunks if c.t >= t]
