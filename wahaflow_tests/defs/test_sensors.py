"""Sensors called directly with a real instance, the simulator and Postgres."""

from __future__ import annotations

import dagster as dg
import polars as pl

from wahaflow.defs.partitions import RANGE_END, RANGE_START
from wahaflow.defs.sensors import DiscoveryCursor, build_activity_sensor, chat_discovery_sensor


def evaluate(sensor, env, cursor=None):
    resources = {k: v for k, v in env.defs.resources.items() if k in ("waha", "postgres")}
    context = dg.build_sensor_context(instance=env.instance, cursor=cursor, resources=resources)
    return sensor(context), context


def requested_keys(result, all_keys):
    keys = []
    for request in result.run_requests:
        tags = request.tags
        if "dagster/partition" in tags:
            keys.append(tags["dagster/partition"])
        else:
            keys += all_keys[all_keys.index(tags[RANGE_START]) : all_keys.index(tags[RANGE_END]) + 1]
    return keys


def apply_partitions(env, result):
    for request in result.dynamic_partitions_requests:
        env.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_discovery_registers_new_chats_adds_partitions_and_requests_their_runs(sync_env_factory):
    env = sync_env_factory(chats=70, messages=300, chunk_size=20)
    result, _ = evaluate(chat_discovery_sensor, env)
    apply_partitions(env, result)
    keys = env.instance.get_dynamic_partitions("chat_chunks")
    assert keys == ["default-00000", "default-00001", "default-00002", "default-00003"]
    assert sorted(requested_keys(result, keys)) == keys
    assert DiscoveryCursor.parse(result.cursor).passes == 1

    # Nothing new: no partition, no run.
    again, _ = evaluate(chat_discovery_sensor, env, cursor=result.cursor)
    assert not again.dynamic_partitions_requests and not again.run_requests

    # A new chat fills the newest chunk; only that chunk is requested.
    env.simulator.account.add_chat(name="New friend", messages=3)
    third, _ = evaluate(chat_discovery_sensor, env, cursor=again.cursor)
    assert not third.dynamic_partitions_requests
    assert requested_keys(third, keys) == ["default-00003"]


def test_discovery_pages_within_its_time_budget_using_its_cursor(sync_env_factory, monkeypatch):
    import wahaflow.defs.sensors as sensors

    env = sync_env_factory(chats=50, messages=100, chunk_size=20)
    monkeypatch.setattr(sensors, "PAGE_SIZE", 20)
    monkeypatch.setattr(sensors, "TIME_BUDGET_SECONDS", 0.0)  # one page per evaluation
    cursor = None
    for expected_offset in (20, 40):
        result, _ = evaluate(chat_discovery_sensor, env, cursor=cursor)
        cursor = result.cursor
        assert DiscoveryCursor.parse(cursor).offset == expected_offset
    result, _ = evaluate(chat_discovery_sensor, env, cursor=cursor)
    assert DiscoveryCursor.parse(result.cursor) == DiscoveryCursor(session_index=0, offset=0, passes=1)
    assert env.table("chats", "chat_id").height == 50


def test_activity_sensor_requests_only_chunks_with_new_activity(sync_env_factory):
    env = sync_env_factory(chats=60, messages=300, chunk_size=20)
    activity = build_activity_sensor(60)
    assert env.sync().ok
    skipped, _ = evaluate(activity, env)
    assert isinstance(skipped, dg.SkipReason)

    chats = env.table("chats", "chat_id")
    target = chats.filter(pl.col("chunk_key") == "default-00001")["chat_id"][0]
    env.simulator.account.add_messages(2, chat_ids=[target])
    discovery, _ = evaluate(chat_discovery_sensor, env)  # refreshes last activity from the chat list
    assert not discovery.run_requests
    result, _ = evaluate(activity, env)
    assert requested_keys(result, env.instance.get_dynamic_partitions("chat_chunks")) == ["default-00001"]
