"""Dagster instance storage in the warehouse's Postgres, wherever that is.

`dagster.yaml` can only name a Postgres URL literally or through an environment variable. This
storage class resolves it like every `wahaflow` command does: `WAHAFLOW_DATABASE_URL` when set, else
the embedded server under `WAHAFLOW_HOME` (started if needed). So `dagster dev` from the repository
root, `wahaflow sync` and `wahaflow demo` all see the same runs without any extra setting:

    storage:
      custom:
        module: wahaflow.orchestrate.storage
        class: WahaflowPostgresStorage
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from wahaflow.settings import get_settings
from wahaflow.warehouse.embedded import database_url


class WahaflowPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres storage whose URL comes from wahaflow's settings (no secret in any file)."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> WahaflowPostgresStorage:
        return cls(postgres_url=database_url(get_settings()), inst_data=inst_data)
