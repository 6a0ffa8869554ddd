"""The IO manager and the resource through Dagster, with a real instance and a real Postgres."""

# No `from __future__ import annotations` here: Dagster inspects the `context` annotation at runtime.

from collections.abc import Iterator

import dagster as dg
import polars as pl
import psycopg
import pytest
from psycopg import conninfo, sql

from wahaflow import schemas
from wahaflow.warehouse.io_manager import PostgresPolarsIOManager
from wahaflow.warehouse.resource import PostgresResource
from wahaflow.warehouse.tables import TABLE_SPECS
from wahaflow.warehouse.writes import TableWrite, TableWrites
from wahaflow_tests.warehouse.conftest import committed, messages

CHUNKS = dg.DynamicPartitionsDefinition(name="wh_test_chunks")
CHATS_OF = {"c1": ["1@c.us"], "c2": ["2@c.us", "3@c.us"], "c3": ["4@c.us"], "c4": ["5@c.us"]}
BODY = {"text": "v1"}  # what the upstream asset writes; tests change it between runs
SEEN: list[tuple[list[str], pl.DataFrame]] = []


@dg.asset(partitions_def=CHUNKS, metadata={"table": "messages", "write_mode": "replace"})
def chunk_messages(context: dg.AssetExecutionContext) -> pl.DataFrame:
    keys = sorted(context.partition_keys)
    return messages({k: CHATS_OF[k] for k in keys}, per_chat=2, body=BODY["text"])


@dg.asset(partitions_def=CHUNKS, metadata={"table": "sessions", "write_mode": "replace"})
def chunk_sessions(context: dg.AssetExecutionContext, chunk_messages: pl.DataFrame) -> pl.DataFrame:
    SEEN.append((sorted(context.partition_keys), chunk_messages))
    sessions = chunk_messages.group_by("waha_session", "chat_id", "chunk_key").agg(
        session_id=pl.col("session_id").first(),
        started_at=pl.col("sent_at").min(),
        ended_at=pl.col("sent_at").max(),
        message_count=pl.len(),
    )
    return schemas.conform(sessions, schemas.SESSIONS)


@dg.asset(metadata={"table": "contacts", "write_mode": "merge"})
def all_contacts() -> pl.DataFrame:
    frame = pl.DataFrame({"waha_session": ["s", "s"], "contact_id": ["1@c.us", "2@c.us"]})
    return schemas.conform(frame, schemas.CONTACTS)


@dg.asset
def nothing() -> None:
    return None


@dg.asset
def several() -> TableWrites:
    contacts = schemas.conform(
        pl.DataFrame({"waha_session": ["s"], "contact_id": ["9@c.us"], "name": ["N"]}), schemas.CONTACTS
    )
    chats = schemas.conform(
        pl.DataFrame({"waha_session": ["s"], "chat_id": ["9@c.us"], "chunk_key": ["c9"]}), schemas.CHATS
    )
    return TableWrites((TableWrite("contacts", contacts, "merge"), TableWrite("chats", chats, "merge")))


@dg.asset
def every_message(chunk_messages: pl.DataFrame) -> None:
    SEEN.append((["*"], chunk_messages))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(CHUNKS.name, list(CHATS_OF))
        yield inst


@pytest.fixture
def resources(pg_url: str, pg_schema: str) -> dict[str, object]:
    # A password the (trust-authenticated) test server ignores: it must never show up in events.
    url = conninfo.make_conninfo(pg_url, password="s3cr3t-pw")
    postgres = PostgresResource(database_url=url, db_schema=pg_schema)
    return {"postgres": postgres, "io_manager": PostgresPolarsIOManager(postgres=postgres)}


def _run(
    assets: list, instance: dg.DagsterInstance, resources: dict, **kwargs: object
) -> dg.ExecuteInProcessResult:
    SEEN.clear()
    result = dg.materialize(assets, instance=instance, resources=resources, **kwargs)  # type: ignore[arg-type]
    assert result.success
    for event in result.all_events:
        assert "s3cr3t-pw" not in str(event)
    return result


def _chunks(pg_url: str, schema: str, table: str) -> dict[str, int]:
    with psycopg.connect(pg_url, autocommit=True) as c:
        query = sql.SQL("SELECT chunk_key, count(*) FROM {} GROUP BY 1").format(sql.Identifier(schema, table))
        return dict(c.execute(query).fetchall())


