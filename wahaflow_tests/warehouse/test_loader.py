"""The bulk loader against a real Postgres: types, modes, idempotency, atomicity, partitions."""

from __future__ import annotations

import datetime as dt
import threading
import time

import polars as pl
import psycopg
import pytest
from psycopg import sql

from wahaflow import schemas
from wahaflow.warehouse.loader import load_frame
from wahaflow.warehouse.migrations import create_tables, migrate
from wahaflow.warehouse.reader import read_frame
from wahaflow.warehouse.tables import TableSpec
from wahaflow_tests.warehouse.conftest import committed, contents, messages

UTC = dt.UTC

# A test-only table with every dtype the loader supports (the warehouse tables use a subset).
ALL_TYPES = pl.Schema(
    {
        "id": pl.Int64,
        "label": pl.String,
        "flag": pl.Boolean,
        "small": pl.Int16,
        "medium": pl.Int32,
        "big": pl.Int64,
        "ratio": pl.Float64,
        "day": pl.Date,
        "at": pl.Datetime("us", "UTC"),
        "chunk_key": pl.String,
    }
)
ALL_TYPES_SPEC = TableSpec("all_types", ALL_TYPES, ("id",))

TRICKY_TEXT = [
    "",
    "plain",
    "emoji 😀👍🏽 and ZWJ 👩‍👩‍👧",
    "NUL\x00inside\x00",
    'quote " and ""double""',
    "comma, semicolon; tab\there",
    "line\nbreak and\r\ncrlf and lone\r",
    "\\.",
    "a\n\\.\nb",
    "\\N",
    "back\\slash",
    "x" * 65_536,
    "  leading and trailing  ",
    "Привет 你好 مرحبا",
]


def _all_types_frame() -> pl.DataFrame:
    n = len(TRICKY_TEXT) + 1
    base = dt.datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "label": [*TRICKY_TEXT, None],
            "flag": [i % 3 == 0 if i % 5 else None for i in range(n)],
            "small": [(-32768 if i == 0 else 32767 if i == 1 else i) if i != 2 else None for i in range(n)],
            "medium": [-(2**31) if i == 0 else 2**31 - 1 if i == 1 else None for i in range(n)],
            "big": [
                -(2**63) if i == 0 else 2**63 - 1 if i == 1 else i * 10**12 if i % 4 else None
                for i in range(n)
            ],
            "ratio": [0.1 * i if i % 3 else None for i in range(n)],
            "day": [dt.date(2024, 2, 29) if i % 2 else None for i in range(n)],
            "at": [base + dt.timedelta(microseconds=i * 1_000_001) if i % 6 else None for i in range(n)],
            "chunk_key": ["k1"] * n,
        },
        schema=ALL_TYPES,
    )


