"""The sync's warm-up: account streams read ahead into the sync's spool while Dagster starts."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from wahaflow.orchestrate.sync import run_sync
from wahaflow.orchestrate.warmup import SpoolWarmup
from wahaflow.settings import Settings
from wahaflow.waha.client import client_from_settings
from wahaflow.waha.spool import open_spool
from wahaflow_tests.defs.test_pipeline import assert_matches_ground_truth


def _message_requests(env) -> int:
    return env.simulator.stats.by_route.get("messages", 0)


def _listing_requests(env) -> int:
    routes = env.simulator.stats.by_route
    return routes.get("chats", 0) + routes.get("contacts_all", 0)


def _kept_answers_ask_nothing(settings, session: str) -> bool:
    async def ask() -> int:
        async with client_from_settings(settings) as client:
            await client.server_version()
            await client.own_id(session)
            return client.stats.requests

    return asyncio.run(ask()) == 0


@pytest.mark.parametrize("engine", ["NOWEB", "WEBJS"])
def test_a_first_import_is_read_ahead_and_its_runs_read_the_spool(sync_env_factory, engine):
    # NOWEB: the account stream; WEBJS: every listed chat's history, chat by chat.
    env = sync_env_factory(engine=engine, chats=120, messages=900, chunk_size=40)
    (session,) = env.simulator.accounts
    registry = "SELECT to_regclass('chats') IS NOT NULL"
    assert env.execute(registry) == [(False,)]  # a warehouse never migrated: nothing was ever listed
    with SpoolWarmup(env.settings) as warmup:
        warmed = warmup.result()
        assert warmed.spooled == (session,) and warmed.error is None
        assert env.execute(registry) == [(True,)]  # migrated by the warm-up, beside its requests
        spool = open_spool(warmup.group / session)
        assert spool is not None and spool.messages >= env.simulator.account.ground_truth_messages().height
        assert warmup.progress.messages == spool.messages  # what a progress display shows
        if engine == "WEBJS":
            assert spool.chats is not None and len(spool.chats) == 120
            assert warmup.progress.chats_done == warmup.progress.chats_total == 120
        # The engine and the session's own id are kept for the discovery and the chunk runs.
        assert _kept_answers_ask_nothing(env.settings, session)
        read_ahead = _message_requests(env)
        listings = _listing_requests(env)
        report = run_sync(env.settings, env.instance, defs=env.defs, warmup=warmup)
        assert report.ok
        assert _message_requests(env) == read_ahead  # the runs read the spool, not WAHA
        assert _listing_requests(env) == listings  # the discovery took the warm-up's listing
        assert report.waha_requests >= warmed.requests
    assert_matches_ground_truth(env)
    assert not warmup.group.exists(), "the sync's spool outlived it"


def test_chats_missing_from_a_read_ahead_are_fetched_by_their_runs(sync_env_factory):
    env = sync_env_factory(engine="WEBJS", chats=120, messages=900, chunk_size=40)
    env.simulator.config.fault_routes = ("messages",)  # some chats fail for good in the warm-up
    env.simulator.config.fault_rate = 0.5
    env.simulator.config.fault_kinds = ("500",)
    (session,) = env.simulator.accounts
    with SpoolWarmup(env.settings) as warmup:
        assert warmup.result().spooled == (session,)
        spool = open_spool(warmup.group / session)
        assert spool is not None and spool.chats is not None and 0 < len(spool.chats) < 120
        env.simulator.config.fault_rate = 0.0
        read_ahead = _message_requests(env)
        report = run_sync(env.settings, env.instance, defs=env.defs, warmup=warmup)
        assert report.ok, report
        assert _message_requests(env) - read_ahead >= 120 - len(spool.chats)  # the missing ones
    assert_matches_ground_truth(env)


@pytest.mark.parametrize("engine", ["NOWEB", "WEBJS"])
def test_nothing_is_read_ahead_for_an_imported_account(sync_env_factory, engine):
    env = sync_env_factory(engine=engine, chats=120, messages=900, chunk_size=40)
    assert env.sync().ok
    before = _message_requests(env)
    with SpoolWarmup(env.settings) as warmup:  # every chat synced: the runs fetch only what is new
        warmed = warmup.result()
    assert warmed.spooled == () and warmed.error is None
    assert _message_requests(env) == before  # only the listing, for the discovery
    with SpoolWarmup(env.settings, full=True) as warmup:  # `--full` reads every history again
        assert warmup.result().spooled == tuple(env.simulator.accounts)


def test_a_failed_warmup_leaves_the_fetch_to_the_chunk_runs(sync_env_factory):
    env = sync_env_factory(engine="NOWEB", chats=120, messages=900, chunk_size=40)
    env.simulator.config.fault_routes = ("messages",)  # the stream fails beyond the retries
    env.simulator.config.fault_rate = 1.0
    env.simulator.config.fault_kinds = ("500",)
    with SpoolWarmup(env.settings) as warmup:
        warmed = warmup.result()
        assert warmed.spooled == () and warmed.error is not None
        assert not list(warmup.group.glob("*/manifest.json"))
        env.simulator.config.fault_rate = 0.0  # WAHA recovers before the chunk runs
        streamed = _message_requests(env)
        report = run_sync(env.settings, env.instance, defs=env.defs, warmup=warmup)
        assert report.ok, report
        assert _message_requests(env) > streamed  # a run read the stream itself
    assert_matches_ground_truth(env)


def test_a_stopped_warmup_leaves_no_spool(sync_env_factory):
    env = sync_env_factory(engine="NOWEB", chats=120, messages=900, chunk_size=40, latency_ms=300)
    with SpoolWarmup(env.settings) as warmup:
        warmup.stop()  # while it waits for WAHA's answers
        assert warmup.result().spooled == ()
        assert not list(warmup.group.glob("*/manifest.json"))
    assert not warmup.group.exists()


def test_a_session_that_fails_to_read_ahead_does_not_hold_back_the_others(sync_env_factory, monkeypatch):
    sync_env_factory(engine="NOWEB", chats=120, messages=900, sessions=("default", "work"))
    monkeypatch.setenv("WAHA_SESSIONS", "default,ghost,work")  # no such session on the server
    with SpoolWarmup(Settings(_env_file=None)) as warmup:
        warmed = warmup.result()
    assert warmed.spooled == ("default", "work")
    assert warmed.error is not None and warmed.error.startswith("ghost: ")


def test_the_sync_shows_the_read_ahead_while_its_runs_wait_for_it(sync_env_factory):
    # 500 ms a request: the warm-up (5 sequential round trips) outlasts the discovery (one).
    env = sync_env_factory(engine="WEBJS", chats=120, messages=900, chunk_size=40, latency_ms=500)
    console = Console(file=io.StringIO(), width=200)
    report = run_sync(env.settings, env.instance, defs=env.defs, console=console)
    assert report.ok
    shown = console.file.getvalue()
    assert "Reading ahead" in shown and "120/120 chats" in shown
    assert_matches_ground_truth(env)
