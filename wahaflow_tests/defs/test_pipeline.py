"""The whole import through Dagster, compared with the simulator's ground truth."""

from __future__ import annotations

import gc
import time

import dagster as dg
import polars as pl
import pytest

from wahaflow import schemas
from wahaflow.defs.partitions import BACKFILL_TAG, partition_tags
from wahaflow.orchestrate import sync
from wahaflow.simulator.account import GROUND_TRUTH_MESSAGE_COLUMNS
from wahaflow.waha import client as waha_client
from wahaflow.waha.client import ServerVersion
from wahaflow.warehouse.writes import TableWrites
from wahaflow_tests.test_sessions import derive_sessions_reference

GAP = 30 * 60
TRUTH_COLUMNS = list(GROUND_TRUTH_MESSAGE_COLUMNS)


def expected_sessions(truth: pl.DataFrame) -> tuple[dict, pl.DataFrame]:
    session_of, rows = derive_sessions_reference(truth, GAP)
    frame = pl.DataFrame(rows, schema=schemas.SESSIONS).drop("chunk_key")
    return session_of, frame.sort("waha_session", "session_id")


def assert_matches_ground_truth(env) -> None:
    truth = (
        env.simulator.account.ground_truth_messages().select(TRUTH_COLUMNS).sort("waha_session", "message_id")
    )
    stored = env.table("messages", "waha_session, message_id")
    assert stored.height == truth.height, "missing or extra messages"
    assert stored.select(TRUTH_COLUMNS).equals(truth), "stored messages differ from the ground truth"
    session_of, sessions = expected_sessions(truth)
    assert (
        dict(
            zip(
                zip(stored["waha_session"], stored["message_id"], strict=True),
                stored["session_id"],
                strict=True,
            )
        )
        == session_of
    )
    stored_sessions = env.table("sessions", "waha_session, session_id").drop("chunk_key")
    assert stored_sessions.equals(sessions.select(stored_sessions.columns))


@pytest.mark.parametrize("engine", ["NOWEB", "WEBJS", "GOWS"])
def test_full_import_equals_ground_truth_and_second_sync_changes_nothing(sync_env_factory, engine):
    env = sync_env_factory(engine=engine)
    report = env.sync()
    assert report.ok, report
    assert report.chunks_total == 4  # 80 chats / 20 per chunk
    assert_matches_ground_truth(env)
    assert report.totals["duplicates"] == 0
    # Every chat landed in the registry with its chunk; chunks are Dagster partitions.
    chats = env.table("chats", "chat_id")
    assert chats["chunk_key"].null_count() == 0
    assert sorted(chats["chunk_key"].unique()) == env.instance.get_dynamic_partitions("chat_chunks")

    before = {t: env.table(t, "1") for t in ("messages", "sessions", "chats")}
    requests_before = env.simulator.stats.total
    again = env.sync()
    assert again.ok and again.chunks_run == [] and again.messages_fetched == 0
    # Nothing new: the chat list and the address book, not one request per chat.
    assert env.simulator.stats.total - requests_before <= 4
    for table, frame in before.items():
        assert env.table(table, "1").sort(pl.all()).equals(frame.sort(pl.all())), table