@pytest.fixture
def all_types_table(pg_url: str, wh_schema: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        create_tables(conn, wh_schema, {"all_types": ALL_TYPES_SPEC})
    return wh_schema


def test_every_type_round_trips(pg_url: str, all_types_table: str, conn: psycopg.Connection) -> None:
    frame = _all_types_frame()
    result = load_frame(conn, all_types_table, "all_types", frame, mode="merge")
    conn.commit()
    assert (result.rows_written, result.inserted, result.updated) == (frame.height, frame.height, 0)

    back = read_frame(conn, all_types_table, "all_types", ALL_TYPES).sort("id")
    expected = frame.with_columns(pl.col("label").str.replace_all("\x00", "", literal=True))
    assert back.schema == ALL_TYPES
    assert back.equals(expected)
    # Independently of the reader: what Postgres itself stored.
    stored = dict(
        conn.execute(sql.SQL("SELECT id, label FROM {}.all_types").format(sql.Identifier(all_types_table)))
    )
    assert stored[0] == ""  # an empty string is not NULL
    assert stored[len(TRICKY_TEXT)] is None
    assert stored[3] == "NULinside"
    assert len(stored[11]) == 65_536
    at = conn.execute(
        sql.SQL("SELECT at FROM {}.all_types WHERE id = 1").format(sql.Identifier(all_types_table))
    ).fetchone()
    assert at == (dt.datetime(2000, 1, 1, 0, 0, 1, 0, tzinfo=UTC),)


def test_messages_round_trip_through_the_schema(wh_schema: str, conn: psycopg.Connection) -> None:
    frame = messages({"c1": ["111@c.us", "222@g.us"]}, per_chat=4, body="text with 😀 and \x00 NUL")
    load_frame(conn, wh_schema, "messages", frame, mode="merge")
    back = read_frame(conn, wh_schema, "messages", schemas.MESSAGES).sort("message_id")
    expected = frame.with_columns(pl.col("body").str.replace_all("\x00", "", literal=True)).sort("message_id")
    assert back.equals(expected)


def test_timestamps_do_not_depend_on_the_session_time_zone(wh_schema: str, conn: psycopg.Connection) -> None:
    conn.execute("SET TimeZone = 'America/Los_Angeles'")
    frame = messages({"c1": ["1@c.us"]}, per_chat=1)
    load_frame(conn, wh_schema, "messages", frame, mode="merge")
    (epoch,) = conn.execute(
        sql.SQL("SELECT extract(epoch FROM sent_at) FROM {}").format(sql.Identifier(wh_schema, "messages"))
    ).fetchone()
    assert float(epoch) == frame["sent_at"][0].timestamp()
    assert read_frame(conn, wh_schema, "messages", schemas.MESSAGES)["sent_at"].equals(frame["sent_at"])


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_loading_three_times_equals_loading_once(pg_url: str, wh_schema: str, mode: str) -> None:
    frame = messages({"c1": ["1@c.us", "2@c.us"], "c2": ["3@c.us"]})
    keys = ["c1", "c2"]
    states = []
    for _ in range(3):
        with psycopg.connect(pg_url) as conn:
            load_frame(conn, wh_schema, "messages", frame, mode=mode, partition_keys=keys)  # type: ignore[arg-type]
        states.append(committed(pg_url, wh_schema, "messages"))
    assert states[0] == states[1] == states[2]
    assert len(states[0]) == frame.height


def test_merge_touches_only_changed_rows(wh_schema: str, conn: psycopg.Connection) -> None:
    frame = messages({"c1": ["1@c.us", "2@c.us"]}, per_chat=5)
    load_frame(conn, wh_schema, "messages", frame, mode="merge")
    conn.commit()
    xmin_query = sql.SQL("SELECT message_id, xmin::text FROM {}").format(
        sql.Identifier(wh_schema, "messages")
    )
    before = dict(conn.execute(xmin_query).fetchall())
    conn.commit()

    changed_id = frame["message_id"][3]
    new = pl.DataFrame(
        [
            {**frame.row(0, named=True), "message_id": "false_9@c.us_new"},
        ],
        schema=schemas.MESSAGES,
    )
    edited = frame.with_columns(
        body=pl.when(pl.col("message_id") == changed_id).then(pl.lit("edited")).otherwise(pl.col("body"))
    )
    result = load_frame(conn, wh_schema, "messages", pl.concat([edited, new]), mode="merge")
    conn.commit()
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, frame.height - 1)

    after = dict(conn.execute(xmin_query).fetchall())
    assert {m for m in before if after[m] != before[m]} == {changed_id}
    assert after.keys() - before.keys() == {"false_9@c.us_new"}


def test_keep_existing_on_null(wh_schema: str, conn: psycopg.Connection) -> None:
    full = pl.DataFrame(
        {"waha_session": ["s"], "contact_id": ["1@c.us"], "name": ["Ann"], "push_name": ["annie"]},
        schema=schemas.CONTACTS,
    )
    load_frame(conn, wh_schema, "contacts", full, mode="merge")
    partial = full.with_columns(name=pl.lit(None, pl.String), push_name=pl.lit("ann"))
    result = load_frame(conn, wh_schema, "contacts", partial, mode="merge", keep_existing_on_null=True)
    assert result.updated == 1
    assert contents(conn, wh_schema, "contacts") == [("s", "1@c.us", "Ann", "ann")]
    again = load_frame(conn, wh_schema, "contacts", partial, mode="merge", keep_existing_on_null=True)
    assert again.updated == 0


def test_duplicate_keys_in_a_frame_are_stored_once_last_wins(
    wh_schema: str, conn: psycopg.Connection
) -> None:
    frame = messages({"c1": ["1@c.us"]}, per_chat=3)
    dup = frame.head(1).with_columns(body=pl.lit("last"))
    for mode in ("merge", "replace"):
        result = load_frame(
            conn, wh_schema, "messages", pl.concat([frame, dup]), mode=mode, partition_keys=["c1"]
        )  # type: ignore[arg-type]
        assert result.duplicates_collapsed == 1
        rows = read_frame(conn, wh_schema, "messages", schemas.MESSAGES)
        assert rows.height == 3
        assert rows.filter(pl.col("message_id") == frame["message_id"][0])["body"].to_list() == ["last"]


