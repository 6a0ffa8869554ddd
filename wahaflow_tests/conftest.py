"""Shared fixtures. Each fixture family lives in its own plugin module under `plugins/`."""

from collections.abc import Iterator

import pytest

from wahaflow.waha import client

pytest_plugins = [
    "wahaflow_tests.plugins.postgres",
    "wahaflow_tests.plugins.simulator",
    "wahaflow_tests.plugins.pipeline",
]


@pytest.fixture(autouse=True)
def _forget_server_versions() -> Iterator[None]:
    """Every test starts without the process-wide answers to `server_version` (servers' ports are
    reused across tests, with other engines)."""
    client._versions.clear()
    yield
    client._versions.clear()
