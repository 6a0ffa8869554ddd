"""Serving an ASGI app with uvicorn on a background thread (the simulator and the webhook receiver)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


def bind_tcp(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0 = any free port).

    `proto=IPPROTO_TCP` matters: asyncio sets TCP_NODELAY only on accepted sockets whose proto is
    IPPROTO_TCP, and accepted sockets inherit it from this one (0 would leave Nagle on, adding about
    40 ms to every request on a kept-alive connection).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@dataclass
class ThreadServer:
    """A uvicorn server running on a daemon thread over a pre-bound socket."""

    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, join its thread and close the socket."""
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def serve_in_thread(
    app: Any, host: str, port: int, *, name: str, what: str, timeout: float = 10.0, **options: Any
) -> ThreadServer:
    """Start serving `app` on a background thread and wait until it accepts requests.

    `options` go to `uvicorn.Config` (log level warning and no access log unless given); `what`
    names the server in the error raised when it does not start within `timeout` seconds.
    """
    sock = bind_tcp(host, port)
    config = uvicorn.Config(app, **{"log_level": "warning", "access_log": False, **options})
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-{sock.getsockname()[1]}", daemon=True
    )
    running = ThreadServer(server, thread, sock)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"the {what} did not start")
        time.sleep(0.005)
    return running
