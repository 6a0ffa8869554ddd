"""`WahaClient`: one pooled `httpx.AsyncClient`, bounded concurrency, bounded retries, typed errors.

Every request goes through `WahaClient.get`:

- the API key travels only in the `X-Api-Key` header (never in a URL, a log line, a repr or an error);
- at most `concurrency` requests are in flight (an `asyncio.Semaphore`; backoff sleeps hold no slot),
  over keep-alive connections (`transport.StreamTransport`: httpx's API, a far cheaper connection
  layer than httpcore's pool; CPU per request is what limits an import of many small chats);
- each attempt must complete (headers and body) within `timeout` seconds;
- failures worth retrying (429, 408, 5xx, timeouts, dropped connections, broken or truncated JSON,
  422 "Session status is not as expected") are retried with exponential backoff and jitter, or after
  the server's `Retry-After`, bounded by `max_attempts` AND `max_retry_seconds`; then `WahaUnavailable`;
- 401/403 raise `WahaAuthError` at once, a 404 for the session `WahaSessionNotFound`, other 404
  `WahaNotFound`, other 4xx `WahaRequestError`: never retried;
- the response body is parsed inside the retry loop, so a body that does not parse is retried too;
  the first attempt skips the retry machinery (tenacity) entirely, which only starts after a failure;
- a finished request's slot goes to the next waiting request before its body is parsed; bodies over
  256 KB are parsed in a worker thread, one at a time, and a body is freed as soon as it is parsed.

`stats` counts requests sent, retries and bytes received, for run metadata and benchmarks.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
)

from wahaflow.waha.errors import (
    WahaAuthError,
    WahaEmptyWindowCrash,
    WahaError,
    WahaNotFound,
    WahaRequestError,
    WahaSessionNotFound,
    WahaTransientError,
    WahaUnavailable,
)
from wahaflow.waha.ids import normalize_id, path_segment, serialized_id
from wahaflow.waha.normalize import dump_payload, loads, loads_array, loads_object
from wahaflow.waha.transport import StreamTransport

if TYPE_CHECKING:
    import polars as pl

    from wahaflow.settings import Settings
    from wahaflow.waha.paging import ChatMessages, Window

log = logging.getLogger(__name__)

T = TypeVar("T")

# Parsing a big page takes milliseconds of CPU: do it off the event loop above this size, one page at
# a time (Polars' JSON reader holds about 9 times the page's size while it parses: a 10,000 message
# page of 6 MB briefly takes 50 MB).
_THREAD_PARSE_BYTES = 256 * 1024
_NO_STREAM = httpx.ByteStream(b"")  # what a response keeps once its body is read (see `_attempt`)
_NOT_WORKING = re.compile(r"session status is not as expected", re.IGNORECASE)
_SESSION_404 = re.compile(r"session", re.IGNORECASE)
_WEBJS_EMPTY_WINDOW = re.compile(r"Cannot read propert(?:y|ies) of undefined \(reading 't'\)")


@dataclass
class ClientStats:
    """What a client has done so far. `requests` counts HTTP requests sent (retries included)."""

    requests: int = 0
    retries: int = 0
    bytes_received: int = 0

    def snapshot(self) -> ClientStats:
        """A frozen copy, to subtract later with `minus`."""
        return replace(self)

    def minus(self, earlier: ClientStats) -> ClientStats:
        """The work done since `earlier` (a `snapshot`)."""
        return ClientStats(
            requests=self.requests - earlier.requests,
            retries=self.retries - earlier.retries,
            bytes_received=self.bytes_received - earlier.bytes_received,
        )


@dataclass
class CallStats:
    """Per-call counters a caller may pass to `WahaClient.get` (e.g. requests per chat)."""

    requests: int = 0
    retries: int = 0


@dataclass(frozen=True)
class SessionInfo:
    """`GET /api/sessions/{session}`: name, status and the account's own id (normalized)."""

    name: str
    status: str | None
    me_id: str | None
    me_push_name: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class ServerVersion:
    """`GET /api/server/version`: WAHA's version and engine (WEBJS, NOWEB, GOWS, WPP)."""

    version: str | None
    engine: str | None
    tier: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


VERSION_TTL_SECONDS = 300.0
"""How long a server's answers to `server_version` and `own_id` are reused by every client of this
process."""
_versions: dict[str, tuple[float, ServerVersion]] = {}
_own_ids: dict[tuple[str, str], tuple[float, str]] = {}


