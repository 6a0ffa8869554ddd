"""Integration with the project's WAHA simulator: importing a simulated account through the client
gives exactly its ground truth, on every engine, with faults and with messages arriving mid-fetch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import polars as pl
import pytest

from wahaflow.waha.client import WahaClient
from wahaflow.waha.errors import WahaAuthError
from wahaflow.waha.fetch import ChunkFetch, fetch_chats, fetch_chunk, fetch_contacts

pytest.importorskip("wahaflow.simulator.server")

from wahaflow.simulator.account import GROUND_TRUTH_MESSAGE_COLUMNS

ENGINES = ("WEBJS", "NOWEB", "GOWS")
KEY = "sim-key"


def make_client(url: str, **kwargs: Any) -> WahaClient:
    options: dict[str, Any] = {
        "page_size": 40,
        "concurrency": 8,
        "timeout": 5.0,
        "max_attempts": 8,
        "backoff_initial": 0.01,
        "backoff_max": 0.1,
    }
    return WahaClient(url, KEY, **{**options, **kwargs})


def comparable(messages: pl.DataFrame) -> pl.DataFrame:
    return messages.select(GROUND_TRUTH_MESSAGE_COLUMNS).sort("chat_id", "sent_at", "message_id")


def assert_same_messages(got: pl.DataFrame, truth: pl.DataFrame) -> None:
    got = comparable(got)
    truth = comparable(truth)
    missing = truth.join(got, on="message_id", how="anti")
    extra = got.join(truth, on="message_id", how="anti")
    assert missing.height == 0, f"missing: {missing.head(5)}"
    assert extra.height == 0, f"unexpected: {extra.head(5)}"
    assert got["message_id"].n_unique() == got.height, "a message twice"
    joined = got.join(truth, on="message_id", suffix="_truth")
    for column in GROUND_TRUTH_MESSAGE_COLUMNS:
        if column == "message_id":
            continue
        differ = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_truth")))
        assert differ.height == 0, (
            f"{column} differs: {differ.select('message_id', column, f'{column}_truth')}"
        )
    assert got.equals(truth)


async def import_account(url: str, chunk_size: int = 25, **client_kwargs: Any) -> tuple[Any, ...]:
    """Discover chats, fetch every chunk of `chunk_size` chats, read contacts: like a full sync."""
    async with make_client(url, **client_kwargs) as client:
        info = await client.session_info("default")
        chats, chat_rejects, _ = await fetch_chats(client, "default")
        overview, _, _ = await fetch_chats(client, "default", overview=True)
        contacts, _ = await fetch_contacts(client, "default")
        until = int(time.time()) - 1
        results: list[ChunkFetch] = []
        for start in range(0, chats.height, chunk_size):
            chunk = chats.slice(start, chunk_size)
            results.append(await fetch_chunk(client, "default", info.me_id, chunk, until=until))
        return info, chats, chat_rejects, overview, contacts, results, until, client.stats


@pytest.mark.parametrize("engine", ENGINES)
def test_whole_account_with_faults_equals_the_ground_truth(simulator_factory: Any, engine: str) -> None:
    sim = simulator_factory(chats=60, messages=1_500, seed=11, engine=engine, api_key=KEY, fault_rate=0.1)
    info, chats, chat_rejects, overview, contacts, results, _until, stats = asyncio.run(
        import_account(sim.url)
    )
    account = sim.account
    assert info.me_id == account.me
    assert sim.stats.faults, "the simulator injected no fault"
    assert stats.retries > 0

    messages = pl.concat([r.messages for r in results])
    assert_same_messages(messages, account.ground_truth_messages())
    assert pl.concat([r.rejects for r in results]).height == 0

    truth_chats = account.ground_truth_chats()
    listed = chats.sort("chat_id")
    assert listed["chat_id"].to_list() == truth_chats["chat_id"].to_list()
    assert listed["is_group"].to_list() == truth_chats["is_group"].to_list()
    assert listed["last_message_at"].to_list() == truth_chats["last_message_at"].to_list()
    assert chat_rejects.height == 0
    names = overview.sort("chat_id").select("chat_id", "name")
    assert names.equals(truth_chats.select("chat_id", "name"))

    assert contacts.sort("contact_id").equals(account.ground_truth_contacts())

    # contacts seen in messages: every 1:1 partner and every group sender other than me
    seen = pl.concat([r.contacts for r in results])["contact_id"].unique()
    truth = account.ground_truth_messages()
    expected = pl.concat(
        [
            truth.filter(~pl.col("chat_id").str.ends_with("@g.us"))["chat_id"],
            truth.filter(~pl.col("from_me"))["sender_id"],
        ]
    ).unique()
    assert set(expected) <= set(seen)

    pages = pl.concat([r.stats.per_chat for r in results])
    small = pages.filter(pl.col("messages") < 40)
    assert (small["pages"] == 1).all()  # a chat smaller than a page costs one request


@pytest.mark.parametrize("engine", ENGINES)
def test_messages_arriving_during_paging(simulator_factory: Any, engine: str) -> None:
    sim = simulator_factory(
        chats=30,
        messages=900,
        seed=5,
        engine=engine,
        api_key=KEY,
        fault_rate=0.1,
        fault_kinds=("500", "422", "truncated", "disconnect"),
        arrivals_per_request=2.0,
    )

    async def run() -> tuple[pl.DataFrame, int, ChunkFetch]:
        async with make_client(sim.url, page_size=15) as client:
            info = await client.session_info("default")
            chats, _, _ = await fetch_chats(client, "default")
            until = int(time.time()) - 1
            result = await fetch_chunk(client, "default", info.me_id, chats, until=until)
            return chats, until, result

    _chats, until, result = asyncio.run(run())
    assert sim.stats.arrivals > 0
    truth = sim.account.ground_truth_messages()
    cutoff = pl.lit(until).cast(pl.Int64) * 1_000_000
    in_window = truth.filter(pl.col("sent_at").cast(pl.Int64) <= cutoff)
    assert truth.height > in_window.height  # messages did arrive after the bound
    assert_same_messages(result.messages, in_window)
    assert result.messages.filter(pl.col("sent_at").cast(pl.Int64) > cutoff).height == 0


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB"])
def test_incremental_fetch_from_a_lower_bound(simulator_factory: Any, engine: str) -> None:
    sim = simulator_factory(chats=20, messages=600, seed=9, engine=engine, api_key=KEY)

    async def run() -> tuple[ChunkFetch, int, int]:
        async with make_client(sim.url, page_size=25) as client:
            info = await client.session_info("default")
            chats, _, _ = await fetch_chats(client, "default")
            truth = sim.account.ground_truth_messages()
            stamps = truth["sent_at"].dt.epoch("s")
            since = int(stamps.quantile(0.6))
            until = int(stamps.quantile(0.9))
            planned = chats.with_columns(pl.lit(since, pl.Int64).alias("since"))
            return await fetch_chunk(client, "default", info.me_id, planned, until=until), since, until

    result, since, until = asyncio.run(run())
    truth = sim.account.ground_truth_messages()
    epoch = pl.col("sent_at").dt.epoch("s")
    assert_same_messages(result.messages, truth.filter(epoch.is_between(since, until)))


def test_webjs_empty_window_crash_is_an_empty_window(simulator_factory: Any) -> None:
    """Real WEBJS answers 500 when nothing it loads lies in the window; that is not a failure."""
    sim = simulator_factory(
        chats=12, messages=300, seed=4, engine="WEBJS", api_key=KEY, webjs_empty_batch_error=True
    )

    async def run() -> tuple[ChunkFetch, int]:
        async with make_client(sim.url, page_size=25) as client:
            info = await client.session_info("default")
            chats, _, _ = await fetch_chats(client, "default")
            since = int(chats["last_message_at"].dt.epoch("s").median()) + 1  # half the chats: nothing new
            planned = chats.with_columns(pl.lit(since, pl.Int64).alias("since"))
            return await fetch_chunk(client, "default", info.me_id, planned), since

    result, since = asyncio.run(run())
    assert sim.stats.by_status.get(500, 0) > 0  # the engine did crash
    truth = sim.account.ground_truth_messages()
    assert_same_messages(result.messages, truth.filter(pl.col("sent_at").dt.epoch("s") >= since))
    crashed = result.stats.per_chat.filter(pl.col("messages") == 0)
    assert crashed.height > 0 and (crashed["requests"] == 1).all()


def test_wrong_key_is_one_request(simulator_factory: Any) -> None:
    sim = simulator_factory(chats=5, messages=20, engine="NOWEB", api_key="another-key")

    async def run() -> None:
        async with make_client(sim.url) as client:
            await client.session_info("default")

    with pytest.raises(WahaAuthError, match="check WAHA_API_KEY"):
        asyncio.run(run())
    assert sim.stats.total == 1