def test_ranged_multi_partition_run_writes_exactly_its_chunks(sync_env_factory):
    env = sync_env_factory(chats=100, messages=500)
    registry = env.defs.resolve_job_def("registry_job").execute_in_process(instance=env.instance)
    assert registry.success
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    assert len(keys) == 5
    result = env.defs.resolve_job_def("chunk_import_job").execute_in_process(
        instance=env.instance, tags=partition_tags(keys[1:4])
    )
    assert result.success
    materialized = {(e.asset_key.path[-1], e.partition) for e in result.get_asset_materialization_events()}
    assert {p for a, p in materialized if a == "messages"} == set(keys[1:4])
    stored = env.table("messages", "message_id")
    assert set(stored["chunk_key"].unique()) == set(keys[1:4])
    chats = env.table("chats", "chat_id").filter(pl.col("chunk_key").is_in(keys[1:4]))
    truth = env.simulator.account.ground_truth_messages().filter(
        pl.col("chat_id").is_in(chats["chat_id"].implode())
    )
    assert stored.height == truth.height
    # Per-partition row counts are reported on each partition's materialization.
    counts = {
        e.partition: e.materialization.metadata["dagster/partition_row_count"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "messages"
    }
    per_chunk = stored.group_by("chunk_key").len()
    assert counts == dict(per_chunk.iter_rows())


def test_failed_chunk_leaves_nothing_partial_and_succeeds_when_rerun(sync_env_factory):
    env = sync_env_factory(chats=40, messages=400)
    # Every messages request fails with WAHA's 500 body: beyond the client's retry budget.
    env.simulator.config.fault_routes = ("messages",)
    env.simulator.config.fault_rate = 1.0
    env.simulator.config.fault_kinds = ("500",)
    report = env.sync()
    assert not report.ok and not report.registry_failed
    assert report.failed_chunks == env.instance.get_dynamic_partitions("chat_chunks")
    for table in ("messages", "sessions", "rejects"):  # contacts come from the registry's address book
        assert env.table(table, "1").is_empty(), f"partial rows in {table}"
    assert env.table("chats", "1")["synced_until"].null_count() == 40  # still stale: a re-run picks them up

    # A chunk that fails half-way (some chats fetched, then one failing for good) also writes nothing.
    # At a 50% fault rate most chats get through their 3 attempts and some do not.
    env.simulator.config.fault_rate = 0.5
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    job = env.defs.resolve_job_def("chunk_import_job")
    failures = 0
    for _ in range(5):
        before = {t: env.table(t, "1").sort(pl.all()) for t in ("messages", "sessions", "chats")}
        result = job.execute_in_process(
            instance=env.instance, tags=partition_tags(keys[:1]), raise_on_error=False
        )
        if not result.success:
            failures += 1
            for table, frame in before.items():
                assert env.table(table, "1").sort(pl.all()).equals(frame), f"partial rows in {table}"
    assert failures

    # Faults on some requests only: the client retries them and every chunk completes.
    env.simulator.config.fault_routes = ()
    env.simulator.config.fault_rate = 0.1
    env.simulator.config.fault_kinds = ("500", "429", "truncated", "disconnect")
    report = env.sync()
    assert report.ok, report
    assert_matches_ground_truth(env)


def test_rerunning_a_chunk_three_times_changes_nothing(sync_env_factory):
    env = sync_env_factory(chats=40, messages=400)
    assert env.sync().ok
    snapshot = {t: env.table(t, "1").sort(pl.all()) for t in ("messages", "sessions", "contacts", "chats")}
    job = env.defs.resolve_job_def("chunk_import_job")
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    for key in [keys[0], keys[-1], keys[0]]:
        result = job.execute_in_process(
            instance=env.instance,
            tags=partition_tags([key]),
            run_config={"ops": {"chunk_import": {"config": {"full": True}}}},
        )
        assert result.success
    for table, frame in snapshot.items():
        assert env.table(table, "1").sort(pl.all()).equals(frame), table


@pytest.mark.parametrize("engine", ["NOWEB", "GOWS"])
def test_account_stream_import_equals_ground_truth_with_few_requests(sync_env_factory, monkeypatch, engine):
    monkeypatch.setenv("WAHAFLOW_STREAM_MIN_CHATS", "10")
    env = sync_env_factory(engine=engine, chats=120, messages=900, chunk_size=40, fault_rate=0.05)
    report = env.sync()
    assert report.ok, report
    assert_matches_ground_truth(env)
    # One stream for the whole sync (3 chunks, 2 per run: the second run reads the first one's
    # spool), not one request per chat; a few more for the injected faults.
    messages_requests = env.simulator.stats.by_route.get("messages", 0)
    assert messages_requests <= 4, messages_requests
    assert not list((env.settings.home_dir / "spool").glob("*/*/*")), "the sync left its spool behind"


def test_runs_of_one_group_share_one_stream_and_later_messages_are_not_lost(sync_env_factory, monkeypatch):
    monkeypatch.setenv("WAHAFLOW_STREAM_MIN_CHATS", "10")
    env = sync_env_factory(engine="NOWEB", chats=120, messages=900, chunk_size=40)
    assert env.defs.resolve_job_def("registry_job").execute_in_process(instance=env.instance).success
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    job = env.defs.resolve_job_def("chunk_import_job")

    def run_group(keys: list[str]) -> int:
        """Run `keys` as one run of backfill "b1"; the message requests it made."""
        before = env.simulator.stats.by_route.get("messages", 0)
        tags = {**partition_tags(keys), BACKFILL_TAG: "b1"}
        assert job.execute_in_process(instance=env.instance, tags=tags).success
        return env.simulator.stats.by_route.get("messages", 0) - before

    assert run_group(keys[:1]) == 1  # 40 chats of 120: the whole stream, spooled for the group
    spool = env.settings.home_dir / "spool" / env.settings.db_schema / "b1" / "default"
    assert (spool / "manifest.json").exists()
    # A message after the spool's bound, in a chat of the last chunk.
    chats = env.table("chats", "chat_id")
    late_chat = chats.filter(pl.col("chunk_key") == keys[2])["chat_id"][0]
    time.sleep(1.1)
    env.simulator.account.add_messages(1, chat_ids=[late_chat], at=int(time.time()))
    time.sleep(1.1)  # the next run's own bound is past the late message
    # The chat list (a discovery sensor tick, say) reports the new activity before the next run.
    assert env.defs.resolve_job_def("registry_job").execute_in_process(instance=env.instance).success
    assert run_group(keys[1:]) == 0  # read from the spool
    # The spool ends before the late message: its chat stays stale, and the next sync fetches it.
    assert env.sync().ok
    assert_matches_ground_truth(env)


def test_webjs_never_uses_the_account_stream(sync_env_factory, monkeypatch):
    monkeypatch.setenv("WAHAFLOW_STREAM_MIN_CHATS", "1")
    env = sync_env_factory(engine="WEBJS", chats=30, messages=200)
    assert env.sync().ok
    assert_matches_ground_truth(env)
    assert env.simulator.stats.by_status.get(422, 0) == 0


def test_a_run_that_takes_webjs_for_a_streaming_engine_falls_back_to_chat_by_chat(
    sync_env_factory, monkeypatch
):
    monkeypatch.setenv("WAHAFLOW_STREAM_MIN_CHATS", "1")
    env = sync_env_factory(engine="WEBJS", chats=30, messages=200)
    registry = env.defs.resolve_job_def("registry_job").execute_in_process(instance=env.instance)
    listed = registry.asset_materializations_for_node("chats")[0].metadata
    assert listed["waha_engine"].value == "WEBJS"  # the discovery tells the UI the engine
    # The engine was NOWEB when this process last asked (the server was switched since).
    stale = ServerVersion(version="2026.7.1", engine="NOWEB", tier="CORE")
    monkeypatch.setitem(waha_client._versions, env.simulator.url, (time.monotonic(), stale))
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    job = env.defs.resolve_job_def("chunk_import_job")
    assert job.execute_in_process(instance=env.instance, tags=partition_tags(keys)).success
    assert_matches_ground_truth(env)
    assert env.simulator.stats.by_status.get(422, 0) == 1  # the stream, refused once
    assert env.simulator.url not in waha_client._versions  # asked again next time


def test_sync_takes_more_chunks_per_run_once_they_turn_out_light(sync_env_factory):
    from wahaflow.orchestrate.sync import run_sync
    from wahaflow.orchestrate.warmup import SpoolWarmup

    env = sync_env_factory(engine="WEBJS", chats=80, messages=600, chunk_size=10)  # 8 chunks, 2 a run
    # Nothing tells the chunks' sizes before the first run: the read-ahead got no chat.
    env.simulator.config.fault_routes = ("messages",)
    env.simulator.config.fault_rate = 1.0
    env.simulator.config.fault_kinds = ("500",)
    with SpoolWarmup(env.settings) as warmup:
        assert warmup.result().spooled
        env.simulator.config.fault_rate = 0.0
        report = run_sync(env.settings, env.instance, defs=env.defs, warmup=warmup)
    assert report.ok and len(report.chunks_run) == 8
    assert_matches_ground_truth(env)
    # ~75 messages a chunk: after the first run of 2, the remaining 6 chunks go in one run.
    runs = env.instance.get_runs(filters=dg.RunsFilter(job_name="chunk_import_job"))
    assert len(runs) == 2


def test_every_run_is_sized_by_the_messages_spooled_per_chunk(sync_env_factory, monkeypatch):
    monkeypatch.setenv("WAHAFLOW_STREAM_MIN_CHATS", "10")
    monkeypatch.setattr(sync, "MESSAGES_PER_RUN", 200)
    env = sync_env_factory(chats=120, messages=900, chunk_size=10)  # 12 chunks, 2 per run configured
    assert env.sync().ok
    assert_matches_ground_truth(env)
    per_chunk = dict(env.table("messages", "1").group_by("chunk_key").len().iter_rows())
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    runs = env.instance.get_runs(filters=dg.RunsFilter(job_name="chunk_import_job"), ascending=True)
    ranges = []
    for run in runs:
        tags = run.tags
        first = tags.get("dagster/partition") or tags["dagster/asset_partition_range_start"]
        last = tags.get("dagster/partition") or tags["dagster/asset_partition_range_end"]
        ranges.append(keys[keys.index(first) : keys.index(last) + 1])
    assert [k for r in ranges for k in r] == keys  # every chunk once, in order
    # The sync's warm-up spooled the stream before the first run: every run, the first included,
    # takes as many chunks as fit in the budget (or one heavier chunk), at most 4 x 2.
    for chunks in ranges:
        assert len(chunks) <= 8
        assert len(chunks) == 1 or sum(per_chunk.get(k, 0) for k in chunks) <= 200, chunks
    assert len(ranges[0]) > 2  # the first run too (without the warm-up's spool: the setting, 2)


def test_no_run_of_a_sync_keeps_the_frames_of_an_earlier_run(sync_env_factory, monkeypatch):
    """A run's frames are gone before the next run makes its own: they sit in reference cycles of
    Dagster's step context, which the sync collects after every run, and Dagster's check records
    must not keep a step context alive (`checks._compile_check_records`)."""
    env = sync_env_factory(chats=80, messages=600)  # 4 chunks
    monkeypatch.setattr(sync, "MESSAGES_PER_RUN", 150)  # a run or more per chunk

    def table_writes_alive() -> int:
        return sum(isinstance(o, TableWrites) for o in gc.get_objects())

    alive_at_start: list[int] = []
    execute = sync._execute

    def observed(*args, **kwargs):
        alive_at_start.append(table_writes_alive())
        return execute(*args, **kwargs)

    monkeypatch.setattr(sync, "_execute", observed)
    gc.collect()
    gc.disable()  # only the sync's own collections
    try:
        report = env.sync()
        assert report.ok and len(report.chunks_run) == 4
        assert len(alive_at_start) >= 3  # the discovery and at least two chunk runs
        assert alive_at_start == [0] * len(alive_at_start)
        assert table_writes_alive() == 0
        assert gc.get_freeze_count() == 0  # the heap set aside during the sync is back
    finally:
        gc.enable()
