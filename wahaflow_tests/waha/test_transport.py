"""`StreamTransport` against real servers: uvicorn for ordinary framing (Content-Length, chunked,
gzip, keep-alive expiry), and a raw socket server for the odd cases (HTTP/1.0 bodies delimited by
closing, interim 100 responses, trailers, idle connections closed by the server, dropped requests),
plus TLS with a throwaway self-signed certificate."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.responses import Response, StreamingResponse

from wahaflow.waha.client import WahaClient
from wahaflow.waha.transport import StreamTransport
from wahaflow_tests.waha.fakewaha import ServerThread

BIG = b"[" + b",".join(b'{"n":%d,"pad":"%s"}' % (i, b"x" * 50) for i in range(20_000)) + b"]"


async def asgi(scope: dict, receive: Callable, send: Callable) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/chunked":

        async def parts() -> object:
            for piece in (BIG[:1000], BIG[1000:500_000], BIG[500_000:]):
                yield piece

        response: Response = StreamingResponse(parts(), media_type="application/json")
    elif path == "/gzip":
        response = Response(
            gzip.compress(BIG), headers={"content-encoding": "gzip"}, media_type="application/json"
        )
    elif path == "/close":
        response = Response(b"[1]", headers={"connection": "close"}, media_type="application/json")
    elif path == "/empty":
        response = Response(status_code=204)
    elif path.startswith("/echo"):
        body = (scope["raw_path"] + b"?" + scope["query_string"]).decode()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        response = Response(f'{{"target":"{body}","key":"{headers.get("x-api-key", "")}"}}'.encode())
    else:
        response = Response(BIG, media_type="application/json")
    await response(scope, receive, send)


@pytest.fixture(scope="module")
def uvicorn_url() -> Iterator[str]:
    server = ServerThread(asgi)
    server.server.config.timeout_keep_alive = 1  # idle connections are closed after 1 s
    with server:
        yield server.url


class RawServer:
    """A socket server answering each connection with scripted bytes (handler(request) -> bytes|None;
    None closes the connection without an answer)."""

    def __init__(self, handler: Callable[[bytes], bytes | None], keep_open: bool = True) -> None:
        self.handler = handler
        self.keep_open = keep_open
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                request, _, buffer = buffer.partition(b"\r\n\r\n")
                answer = self.handler(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if not self.keep_open:
                    return

    def close(self) -> None:
        self.sock.close()


def get(url: str, path: str, *, transport: StreamTransport | None = None, **kwargs: object) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, transport=transport or StreamTransport()) as client:
            return await client.get(path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(run())


def test_content_length_chunked_gzip_and_204(uvicorn_url: str) -> None:
    assert get(uvicorn_url, "/plain").content == BIG
    assert get(uvicorn_url, "/chunked").content == BIG
    gzipped = get(uvicorn_url, "/gzip")
    assert gzipped.content == BIG and gzipped.headers["content-encoding"] == "gzip"
    empty = get(uvicorn_url, "/empty")
    assert empty.status_code == 204 and empty.content == b""


def test_request_line_headers_and_key(uvicorn_url: str) -> None:
    async def run() -> dict:
        async with WahaClient(uvicorn_url, "k-123") as client:
            return await client.get(
                client.path("echo", "a@b c"), {"filter.timestamp.lte": 5, "session": "my session"}
            )

    echoed = asyncio.run(run())
    assert echoed["target"] == "/echo/a%40b%20c?filter.timestamp.lte=5&session=my%20session"
    assert echoed["key"] == "k-123"


def test_keep_alive_reuse_and_expiry(uvicorn_url: str) -> None:
    async def run() -> list[bytes]:
        transport = StreamTransport(keepalive_expiry=30)  # trust idle connections longer than uvicorn
        async with httpx.AsyncClient(base_url=uvicorn_url, transport=transport) as client:
            first = (await client.get("/close")).content  # server says close: not pooled
            second = (await client.get("/plain")).content
            assert sum(len(q) for q in transport._idle.values()) == 1
            await asyncio.sleep(1.6)  # uvicorn closes the idle connection meanwhile
            third = (await client.get("/plain")).content  # detected (or stale -> fresh): no error
            return [first, second, third]

    assert asyncio.run(run()) == [b"[1]", BIG, BIG]


def test_stale_reused_connection_is_replaced_transparently() -> None:
    """The server closes a kept-alive connection right after the client reuses it (the race every
    keep-alive client meets): the request is sent again on a fresh connection, once."""
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
            None,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[1]",
        ]
    )
    server = RawServer(lambda request: next(answers))
    try:

        async def run() -> tuple[bytes, bytes]:
            async with httpx.AsyncClient(base_url=server.url, transport=StreamTransport()) as client:
                return (await client.get("/a")).content, (await client.get("/b")).content

        assert asyncio.run(run()) == (b"[]", b"[1]")
        assert server.connections == 2
    finally:
        server.close()


def test_http10_close_delimited_interim_and_trailers() -> None:
    def handler(request: bytes) -> bytes:
        if request.startswith(b"GET /old"):
            return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[1,2,3]"
        return (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\n[1,\r\n2\r\n2]\r\n0\r\nX-Trailer: yes\r\n\r\n"
        )

    server = RawServer(handler, keep_open=False)
    try:
        assert get(server.url, "/old").content == b"[1,2,3]"
        assert get(server.url, "/new").content == b"[1,2]"
    finally:
        server.close()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, httpx.RemoteProtocolError),  # closed without a response
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1,", httpx.ReadError),  # dropped mid-body
        (b"garbage\r\n\r\n", httpx.RemoteProtocolError),
    ],
)
def test_broken_responses_raise_httpx_errors(answer: bytes | None, error: type[Exception]) -> None:
    server = RawServer(lambda request: answer, keep_open=False)
    try:
        with pytest.raises(error):
            get(server.url, "/x")
    finally:
        server.close()


def test_connection_refused_is_a_connect_error() -> None:
    with pytest.raises(httpx.ConnectError):
        get("http://127.0.0.1:9", "/x")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ServerThread(asgi)
    server.server.config.ssl_certfile = str(cert)
    server.server.config.ssl_keyfile = str(key)
    with server:
        url = f"https://localhost:{server.port}"
        context = ssl.create_default_context(cafile=str(cert))
        assert get(url, "/plain", transport=StreamTransport(verify=context)).content == BIG
        with pytest.raises(httpx.ConnectError):  # not trusted by default
            get(url, "/plain")
    time.sleep(0)
