"""`PostgresResource`: the Dagster resource that owns warehouse connections and runs migrations once.

The URL may carry a password: it is never logged, never put in metadata, and the resource's repr
masks it. Use `display_url()` for anything a human reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from psycopg import conninfo
from pydantic import Field

from wahaflow.settings import get_settings
from wahaflow.warehouse import embedded
from wahaflow.warehouse.migrations import ensure_migrated


def display_url(url: str) -> str:
    """`url` without its password (and without any other secret-looking parameter), for humans."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    shown = {k: v for k, v in params.items() if k in {"host", "hostaddr", "port", "dbname", "user"}}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))


class PostgresResource(dg.ConfigurableResource):
    """Connections to the warehouse Postgres, with the schema migrated on first use in a process.

    `database_url` is meant to come from `dg.EnvVar("WAHAFLOW_DATABASE_URL")`; when it is None or
    empty the embedded server under `WAHAFLOW_HOME` is used (started if needed).
    """

    database_url: str | None = Field(
        default=None, description="libpq URL of the warehouse; empty = the embedded Postgres"
    )
    db_schema: str = Field(default="wahaflow", description="Postgres schema of the warehouse tables")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("<redacted>" if name == "database_url" and value else value)

    def url(self) -> str:
        """The libpq URL in use (a secret: do not log it; see `display_url`)."""
        if self.database_url:
            return self.database_url
        return embedded.database_url(get_settings())

    def display_url(self) -> str:
        """The URL without its password, for logs and UIs."""
        return display_url(self.url())

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A connection to the migrated warehouse.

        Without `autocommit`, everything done on it is one transaction: committed when the block
        ends normally, rolled back if it raises. The connection is closed either way.
        """
        url = self.url()
        ensure_migrated(url, self.db_schema)
        with psycopg.connect(url, autocommit=autocommit) as conn:
            yield conn
