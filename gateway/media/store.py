"""Clips, snapshots and call recordings on disk, with an index that survives
a restart, and retention by age and by disk cap.

Layout under media_dir:

    index.json                  {"version": 1, "items": [entry, ...]}
    <box_id>/<media_id>.mp4     alarm clip or call recording
    <box_id>/<media_id>.jpg     alarm snapshot
    *.part                      being written; removed at start (a crash mid-write)

An entry: {"media_id", "kind" ("clip" | "snapshot" | "call"), "box_id",
"event_id", "file" (relative), "created" (wall s), "bytes", "duration_s",
"sha256"}. Files are written to a .part name, fsynced and renamed, then the
index is rewritten the same way, so a power cut leaves either the old index
or the new one, never a half-written file that the index names. A file on
disk that the index does not name (a crash between the two renames) is
deleted at start: its sha256 never reached the console.

Pure of asyncio; callers serialise access (the service holds one lock) and
pass `now` in.
"""

import hashlib
import json
import logging
import os
import pathlib

from .errors import MediaError, MediaNotFound

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_VERSION = 1
KINDS = ("clip", "snapshot", "call")
_SUFFIX = {"clip": ".mp4", "call": ".mp4", "snapshot": ".jpg"}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class MediaStore:
    def __init__(self, root, max_age_s, cap_bytes, create=True):
        """create False: do not make the folder until something is written
        (a gateway without cameras leaves no empty media folder behind)."""
        self.root = pathlib.Path(root)
        self.max_age_s = float(max_age_s)
        self.cap_bytes = int(cap_bytes)
        self._items = {}  # (media_id, kind) -> entry
        self.deleted = 0  # entries removed by retention since start
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise MediaError("cannot create media_dir %s: %s; set media.media_dir to a writable folder" % (self.root, e))
        if self.root.is_dir():
            self._load()

    # ------------------------------------------------------------ index

    def _index_path(self):
        return self.root / INDEX_NAME

    def _load(self):
        path = self._index_path()
        for part in self.root.rglob("*.part"):
            log.info("removing unfinished media file %s (interrupted write)", part)
            part.unlink(missing_ok=True)
        if not path.exists():
            return
        try:
            doc = json.loads(path.read_text())
            items = doc["items"]
            if doc.get("version") != INDEX_VERSION:
                raise ValueError("index version %r, expected %d" % (doc.get("version"), INDEX_VERSION))
        except (OSError, ValueError, KeyError, TypeError) as e:
            # Keep the damaged index for a human; start with what the files say.
            bad = path.with_name(INDEX_NAME + ".damaged")
            os.replace(path, bad)
            log.error("media index %s unreadable (%s); kept as %s, starting a new index", path, e, bad)
            return
        missing = 0
        for entry in items:
            f = self.root / entry["file"]
            if not f.exists():
                missing += 1
                continue
            self._items[(entry["media_id"], entry["kind"])] = entry
        if missing:
            log.warning("media index named %d files that are gone; dropped from the index", missing)
            self._save()
        known = {self.root / e["file"] for e in self._items.values()}
        for f in self.root.glob("*/*"):
            if f.suffix in (".mp4", ".jpg") and f not in known:
                log.info("removing unindexed media file %s (crash before indexing)", f)
                f.unlink(missing_ok=True)

    def _save(self):
        path = self._index_path()
        tmp = path.with_name(INDEX_NAME + ".part")
        doc = {"version": INDEX_VERSION, "items": sorted(self._items.values(), key=lambda e: e["created"])}
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=0)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)

    # ------------------------------------------------------------ files

    def part_path(self, box_id, media_id, kind):
        """Where to write a new file before commit() (a .part name)."""
        if kind not in KINDS:
            raise ValueError("kind must be one of %s" % (KINDS,))
        d = self.root / str(int(box_id))
        d.mkdir(parents=True, exist_ok=True)
        return d / (_safe(media_id) + _SUFFIX[kind] + ".part")

    def commit(self, part, box_id, media_id, kind, now, event_id=None, duration_s=None):
        """Fsync and rename a finished .part file into place and index it.
        Returns the entry. Then applies retention (never to this entry)."""
        part = pathlib.Path(part)
        final = part.with_name(part.name[: -len(".part")])
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        digest = sha256_file(part)
        size = part.stat().st_size
        os.replace(part, final)
        entry = {
            "media_id": media_id, "kind": kind, "box_id": int(box_id), "event_id": event_id,
            "file": str(final.relative_to(self.root)), "created": float(now), "bytes": size,
            "duration_s": None if duration_s is None else round(float(duration_s), 3), "sha256": digest,
        }
        self._items[(media_id, kind)] = entry
        self._save()
        self.enforce(now, keep=(media_id, kind))
        return entry

    def get(self, media_id, kind):
        entry = self._items.get((media_id, kind))
        if entry is None:
            raise MediaNotFound("no %s for %r on this gateway (never captured, or removed by retention)" % (kind, media_id))
        return entry

    def find(self, media_id, kind):
        return self._items.get((media_id, kind))

    def path(self, entry):
        return self.root / entry["file"]

    def entries(self):
        return sorted(self._items.values(), key=lambda e: e["created"])

    def total_bytes(self):
        return sum(e["bytes"] for e in self._items.values())

    # ------------------------------------------------------------ retention

    def enforce(self, now, keep=None):
        """Delete entries older than max_age_s, then the oldest while the
        total exceeds cap_bytes. `keep` (media_id, kind) is never deleted (the
        file just written). Returns the deleted entries."""
        gone = []
        for entry in self.entries():
            if (entry["media_id"], entry["kind"]) == keep:
                continue
            if now - entry["created"] > self.max_age_s:
                gone.append(entry)
        total = self.total_bytes() - sum(e["bytes"] for e in gone)
        for entry in self.entries():
            if total <= self.cap_bytes:
                break
            if entry in gone or (entry["media_id"], entry["kind"]) == keep:
                continue
            gone.append(entry)
            total -= entry["bytes"]
        if not gone:
            return []
        for entry in gone:
            self._items.pop((entry["media_id"], entry["kind"]), None)
            try:
                (self.root / entry["file"]).unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("box %d: cannot delete %s: %s", entry["box_id"], entry["file"], e)
        self._save()
        self.deleted += len(gone)
        log.info("retention removed %d media files (age > %.0f s or total > %d bytes)", len(gone), self.max_age_s, self.cap_bytes)
        return gone


def _safe(media_id):
    ok = "".join(c for c in str(media_id) if c.isalnum() or c in "-_.")
    if not ok or ok != str(media_id) or ok.startswith("."):
        raise MediaError("media id %r has characters that cannot be a file name" % (media_id,))
    return ok