def forget_server_version(client: WahaClient) -> None:
    """Drop the kept answer of `client`'s server to `server_version` (it turned out outdated)."""
    _versions.pop(client.base_url, None)


def forget_kept_answers() -> None:
    """Drop every kept answer to `server_version` and `own_id` (of every server)."""
    _versions.clear()
    _own_ids.clear()


def _api_key_value(api_key: Any) -> str | None:
    if api_key is None:
        return None
    if hasattr(api_key, "get_secret_value"):  # pydantic SecretStr
        api_key = api_key.get_secret_value()
    return str(api_key) or None


def _default_transport(base_url: str, concurrency: int) -> httpx.AsyncBaseTransport | None:
    """The lean `StreamTransport`, or None (httpx's own transport) when a proxy applies to the URL."""
    parts = urlsplit(base_url)
    proxies = getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not proxy_bypass(parts.hostname or ""):
        return None
    return StreamTransport(max_idle=concurrency)


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_text(content: bytes) -> str:
    """The human part of a WAHA error body (`message`, `error`, `exception.message`), shortened."""
    try:
        body = loads(content, source="")
    except WahaError:
        body = None
    if isinstance(body, dict):
        parts: list[str] = []
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, list):
                value = "; ".join(str(v) for v in value)
            if isinstance(value, dict):
                value = value.get("message") or dump_payload(value)
            if isinstance(value, str) and value and value not in parts:
                parts.append(value)
        exception = body.get("exception")
        if isinstance(exception, dict) and isinstance(exception.get("message"), str):
            parts.append(exception["message"])
        if isinstance(body.get("status"), str):
            parts.append(f"session status {body['status']}")
        text = " - ".join(parts) if parts else dump_payload(body)
    else:
        text = content[:300].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:300] + "…"


def _is_not_working(content: bytes) -> bool:
    """The 422 "Session status is not as expected" body (top-level `error`, `status`, `expected`)."""
    try:
        body = loads(content, source="")
    except WahaError:
        return False
    if not isinstance(body, dict):
        return False
    error = body.get("error")
    return (isinstance(error, str) and bool(_NOT_WORKING.search(error))) or (
        "expected" in body and isinstance(body.get("status"), str) and "statusCode" not in body
    )


def client_from_settings(settings: Settings, **overrides: Any) -> WahaClient:
    """A client configured by wahaflow's settings; `overrides` are `WahaClient` keyword arguments
    (`base_url` and `api_key` included), None meaning the setting."""
    options: dict[str, Any] = {
        "base_url": settings.waha_url,
        "api_key": settings.api_key(),
        "concurrency": settings.waha_concurrency,
        "timeout": settings.waha_timeout_seconds,
        "max_attempts": settings.waha_max_attempts,
        "max_retry_seconds": settings.waha_retry_seconds,
    }
    options.update({name: value for name, value in overrides.items() if value is not None})
    return WahaClient(options.pop("base_url"), options.pop("api_key"), **options)