def test_multi_partition_replace_replaces_exactly_its_partitions(
    wh_schema: str, conn: psycopg.Connection
) -> None:
    old = messages({"c1": ["1@c.us"], "c2": ["2@c.us"], "c3": ["3@c.us"], "c4": ["4@c.us"]}, body="old")
    load_frame(conn, wh_schema, "messages", old, mode="replace", partition_keys=["c1", "c2", "c3", "c4"])
    untouched = contents(conn, wh_schema, "messages")

    # c2 gets new rows, c3 becomes empty (no rows in the frame), c1 and c4 are not part of the run.
    new = messages({"c2": ["2@c.us", "5@c.us"]}, per_chat=2, body="new")
    result = load_frame(conn, wh_schema, "messages", new, mode="replace", partition_keys=["c2", "c3"])
    assert (result.deleted, result.inserted) == (6, 4)
    rows = read_frame(conn, wh_schema, "messages", schemas.MESSAGES)
    by_chunk = dict(rows.group_by("chunk_key").len().iter_rows())
    assert by_chunk == {"c1": 3, "c2": 4, "c4": 3}
    assert set(rows.filter(pl.col("chunk_key") == "c2")["body"].str.slice(0, 3)) == {"new"}
    keep = [r for r in untouched if r[-1] in ("c1", "c4")]
    assert [r for r in contents(conn, wh_schema, "messages") if r[-1] in ("c1", "c4")] == keep


def test_rows_outside_the_partitions_are_refused(wh_schema: str, conn: psycopg.Connection) -> None:
    frame = messages({"c1": ["1@c.us"], "c9": ["9@c.us"]})
    with pytest.raises(ValueError, match="outside"):
        load_frame(conn, wh_schema, "messages", frame, mode="replace", partition_keys=["c1"])
    assert contents(conn, wh_schema, "messages") == []


def test_replace_scope_replaces_the_chats_present_in_the_frame(
    wh_schema: str, conn: psycopg.Connection
) -> None:
    def sessions(chat: str, count: int, tag: str) -> list[dict]:
        return [
            {
                "waha_session": "s",
                "session_id": f"{chat}:{tag}{i}",
                "chat_id": chat,
                "message_count": 1,
                "chunk_key": "c1",
            }
            for i in range(count)
        ]

    first = pl.DataFrame(sessions("a", 3, "x") + sessions("b", 2, "x"), schema=schemas.SESSIONS)
    result = load_frame(
        conn, wh_schema, "sessions", first, mode="replace", replace_scope=["waha_session", "chat_id"]
    )
    # Empty table: nothing to replace, one COPY straight into it.
    assert (result.deleted, result.inserted) == (0, 5) and result.copy_seconds == result.seconds
    second = pl.DataFrame(sessions("a", 1, "y"), schema=schemas.SESSIONS)
    result = load_frame(
        conn, wh_schema, "sessions", second, mode="replace", replace_scope=["waha_session", "chat_id"]
    )
    assert (result.deleted, result.inserted) == (3, 1)
    assert [r[1] for r in contents(conn, wh_schema, "sessions")] == ["a:y0", "b:x0", "b:x1"]


def test_whole_table_replace_and_empty_frames(wh_schema: str, conn: psycopg.Connection) -> None:
    frame = messages({"c1": ["1@c.us"]})
    load_frame(conn, wh_schema, "messages", frame, mode="replace")
    empty = schemas.empty(schemas.MESSAGES)
    assert load_frame(conn, wh_schema, "messages", empty, mode="merge").rows_written == 0
    assert len(contents(conn, wh_schema, "messages")) == 3
    assert load_frame(conn, wh_schema, "messages", empty, mode="replace", partition_keys=["c1"]).deleted == 3
    assert contents(conn, wh_schema, "messages") == []


