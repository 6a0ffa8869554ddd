"""The Dagster instance of the `wahaflow` commands, kept in Postgres.

With `DAGSTER_HOME` set, that instance is used as it is. Otherwise the commands keep a Dagster home
under `WAHAFLOW_HOME/dagster` whose `dagster.yaml` stores runs, events and schedules in the
warehouse's Postgres through `WahaflowPostgresStorage`: `WAHAFLOW_DATABASE_URL`, or the embedded
server, resolved at run time (so no URL or secret is written to disk).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

from wahaflow.settings import Settings

INSTANCE_YAML = """\
# Written by wahaflow: the Dagster instance of the `wahaflow` commands.
storage:
  custom:
    module: wahaflow.orchestrate.storage
    class: WahaflowPostgresStorage
    config: {}
concurrency:
  pools:
    default_limit: 4
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
telemetry:
  enabled: false
"""


def dagster_home(settings: Settings) -> Path:
    """The Dagster home for this environment, created (with its dagster.yaml) when needed."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        return Path(configured)
    home = settings.home_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    config = INSTANCE_YAML
    path = home / "dagster.yaml"
    if not path.exists() or path.read_text() != config:
        path.write_text(config)
    return home


def open_instance(settings: Settings) -> DagsterInstance:
    """The persistent Dagster instance (the UI started with the same DAGSTER_HOME shows its runs)."""
    home = dagster_home(settings)
    os.environ["DAGSTER_HOME"] = str(home)
    instance = DagsterInstance.get()
    # dagster-postgres opens a new connection for every event it stores (NullPool), which costs more
    # than the import itself on a run of many partitions. Hold pooled connections instead, as
    # dagster-webserver does for itself (statement timeout in ms, pool recycle in s, max overflow).
    instance.optimize_for_webserver(statement_timeout=600_000, pool_recycle=3600, max_overflow=4)
    return instance