class WahaClient:
    """Async client of one WAHA server. Use as `async with WahaClient(url, key) as client: ...`.

    `page_size` is the `limit` of every paged message request, `list_page_size` that of the list
    endpoints (chats, contacts: few large pages, since WAHA sets no maximum). `max_attempts` bounds
    the attempts per request (the first included) and `max_retry_seconds` the time from the first
    attempt to the start of the last one; `backoff_initial`/`backoff_max` shape the exponential
    backoff (seconds). `transport` replaces the connection layer (any `httpx.AsyncBaseTransport`);
    by default it is `StreamTransport` (cheap keep-alive HTTP/1.1), or httpx's own when a proxy is
    configured.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Any = None,
        *,
        concurrency: int = 32,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_retry_seconds: float = 120.0,
        page_size: int = 1000,
        list_page_size: int = 5000,
        backoff_initial: float = 0.5,
        backoff_max: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if concurrency < 1 or max_attempts < 1 or min(page_size, list_page_size) < 1 or timeout <= 0:
            raise ValueError("concurrency, max_attempts, page sizes and timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self._api_key = _api_key_value(api_key)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.page_size = page_size
        self.list_page_size = list_page_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stats = ClientStats()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._big_parse = asyncio.Lock()
        headers = {"Accept": "application/json", "User-Agent": "wahaflow"}
        if self._api_key:
            headers["X-Api-Key"] = self._api_key
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,  # a redirect must not carry X-Api-Key elsewhere
            transport=transport or _default_transport(self.base_url, concurrency),
        )

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"WahaClient(base_url={self.base_url!r}, api_key={key}, concurrency={self.concurrency})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ----------------------------------------------------------------------------------------------
    # the request core

    @staticmethod
    def path(*segments: str) -> str:
        """`/seg/seg/...` with every segment URL-encoded (chat ids: `@` -> `%40`)."""
        return "/" + "/".join(path_segment(s) for s in segments)

    async def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        parse: Callable[[bytes], T] | None = None,
        source: str | None = None,
        call: CallStats | None = None,
    ) -> T:
        """GET `path` (already encoded, see `path`) with retries; returns `parse(body)`.

        `parse` defaults to JSON decoding; it may raise `WahaBadResponse` to have the request
        retried. `source` names the request in errors (default `GET <path>`); `call` collects
        per-call counters.

        The first attempt runs without the retry machinery (most requests succeed at once); after a
        transient failure tenacity takes over, counting that failure as its first attempt.
        """
        source = source or f"GET {path}"
        parser: Callable[[bytes], Any] = parse or (lambda content: loads(content, source=source))
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params, quote_via=quote)
        started = time.monotonic()
        try:
            return await self._attempt_and_parse(url, source, parser, call)
        except WahaTransientError as exc:
            first_failure = exc

        async def before_sleep(state: RetryCallState) -> None:
            self.stats.retries += 1
            if call is not None:
                call.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s; retry %d/%d in %.2f s",
                exc,
                state.attempt_number,
                self.max_attempts - 1,
                state.upcoming_sleep,
            )

        def stop(state: RetryCallState) -> bool:
            spent = time.monotonic() - started + (state.upcoming_sleep or 0.0)
            return state.attempt_number >= self.max_attempts or spent >= self.max_retry_seconds

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception_type(WahaTransientError),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 1
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number == 1:
                        raise first_failure  # replayed: tenacity decides on waiting and logs it
                    attempts += 1
                    return await self._attempt_and_parse(url, source, parser, call)
        except WahaTransientError as exc:
            elapsed = time.monotonic() - started
            status = f"HTTP {exc.status}" if exc.status is not None else "no HTTP response"
            detail = str(exc).removeprefix(f"{source}: ")
            hint = ""
            if exc.retry_after is not None and attempts < self.max_attempts:
                hint = f" (the server asked to wait {exc.retry_after:g} s, beyond the retry budget)"
            raise WahaUnavailable(
                f"{source} failed after {attempts} attempt(s) in {elapsed:.1f} s at {self.base_url}; "
                f"last status: {status}; last error: {detail}{hint}",
                status=exc.status,
                source=source,
                attempts=attempts,
                last_error=str(exc),
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt_and_parse(
        self, url: str, source: str, parser: Callable[[bytes], Any], call: CallStats | None
    ) -> Any:
        if call is not None:
            call.requests += 1
        content = await self._attempt(url, source)
        # The slot this request held goes to the next request before this one's page is parsed:
        # one turn of the event loop lets a waiting request be sent first.
        await asyncio.sleep(0)
        if len(content) > _THREAD_PARSE_BYTES:
            async with self._big_parse:
                return await asyncio.to_thread(parser, content)
        return parser(content)

    def _wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's `Retry-After`, else backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (state.attempt_number - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _attempt(self, url: str, source: str) -> bytes:
        """One request; returns the body of a 2xx response or raises a classified `WahaError`."""
        async with self._semaphore:
            self.stats.requests += 1
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self._http.get(url)
            except (TimeoutError, httpx.TimeoutException) as exc:
                message = f"{source}: no complete response within {self.timeout:g} s"
                raise WahaTransientError(message, source=source) from exc
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise WahaError(f"{source}: bad WAHA URL {self.base_url!r}: {exc}", source=source) from exc
            except httpx.TransportError as exc:
                detail = str(exc) or "connection failed"
                raise WahaTransientError(f"{source}: {type(exc).__name__}: {detail}", source=source) from exc
        content = response.content
        # httpx's response and its stream refer to each other: the pair, and the body with it
        # (6 MB for a page of 10,000 messages), would wait for the collector's oldest generation.
        response.stream = _NO_STREAM
        self.stats.bytes_received += len(content)
        status = response.status_code
        if 200 <= status < 300:
            return content
        self._raise_for_status(status, content, response.headers, source)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_status(self, status: int, content: bytes, headers: httpx.Headers, source: str) -> None:
        if status in (401, 403):
            if self._api_key:
                message = f"WAHA rejected the API key ({status}) at {self.base_url}; check WAHA_API_KEY"
            else:
                message = f"WAHA requires an API key ({status}) at {self.base_url}; set WAHA_API_KEY"
            raise WahaAuthError(message, status=status, source=source)
        text = _error_text(content)
        if status == 404:
            if _SESSION_404.search(text) or source.startswith("GET /api/sessions/"):
                message = f"{source}: WAHA session not found at {self.base_url} (404): {text}"
                raise WahaSessionNotFound(message, status=status, source=source)
            raise WahaNotFound(f"{source}: not found (404): {text}", status=status, source=source)
        if status == 422 and _is_not_working(content):
            raise WahaTransientError(
                f"{source}: session not working (422): {text}", status=status, source=source
            )
        if status == 500 and "/messages" in source and _WEBJS_EMPTY_WINDOW.search(text):
            message = f"{source}: WEBJS crashed on an empty message window (500): {text}"
            raise WahaEmptyWindowCrash(message, status=status, source=source)
        if status in (408, 425, 429) or (status >= 500 and status not in (501, 505)):
            raise WahaTransientError(
                f"{source}: HTTP {status}: {text}",
                status=status,
                source=source,
                retry_after=_retry_after(headers.get("retry-after")),
            )
        raise WahaRequestError(f"{source}: HTTP {status}: {text}", status=status, source=source)

    # ----------------------------------------------------------------------------------------------
    # offset-paged lists (chats, overview, contacts, lids)

    async def get_list(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        key: Callable[[Any], Any],
        limit: int | None = None,
        source: str | None = None,
    ) -> list[Any]:
        """Every item of an offset-paged list endpoint, de-duplicated by `key(item)`.

        Pages with `limit`/`offset` until a page is shorter than `limit`. A full page that adds
        nothing new means the server ignores `offset` (or its order moved under us): the list is then
        read from offset 0 with a limit larger than everything seen, until a page is short.
        """
        limit = limit or self.list_page_size
        source = source or f"GET {path}"
        items: list[Any] = []
        seen: set[Any] = set()
        offset = 0
        whole = False
        while True:
            page = await self.get(
                path,
                {**params, "limit": limit, "offset": offset},
                parse=lambda content: loads_array(content, source=source),
                source=source,
            )
            new = 0
            for item in page:
                item_key = key(item)
                if item_key is None:
                    item_key = ("unkeyed", dump_payload(item))
                if item_key in seen:
                    continue
                seen.add(item_key)
                items.append(item)
                new += 1
            if len(page) < limit:
                return items
            if new == 0 or whole:
                if not whole:
                    log.warning("%s: a full page added nothing new; reading the whole list at once", source)
                whole = True
                offset = 0
                limit = 2 * (len(items) + limit)
            else:
                offset += len(page)

    # ----------------------------------------------------------------------------------------------
    # endpoints

    async def server_version(self, *, max_age: float = VERSION_TTL_SECONDS) -> ServerVersion:
        """`GET /api/server/version` (falls back to the deprecated `GET /api/version`).

        An answer younger than `max_age` seconds is reused: answers are kept per server URL for
        every client of this process (the runs of one `wahaflow sync` ask once). `max_age=0` always
        asks.
        """
        cached = _versions.get(self.base_url)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        version = await self._ask_version()
        _versions[self.base_url] = (time.monotonic(), version)
        return version

    async def _ask_version(self) -> ServerVersion:
        try:
            raw = await self.get(
                "/api/server/version", parse=lambda c: loads_object(c, source="GET /api/server/version")
            )
        except WahaNotFound:
            raw = await self.get("/api/version", parse=lambda c: loads_object(c, source="GET /api/version"))

        def text(name: str) -> str | None:
            value = raw.get(name)
            return value if isinstance(value, str) else None

        return ServerVersion(version=text("version"), engine=text("engine"), tier=text("tier"), raw=raw)

    async def own_id(self, session: str, *, max_age: float = VERSION_TTL_SECONDS) -> str | None:
        """The session's own id (`session_info(session).me_id`), kept like `server_version`'s
        answer (None, when the session does not say, is not kept)."""
        key = (self.base_url, session)
        cached = _own_ids.get(key)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        me_id = (await self.session_info(session)).me_id
        if me_id is not None:
            _own_ids[key] = (time.monotonic(), me_id)
        return me_id

    async def session_info(self, session: str) -> SessionInfo:
        """`GET /api/sessions/{session}`: status and `me` (the account's own id, normalized)."""
        path = self.path("api", "sessions", session)
        source = f"GET /api/sessions/{session}"
        raw = await self.get(path, parse=lambda c: loads_object(c, source=source), source=source)
        me = raw.get("me") if isinstance(raw.get("me"), dict) else {}
        push = me.get("pushName")
        status = raw.get("status")
        return SessionInfo(
            name=str(raw.get("name") or session),
            status=status if isinstance(status, str) else None,
            me_id=normalize_id(serialized_id(me.get("id"))),
            me_push_name=push if isinstance(push, str) else None,
            raw=raw,
        )

    async def chats(self, session: str, *, limit: int | None = None) -> list[Any]:
        """Raw items of `GET /api/{session}/chats`, paged by `sortBy=id&sortOrder=asc`, de-duplicated
        by id (servers that ignore the sort still work; the shape differs per engine)."""
        return await self.get_list(
            self.path("api", session, "chats"),
            {"sortBy": "id", "sortOrder": "asc"},
            key=lambda item: serialized_id(item.get("id")) if isinstance(item, dict) else None,
            limit=limit,
            source=f"GET /api/{session}/chats",
        )

    async def chats_page(self, session: str, *, offset: int, limit: int) -> list[Any]:
        """One page of `GET /api/{session}/chats` in id order (for callers that page under a time
        budget, such as the discovery sensor; `chats` reads the whole list)."""
        source = f"GET /api/{session}/chats"
        return await self.get(
            self.path("api", session, "chats"),
            {"sortBy": "id", "sortOrder": "asc", "limit": limit, "offset": offset},
            parse=lambda content: loads_array(content, source=source),
            source=source,
        )

    async def chats_overview(self, session: str, *, limit: int | None = None) -> list[Any]:
        """Raw `ChatSummary` items of `GET /api/{session}/chats/overview` (always sends `limit`: the
        server's default is 20). Its order is by last activity, so offset paging can drift while
        chats get messages; prefer `chats` for discovery."""
        return await self.get_list(
            self.path("api", session, "chats", "overview"),
            {},
            key=lambda item: serialized_id(item.get("id")) if isinstance(item, dict) else None,
            limit=limit,
            source=f"GET /api/{session}/chats/overview",
        )

    async def contacts(self, session: str, *, limit: int | None = None) -> list[Any]:
        """Raw items of `GET /api/contacts/all?session=`, paged by id, de-duplicated by id."""
        return await self.get_list(
            "/api/contacts/all",
            {"session": session, "sortBy": "id", "sortOrder": "asc"},
            key=lambda item: serialized_id(item.get("id")) if isinstance(item, dict) else None,
            limit=limit,
            source="GET /api/contacts/all",
        )

    async def lids(self, session: str, *, limit: int | None = None) -> list[Any]:
        """Raw `{lid, pn}` items of `GET /api/{session}/lids`, paged, de-duplicated by `lid`."""
        return await self.get_list(
            self.path("api", session, "lids"),
            {},
            key=lambda item: item.get("lid") if isinstance(item, dict) else None,
            limit=limit,
            source=f"GET /api/{session}/lids",
        )

    async def chat_messages(
        self,
        session: str,
        chat_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        page_size: int | None = None,
        on_page: Callable[[pl.DataFrame], None] | None = None,
        part: Window | None = None,
    ) -> ChatMessages:
        """Every message of one chat with `since <= timestamp <= until` (see `paging`); with
        `on_page`, pages are handed over as they arrive instead of kept; with `part`, that window
        is read instead, as it shrinks (`paging.Window`)."""
        from wahaflow.waha.paging import fetch_chat_messages

        return await fetch_chat_messages(
            self, session, chat_id, since=since, until=until, page_size=page_size, on_page=on_page, part=part
        )
