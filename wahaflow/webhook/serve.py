"""`wahaflow webhook`: serve the receiver with uvicorn (httptools); and `BackgroundReceiver`, the same
app on a background thread (tests, end-to-end runs).

    with BackgroundReceiver(pg_url, "wahaflow", hmac_key="k") as receiver:
        httpx.post(receiver.webhook_url, content=body, headers={"X-Webhook-Hmac": sign(body, "k")})
"""

from __future__ import annotations

import argparse
import logging
from types import TracebackType
from typing import Any

import uvicorn

from wahaflow.serving import ThreadServer, serve_in_thread
from wahaflow.webhook.app import WEBHOOK_PATH, create_app

log = logging.getLogger("wahaflow.webhook")


def main(args: argparse.Namespace) -> int:
    """Serve `POST /webhooks/waha` on `--host`/`--port` (defaults `WAHAFLOW_WEBHOOK_HOST`/`_PORT`)
    until Ctrl-C. Migrates the warehouse schema at startup. Returns the exit status."""
    from wahaflow.settings import get_settings
    from wahaflow.warehouse.embedded import database_url
    from wahaflow.warehouse.resource import display_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError: names the setting, never a secret value
        print(f"wahaflow webhook: invalid settings: {exc}")
        return 2
    host = getattr(args, "host", None) or settings.webhook_host
    port = getattr(args, "port", None)
    port = settings.webhook_port if port is None else port
    url = database_url(settings)
    key = settings.webhook_hmac_key.get_secret_value() if settings.webhook_hmac_key else None
    app = create_app(url, settings.db_schema, hmac_key=key or None)
    print(
        f"wahaflow webhook: POST http://{host}:{port}{WEBHOOK_PATH} -> {display_url(url)},"
        f" schema {settings.db_schema}; HMAC {'required' if key else 'off'}; Ctrl-C to stop",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="auto",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # not behind a proxy by default; saves a middleware on every request
        log_level="info",
        timeout_keep_alive=30,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except (OSError, SystemExit) as exc:
        print(f"wahaflow webhook: could not serve on {host}:{port}: {exc}")
        return 1
    return 0 if server.started else 1


class BackgroundReceiver:
    """The receiver app served by uvicorn on a background thread, on 127.0.0.1 and a free port by
    default. `create_app` keywords (`hmac_key`, `max_body_bytes`, `writers`, ...) pass through."""

    def __init__(
        self, database_url: str, schema: str, *, host: str = "127.0.0.1", port: int = 0, **options: Any
    ) -> None:
        self.app = create_app(database_url, schema, **options)
        self.host = host
        self.port = port
        self._running: ThreadServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{WEBHOOK_PATH}"

    @property
    def stats(self) -> Any:
        return self.app.state.receiver.committer.stats

    def start(self, timeout: float = 30.0) -> BackgroundReceiver:
        if self._running is not None:
            return self
        self._running = serve_in_thread(
            self.app,
            self.host,
            self.port,
            name="webhook",
            what="webhook receiver",
            timeout=timeout,
            http="httptools",
            lifespan="on",
            proxy_headers=False,
            backlog=2048,
        )
        self.port = self._running.port
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._running is not None:
            self._running.stop(timeout)
        self._running = None

    def __enter__(self) -> BackgroundReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
