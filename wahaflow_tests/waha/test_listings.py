"""Listings read ahead: what a sync's warm-up lists is handed to its discovery once, and only fresh."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from polars.testing import assert_frame_equal

from wahaflow.waha.client import WahaClient
from wahaflow.waha.errors import WahaSessionNotFound
from wahaflow.waha.listings import Listing, list_ahead, list_session, take_listing

KEY = "listing-key"


def _list_ahead_in_a_thread(url: str, session: str, *, wait: bool = True) -> threading.Thread:
    """What the warm-up does: list in a loop of its own thread (returns once the listing started,
    or with `wait`, once it ended)."""
    started = threading.Event()

    async def run() -> None:
        async with WahaClient(url, KEY) as client:
            listing = list_ahead(client, session)
            started.set()
            await asyncio.gather(listing, return_exceptions=True)

    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    started.wait()
    if wait:
        worker.join()
    return worker


def _take(url: str, session: str, max_age: float = 30.0) -> tuple[Listing, int]:
    async def run() -> tuple[Listing, int]:
        async with WahaClient(url, KEY) as client:
            return await take_listing(client, session, max_age=max_age), client.stats.requests

    return asyncio.run(run())


def test_a_listing_read_ahead_is_taken_once_without_asking_again(simulator_factory):
    simulator = simulator_factory(chats=30, messages=200, api_key=KEY)
    _list_ahead_in_a_thread(simulator.url, "default")
    listed = simulator.stats.total
    taken, requests = _take(simulator.url, "default")
    assert requests == 0 and simulator.stats.total == listed
    assert taken.chats.height == 30 and taken.contacts.height > 0

    async def fresh() -> Listing:
        async with WahaClient(simulator.url, KEY) as client:
            return await list_session(client, "default")

    expected = asyncio.run(fresh())
    assert_frame_equal(taken.chats, expected.chats)
    assert_frame_equal(taken.contacts, expected.contacts)
    _, requests = _take(simulator.url, "default")  # taken already: the next taker asks WAHA
    assert requests >= 2


def test_a_listing_older_than_the_taker_accepts_is_asked_again(simulator_factory):
    simulator = simulator_factory(chats=30, messages=200, api_key=KEY)
    _list_ahead_in_a_thread(simulator.url, "default")
    time.sleep(0.05)
    _, requests = _take(simulator.url, "default", max_age=0.01)
    assert requests >= 2


def test_a_listing_refused_for_good_fails_for_the_taker_without_asking_again(simulator_factory):
    simulator = simulator_factory(chats=30, messages=200, api_key=KEY)
    _list_ahead_in_a_thread(simulator.url, "ghost")  # no such session
    asked = simulator.stats.total
    with pytest.raises(WahaSessionNotFound):
        _take(simulator.url, "ghost")
    assert simulator.stats.total == asked


def test_a_listing_that_failed_otherwise_is_asked_again(simulator_factory):
    simulator = simulator_factory(chats=30, messages=200, api_key=KEY, fault_routes=("chats",))
    simulator.config.fault_rate = 1.0  # every chat listing fails, beyond the client's retries
    simulator.config.fault_kinds = ("500",)
    _list_ahead_in_a_thread(simulator.url, "default")
    simulator.config.fault_rate = 0.0  # WAHA recovers before the discovery
    taken, requests = _take(simulator.url, "default")
    assert taken.chats.height == 30 and requests >= 2


def test_a_listing_still_under_way_is_waited_for(simulator_factory):
    simulator = simulator_factory(chats=30, messages=200, api_key=KEY, latency_ms=300)
    worker = _list_ahead_in_a_thread(simulator.url, "default", wait=False)
    taken, requests = _take(simulator.url, "default")
    worker.join()
    assert requests == 0 and taken.chats.height == 30