def test_single_partition_then_ranged_run(pg_url: str, pg_schema: str, instance, resources) -> None:
    result = _run([chunk_messages, chunk_sessions], instance, resources, partition_key="c2")
    assert _chunks(pg_url, pg_schema, "messages") == {"c2": 4}
    assert _chunks(pg_url, pg_schema, "sessions") == {"c2": 2}
    (mat,) = result.asset_materializations_for_node("chunk_messages")
    assert mat.partition == "c2"
    assert mat.metadata["dagster/table_name"].value == f"{pg_schema}.messages"
    assert mat.metadata["rows_written"].value == 4
    # load_input gave the downstream asset exactly its partition's rows, with the declared schema.
    ((keys, frame),) = SEEN
    assert keys == ["c2"] and frame.schema == schemas.MESSAGES and frame.height == 4

    BODY["text"] = "v2"
    ranged = {"dagster/asset_partition_range_start": "c1", "dagster/asset_partition_range_end": "c3"}
    result = _run([chunk_messages, chunk_sessions], instance, resources, tags=ranged)
    mats = result.asset_materializations_for_node("chunk_messages")
    assert sorted(m.partition for m in mats) == ["c1", "c2", "c3"]
    assert {m.metadata["rows_written"].value for m in mats} == {8}
    assert _chunks(pg_url, pg_schema, "messages") == {"c1": 2, "c2": 4, "c3": 2}
    stored = committed(pg_url, pg_schema, "messages")
    assert {r[6].split()[0] for r in stored} == {"v2"}  # c2 was replaced, not duplicated
    ((keys, frame),) = SEEN
    assert keys == ["c1", "c2", "c3"] and frame.height == 8
    assert _chunks(pg_url, pg_schema, "sessions") == {"c1": 1, "c2": 2, "c3": 1}

    # c4 alone: the others stay as they are.
    _run([chunk_messages], instance, resources, partition_key="c4")
    assert _chunks(pg_url, pg_schema, "messages") == {"c1": 2, "c2": 4, "c3": 2, "c4": 2}
    BODY["text"] = "v1"


def test_unpartitioned_outputs_none_and_table_writes(
    pg_url: str, pg_schema: str, instance, resources
) -> None:
    result = _run([all_contacts, nothing, several], instance, resources)
    assert [r[1] for r in committed(pg_url, pg_schema, "contacts")] == ["1@c.us", "2@c.us", "9@c.us"]
    assert [r[1] for r in committed(pg_url, pg_schema, "chats")] == ["9@c.us"]
    (mat,) = result.asset_materializations_for_node("several")
    assert mat.metadata["contacts/rows_inserted"].value == 1
    assert mat.metadata["chats/rows_inserted"].value == 1
    # Merge twice: nothing changes, nothing is reported as updated.
    result = _run([all_contacts], instance, resources)
    (mat,) = result.asset_materializations_for_node("all_contacts")
    assert (mat.metadata["rows_inserted"].value, mat.metadata["rows_updated"].value) == (0, 0)


def test_unpartitioned_downstream_reads_every_partition(instance, resources) -> None:
    _run([chunk_messages], instance, resources, partition_key="c1")
    _run([chunk_messages], instance, resources, partition_key="c3")
    _run([chunk_messages, every_message], instance, resources, selection=[every_message])
    ((_, frame),) = SEEN
    assert sorted(frame["chunk_key"].unique()) == ["c1", "c3"]


def test_a_failing_write_leaves_no_rows(pg_url: str, pg_schema: str, instance, resources) -> None:
    @dg.asset(partitions_def=CHUNKS, metadata={"table": "messages", "write_mode": "replace"})
    def broken(context: dg.AssetExecutionContext) -> pl.DataFrame:
        good = messages({"c1": ["1@c.us"]})
        return good.with_columns(
            waha_session=pl.when(pl.col("message_id").str.ends_with("2"))
            .then(None)
            .otherwise(pl.col("waha_session"))
        )

    result = dg.materialize(
        [broken], instance=instance, resources=resources, partition_key="c1", raise_on_error=False
    )
    assert not result.success
    assert committed(pg_url, pg_schema, "messages") == []


def test_resource_falls_back_to_the_environment_and_hides_the_password(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAHAFLOW_DATABASE_URL", pg_url)
    resource = PostgresResource(database_url="")
    assert resource.url() == pg_url
    secret = PostgresResource(database_url="postgresql://u:hunter2@db.example:5432/w")
    assert "hunter2" not in repr(secret) and "hunter2" not in secret.display_url()
    assert secret.display_url() == "dbname=w host=db.example port=5432 user=u"


def test_resource_connections_see_a_migrated_schema(pg_url: str, pg_schema: str) -> None:
    resource = PostgresResource(database_url=pg_url, db_schema=pg_schema)
    with resource.connect() as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", [pg_schema]
        ).fetchone()
        assert tables == (len(TABLE_SPECS) + 1,)  # every table + schema_migrations
    with pytest.raises(psycopg.errors.UndefinedTable), resource.connect() as conn:
        conn.execute("SELECT * FROM no_such_table")
