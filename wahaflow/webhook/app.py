"""The webhook receiver: a Starlette app with `POST /webhooks/waha` and `GET /health`.

Answers (design.md §5 rule 11), checked in this order:

- 413 when the body is over `max_body_bytes` (1 MiB): `Content-Length` is checked first, and
  reading stops as soon as the body passes the limit; nothing is stored;
- 401 when an HMAC key is configured and `X-Webhook-Hmac` is missing or is not the hex HMAC-SHA512
  of the raw body (compared with `hmac.compare_digest`); nothing is stored;
- 400 when the body is not JSON or not a WAHA event envelope (`inbox.parse_event`); logged with
  its length and the reason only, never its content;
- 200 `{"status": "stored" | "duplicate", "event_id": ...}` once the event is committed to the inbox
  (a replay is a duplicate: stored once, answered 200 all the same);
- 503 when the inbox cannot commit (database down, queue full): WAHA retries later.

The handler does nothing else: applying events is the chunk runs' job (wahaflow/webhook/apply.py).
Neither the HMAC key nor the database URL is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from wahaflow.webhook.inbox import MAX_BODY_BYTES, GroupCommitter, InboxUnavailable, InvalidEvent, parse_event

log = logging.getLogger("wahaflow.webhook")

WEBHOOK_PATH = "/webhooks/waha"
HMAC_HEADER = b"x-webhook-hmac"


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def sign(body: bytes, key: str | bytes) -> str:
    """Hex HMAC-SHA512 of `body` with `key`: WAHA's `X-Webhook-Hmac`."""
    raw_key = key.encode("utf-8") if isinstance(key, str) else key
    return hmac.new(raw_key, body, hashlib.sha512).hexdigest()


class Receiver:
    """`POST /webhooks/waha` as a plain ASGI endpoint (no Request/Response objects: this path is the
    hot one), and `GET /health`."""

    def __init__(self, committer: GroupCommitter, hmac_key: str | None, max_body_bytes: int) -> None:
        self.committer = committer
        self._key = hmac_key.encode("utf-8") if hmac_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received_at = datetime.now(UTC)
        declared: bytes | None = None
        given: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == HMAC_HEADER:
                given = value
        status, answer = await self._handle(receive, declared, given, received_at)
        if status == 0:  # the client went away
            return
        payload = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _read_body(self, receive: Receive, declared: bytes | None) -> bytes | None:
        """The raw body; None as soon as it is known to be over the limit."""
        limit = self.max_body_bytes
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _signed(self, body: bytes, given: bytes | None) -> bool:
        if self._key is None:
            return True
        if not given:
            return False
        expected = hmac.new(self._key, body, hashlib.sha512).hexdigest().encode("ascii")
        return hmac.compare_digest(expected, given.strip().lower())

    async def _handle(
        self, receive: Receive, declared: bytes | None, given: bytes | None, received_at: datetime
    ) -> tuple[int, dict[str, Any]]:
        try:
            body = await self._read_body(receive, declared)
        except _Disconnected:
            return 0, {}
        if body is None:
            log.warning("webhook refused: body over %d bytes (413)", self.max_body_bytes)
            return 413, {"error": f"body over {self.max_body_bytes} bytes"}
        if not self._signed(body, given):
            log.warning("webhook refused: missing or wrong X-Webhook-Hmac (401, %d bytes)", len(body))
            return 401, {"error": "missing or invalid X-Webhook-Hmac"}
        try:
            event = parse_event(body, received_at)
        except InvalidEvent as exc:
            log.warning("webhook refused: %s (400, %d bytes)", exc, len(body))
            return 400, {"error": str(exc)}
        try:
            inserted = await self.committer.store(event)
        except InboxUnavailable as exc:
            log.warning("webhook not stored: %s (503)", exc)
            return 503, {"error": "inbox unavailable, retry later"}
        return 200, {"status": "stored" if inserted else "duplicate", "event_id": event.event_id}

    async def health(self, request: Request) -> Response:
        running = self.committer.running
        body = {"status": "ok" if running else "starting", "queued": self.committer.queued}
        return _json(200 if running else 503, body)


class _Disconnected(Exception):
    pass


class ReceiverApp(Starlette):
    """Starlette, with `POST /webhooks/waha` dispatched straight to the receiver: the hot path skips
    the middleware stack and the router (the other routes, 404/405 and lifespan go through them)."""

    receiver: Receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == WEBHOOK_PATH:
            await self.receiver(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    database_url: str,
    schema: str,
    *,
    hmac_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    migrate: bool = True,
    writers: int = 2,
    max_batch: int = 256,
) -> ReceiverApp:
    """The receiver app. At startup (ASGI lifespan) it migrates `schema` (unless `migrate=False`) and
    opens the inbox's connection pool; at shutdown it commits what is queued and closes the pool.

    `app.state.receiver.committer.stats` counts batches and events (for benchmarks).
    """
    committer = GroupCommitter(database_url, schema, writers=writers, max_batch=max_batch)
    receiver = Receiver(committer, hmac_key, max_body_bytes)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            from wahaflow.warehouse.migrations import ensure_migrated

            await asyncio.to_thread(ensure_migrated, database_url, schema)
        await committer.start()
        try:
            yield
        finally:
            await committer.close()

    app = ReceiverApp(
        routes=[
            Route(WEBHOOK_PATH, receiver, methods=["POST"]),
            Route("/health", receiver.health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.receiver = receiver
    app.state.receiver = receiver
    return app


def app_from_settings() -> ReceiverApp:
    """The receiver configured from the environment (design.md §3): `WAHAFLOW_DATABASE_URL` (else the
    embedded Postgres), `WAHAFLOW_SCHEMA`, `WAHAFLOW_WEBHOOK_HMAC_KEY`. A uvicorn factory."""
    from wahaflow.settings import get_settings
    from wahaflow.warehouse.embedded import database_url

    settings = get_settings()
    key = settings.webhook_hmac_key.get_secret_value() if settings.webhook_hmac_key else None
    return create_app(database_url(settings), settings.db_schema, hmac_key=key or None)
