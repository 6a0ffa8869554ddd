"""The account-stream spool against the simulator over HTTP: what a run reads from it is exactly
what the simulator holds for its chats, and only complete, fresh spools are read."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import polars as pl
import pytest

from wahaflow.waha.client import WahaClient
from wahaflow.waha.errors import WahaError
from wahaflow.waha.fetch import ChunkFetch, fetch_account_stream
from wahaflow.waha.paging import Window
from wahaflow.waha.spool import MANIFEST, Spool, open_spool, remove_expired, split_older, stream_to_spool

KEY = "spool-key"


def _stream(url: str, directory: Path, page_size: int = 50) -> tuple[int, Spool]:
    async def run() -> tuple[int, Spool]:
        async with WahaClient(url, KEY) as client:
            spool = await stream_to_spool(
                client, "default", directory, until=int(time.time()) - 1, page_size=page_size
            )
            return client.stats.requests, spool

    return asyncio.run(run())


def test_spool_holds_the_whole_stream_and_serves_each_chat_set(simulator_factory, tmp_path):
    simulator = simulator_factory(chats=40, messages=300, engine="GOWS", api_key=KEY)
    requests, spool = _stream(simulator.url, tmp_path / "default")
    truth = simulator.account.ground_truth_messages()
    assert spool.messages >= truth.height  # boundary seconds read twice
    # Read by two readers over two spans of time: the pages, and one request for the oldest.
    assert spool.readers == 2 and spool.pages + 1 == requests
    assert json.loads((tmp_path / "default" / MANIFEST).read_text())["until"] == spool.until
    chats = truth["chat_id"].unique().sort().to_list()
    first, second = chats[:15], chats[15:]
    read = [spool.read(part) for part in (first, second)]
    for part, frame in zip((first, second), read, strict=True):
        assert frame["id"].n_unique() == frame.height  # one row per message
        assert set(frame["chat_id"]) <= set(part)
    ids = pl.concat(read)["id"]
    assert ids.n_unique() == truth.height


def test_runs_read_a_complete_spool_instead_of_wahas_stream(simulator_factory, tmp_path):
    simulator = simulator_factory(chats=30, messages=200, engine="NOWEB", api_key=KEY)
    truth = simulator.account.ground_truth_messages()
    chats = pl.DataFrame({"chat_id": truth["chat_id"].unique().sort()})

    async def fetch(directory: Path) -> tuple[int, ChunkFetch]:
        async with WahaClient(simulator.url, KEY) as client:
            result = await fetch_account_stream(client, "default", None, chats, spool_dir=directory)
            assert result is not None
            return client.stats.requests, result

    spool_dir = tmp_path / "group" / "default"
    first_requests, first = asyncio.run(fetch(spool_dir))
    again_requests, again = asyncio.run(fetch(spool_dir))
    assert first_requests >= 1 and again_requests == 0
    assert first.messages.height == again.messages.height == truth.height
    assert again.stats.until == first.stats.until  # the spool's bound, not the second run's own

    # A spool without its manifest is incomplete, and is read again from WAHA.
    (spool_dir / MANIFEST).unlink()
    assert open_spool(spool_dir) is None
    requests, _ = asyncio.run(fetch(spool_dir))
    assert requests >= 1


def test_expired_spools_are_removed(simulator_factory, tmp_path):
    simulator = simulator_factory(chats=10, messages=50, engine="NOWEB", api_key=KEY)
    directory = tmp_path / "spool" / "schema" / "group" / "default"
    _stream(simulator.url, directory)
    remove_expired(tmp_path, max_age=3600)
    assert open_spool(directory) is not None
    remove_expired(tmp_path, max_age=0)
    assert not directory.exists()


def test_a_stream_of_one_page_is_read_by_one_reader_in_one_request(simulator_factory, tmp_path):
    simulator = simulator_factory(chats=10, messages=40, engine="NOWEB", api_key=KEY)
    requests, spool = _stream(simulator.url, tmp_path / "default", page_size=1000)
    assert (requests, spool.readers, spool.pages) == (1, 1, 1)
    assert spool.read(simulator.account.ground_truth_messages()["chat_id"].unique().to_list()).height == (
        simulator.account.ground_truth_messages().height
    )


def test_the_older_rest_of_a_stream_is_split_into_adjoining_spans():
    top = Window(low=1.0, high=1000.0)
    older = split_older(top, 100.0, 3)
    assert [(p.low, p.high) for p in older] == [(1.0, 399.0), (400.0, 699.0)]
    assert (top.low, top.high) == (700.0, 1000.0)  # the first reader keeps the newest span
    # Nothing to split: no message, a server that answered with a newer one, too few seconds.
    for oldest in (None, 1000.0, 1200.0, 999.0):
        top = Window(low=1.0, high=1000.0)
        assert split_older(top, oldest, 3) == [] and top.low == 1.0


def test_a_reader_that_fails_for_good_stops_the_others_and_leaves_no_spool(simulator_factory, tmp_path):
    simulator = simulator_factory(
        chats=40, messages=300, engine="NOWEB", api_key=KEY, fault_routes=("messages",), fault_seed=3
    )
    directory = tmp_path / "default"

    async def run() -> tuple[int, set[asyncio.Task]]:
        async with WahaClient(simulator.url, KEY, max_attempts=1) as client:
            simulator.config.fault_kinds = ("500",)
            simulator.config.fault_rate = 0.2  # no retries: the first fault fails its reader
            with pytest.raises(WahaError):
                await stream_to_spool(client, "default", directory, until=int(time.time()) - 1, page_size=20)
            return client.stats.requests, asyncio.all_tasks() - {asyncio.current_task()}

    requests, left = asyncio.run(run())
    assert requests > 2  # the stream was split before the fault
    assert not left  # the other reader was cancelled, not left running
    assert open_spool(directory) is None and not list(directory.glob("page-*.parquet"))
