"""`SimulatorServer`: the simulator app served by uvicorn on a background thread.

    with SimulatorServer(AccountSpec(n_chats=60, n_messages=400), config=ServerConfig(api_key="k")) as sim:
        httpx.get(f"{sim.url}/api/default/chats", headers={"X-Api-Key": "k"})
        sim.account.add_messages(3)          # the served data and the ground truth change together
        sim.config.fault_rate = 0.1          # knobs apply to the next request
        sim.stats.snapshot()                 # request counters

It binds 127.0.0.1 on a free port by default (`port=0`), uses asyncio's loop (which sets TCP_NODELAY
on accepted sockets; `tcp_nodelay()` checks it) and httptools, without access log.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from types import TracebackType

import uvicorn
from starlette.types import Scope

from wahaflow.serving import ThreadServer, serve_in_thread
from wahaflow.simulator.account import Account, AccountSpec
from wahaflow.simulator.app import Simulator, create_app
from wahaflow.simulator.config import ServerConfig, Stats
from wahaflow.simulator.webhooks import WebhookEmitter


class SimulatorServer:
    """Runs the simulator over real HTTP until `stop()` (or the end of a `with` block)."""

    def __init__(
        self,
        accounts: Account | AccountSpec | Iterable[Account | AccountSpec] | None = None,
        *,
        config: ServerConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        http: str = "httptools",
        loop: str = "auto",
    ) -> None:
        if accounts is None:
            accounts = AccountSpec()
        items = [accounts] if isinstance(accounts, Account | AccountSpec) else list(accounts)
        self.accounts: dict[str, Account] = {}
        for item in items:
            account = Account(item) if isinstance(item, AccountSpec) else item
            self.accounts[account.waha_session] = account
        self.config = config or ServerConfig()
        self.stats = Stats()
        self.app = create_app(self.accounts.values(), self.config, self.stats)
        self.simulator: Simulator = self.app.state.simulator
        self.simulator.connection_closer = self._close_connection
        self.host = host
        self.port = port
        self._http = http
        self._loop = loop
        self._server: uvicorn.Server | None = None
        self._running: ThreadServer | None = None
        self.webhooks: WebhookEmitter | None = None

    @property
    def account(self) -> Account:
        """The first (usually only) account."""
        return next(iter(self.accounts.values()))

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        """Bind, start serving on a background thread, and wait until requests are accepted."""
        if self._running is not None:
            return self
        if self.config.webhook_url and self.webhooks is None:
            self.enable_webhooks(self.config.webhook_url)
        self._running = serve_in_thread(
            self.app,
            self.host,
            self.port,
            name="waha-sim",
            what="WAHA simulator",
            timeout=timeout,
            loop=self._loop,
            http=self._http,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=1024,
        )
        self._server = self._running.server
        self.port = self._running.port
        return self

    def enable_webhooks(self, url: str, **options: object) -> WebhookEmitter:
        """POST every later mutation of the accounts to `url` as WAHA events (simulator/webhooks.py);
        `options` go to `WebhookEmitter` (default `hmac_key`/`redelivery_rate` from the config)."""
        if self.webhooks is not None:
            self.webhooks.close()
        options.setdefault("hmac_key", self.config.webhook_hmac_key)
        options.setdefault("redelivery_rate", self.config.webhook_redelivery_rate)
        emitter = WebhookEmitter(url, **options)  # type: ignore[arg-type]
        for account in self.accounts.values():
            emitter.attach(account)
        self.webhooks = emitter.start()
        return emitter

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self.webhooks is not None:
            self.webhooks.close(timeout)
            self.webhooks = None
        if self._running is not None:
            self._running.stop(timeout)
        self._running = self._server = None

    def reset(self) -> None:
        """Zero the counters, restart the fault RNG and forget WEBJS loading state."""
        self.stats.reset()
        self.config.reseed()
        self.simulator.reset_engine_state()

    def tcp_nodelay(self) -> list[bool]:
        """TCP_NODELAY of each open server-side connection (True means Nagle is off)."""
        if self._server is None:
            return []
        flags = []
        for proto in list(self._server.server_state.connections):
            sock = proto.transport.get_extra_info("socket")  # type: ignore[union-attr]
            if sock is not None:
                flags.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        return flags

    async def _close_connection(self, scope: Scope) -> bool:
        """Drop the connection that carries `scope`'s request without answering it."""
        if self._server is None or not scope.get("client"):
            return False
        client = tuple(scope["client"])
        for proto in list(self._server.server_state.connections):
            if getattr(proto, "client", None) == client:
                proto.transport.abort()  # type: ignore[union-attr]
                for _ in range(20):  # let connection_lost mark the request as disconnected
                    await asyncio.sleep(0)
                    cycle = getattr(proto, "cycle", None)
                    if cycle is None or cycle.disconnected:
                        break
                return True
        return False

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