def test_a_constraint_violation_leaves_the_table_as_before(pg_url: str, wh_schema: str) -> None:
    good = messages({"c1": ["1@c.us", "2@c.us"]})
    with psycopg.connect(pg_url) as conn:
        load_frame(conn, wh_schema, "messages", good, mode="merge")
    before = committed(pg_url, wh_schema, "messages")

    bad = messages({"c1": ["1@c.us", "2@c.us", "3@c.us"]}, body="changed")
    bad = bad.with_columns(
        message_id=pl.when(pl.col("message_id") == bad["message_id"][-1])
        .then(None)
        .otherwise(pl.col("message_id"))
    )
    for mode in ("merge", "replace"):
        with psycopg.connect(pg_url) as conn:
            with pytest.raises(psycopg.errors.NotNullViolation), conn.transaction():
                load_frame(conn, wh_schema, "sessions", schemas.empty(schemas.SESSIONS), mode="merge")
                load_frame(conn, wh_schema, "messages", bad, mode=mode, partition_keys=["c1"])  # type: ignore[arg-type]
            # The caller's transaction is still usable after the loader's savepoint rolled back.
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert committed(pg_url, wh_schema, "messages") == before


def test_a_savepoint_failure_keeps_the_callers_earlier_work_recoverable(
    wh_schema: str, conn: psycopg.Connection
) -> None:
    with conn.transaction():
        load_frame(conn, wh_schema, "messages", messages({"c1": ["1@c.us"]}), mode="merge")
        with pytest.raises(ValueError):
            load_frame(
                conn, wh_schema, "messages", messages({"c9": ["9@c.us"]}), mode="merge", partition_keys=["c1"]
            )
        bad = messages({"c1": ["2@c.us"]}).with_columns(waha_session=pl.lit(None, pl.String))
        with pytest.raises(psycopg.errors.NotNullViolation):
            load_frame(conn, wh_schema, "messages", bad, mode="merge")
    assert len(contents(conn, wh_schema, "messages")) == 3


def test_a_killed_connection_leaves_the_table_as_before(pg_url: str, wh_schema: str) -> None:
    with psycopg.connect(pg_url) as conn:
        load_frame(conn, wh_schema, "messages", messages({"c1": ["1@c.us"]}), mode="merge")
    before = committed(pg_url, wh_schema, "messages")

    big = messages({"c1": [f"{i}@c.us" for i in range(200)]}, per_chat=200, body="y" * 200)  # 40k rows
    victim = psycopg.connect(pg_url)
    pid = victim.info.backend_pid
    stop = threading.Event()

    def killer() -> None:
        # Kill the loading backend once it has started writing (staging exists or rows are arriving).
        with psycopg.connect(pg_url, autocommit=True) as admin:
            while not stop.is_set():
                state = admin.execute(
                    "SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid]
                ).fetchone()
                if state and state[0] == "active" and ("COPY" in state[1] or "INSERT" in state[1]):
                    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                    return
                time.sleep(0.001)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with pytest.raises(psycopg.OperationalError), victim.transaction():
            for _ in range(20):  # one transaction; the kill lands during one of these loads
                load_frame(victim, wh_schema, "messages", big, mode="replace", partition_keys=["c1"])
    finally:
        stop.set()
        thread.join(10)
        victim.close()
    assert committed(pg_url, wh_schema, "messages") == before


def test_identifiers_are_quoted(pg_url: str, conn: psycopg.Connection) -> None:
    schema = 'odd "schema"; DROP TABLE x; --'
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        migrate(admin, schema)
    try:
        frame = messages({"c'1": ["1@c.us"]})
        load_frame(conn, schema, "messages", frame, mode="replace", partition_keys=["c'1"])
        assert read_frame(conn, schema, "messages", partition_keys=["c'1"]).height == 3
    finally:
        conn.rollback()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_a_merge_of_new_rows_copies_directly_and_falls_back_when_a_key_exists(
    wh_schema: str, conn: psycopg.Connection
) -> None:
    first = messages({"c1": ["1@c.us"]}, per_chat=3)
    # Empty table: one COPY straight into it (no staging table, so copy time is the whole time).
    result = load_frame(conn, wh_schema, "messages", first, mode="merge")
    assert result.inserted == 3 and result.copy_seconds == result.seconds
    # Told the rows are new but one is stored already: the direct COPY is rolled back to its
    # savepoint and the rows are merged; nothing is duplicated, the change is applied.
    again = pl.concat(
        [first.head(1).with_columns(pl.lit("changed").alias("body")), messages({"c1": ["2@c.us"]})]
    )
    result = load_frame(conn, wh_schema, "messages", again, mode="merge", assume_new=True)
    assert result.inserted == 3 and result.updated == 1
    stored = contents(conn, wh_schema, "messages", order_by="message_id")
    assert len(stored) == 6
    assert sum(1 for row in stored if row[6] == "changed") == 1
    conn.commit()
