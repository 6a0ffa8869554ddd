"""Webhooks from the simulator: WAHA event envelopes POSTed for every mutation of its accounts.

    emitter = WebhookEmitter("http://127.0.0.1:8000/webhooks/waha", hmac_key="k", redelivery_rate=0.2)
    emitter.attach(account).start()
    account.add_messages(5)          # -> 5 `message.any` events
    emitter.flush(10)                # wait until everything queued was delivered (tests)
    emitter.close()

`SimulatorServer` does this itself when `ServerConfig.webhook_url` is set (or on
`server.enable_webhooks(url)`): every mutation after `start()` is reported.

Events (waha-api.md §5), payloads rendered in the account's engine shapes (shapes.Renderer):

- `add_messages` -> `message.any` (`WAMessage`), plus `message` for incoming ones when `message` is
  among `events`;
- `edit_message` -> `message.edited`: the edit action's `WAMessage` (a new id, now as `timestamp`)
  with the new `body` and `editedMessageId` = the edited message's bare key id;
- `revoke_message` -> `message.revoked`: `{after: the revoke action's WAMessage, before: the revoked
  message (WEBJS) or null, revokedMessageId: bare key id}`;
- `set_ack` -> `message.ack`: `{id, from, to, participant, fromMe, ack, ackName}` as rendered.

Envelope: `id` = `evt_` + 26-char lowercase ULID-like id, `timestamp` (ms), `event`, `session`, `me`,
`payload`, `engine`, `environment`. Headers as WAHA sends them, with `X-Webhook-Hmac` (hex
HMAC-SHA512 of the raw body) when a key is set. Delivery is at-least-once like WAHA's: a non-2xx
answer or a transport error is retried (`attempts`), and with probability `redelivery_rate` an event
is posted twice with the identical body; with probability `reissue_rate` it is posted again under a
new envelope id (a retry that does not reuse the id). A background thread sends; the queue is
bounded (`queue_size`): a mutation waits up to `put_timeout` for room, then the event is dropped and
counted (`stats.dropped`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson

from wahaflow.simulator import shapes
from wahaflow.simulator.account import Account

log = logging.getLogger(__name__)

DEFAULT_EVENTS = frozenset({"message.any", "message.ack", "message.edited", "message.revoked"})
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_STOP = object()

Json = dict[str, Any]


def ulid(now_ms: int | None = None) -> str:
    """A 26-character lowercase ULID-like id: 48-bit millisecond time + 80 random bits, Crockford base32."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def event_id() -> str:
    """A WAHA envelope id: `evt_` + ULID."""
    return "evt_" + ulid()


def dumps(envelope: Json) -> bytes:
    """The JSON body of an envelope (lone surrogates, if any, escaped instead of failing)."""
    try:
        return orjson.dumps(envelope)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(envelope, ensure_ascii=True).encode("ascii")


