"""The whole-pipeline fixture `sync_env_factory`: a WAHA simulator, a warehouse schema and a Dagster
instance wired together through the environment (used by the `defs/` and `ui/` tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl
import psycopg
import pytest

from wahaflow.defs.definitions import build_defs
from wahaflow.orchestrate.sync import SyncReport, run_sync
from wahaflow.settings import Settings
from wahaflow.simulator.server import SimulatorServer
from wahaflow.warehouse.reader import read_frame

API_KEY = "pipeline-key"


@dataclass
class SyncEnv:
    """A simulator, a warehouse schema and a Dagster instance wired together through the environment."""

    simulator: SimulatorServer
    settings: Settings
    instance: dg.DagsterInstance
    pg_url: str
    defs: dg.Definitions

    def sync(self, *, full: bool = False) -> SyncReport:
        return run_sync(self.settings, self.instance, full=full, defs=self.defs)

    def table(self, name: str, order: str) -> pl.DataFrame:
        """A whole warehouse table (every column), sorted by `order` (column names, comma-separated;
        "1" = the first column)."""
        from wahaflow import schemas

        frame_schema = schemas.FRAME_SCHEMAS[name]
        with psycopg.connect(self.pg_url) as conn:
            frame = read_frame(conn, self.settings.db_schema, name, frame_schema)
        columns = [c.strip() for c in order.split(",")]
        return frame.sort([frame.columns[0] if c == "1" else c for c in columns])

    def execute(self, sql_text: str) -> list[tuple]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {self.settings.db_schema}")
            cur = conn.execute(sql_text)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def sync_env_factory(
    simulator_factory, pg_url: str, pg_schema: str, tmp_path, monkeypatch
) -> Iterator[Callable[..., SyncEnv]]:
    """`sync_env_factory(chats=, messages=, engine=, chunk_size=, **simulator_config)`."""
    instances: list[dg.DagsterInstance] = []

    def make(*, chats: int = 80, messages: int = 600, engine: str = "NOWEB", chunk_size: int = 20, **config):
        simulator = simulator_factory(
            chats=chats, messages=messages, engine=engine, api_key=API_KEY, **config
        )
        env = {
            "WAHA_URL": simulator.url,
            "WAHA_API_KEY": API_KEY,
            "WAHA_SESSIONS": ",".join(simulator.accounts),
            "WAHAFLOW_DATABASE_URL": pg_url,
            "WAHAFLOW_SCHEMA": pg_schema,
            "WAHAFLOW_HOME": str(tmp_path / "home"),
            "WAHAFLOW_CHUNK_SIZE": str(chunk_size),
            "WAHAFLOW_CHUNKS_PER_RUN": "2",
            # Fail fast in tests: a chunk that keeps failing must fail within seconds.
            "WAHAFLOW_WAHA_MAX_ATTEMPTS": "3",
            "WAHAFLOW_WAHA_RETRY_SECONDS": "5",
            "WAHAFLOW_WAHA_TIMEOUT_SECONDS": "5",
            "WAHAFLOW_STEP_RETRIES": "0",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)
        instance = dg.DagsterInstance.ephemeral()
        instances.append(instance)
        return SyncEnv(simulator, settings, instance, pg_url, build_defs(settings))

    yield make
    for instance in instances:
        instance.dispose()
