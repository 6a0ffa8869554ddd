"""`StreamTransport`: a lean HTTP/1.1 keep-alive transport for `httpx.AsyncClient`.

Why: with many small requests (most chats hold a handful of messages) the client's CPU per request
decides the import time. httpcore's connection pool spends about 1-2.5 ms of CPU per request here
(pool bookkeeping that polls every pooled socket on each request), a plain asyncio stream about
0.1 ms. This transport keeps httpx's client API (URLs, headers, decoding, timeouts, errors) and
replaces only the connection layer:

- one asyncio stream per connection, reused while the server keeps it alive (idle connections
  older than `keepalive_expiry` seconds, or already closed by the server, are discarded);
- responses framed by `Content-Length`, `Transfer-Encoding: chunked`, or connection close;
- a request that fails on a REUSED connection before any response byte arrived (the server closed
  an idle keep-alive connection at that moment) is sent once more on a fresh connection;
- failures are raised as httpx's own exceptions (`ConnectError`, `ConnectTimeout`,
  `RemoteProtocolError`, `ReadError`), so callers classify them as for any httpx transport;
- a connection interrupted mid-request (timeout, cancellation) is closed, never reused;
- httpx's `read` timeout bounds the whole exchange (httpx's `connect` timeout the connect).

`http://` and `https://` are supported (TLS via `httpx.create_ssl_context`). HTTP proxies are not:
`WahaClient` uses httpx's default transport when the environment configures a proxy for the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import defaultdict, deque

import httpx

_HEAD_LIMIT = 1 << 20  # status line + headers


class _Connection:
    __slots__ = ("last_used", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.monotonic()

    def usable(self, expiry: float) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.last_used < expiry
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Stale(Exception):
    """A reused connection turned out to be closed before the response started."""


class StreamTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over pooled asyncio streams (see module docstring). `max_idle` bounds the idle
    connections kept per origin; the caller bounds concurrency."""

    def __init__(
        self,
        *,
        max_idle: int = 32,
        keepalive_expiry: float = 4.0,
        connect_timeout: float = 10.0,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self.connect_timeout = connect_timeout
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = defaultdict(deque)
        self._closed = False

    # ------------------------------------------------------------------------------------ pool

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = (
                self._verify
                if isinstance(self._verify, ssl.SSLContext)
                else httpx.create_ssl_context(verify=self._verify)
            )
        return self._ssl

    async def _connect(self, scheme: str, host: str, port: int, timeout: float | None) -> _Connection:
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=_HEAD_LIMIT
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return _Connection(reader, writer)

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # most recently used first: the warmest connection
            if conn.usable(self.keepalive_expiry):
                return conn
            conn.close()
        return None

    def _release(self, key: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle[key]
        if self._closed or len(idle) >= self.max_idle:
            conn.close()
            return
        conn.last_used = time.monotonic()
        idle.append(conn)

    async def aclose(self) -> None:
        """Close every pooled connection; later releases close theirs."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    # --------------------------------------------------------------------------------- request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on a pooled (or new) connection and return the complete response."""
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, url.host, port)
        timeouts = request.extensions.get("timeout", {})
        payload = _serialize(request)
        conn = self._take_idle(key)
        try:
            async with asyncio.timeout(timeouts.get("read")):  # whole response, not per read
                if conn is not None:
                    try:
                        return await self._exchange(key, conn, request, payload, reused=True)
                    except _Stale:
                        pass  # the server closed it while idle: once more on a fresh connection
                connect_timeout = timeouts.get("connect", self.connect_timeout)
                conn = await self._connect(scheme, url.host, port, connect_timeout)
                return await self._exchange(key, conn, request, payload, reused=False)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("no complete response in time", request=request) from exc

    async def _exchange(
        self,
        key: tuple[str, str, int],
        conn: _Connection,
        request: httpx.Request,
        payload: bytes,
        *,
        reused: bool,
    ) -> httpx.Response:
        keep = False
        started = False
        try:
            conn.writer.write(payload)
            await conn.writer.drain()
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
                started = True
                status, headers, keep_alive = _parse_head(head)
                while 100 <= status < 200 and status != 101:  # interim responses
                    head = await conn.reader.readuntil(b"\r\n\r\n")
                    status, headers, keep_alive = _parse_head(head)
                body, framed = await _read_body(conn.reader, request.method, status, headers)
            except asyncio.IncompleteReadError as exc:
                if reused and not started and not exc.partial:
                    raise _Stale from exc
                if not started:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response.", request=request
                    ) from exc
                raise httpx.ReadError("Server disconnected mid-response.", request=request) from exc
            except asyncio.LimitOverrunError as exc:
                raise httpx.RemoteProtocolError("response headers too large", request=request) from exc
            except ValueError as exc:
                raise httpx.RemoteProtocolError(f"malformed response: {exc}", request=request) from exc
            keep = keep_alive and framed
        except (ConnectionError, OSError) as exc:
            if reused and not started:
                raise _Stale from exc
            raise httpx.ReadError(f"connection failed: {exc}", request=request) from exc
        finally:
            if keep:
                self._release(key, conn)
            else:
                conn.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )


def _serialize(request: httpx.Request) -> bytes:
    """The request's bytes on the wire (httpx already set Host, and Content-Length for bodies)."""
    body = request.read()
    target = request.url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    if body and b"content-length" not in {name.lower() for name, _ in request.headers.raw}:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _parse_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool]:
    """(status, headers, keep-alive) of a response head."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    connection = b""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        value = value.strip()
        headers.append((name.strip(), value))
        if name.strip().lower() == b"connection":
            connection = value.lower()
    http10 = parts[0] == b"HTTP/1.0"
    return status, headers, (b"keep-alive" in connection) if http10 else (b"close" not in connection)


async def _read_body(
    reader: asyncio.StreamReader, method: str, status: int, headers: list[tuple[bytes, bytes]]
) -> tuple[bytes, bool]:
    """(body, framed): `framed` is False when the body ended with the connection."""
    if method == "HEAD" or status in (204, 304):
        return b"", True
    length: int | None = None
    chunked = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif lowered == b"content-length":
            length = int(value)
    if chunked:
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks), True
            chunk = await reader.readexactly(size + 2)
            chunks.append(chunk[:-2])
    if length is not None:
        return (await reader.readexactly(length) if length else b""), True
    return await reader.read(), False  # until the server closes