def sign(body: bytes, key: str) -> str:
    """Hex HMAC-SHA512 of `body` with `key` (`X-Webhook-Hmac`)."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha512).hexdigest()


@dataclass
class WebhookStats:
    """Delivery counters (updated by the sender thread)."""

    events: int = 0  # envelopes queued
    posts: int = 0  # HTTP requests made (retries and redeliveries included)
    delivered: int = 0  # envelopes (and their copies) answered 2xx
    redelivered: int = 0  # identical bodies posted a second time
    reissued: int = 0  # events posted again under a new envelope id
    retries: int = 0
    failed: int = 0  # given up after `attempts`
    dropped: int = 0  # queue full
    by_status: Counter[int] = field(default_factory=Counter)
    by_event: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "posts": self.posts,
            "delivered": self.delivered,
            "redelivered": self.redelivered,
            "reissued": self.reissued,
            "retries": self.retries,
            "failed": self.failed,
            "dropped": self.dropped,
            "by_status": dict(self.by_status),
            "by_event": dict(self.by_event),
        }


class WebhookEmitter:
    """Posts WAHA envelopes for the mutations of the attached accounts from a background thread."""

    def __init__(
        self,
        url: str,
        *,
        hmac_key: str | None = None,
        redelivery_rate: float = 0.0,
        reissue_rate: float = 0.0,
        events: frozenset[str] | set[str] = DEFAULT_EVENTS,
        seed: int = 0,
        queue_size: int = 10_000,
        put_timeout: float = 5.0,
        timeout: float = 10.0,
        attempts: int = 3,
        retry_delay: float = 0.1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        for name, rate in (("redelivery_rate", redelivery_rate), ("reissue_rate", reissue_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        self.url = url
        self.hmac_key = hmac_key
        self.redelivery_rate = redelivery_rate
        self.reissue_rate = reissue_rate
        self.events = frozenset(events)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.put_timeout = put_timeout
        self.transport = transport  # an httpx transport in place of the network (tests)
        self.stats = WebhookStats()
        self.delivered_ids: list[str] = []  # envelope ids answered 2xx, in order (first posts only)
        self._rng = random.Random(seed)  # delivery draws (sender thread only)
        self._id_rng = random.Random(seed + 1)  # key ids of edit/revoke actions
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._accounts: list[Account] = []

    # ------------------------------------------------------------ wiring

    def attach(self, account: Account) -> WebhookEmitter:
        """Report `account`'s mutations from now on."""
        self._accounts.append(account)
        account.subscribe(lambda event, ids: self._on_mutation(account, event, ids))
        return self

    def start(self) -> WebhookEmitter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="waha-sim-webhooks", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was delivered (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout`), then stop the thread. Later mutations are ignored."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.flush(timeout)
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=1.0)
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------ envelopes

    def envelope(self, account: Account, event: str, payload: Json) -> Json:
        """A WAHA envelope for `payload` (a fresh id and timestamp)."""
        return {
            "id": event_id(),
            "timestamp": int(time.time() * 1000),
            "event": event,
            "session": account.waha_session,
            "me": shapes.me_info(account),
            "payload": payload,
            "engine": account.engine,
            "environment": shapes.environment(account.engine),
        }

    def _on_mutation(self, account: Account, event: str, message_ids: list[str]) -> None:
        if self._closed or not message_ids:
            return
        try:
            envelopes = self._render(account, event, message_ids)
        except Exception:  # never break the mutation that reported this
            log.exception("simulator webhooks: could not render %s", event)
            return
        for envelope in envelopes:
            self.enqueue(envelope)

    def enqueue(self, envelope: Json) -> bool:
        """Queue one envelope for delivery; False (and counted as dropped) when the queue stays full."""
        try:
            self._queue.put(envelope, timeout=self.put_timeout)
        except queue.Full:
            self.stats.dropped += 1
            log.warning("simulator webhooks: queue full, dropped a %s event", envelope.get("event"))
            return False
        self.stats.events += 1
        return True

    def _render(self, account: Account, event: str, message_ids: list[str]) -> list[Json]:
        out: list[Json] = []
        with account.lock:
            renderer = shapes.Renderer(account)
            if event == "message.any":
                rows = [account.find_message(mid) for mid in message_ids]
                found = np.array([r for r in rows if r is not None], dtype=np.int64)
                for msg in renderer.messages(found, False, ""):
                    if "message.any" in self.events:
                        out.append(self.envelope(account, "message.any", msg))
                    if "message" in self.events and not msg.get("fromMe"):
                        out.append(self.envelope(account, "message", copy.deepcopy(msg)))
                return out
            if event not in self.events:
                return out
            for mid in message_ids:
                row = _row_any(account, mid)
                if row is None:
                    continue
                msg = renderer.messages(np.array([row], dtype=np.int64), False, "")[0]
                payload = _payload(account, event, msg, mid, self._id_rng)
                if payload is not None:
                    out.append(self.envelope(account, event, payload))
        return out

    # ------------------------------------------------------------ delivery

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is _STOP:
                        return
                    self._deliver(client, item)
                except Exception:
                    log.exception("simulator webhooks: delivery failed")
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, envelope: Json) -> None:
        body = dumps(envelope)
        self.stats.by_event[envelope["event"]] += 1
        if self._post(client, body):
            self.delivered_ids.append(envelope["id"])
        if self.redelivery_rate and self._rng.random() < self.redelivery_rate:
            self.stats.redelivered += 1
            self._post(client, body)
        if self.reissue_rate and self._rng.random() < self.reissue_rate:
            self.stats.reissued += 1
            again = {**envelope, "id": event_id(), "timestamp": int(time.time() * 1000)}
            self._post(client, dumps(again))

    def _post(self, client: httpx.Client, body: bytes) -> bool:
        for attempt in range(1, self.attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"WAHA/{shapes.WAHA_VERSION}",
                "X-Webhook-Request-Id": "req_" + uuid.uuid4().hex,
                "X-Webhook-Timestamp": str(int(time.time() * 1000)),
            }
            if self.hmac_key:
                headers["X-Webhook-Hmac"] = sign(body, self.hmac_key)
                headers["X-Webhook-Hmac-Algorithm"] = "sha512"
            self.stats.posts += 1
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError:
                status = None
            else:
                status = response.status_code
                self.stats.by_status[status] += 1
                if 200 <= status < 300:
                    self.stats.delivered += 1
                    return True
            if attempt < self.attempts:
                self.stats.retries += 1
                time.sleep(self.retry_delay * attempt)
        self.stats.failed += 1
        log.warning("simulator webhooks: gave up after %d attempt(s) (last status %s)", self.attempts, status)
        return False


def _row_any(account: Account, message_id: str) -> int | None:
    """Row of a message by serialized id, revoked ones included (they are no longer served)."""
    row = account.find_message(message_id)
    if row is not None:
        return row
    parts = message_id.split("_")
    if len(parts) < 3:
        return None
    keys = account.col("key")
    for candidate in np.flatnonzero(keys == parts[2].encode()).tolist():
        if account.message_id(candidate) == message_id:
            return int(candidate)
    return None


def _action_id(message_id: str, rng: random.Random) -> str:
    """The serialized id of a protocol message (edit/revoke action) in the same chat, by the same
    sender: a new key id in place of the original's."""
    parts = message_id.split("_")
    parts[2] = "3EB0" + "".join(rng.choice("0123456789ABCDEF") for _ in range(16))
    return "_".join(parts)


def _payload(account: Account, event: str, msg: Json, message_id: str, rng: random.Random) -> Json | None:
    key = message_id.split("_")[2]
    now = int(time.time())
    if event == "message.ack":
        fields = ("id", "from", "to", "participant", "fromMe", "ack", "ackName")
        return {name: msg[name] for name in fields if name in msg}
    if event == "message.edited":
        edit = dict(msg)
        edit["id"] = _action_id(message_id, rng)
        edit["timestamp"] = now
        edit["editedMessageId"] = key
        return edit
    if event == "message.revoked":
        after = dict(msg)
        after["id"] = _action_id(message_id, rng)
        after["timestamp"] = now
        after["body"] = None if account.engine != "WEBJS" else ""
        after["hasMedia"] = False
        after["media"] = None
        after["_data"] = {}
        before = msg if account.engine == "WEBJS" else None
        return {"after": after, "before": before, "revokedMessageId": key, "_data": {}}
    return None


__all__ = ["DEFAULT_EVENTS", "WebhookEmitter", "WebhookStats", "dumps", "event_id", "sign", "ulid"]
