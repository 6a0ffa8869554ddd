"""Fixtures of the webhook tests: a real receiver (uvicorn on 127.0.0.1, a thread) on a fresh schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from wahaflow.warehouse.migrations import migrate
from wahaflow.webhook.inbox import read_inbox
from wahaflow.webhook.serve import BackgroundReceiver

ReceiverFactory = Callable[..., BackgroundReceiver]


@pytest.fixture
def migrated(pg_url: str, pg_schema: str) -> str:
    """`pg_schema` with the warehouse tables (inbox included)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, pg_schema)
    return pg_schema


@pytest.fixture
def receiver_factory(pg_url: str, migrated: str) -> Iterator[ReceiverFactory]:
    """Start receivers on the test's schema (`create_app` keywords pass through); all stopped at the end."""
    started: list[BackgroundReceiver] = []

    def make(**options: Any) -> BackgroundReceiver:
        receiver = BackgroundReceiver(pg_url, migrated, migrate=False, **options).start()
        started.append(receiver)
        return receiver

    try:
        yield make
    finally:
        for receiver in started:
            receiver.stop()


@pytest.fixture
def inbox_rows(pg_url: str, migrated: str) -> Callable[[], list[dict]]:
    """Every inbox row of the test's schema, oldest first."""

    def rows() -> list[dict]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            return read_inbox(conn, migrated)

    return rows
