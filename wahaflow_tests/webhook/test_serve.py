"""`wahaflow webhook` as a real process: migrates at startup, and an event answered 200 survives a kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from wahaflow.webhook.app import sign
from wahaflow.webhook.inbox import read_inbox
from wahaflow_tests.webhook.events import MESSAGE, body

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_serves_and_a_200_survives_a_kill(pg_url: str, pg_schema: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "WAHAFLOW_DATABASE_URL": pg_url,
        "WAHAFLOW_SCHEMA": pg_schema,  # empty: the command migrates it
        "WAHAFLOW_WEBHOOK_HMAC_KEY": "cli-key",
        "WAHAFLOW_WEBHOOK_PORT": str(port),
        "WAHAFLOW_HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "wahaflow.cli", "webhook"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.1)
        raw = body(MESSAGE)
        url = f"http://127.0.0.1:{port}/webhooks/waha"
        assert httpx.post(url, content=raw).status_code == 401
        response = httpx.post(url, content=raw, headers={"X-Webhook-Hmac": sign(raw, "cli-key")})
        assert response.status_code == 200
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert [r["event_id"] for r in read_inbox(conn, pg_schema)] == [MESSAGE["id"]]
        output = proc.stdout.read().decode()  # type: ignore[union-attr]
        assert "cli-key" not in output and pg_url not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
