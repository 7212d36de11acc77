"""The media package's exceptions: one branch of the gateway's tree.

    GatewayError                      (callbox_gateway.errors)
    └── MediaError                    anything about camera, audio, clips, calls
        ├── MediaConfigError          bad [media] configuration (raised at start)
        ├── SourceError               a camera or audio device cannot be opened or read
        ├── PromptError               a voice prompt cannot be generated (espeak-ng missing)
        ├── MediaNotFound             no such clip, snapshot or call (HTTP 404)
        ├── MediaNotReady             a capture is still running (HTTP 503 + Retry-After)
        └── CallError                 a call cannot be opened or is in the wrong state
            └── CallRefused           not authenticated, box busy, too many calls

Messages name the box (GatewayError prefixes "box N: ") and say what to do.
HTTP handlers turn these into JSON bodies {"error": message}.
"""

from ..errors import ConfigError, GatewayError


class MediaError(GatewayError):
    http_status = 500


class MediaConfigError(MediaError, ConfigError):
    http_status = 500


class SourceError(MediaError):
    """The camera or audio device failed; the capture thread retries with
    backoff and box health shows it."""


class PromptError(MediaError):
    """A prompt could not be generated; the box hears a chime instead."""


class MediaNotFound(MediaError):
    http_status = 404


class MediaNotReady(MediaError):
    http_status = 503


class CallError(MediaError):
    http_status = 400


class CallRefused(CallError):
    def __init__(self, message, box_id=None, http_status=409):
        super().__init__(message, box_id)
        self.http_status = http_status
