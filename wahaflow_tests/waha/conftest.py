"""Fixtures of the WAHA client tests: one fake WAHA per module, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wahaflow_tests.waha.fakewaha import FakeWaha, ServerThread


@pytest.fixture(scope="module")
def _fake_server() -> Iterator[tuple[FakeWaha, ServerThread]]:
    fake = FakeWaha()
    with ServerThread(fake.app) as server:
        yield fake, server


@pytest.fixture
def fake(_fake_server: tuple[FakeWaha, ServerThread]) -> FakeWaha:
    """The fake WAHA's state, reset (no chats, no faults, no key)."""
    state, server = _fake_server
    state.reset()
    state.url = server.url  # type: ignore[attr-defined]
    return state
