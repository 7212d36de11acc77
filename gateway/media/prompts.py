"""Voice prompts for the box speaker, in Hindi then English, generated with
espeak-ng on first use into a cache folder and kept as 48 kHz mono PCM.

The names match the wire protocol's CALL_STATE prompt field (wire.PROMPTS),
so the light on the box and the voice from the gateway tell the same story.
If espeak-ng is missing the box hears a two-note chime instead (and the log
says how to fix it): a prompt must never hold up an alarm or a call.
"""

import asyncio
import hashlib
import logging
import pathlib
import shutil
import subprocess

import av

from . import pcm
from .config import SAMPLE_RATE
from .errors import PromptError

log = logging.getLogger(__name__)

# name -> ((voice, text), ...), played in order with GAP_MS between.
PROMPTS = {
    "connecting": (
        ("hi", "आपकी कॉल पुलिस नियंत्रण कक्ष से जोड़ी जा रही है।"),
        ("en", "Your call is being connected to the police control room."),
    ),
    "help_on_way": (
        ("hi", "मदद आ रही है।"),
        ("en", "Help is on the way."),
    ),
    "testing": (
        ("hi", "इस बॉक्स का परीक्षण किया जा रहा है।"),
        ("en", "This box is being tested."),
    ),
}
GAP_MS = 400
# espeak-ng speaks in well under a second per prompt; a hung process must not
# hold a worker thread.
ESPEAK_TIMEOUT_S = 20.0
SPEED_WPM = 150  # slower than espeak's 175: street noise, non-native listeners
LEVEL_DBFS = -6.0  # peak-normalised level of a prompt


def _cache_name(voice, text):
    h = hashlib.sha256(("%s|%d|%s" % (voice, SPEED_WPM, text)).encode()).hexdigest()[:16]
    return "%s-%s.wav" % (voice, h)


def _wav_to_pcm(path):
    out = bytearray()
    rs = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            for f in rs.resample(frame):
                out += bytes(f.planes[0])[: f.samples * 2]
    for f in rs.resample(None):
        out += bytes(f.planes[0])[: f.samples * 2]
    return bytes(out)


def _normalise(data, level_dbfs):
    import array

    a = array.array("h", data)
    peak = max((abs(s) for s in a), default=0)
    if peak == 0:
        return data
    g = pcm.db_to_amplitude(level_dbfs) / peak
    return array.array("h", (int(s * g) for s in a)).tobytes()


def chime():
    """The fallback: two short notes (880 Hz, 660 Hz)."""
    n = SAMPLE_RATE * 300 // 1000
    return (pcm.tone(880, n, SAMPLE_RATE, -12).tobytes() + pcm.silence(n // 3).tobytes()
            + pcm.tone(660, n, SAMPLE_RATE, -12).tobytes())


class PromptLibrary:
    def __init__(self, cache_dir, espeak="espeak-ng"):
        self.cache_dir = pathlib.Path(cache_dir)
        self.espeak = espeak
        self._pcm = {}
        self._warned = False

    def generate(self, name):
        """Blocking: the prompt's PCM (48 kHz mono s16 bytes), generating
        missing WAVs with espeak-ng. Raises PromptError."""
        if name in self._pcm:
            return self._pcm[name]
        if name not in PROMPTS:
            raise PromptError("unknown prompt %r; known: %s" % (name, ", ".join(PROMPTS)))
        exe = shutil.which(self.espeak)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        parts = []
        gap = bytes(2 * SAMPLE_RATE * GAP_MS // 1000)
        for voice, text in PROMPTS[name]:
            wav = self.cache_dir / _cache_name(voice, text)
            if not wav.exists():
                if exe is None:
                    raise PromptError("%s not found; install it (apt-get install espeak-ng) or set media.espeak" % self.espeak)
                part = wav.with_suffix(".part")
                try:
                    subprocess.run([exe, "-v", voice, "-s", str(SPEED_WPM), "-w", str(part), text],
                                   check=True, capture_output=True, timeout=ESPEAK_TIMEOUT_S)
                except (subprocess.SubprocessError, OSError) as e:
                    detail = getattr(e, "stderr", b"") or b""
                    raise PromptError("espeak-ng failed for prompt %s (%s): %s %s" % (name, voice, e, detail.decode(errors="replace").strip()))
                part.replace(wav)
            parts.append(_normalise(_wav_to_pcm(wav), LEVEL_DBFS))
        data = gap.join(parts)
        self._pcm[name] = data
        return data

    def get(self, name):
        """Blocking, never raises for a known prompt: the prompt, or the chime."""
        try:
            return self.generate(name)
        except PromptError as e:
            (log.warning if not self._warned else log.debug)("voice prompt %s unavailable: %s; playing a chime", name, e)
            self._warned = True
            return chime()

    async def prewarm(self):
        """Generate every prompt in a worker thread (at gateway start)."""
        for name in PROMPTS:
            await asyncio.to_thread(self.get, name)
