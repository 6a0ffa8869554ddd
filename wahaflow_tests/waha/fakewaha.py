"""A tiny purpose-built WAHA for the client's tests, served over real HTTP (uvicorn in a thread).

It reproduces exact engine behaviours that are hard to trigger otherwise: same-second ties in an
unstable order, WEBJS (ignores `sortOrder`, loads history from the phone in batches, short pages
without `filter.timestamp.gte`), servers that ignore the filters (2024.10.8) or the order, messages
arriving or being revoked while a client pages, and scripted faults (status codes with WAHA's error
bodies, `Retry-After`, truncated JSON, slow responses, dropped connections).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ME = "14155550100@c.us"

NOT_WORKING_422 = {
    "error": "Session status is not as expected. Try again later or restart the session",
    "session": "default",
    "status": "STARTING",
    "expected": ["WORKING"],
}
NOT_IMPLEMENTED_422 = {
    "message": "The method is not implemented by the engine. Can not get messages from 'all' in WEBJS",
    "error": "Unprocessable Entity",
    "statusCode": 422,
}
ENGINE_500 = {
    "statusCode": 500,
    "timestamp": "2024-10-01T01:17:01.512Z",
    "exception": {"message": "2 UNKNOWN: info query timed out", "code": 2, "name": "Error"},
    "request": {"path": "/api/default/chats", "method": "GET", "body": {}, "query": {}},
    "version": {"version": "2026.7.1", "engine": "GOWS", "tier": "CORE"},
}
UNAUTHORIZED_401 = {"message": "Unauthorized", "statusCode": 401}
SESSION_404 = {
    "message": (
        "We didn't find a session with name 'sales'.\n"
        "Please start it first by using POST /api/sessions/sales/start request"
    ),
    "error": "Not Found",
    "statusCode": 404,
}


def message(chat_id: str, key: str, ts: float, *, from_me: bool = False, body: str | None = None) -> dict:
    """A WAMessage (NOWEB-ish 1:1 shape) for the fake store."""
    return {
        "id": f"{'true' if from_me else 'false'}_{chat_id}_{key}",
        "timestamp": ts,
        "from": chat_id,
        "fromMe": from_me,
        "source": "app",
        "body": body if body is not None else f"text {key}",
        "hasMedia": False,
        "media": None,
        "ack": 3 if from_me else None,
        "ackName": "READ" if from_me else "UNKNOWN",
        "location": None,
        "vCards": [],
        "replyTo": None,
        "_data": {"key": {"remoteJid": chat_id, "fromMe": from_me, "id": key}, "pushName": "Peer"},
    }


@dataclass
class Fault:
    """One scripted fault, applied to the next request whose path contains `match`."""

    kind: str  # "status" | "truncate" | "slow" | "drop" | "close" | "not_array"
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    match: str = ""


@dataclass
class Seen:
    """A request as the server saw it."""

    path: str  # decoded
    raw_path: str  # as sent (percent-encoding intact)
    params: dict[str, str]
    headers: dict[str, str]
    client: tuple[str, int] | None


class FakeWaha:
    """The fake server's state. `mode` picks the messages endpoint's behaviour:

    - "waha": filters, sort (ties in random order on every request), offset, limit (NOWEB/GOWS 2026);
    - "webjs": ignores sortBy/sortOrder (always newest first); history is loaded from the "phone" in
      batches of `webjs_batch`; without `gte` (or gte=0) only one more batch is loaded per request, so
      pages come back short before the end;
    - "ignore_filters": like 2024.10.8: newest first, `limit` only (no filters, no offset);
    - "asc": honours filters and limit but always returns oldest first.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.mode = "waha"
            self.api_key: str | None = None
            self.chats: dict[str, list[dict]] = {}
            self.chat_items: list[Any] = []
            self.contact_items: list[Any] = []
            self.lid_items: list[Any] = []
            self.faults: list[Fault] = []
            self.seen: list[Seen] = []
            self.on_messages: Callable[[FakeWaha, str, dict[str, str]], None] | None = None
            self.webjs_batch = 50
            self.webjs_loaded: dict[str, int] = {}
            self.latency = 0.0
            self.in_flight = 0
            self.max_in_flight = 0
            self.list_mode = "waha"  # or "ignore_paging" (returns everything, ignores limit/offset)
            self.overview_default_limit = 20
            self.raw_messages: dict[str, bytes] = {}  # chat -> raw body served as is

    # ----------------------------------------------------------------------------------------------

    def requests_to(self, fragment: str) -> list[Seen]:
        return [s for s in self.seen if fragment in s.path]

    async def app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw_path = scope.get("raw_path", b"").decode() or scope["path"]
        with self.lock:
            self.seen.append(
                Seen(
                    path=scope["path"],
                    raw_path=raw_path,
                    params=dict(request.query_params),
                    headers=dict(request.headers),
                    client=scope.get("client"),
                )
            )
            fault = next((f for f in self.faults if f.match in scope["path"]), None)
            if fault is not None:
                self.faults.remove(fault)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault is not None:
                handled = await self._fault(fault, send)
                if handled:
                    return
            response = self._route(request)
            await response(scope, receive, send)
        finally:
            with self.lock:
                self.in_flight -= 1

    async def _fault(self, fault: Fault, send: Callable) -> bool:
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return False
        if fault.kind == "status":
            body = json.dumps(fault.body if fault.body is not None else {}).encode()
            headers = [(b"content-type", b"application/json")]
            headers += [(k.encode(), v.encode()) for k, v in fault.headers.items()]
            await send({"type": "http.response.start", "status": fault.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return True
        if fault.kind == "truncate":
            body = b'[{"id":"false_1@c.us_X","timestamp":17277'
            await _send_ok(send, body)
            return True
        if fault.kind == "not_array":
            await _send_ok(send, b'{"message":"pong"}')
            return True
        if fault.kind == "drop":  # headers promise 1000 bytes, 10 arrive, then the connection dies
            headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b'[{"id":"x"', "more_body": True})
            raise ConnectionResetError("dropped on purpose")
        if fault.kind == "close":  # no response at all
            raise ConnectionResetError("closed on purpose")
        raise ValueError(fault.kind)

    def _route(self, request: Request) -> Response:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return JSONResponse(UNAUTHORIZED_401, status_code=401)
        parts = [unquote(p) for p in request.url.path.strip("/").split("/")]
        params = dict(request.query_params)
        match parts:
            case ["api", "server", "version"]:
                return JSONResponse({"version": "2026.7.1", "engine": "NOWEB", "tier": "CORE"})
            case ["api", "sessions", name]:
                if name != "default":
                    return JSONResponse(SESSION_404, status_code=404)
                return JSONResponse(
                    {"name": "default", "status": "WORKING", "me": {"id": ME, "pushName": "Acme Support"}}
                )
            case ["api", "contacts", "all"]:
                return self._list(self.contact_items, params)
            case ["api", session, *_] if session != "default":
                return JSONResponse(SESSION_404, status_code=404)
            case ["api", _, "chats"]:
                return self._list(self.chat_items, params)
            case ["api", _, "chats", "overview"]:
                return self._list(self.chat_items, {"limit": self.overview_default_limit, **params})
            case ["api", _, "lids"]:
                return self._list(self.lid_items, params)
            case ["api", _, "chats", chat_id, "messages"]:
                return self._messages(chat_id, params)
        return JSONResponse({"message": "Cannot GET", "statusCode": 404}, status_code=404)

    def _list(self, items: list[Any], params: dict[str, Any]) -> Response:
        if self.list_mode == "ignore_paging":
            return JSONResponse(items)
        offset = int(params.get("offset", 0) or 0)
        limit = params.get("limit")
        end = None if limit is None else offset + int(float(limit))
        return JSONResponse(items[offset:end])

    def _messages(self, chat_id: str, params: dict[str, str]) -> Response:
        if chat_id in self.raw_messages:
            return Response(self.raw_messages[chat_id], media_type="application/json")
        if self.on_messages is not None:
            self.on_messages(self, chat_id, params)
        with self.lock:
            stored = list(self.chats.get(chat_id, []))
        limit = int(float(params.get("limit", 10)))
        offset = int(float(params.get("offset", 0) or 0))
        gte = float(params["filter.timestamp.gte"]) if "filter.timestamp.gte" in params else None
        lte = float(params["filter.timestamp.lte"]) if "filter.timestamp.lte" in params else None

        def window(msgs: list[dict]) -> list[dict]:
            return [
                m
                for m in msgs
                if (gte is None or m["timestamp"] >= gte) and (lte is None or m["timestamp"] <= lte)
            ]

        newest_first = sorted(stored, key=lambda m: (-m["timestamp"], random.random()))
        if self.mode == "ignore_filters":
            return JSONResponse(newest_first[:limit])
        if self.mode == "asc":
            return JSONResponse(list(reversed(window(newest_first)))[offset : offset + limit])
        if self.mode == "webjs":
            with self.lock:
                loaded = self.webjs_loaded.get(chat_id, self.webjs_batch)
                while True:
                    in_window = window(newest_first[:loaded])
                    if len(in_window) >= offset + limit or loaded >= len(newest_first):
                        break
                    oldest = newest_first[loaded - 1]["timestamp"] if loaded else None
                    if not gte:  # missing or 0 -> +Infinity: one more batch, then stop
                        loaded += self.webjs_batch
                        break
                    if oldest is not None and oldest < gte:
                        break
                    loaded += self.webjs_batch
                self.webjs_loaded[chat_id] = loaded
            # stable sort of what is loaded, newest first; sortOrder ignored
            in_window = window(sorted(newest_first[:loaded], key=lambda m: -m["timestamp"]))
            return JSONResponse(in_window[offset : offset + limit])
        order = params.get("sortOrder", "desc")
        result = window(newest_first)
        if order == "asc":
            result = list(reversed(result))
        return JSONResponse(result[offset : offset + limit])


async def _send_ok(send: Callable, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServerThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app: Callable) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, interface="asgi3", lifespan="off", log_level="critical", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
