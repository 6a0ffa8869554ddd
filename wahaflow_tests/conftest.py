"""Shared fixtures. Each fixture family lives in its own plugin module under `plugins/`."""

from collections.abc import Iterator

import pytest

from wahaflow.waha import client, listings

pytest_plugins = [
    "wahaflow_tests.plugins.postgres",
    "wahaflow_tests.plugins.simulator",
    "wahaflow_tests.plugins.pipeline",
]


@pytest.fixture(autouse=True)
def _forget_kept_answers() -> Iterator[None]:
    """Every test starts without the process-wide answers to `server_version` and `own_id`, and
    without listings read ahead (servers' ports are reused across tests, with other engines and
    accounts)."""
    client.forget_kept_answers()
    listings.drop_listings()
    yield
    client.forget_kept_answers()
    listings.drop_listings()
