"""The sync's warm-up: account streams read ahead into the sync's spool while Dagster starts."""

from __future__ import annotations

import asyncio

from wahaflow.orchestrate.sync import run_sync
from wahaflow.orchestrate.warmup import SpoolWarmup
from wahaflow.waha.client import client_from_settings
from wahaflow.waha.spool import open_spool
from wahaflow_tests.defs.test_pipeline import assert_matches_ground_truth


def _stream_requests(env) -> int:
    return env.simulator.stats.by_route.get("messages", 0)


def _kept_answers_ask_nothing(settings, session: str) -> bool:
    async def ask() -> int:
        async with client_from_settings(settings) as client:
            await client.server_version()
            await client.own_id(session)
            return client.stats.requests

    return asyncio.run(ask()) == 0


def test_a_first_import_is_read_ahead_and_its_runs_read_the_spool(sync_env_factory):
    env = sync_env_factory(engine="NOWEB", chats=120, messages=900, chunk_size=40)
    (session,) = env.simulator.accounts
    with SpoolWarmup(env.settings) as warmup:
        warmed = warmup.result()
        assert warmed.spooled == (session,) and warmed.error is None
        spool = open_spool(warmup.group / session)
        assert spool is not None and spool.messages >= env.simulator.account.ground_truth_messages().height
        # The engine and the session's own id are kept for the discovery and the chunk runs.
        assert _kept_answers_ask_nothing(env.settings, session)
        streamed = _stream_requests(env)
        report = run_sync(env.settings, env.instance, defs=env.defs, warmup=warmup)
        assert report.ok
        assert _stream_requests(env) == streamed  # the runs read the spool, not WAHA
        assert report.waha_requests >= warmed.requests
    assert_matches_ground_truth(env)
    assert not warmup.group.exists(), "the sync's spool outlived it"


def test_nothing_is_read_ahead_on_webjs_or_for_an_imported_account(sync_env_factory):
    webjs = sync_env_factory(engine="WEBJS", chats=120, messages=900)
    with SpoolWarmup(webjs.settings) as warmup:
        warmed = warmup.result()
    assert warmed.spooled == () and warmed.error is None
    assert warmed.requests == 1 and _stream_requests(webjs) == 0  # the version (WEBJS has no stream)

    noweb = sync_env_factory(engine="NOWEB", chats=120, messages=900, chunk_size=40)
    assert noweb.sync().ok
    before = _stream_requests(noweb)
    with SpoolWarmup(noweb.settings) as warmup:  # every chat synced: the runs fetch only what is new
        warmed = warmup.result()
    assert warmed.spooled == () and _stream_requests(noweb) == before
    with SpoolWarmup(noweb.settings, full=True) as warmup:  # `--full` reads every history again
        assert warmup.result().spooled == tuple(noweb.simulator.accounts)


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
        streamed = _stream_requests(env)
        report = run_sync(env.settings, env.instance, defs=env.defs, warmup=warmup)
        assert report.ok, report
        assert _stream_requests(env) > streamed  # a run read the stream itself
    assert_matches_ground_truth(env)


def test_a_stopped_warmup_leaves_no_spool(sync_env_factory):
    env = sync_env_factory(engine="NOWEB", chats=120, messages=900, chunk_size=40, latency_ms=300)
    with SpoolWarmup(env.settings) as warmup:
        warmup.stop()  # while it waits for WAHA's answers
        assert warmup.result().spooled == ()
        assert not list(warmup.group.glob("*/manifest.json"))
    assert not warmup.group.exists()
