"""The simulator's HTTP surface: a Starlette app serving WAHA's 2026 API for one or more accounts.

`create_app(accounts, config, stats)` builds it. Every request goes through `Simulator.handle`:
count it, check the API key, add latency, then for data routes resolve the WAHA session (404
unknown/stopped, 422 not working), maybe inject a fault, run the handler under the account's lock
and answer with orjson. Handlers only slice precomputed per-chat orders (see `queries.py`), so a
request costs well under a millisecond of CPU for ordinary pages.

Routes (path ids arrive URL-decoded; a NOWEB chat may be named `@c.us` or `@s.whatsapp.net`):
`GET /ping`, `/health`, `/api/server/version`, `/api/version`; `GET /api/sessions[?all=true]`,
`/api/sessions/{session}`, `/api/sessions/{session}/me`; `GET /api/{session}/chats`;
`GET|POST /api/{session}/chats/overview`; `GET /api/{session}/chats/{chatId}/messages` (`chatId=all`
on NOWEB/GOWS); `GET /api/{session}/chats/{chatId}/messages/{messageId}`; deprecated
`GET /api/messages?session=&chatId=`; `GET /api/contacts/all?session=`, `GET /api/contacts?contactId=`,
`GET /api/{session}/contacts/{id}`; `GET /api/{session}/lids`, `/lids/count`, `/lids/{lid}`,
`/lids/pn/{phoneNumber}`.

Webhooks (the simulator POSTing events) are not built yet; the seam is `Account.subscribe`, which
reports every mutation with its WAHA event name, so an emitter can render and POST the payloads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from wahaflow.simulator import errors, queries
from wahaflow.simulator.account import Account
from wahaflow.simulator.config import ServerConfig, Stats
from wahaflow.simulator.params import Query, body_errors
from wahaflow.simulator.shapes import Renderer, environment, me_info, session_info

Result = tuple[int, Any]
Handler = Callable[["Simulator", Request, Account, Query], Result]
ConnectionCloser = Callable[[Scope], Awaitable[bool]]

_MESSAGE_SORT = ("timestamp", "messageTimestamp")
_ORDER = ("desc", "asc")


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


class _Disconnect(Response):
    """Closes the client's connection without sending anything (needs the server's closer)."""

    def __init__(self, closer: ConnectionCloser | None) -> None:
        self.closer = closer
        self.status_code = 0
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.closer is not None and await self.closer(scope):
            return
        # fallback: promise a body and never send it; the server then drops the connection
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})


class Simulator:
    """Shared state of the app: accounts by WAHA session name, knobs, counters, engine state."""

    def __init__(self, accounts: Iterable[Account], config: ServerConfig, stats: Stats) -> None:
        self.accounts: dict[str, Account] = {a.waha_session: a for a in accounts}
        if not self.accounts:
            raise ValueError("the simulator needs at least one account")
        self.config = config
        self.stats = stats
        self.renderers = {name: Renderer(a) for name, a in self.accounts.items()}
        self.webjs = {name: queries.WebjsState() for name in self.accounts}
        self.connection_closer: ConnectionCloser | None = None
        self._chat_orders: dict[tuple[str, int, str | None, bool], list[int]] = {}

    @property
    def engine(self) -> str:
        return next(iter(self.accounts.values())).engine

    def reset_engine_state(self) -> None:
        """Forget what the WEBJS browser has loaded (a fresh WAHA start)."""
        for state in self.webjs.values():
            state.reset()

    # ------------------------------------------------------------ request pipeline

    def _authorized(self, request: Request) -> bool:
        key = self.config.api_key
        if not key or request.scope["path"] in self.config.auth_exclude:
            return True
        given = request.headers.get("x-api-key") or request.query_params.get("x-api-key")
        return given == key

    async def _working(self, name: str) -> Account:
        account = self.accounts.get(name)
        status = self.config.session_status
        if account is None or status == "STOPPED":
            raise errors.session_not_found(name)
        if status != "WORKING":
            deadline = time.monotonic() + self.config.status_wait_seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(min(0.1, self.config.status_wait_seconds))
                if self.config.session_status == "WORKING":
                    return account
            raise errors.session_not_working(name, self.config.session_status)
        return account

    async def handle(self, request: Request, route: str, handler: Handler, data: bool) -> Response:
        stats, cfg = self.stats, self.config
        stats.total += 1
        stats.by_route[route] += 1
        fault = None
        try:
            if not self._authorized(request):
                raise errors.unauthorized()
            if cfg.latency_ms > 0:
                await asyncio.sleep(cfg.latency_ms / 1000)
            session = request.path_params.get("session") or request.query_params.get("session") or "default"
            account = await self._working(session) if data else self.accounts.get(session)
            if data:
                fault = cfg.draw_fault(route)
                if fault is not None:
                    stats.faults[fault] += 1
                    response = await self._fault(fault, request)
                    if response is not None:
                        stats.by_status[response.status_code] += 1
                        return response
            if request.method == "POST":
                try:
                    request.state.body = orjson.loads(await request.body() or b"null")
                except orjson.JSONDecodeError:
                    raise errors.bad_request(["Unexpected token in JSON"]) from None
            query = Query(request.query_params)
            if account is None:
                account = next(iter(self.accounts.values()))
            with account.lock:
                status, body = handler(self, request, account, query)
                content = orjson.dumps(body)
            if fault == "truncated":
                content = content[: max(1, len(content) // 2)]
            response = Response(content, status, media_type="application/json")
        except errors.WahaError as exc:
            response = _json(exc.status, exc.body, exc.headers)
        except queries.EngineCrash as exc:
            response = self._internal(request, str(exc))
        except Exception as exc:  # an unexpected bug still answers like WAHA would
            response = self._internal(request, f"{type(exc).__name__}: {exc}")
        stats.by_status[response.status_code] += 1
        return response

    def _internal(self, request: Request, message: str) -> Response:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        exc = errors.internal(self.engine, path, request.method, dict(request.query_params), message)
        return _json(exc.status, exc.body)

    async def _fault(self, fault: str, request: Request) -> Response | None:
        """The response of an injected fault, or None to answer normally (slow, truncated)."""
        if fault == "slow":
            await asyncio.sleep(self.config.slow_seconds)
            return None
        if fault == "truncated":
            return None
        if fault == "disconnect":
            return _Disconnect(self.connection_closer)
        if fault == "500":
            return self._internal(request, "2 UNKNOWN: info query timed out")
        exc = errors.too_many_requests() if fault == "429" else None
        if fault == "422":
            name = request.path_params.get("session") or request.query_params.get("session") or "default"
            exc = errors.session_not_working(name, "STARTING")
        assert exc is not None
        return _json(exc.status, exc.body, exc.headers)

    def _cached(
        self, account: Account, kind: str | None, desc: bool, build: Callable[[], list[int]]
    ) -> list[int]:
        """A chat order, rebuilt only after the account changed."""
        key = (account.waha_session, account.version, kind, desc)
        chats = self._chat_orders.get(key)
        if chats is None:
            if len(self._chat_orders) > 32:
                self._chat_orders.clear()
            chats = self._chat_orders[key] = build()
        return chats

    # ------------------------------------------------------------ handlers

    def ping(self, request: Request, account: Account, q: Query) -> Result:
        return 200, {"message": "pong"}

    def health(self, request: Request, account: Account, q: Query) -> Result:
        up = {"metadata": {"status": "up"}}
        return 200, {"status": "ok", "info": up, "error": {}, "details": up}

    def version(self, request: Request, account: Account, q: Query) -> Result:
        return 200, environment(self.engine)

    def sessions(self, request: Request, account: Account, q: Query) -> Result:
        show_all = q.boolean("all", False)
        q.check()
        status = self.config.session_status
        if status == "STOPPED" and not show_all:
            return 200, []
        return 200, [session_info(a, status) for a in self.accounts.values()]

    def session(self, request: Request, account: Account, q: Query) -> Result:
        found = self.accounts.get(request.path_params["session"])
        if found is None:
            raise errors.session_info_not_found()
        return 200, session_info(found, self.config.session_status)

    def me(self, request: Request, account: Account, q: Query) -> Result:
        found = self.accounts.get(request.path_params["session"])
        if found is None:
            raise errors.session_info_not_found()
        return 200, me_info(found) if self.config.session_status == "WORKING" else None

    def chats(self, request: Request, account: Account, q: Query) -> Result:
        limit, offset = q.count("limit"), q.count("offset")
        sort_by = q.choice("sortBy", ("conversationTimestamp", "id", "name"))
        order = q.choice("sortOrder", _ORDER)
        q.boolean("merge", True)
        q.check()
        desc = order == "desc"
        chats = self._cached(account, sort_by, desc, lambda: queries.sorted_chats(account, sort_by, desc))
        render = self.renderers[account.waha_session]
        return 200, render.chats(queries.page(chats, offset, limit))

    def overview(self, request: Request, account: Account, q: Query) -> Result:
        if request.method == "POST":
            body = request.state.body
            problems = body_errors(body)
            if problems:
                raise errors.bad_request(problems)
            pagination = body["pagination"]
            limit, offset = pagination.get("limit", 20), pagination.get("offset")
            ids = (body.get("filter") or {}).get("ids")
            status = 201
        else:
            limit, offset = q.count("limit", 20), q.count("offset")
            ids = q.strings("ids")
            q.boolean("merge", True)
            q.check()
            status = 200
        if ids:
            chats = queries.overview_chats(account, ids)
        else:
            chats = self._cached(account, "overview", False, lambda: queries.overview_chats(account, None))
        render = self.renderers[account.waha_session]
        limit = int(limit) if limit is not None else None
        offset = int(offset) if offset is not None else None
        return status, render.chat_summaries(queries.page(chats, offset, limit))

    def _message_query(self, q: Query) -> tuple[queries.MessageQuery, bool]:
        ack = q.ack()
        mq = queries.MessageQuery(
            limit=q.count("limit", 10),
            offset=q.count("offset", 0) or 0,
            desc=q.choice("sortOrder", _ORDER, "desc") == "desc",
            gte=q.number("filter.timestamp.gte"),
            lte=q.number("filter.timestamp.lte"),
            from_me=q.boolean("filter.fromMe"),
            ack=ack,
        )
        q.choice("sortBy", _MESSAGE_SORT, "timestamp")
        download = q.boolean("downloadMedia", True)
        q.boolean("merge", True)
        q.check()
        return mq, bool(download)

    def messages(self, request: Request, account: Account, q: Query) -> Result:
        chat_id = request.path_params.get("chatId") or q.text("chatId")
        if not chat_id:
            raise errors.bad_request(["chatId should not be empty", "chatId must be a string"])
        mq, download = self._message_query(q)
        base = str(request.base_url).rstrip("/")
        render = self.renderers[account.waha_session]
        if chat_id == "all":
            if account.engine == "WEBJS":
                raise errors.not_implemented("Can not get messages from 'all' in WEBJS")
            self._arrivals(account, None)
            return 200, render.messages(
                queries.store_messages(account, account.all_rows(), mq), download, base
            )
        c = account.chat_index(chat_id)
        if c is None:
            if account.engine == "WEBJS":
                raise queries.EngineCrash(
                    "Evaluation failed: TypeError: Cannot read properties of undefined (reading 'msgs')"
                )
            return 200, []
        self._arrivals(account, account.chats.chat_id[c])
        if account.engine == "WEBJS":
            cfg = self.config
            state = self.webjs[account.waha_session]
            rows = queries.webjs_messages(
                account, c, mq, state, cfg.webjs_batch, cfg.webjs_initial_loaded, cfg.webjs_empty_batch_error
            )
        else:
            rows = queries.store_messages(account, account.chat_rows(c), mq)
        return 200, render.messages(rows, download, base)

    def _arrivals(self, account: Account, chat_id: str | None) -> None:
        n = self.config.draw_arrivals()
        if n:
            account.add_messages(n, chat_ids=[chat_id] if chat_id else None)
            self.stats.arrivals += n

    def message(self, request: Request, account: Account, q: Query) -> Result:
        download = q.boolean("downloadMedia", True)
        q.boolean("merge", True)
        q.check()
        chat_id, message_id = request.path_params["chatId"], request.path_params["messageId"]
        chat = None if chat_id == "all" or account.engine == "WEBJS" else account.chat_index(chat_id)
        if chat is None and chat_id != "all" and account.engine != "WEBJS":
            raise errors.message_not_found()
        row = account.find_message(message_id, chat)
        if row is None:
            raise errors.message_not_found()
        base = str(request.base_url).rstrip("/")
        return 200, self.renderers[account.waha_session].messages(_one(row), bool(download), base)[0]

    def contacts_all(self, request: Request, account: Account, q: Query) -> Result:
        limit, offset = q.count("limit"), q.count("offset")
        sort_by = q.choice("sortBy", ("id", "name"))
        order = q.choice("sortOrder", _ORDER)
        q.check()
        entries = queries.sorted_contacts(account, sort_by, order == "desc")
        render = self.renderers[account.waha_session]
        return 200, [render.contact(e) for e in queries.page(entries, offset, limit)]

    def contact(self, request: Request, account: Account, q: Query) -> Result:
        contact_id = request.path_params.get("contactId") or q.text("contactId")
        if not contact_id:
            raise errors.bad_request(["contactId should not be empty", "contactId must be a string"])
        wanted = contact_id if "@" in contact_id else f"{contact_id}@c.us"
        wanted = wanted.replace("@s.whatsapp.net", "@c.us")
        render = self.renderers[account.waha_session]
        for entry in account.contacts():
            if entry.contact_id == wanted:
                return 200, render.contact(entry)
        if account.engine == "NOWEB":
            return 200, None
        return 200, {"id": wanted, "number": wanted.split("@")[0], "isMyContact": False}

    def lids(self, request: Request, account: Account, q: Query) -> Result:
        limit, offset = q.count("limit", 100), q.count("offset", 0)
        q.check()
        return 200, [{"lid": lid, "pn": pn} for lid, pn in queries.page(account.lids(), offset, limit)]

    def lids_count(self, request: Request, account: Account, q: Query) -> Result:
        return 200, {"count": len(account.lids())}

    def lid(self, request: Request, account: Account, q: Query) -> Result:
        lid = request.path_params["lid"]
        lid = lid if "@" in lid else f"{lid}@lid"
        return 200, {"lid": lid, "pn": account.pn_of_lid(lid)[1]}

    def lid_pn(self, request: Request, account: Account, q: Query) -> Result:
        phone = request.path_params["phoneNumber"]
        pn = phone if "@" in phone else f"{phone}@c.us"
        pn = pn.replace("@s.whatsapp.net", "@c.us")
        return 200, {"lid": account.lid_of_pn(pn), "pn": pn}


def _one(row: int) -> np.ndarray:
    return np.array([row], dtype=np.int64)


_ROUTES: tuple[tuple[str, str, Handler, bool, tuple[str, ...]], ...] = (
    ("/ping", "ping", Simulator.ping, False, ("GET",)),
    ("/health", "health", Simulator.health, False, ("GET",)),
    ("/api/server/version", "version", Simulator.version, False, ("GET",)),
    ("/api/version", "version", Simulator.version, False, ("GET",)),
    ("/api/sessions", "sessions", Simulator.sessions, False, ("GET",)),
    ("/api/sessions/{session}", "session", Simulator.session, False, ("GET",)),
    ("/api/sessions/{session}/me", "me", Simulator.me, False, ("GET",)),
    ("/api/messages", "messages_legacy", Simulator.messages, True, ("GET",)),
    ("/api/contacts/all", "contacts_all", Simulator.contacts_all, True, ("GET",)),
    ("/api/contacts", "contact", Simulator.contact, True, ("GET",)),
    ("/api/{session}/chats", "chats", Simulator.chats, True, ("GET",)),
    ("/api/{session}/chats/overview", "overview", Simulator.overview, True, ("GET", "POST")),
    ("/api/{session}/chats/{chatId}/messages", "messages", Simulator.messages, True, ("GET",)),
    ("/api/{session}/chats/{chatId}/messages/{messageId}", "message", Simulator.message, True, ("GET",)),
    ("/api/{session}/contacts/{contactId}", "contact", Simulator.contact, True, ("GET",)),
    ("/api/{session}/lids", "lids", Simulator.lids, True, ("GET",)),
    ("/api/{session}/lids/count", "lids_count", Simulator.lids_count, True, ("GET",)),
    ("/api/{session}/lids/pn/{phoneNumber}", "lid_pn", Simulator.lid_pn, True, ("GET",)),
    ("/api/{session}/lids/{lid}", "lid", Simulator.lid, True, ("GET",)),
)


def create_app(
    accounts: Account | Iterable[Account], config: ServerConfig | None = None, stats: Stats | None = None
) -> Starlette:
    """The simulator's ASGI app; `app.state.simulator` is its `Simulator`."""
    accounts = [accounts] if isinstance(accounts, Account) else list(accounts)
    sim = Simulator(accounts, config or ServerConfig(), stats or Stats())

    def endpoint(route: str, handler: Handler, data: bool) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            return await sim.handle(request, route, handler, data)

        return serve

    routes = [
        Route(path, endpoint(name, handler, data), methods=list(methods), name=f"{name}:{path}")
        for path, name, handler, data, methods in _ROUTES
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        sim.stats.total += 1
        sim.stats.by_route["unknown"] += 1
        sim.stats.by_status[404] += 1
        body = errors.route_not_found(request.method, request.url.path)
        return _json(body.status, body.body)

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.simulator = sim
    return app
