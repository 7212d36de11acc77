"""The box's one exception tree. Messages name the box and suggest the fix."""


class BoxError(Exception):
    def __init__(self, message, box_id=None, hint=""):
        self.box_id = box_id
        self.hint = hint
        text = message
        if box_id is not None:
            text = "box %d: %s" % (box_id, text)
        if hint:
            text = text + " (" + hint + ")"
        super().__init__(text)


class ConfigError(BoxError):
    """config.json or a board file is missing or wrong: the box stays
    unprovisioned and shows the fault light."""


class FlashError(BoxError):
    """The outbox on flash cannot be written or read."""
