"""Real Postgres for tests: `WAHAFLOW_TEST_DATABASE_URL`, else the embedded server.

Every test that asks for `pg_schema` gets a schema of its own, dropped afterwards, so tests never
see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from wahaflow.warehouse.embedded import embedded_url

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """libpq URL of the Postgres the tests use."""
    url = os.environ.get("WAHAFLOW_TEST_DATABASE_URL")
    if url:
        return url
    return embedded_url(REPO_ROOT / ".wahaflow" / "test-pgdata")


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh, empty schema name for one test (dropped with everything in it afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn
