"""The console sink: HTTPS/JSON to the commissionerate console, exactly as
docs/console-api.md says.

- POST /api/v1/events {"events": [...]}: 200 {"accepted": [...], "duplicates": [...]}
  deletes the rows; 400 parks them (split to find the bad one); 401/403, 5xx,
  timeouts and refused connections keep them queued (retryable).
- POST /api/v1/media {"event_id", "snapshot_url", "clip"}: 404 (event not there
  yet) is retryable.
- POST /api/v1/health every health_interval_s and on any change; the latest
  state wins, so it is not queued: a failed report is replaced by the next.

Every request carries `Authorization: Bearer <token>` and
`X-Callbox-Gateway: <gateway id>`. The token never appears in logs or reprs.
"""

import asyncio
import json
import logging
import ssl

import aiohttp

from .errors import ConfigError, DeliveryError
from .observe import kv

log = logging.getLogger(__name__)


def public_event(body):
    """The event as the console sees it: private fields (leading _) removed."""
    return {k: v for k, v in body.items() if not k.startswith("_")}


class ConsoleSink:
    def __init__(self, url, token, gateway_id, timeout_s=10.0, ca_file="", health_interval_s=10.0, name="console"):
        if not url.startswith(("http://", "https://")):
            raise ConfigError("[[sinks]] console url %r must start with http:// or https://" % url)
        if not token:
            raise ConfigError("[[sinks]] console needs a token (or http.console_token); the console answers 401 without one")
        self.url = url.rstrip("/")
        self._token = token
        self.gateway_id = gateway_id
        self.timeout_s = timeout_s
        self.health_interval_s = health_interval_s
        self.name = name
        self._ssl = None
        if ca_file:
            self._ssl = ssl.create_default_context(cafile=ca_file)
        self._session = None
        self.health_sent = 0

    def __repr__(self):
        return "ConsoleSink(%s, gateway=%s, token=<secret>)" % (self.url, self.gateway_id)

    def _headers(self):
        return {"Authorization": "Bearer " + self._token, "X-Callbox-Gateway": self.gateway_id}

    async def _post(self, path, payload):
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with self._session.post(self.url + path, json=payload, headers=self._headers(), ssl=self._ssl) as r:
                text = await r.text()
                return r.status, text
        except asyncio.TimeoutError:
            raise DeliveryError("console %s did not answer %s within %.1f s; events stay queued" % (self.url, path, self.timeout_s), True, status="timeout") from None
        except aiohttp.ClientError as e:
            raise DeliveryError("console %s unreachable (%s); events stay queued" % (self.url, e.__class__.__name__), True, status="conn") from None

    def _check(self, status, text, path):
        if status == 200 or status == 202:
            return
        if status in (401, 403):
            raise DeliveryError("console refused gateway %s's token (%d); fix the token in [[sinks]]; events stay queued" % (self.gateway_id, status), True, status=status)
        if status == 400:
            raise DeliveryError("console says %s body is malformed: %s" % (path, text[:200]), False, status=status)
        if status == 404 and path == "/api/v1/media":
            raise DeliveryError("console does not know the event yet (404); media retried later", True, status=status)
        raise DeliveryError("console answered %d to %s; events stay queued" % (status, path), True, status=status)

    async def deliver_batch(self, rows):
        i = 0
        while i < len(rows):
            if rows[i]["what"] == "media":
                await self.deliver_media(rows[i]["body"])
                i += 1
                continue
            j = i
            while j < len(rows) and rows[j]["what"] == "event":
                j += 1
            await self.deliver_events([r["body"] for r in rows[i:j]])
            i = j

    async def deliver(self, event):
        await self.deliver_events([event])

    async def deliver_events(self, events):
        evs = [public_event(e) for e in events]
        status, text = await self._post("/api/v1/events", {"events": evs})
        self._check(status, text, "/api/v1/events")
        try:
            got = json.loads(text)
            done = set(got.get("accepted", [])) | set(got.get("duplicates", []))
        except (ValueError, AttributeError, TypeError):
            raise DeliveryError("console answered 200 with a body that is not the contract's JSON; events stay queued", True, status="body") from None
        missing = [e["event_id"] for e in evs if e["event_id"] not in done]
        if missing:
            raise DeliveryError("console's 200 does not list %s; events stay queued" % ", ".join(missing[:3]), True, status="partial")

    async def deliver_media(self, body):
        status, text = await self._post("/api/v1/media", body)
        self._check(status, text, "/api/v1/media")

    async def send_health(self, report):
        """One health report; False (logged at debug) when it did not go."""
        try:
            status, text = await self._post("/api/v1/health", report)
            self._check(status, text, "/api/v1/health")
        except DeliveryError as e:
            log.debug(kv("health_not_sent", sink=self.name, error=str(e)))
            return False
        self.health_sent += 1
        return True

    async def health_loop(self, snapshot, changed, clock):
        """Send snapshot() every health_interval_s, and at once when the
        `changed` asyncio.Event is set."""
        while True:
            changed.clear()
            await self.send_health(snapshot())
            try:
                await asyncio.wait_for(changed.wait(), self.health_interval_s)
            except asyncio.TimeoutError:
                pass

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None
