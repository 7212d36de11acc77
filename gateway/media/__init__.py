"""Camera and audio at the junction (issue 7): pre-event buffer, alarm
snapshot and clip, two-way WebRTC call, voice prompts, audio self-test.

The gateway mounts it into its aiohttp app:

    from callbox_gateway import media
    service = media.setup(app, config["media"], hooks)
    ...
    metadata = await service.on_alarm(box_id, event_id, press_time, kind="emergency")

`setup()` registers the routes of docs/console-api.md and starts and stops
the pipelines with the app. docs/media.md describes everything.
"""

from aiohttp import web

from .config import MediaConfig, parse
from .errors import CallError, CallRefused, MediaConfigError, MediaError, MediaNotFound, MediaNotReady, SourceError
from .service import MediaService

MEDIA_KEY = web.AppKey("callbox_media", MediaService)


def setup(app, config, hooks, clock=None):
    """Create the MediaService for `config` (the [media] table as a dict, or
    a MediaConfig), add its routes to `app`, start it on app startup and
    stop it on cleanup. Returns the service (also app[MEDIA_KEY])."""
    from .routes import make_routes

    cfg = config if isinstance(config, MediaConfig) else parse(config)
    service = MediaService(cfg, hooks, **({"clock": clock} if clock else {}))
    app[MEDIA_KEY] = service
    app.add_routes(make_routes(service, MEDIA_KEY))

    async def _start(_app):
        await service.start()

    async def _stop(_app):
        await service.stop()

    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return service


__all__ = ["setup", "parse", "MediaService", "MediaConfig", "MEDIA_KEY", "MediaError", "MediaConfigError",
           "SourceError", "MediaNotFound", "MediaNotReady", "CallError", "CallRefused"]
