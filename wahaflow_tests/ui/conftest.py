"""Fixtures for the deployment tests: the production Dagster instance config (deploy/dagster.yaml)
pointed at a database of its own on the test Postgres.

`deployed_dagster_home` is a DAGSTER_HOME holding a copy of deploy/dagster.yaml, with the
`DAGSTER_PG_*` variables it reads set (monkeypatched) to a fresh database that is dropped afterwards.
Dagster creates its tables in that database's `public` schema, so a dedicated database (rather than a
schema) keeps them away from every other test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


def dagster_pg_env(url: str, db_name: str) -> dict[str, str]:
    """The `DAGSTER_PG_*` variables of deploy/dagster.yaml for database `db_name` of the server at `url`.

    A unix-socket server (the embedded one) has no host name: the host is left empty and libpq finds
    the socket directory in `PGHOST`.
    """
    params = conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "")
    env = {
        "DAGSTER_PG_HOST": "" if host.startswith("/") else host,
        "DAGSTER_PG_PORT": str(params.get("port") or 5432),
        "DAGSTER_PG_USER": str(params.get("user") or "postgres"),
        "DAGSTER_PG_PASSWORD": str(params.get("password") or ""),
        "DAGSTER_PG_DB": db_name,
    }
    if host.startswith("/"):
        env["PGHOST"] = host
    return env


@pytest.fixture
def dagster_database(pg_url: str) -> Iterator[str]:
    """A new, empty database on the test server for one Dagster instance (dropped afterwards)."""
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test Postgres role may not CREATE DATABASE (needed for a Dagster instance)")
    try:
        yield name
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def deployed_dagster_home(
    tmp_path: Path, pg_url: str, dagster_database: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A DAGSTER_HOME with deploy/dagster.yaml as its instance config, on `dagster_database`; the
    environment (DAGSTER_HOME and the DAGSTER_PG_* variables) is set for this process and its children."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_DIR / "dagster.yaml", home / "dagster.yaml")
    for key, value in dagster_pg_env(pg_url, dagster_database).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
