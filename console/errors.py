"""One exception tree for the console side.

Every message names the gateway, box or operator concerned and says what to do,
because it ends up in front of a tired operator or in a gateway's log."""


class ConsoleError(Exception):
    """Base of every error the console raises on purpose."""

    http_status = 500


class BadRequest(ConsoleError):
    """A gateway or browser sent something malformed; nothing was stored."""

    http_status = 400


class Unauthorized(ConsoleError):
    """No or wrong credentials (gateway token, operator session)."""

    http_status = 401


class Forbidden(ConsoleError):
    """Authenticated, but the role does not allow it (or CSRF failed)."""

    http_status = 403


class NotFound(ConsoleError):
    http_status = 404


class Conflict(ConsoleError):
    """The incident moved on meanwhile (another operator acted first)."""

    http_status = 409


class GatewayUnavailable(ConsoleError):
    """A console -> gateway call (media, video call) failed."""

    http_status = 502


class ConfigError(ConsoleError):
    """The console's configuration is unusable; the message says which key."""
