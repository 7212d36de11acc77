"""The gateway's one exception tree.

Every error the gateway raises on purpose is a GatewayError. Messages name the
box (when there is one) and say what to do about it, as the CLI prints them
unchanged (`callbox: message`).

    GatewayError
    ├── ConfigError          bad or missing configuration (exit at start)
    ├── RegistryError        box registry: unknown box, duplicate id/address, bad key
    ├── StorageError         SQLite failed (disk full, read-only, corrupt)
    │   └── StorageFullError the database cannot grow: nothing was stored, nothing ACKed
    ├── LinkError            a transport (RS-485 port, LTE listener) cannot run
    └── DeliveryError        a forwarding sink could not deliver an event
"""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    `box_id` (int or None) names the box the error is about."""

    def __init__(self, message, box_id=None):
        if box_id is not None and ("box %d" % box_id) not in message:
            message = "box %d: %s" % (box_id, message)
        super().__init__(message)
        self.box_id = box_id


class ConfigError(GatewayError):
    """The configuration file or a value in it is wrong; the message names the
    key and the expected form."""


class RegistryError(GatewayError):
    """A box cannot be added, changed or found in the registry."""


class StorageError(GatewayError):
    """The gateway's SQLite store failed. Nothing that raised this was
    committed, so nothing that raised this was acknowledged."""


class StorageFullError(StorageError):
    """The database or its disk is full. The frame was not stored and not
    ACKed; the box keeps it and retries. Free disk space (or raise
    storage.max_db_mb) to recover."""


class LinkError(GatewayError):
    """A transport cannot run: serial port missing or busy, listen address in
    use, bad TLS files."""


class DeliveryError(GatewayError):
    """A forwarding sink could not deliver an event.

    `retryable` True: keep the event queued and try again later (timeout,
    connection refused, 5xx, NAK, 401 until the token is fixed).
    `retryable` False: the receiver will never accept this event as it is
    (400 malformed, DUH); the queue parks it as undeliverable and counts it,
    instead of retrying it forever and blocking the box's later events."""

    def __init__(self, message, retryable=True, box_id=None, status=None):
        super().__init__(message, box_id)
        self.retryable = bool(retryable)
        self.status = status
