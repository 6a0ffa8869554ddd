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
def _forget_kept_answers() -> Iterator[None]:
    """Every test starts without the process-wide answers to `server_version` and `own_id`
    (servers' ports are reused across tests, with other engines and accounts)."""
    client.forget_kept_answers()
    yield
    client.forget_kept_answers()
