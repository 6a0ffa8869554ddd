import polars as pl
import pytest

from wahaflow.chunks import assign_chunks, chunk_key, chunk_prefix

REGISTERED = pl.DataFrame(schema={"waha_session": pl.String, "chat_id": pl.String, "chunk_key": pl.String})


def _chats(session: str, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"waha_session": [session] * len(ids), "chat_id": ids})


def test_keys_are_ui_safe_and_sort_in_creation_order():
    assert chunk_key("default", 7) == "default-00007"
    assert chunk_prefix("a,b|c[d]...e f") == "a_b_c_d__.e_f"
    assert "," not in chunk_prefix("x,y") and "..." not in chunk_prefix("x...y")
    assert sorted([chunk_key("s", i) for i in (10, 2, 1)]) == [chunk_key("s", i) for i in (1, 2, 10)]


def test_first_discovery_fills_chunks_in_chat_id_order():
    chats = _chats("default", [f"{i:03d}@c.us" for i in range(250)][::-1])
    out = assign_chunks(chats, REGISTERED, chunk_size=100)
    counts = out.group_by("chunk_key").len().sort("chunk_key")
    assert counts.to_dicts() == [
        {"chunk_key": "default-00000", "len": 100},
        {"chunk_key": "default-00001", "len": 100},
        {"chunk_key": "default-00002", "len": 50},
    ]
    assert out.filter(pl.col("chunk_key") == "default-00000")["chat_id"].max() == "099@c.us"


def test_new_chats_fill_newest_chunk_and_old_chats_never_move():
    first = assign_chunks(_chats("default", [f"{i:03d}@c.us" for i in range(150)]), REGISTERED, 100)
    registered = first.select("waha_session", "chat_id", "chunk_key")
    # Chat list now also has 70 new chats, some sorting before the old ones.
    again = _chats("default", [f"{i:03d}@c.us" for i in range(150)] + [f"x{i:03d}@c.us" for i in range(60)])
    again = pl.concat([again, _chats("default", [f"0{i:03d}@c.us" for i in range(10)])])
    out = assign_chunks(again, registered, 100)
    assert out.height == 70
    assert set(out["chat_id"]).isdisjoint(registered["chat_id"])
    counts = dict(out.group_by("chunk_key").len().iter_rows())
    assert counts == {"default-00001": 50, "default-00002": 20}


def test_sessions_are_independent_and_assignment_is_deterministic():
    chats = pl.concat([_chats("a", ["1@c.us", "2@c.us", "3@c.us"]), _chats("b", ["1@c.us"])])
    out1 = assign_chunks(chats, REGISTERED, 2)
    out2 = assign_chunks(chats.reverse(), REGISTERED, 2)
    assert out1.equals(out2)
    assert out1["chunk_key"].to_list() == ["a-00000", "a-00000", "a-00001", "b-00000"]


def test_duplicate_chats_in_listing_are_assigned_once():
    out = assign_chunks(_chats("a", ["1@c.us", "1@c.us"]), REGISTERED, 10)
    assert out.height == 1


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError):
        assign_chunks(_chats("a", ["1@c.us"]), REGISTERED, 0)


def test_register_keeps_known_chunks_and_reports_new_keys():
    from wahaflow import schemas
    from wahaflow.chunks import register

    def listed(ids):
        return schemas.conform(
            _chats("default", ids).with_columns(pl.col("chat_id").alias("name")), schemas.CHATS
        )

    rows, new_keys = register(listed(["a@c.us", "b@c.us", "c@c.us"]), REGISTERED, 2)
    assert new_keys == ["default-00000", "default-00001"]
    registered = rows.select("waha_session", "chat_id", "chunk_key")
    rows2, new_keys2 = register(listed(["c@c.us", "b@c.us", "a@c.us", "d@c.us"]), registered, 2)
    assert new_keys2 == []
    assert dict(rows2.select("chat_id", "chunk_key").iter_rows()) == {
        "a@c.us": "default-00000",
        "b@c.us": "default-00000",
        "c@c.us": "default-00001",
        "d@c.us": "default-00001",
    }
    assert rows2.columns == list(schemas.CHATS)


def test_runs_are_contiguous_and_hold_at_most_size_chunks_of_work() -> None:
    from wahaflow.defs.partitions import LIGHT_CHUNK_SHARE, batches

    keys = [f"default-{i:05d}" for i in range(12)]
    wanted = [k for k in keys if k != "default-00005"]  # a gap splits a range
    assert batches(keys, wanted, 3) == [keys[0:3], keys[3:5], keys[6:9], keys[9:12]]
    # Chunks with no whole history to fetch count as 1/LIGHT_CHUNK_SHARE of one.
    heavy = {"default-00000", "default-00001"}
    runs = batches(keys, keys, 2, heavy)
    assert runs[0] == keys[0:2]
    assert [len(r) for r in runs[1:]] == [2 * LIGHT_CHUNK_SHARE, 12 - 2 - 2 * LIGHT_CHUNK_SHARE]
    assert [k for run in runs for k in run] == keys


def test_sync_runs_grow_when_chunks_are_light_and_never_past_four_times() -> None:
    from wahaflow.orchestrate.sync import MESSAGES_PER_RUN, next_run_size

    assert next_run_size(25, 25, 25 * 500) == 100  # big: 500 messages a chunk
    assert next_run_size(25, 25, 25 * 4_000) == MESSAGES_PER_RUN // 4_000 == 25  # huge
    assert next_run_size(25, 25, 25 * 50_000) == 25  # never below the setting
    assert next_run_size(25, 25, 25 * 2_000) == MESSAGES_PER_RUN // 2_000 == 50
    assert next_run_size(25, 10, 0) == 100  # nothing fetched (inbox events only)


def test_weighted_runs_fill_a_message_budget_contiguously() -> None:
    from wahaflow.defs.partitions import weighted_run

    keys = [f"default-{i:05d}" for i in range(8)]
    weights = dict(zip(keys, [10, 20, 30, 500, 5, 5, 5, 5], strict=True))
    assert weighted_run(keys, keys, weights, 100, 10) == keys[0:3]  # 60; with the next, 560
    assert weighted_run(keys, keys[3:], weights, 100, 10) == keys[3:4]  # one chunk over budget: alone
    assert weighted_run(keys, keys[4:], weights, 100, 3) == keys[4:7]  # at most 3 chunks
    assert weighted_run(keys, [keys[4], keys[6]], weights, 100, 10) == keys[4:5]  # a gap ends a run
    assert weighted_run(keys, keys[5:], {}, 100, 10) == keys[5:]  # unknown chunks weigh nothing
