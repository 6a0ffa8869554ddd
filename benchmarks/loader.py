"""Loader benchmark: `wahaflow.warehouse.loader.load_frame` against its floor and a naive baseline.

Rows: a realistic MESSAGES frame (design.md §4) shaped like the WAHA client's output for a big
account: chats of very different sizes, each chat's messages together in time order, WAHA-style
serialized ids (`{fromMe}_{chat}_{id}`, group ids with the participant suffix), bodies of skewed
length with emoji, quotes, commas and newlines, some empty (media) bodies.

Cases (each into a freshly migrated, indexed `messages` table of its own schema):
- loader merge into an empty table, then a re-load of the same rows (all unchanged), then replace;
- naive per-row INSERT (`executemany` of 10,000 rows, one statement per row): the slow baseline;
- `psql \\copy` of the same rows as CSV into a fresh indexed table: the floor for a logged,
  indexed load (and into an unindexed TEMP table: the raw COPY floor).

Run: `python -m benchmarks.loader [rows]` (default 1,000,000) against `WAHAFLOW_BENCH_DATABASE_URL`,
else the embedded server under `WAHAFLOW_HOME`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

from wahaflow import schemas
from wahaflow.warehouse.loader import load_frame
from wahaflow.warehouse.migrations import migrate

ROWS = 1_000_000
BASELINE_ROWS = 10_000
PSQL = shutil.which("psql") or "/usr/bin/psql"

_WORD_TEXT = (
    "ok yes no hey hi thanks tomorrow today tonight meeting station coffee call later sure "
    "what when where who why how lol haha 😂 👍 ❤️ 🙏🏽 café straße naïve Привет 你好 مرحبا "
    'https://example.com/a?b=1 "quoted" a,b it\'s 10:30 €5'
)
_WORDS = _WORD_TEXT.split()


def _bodies(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        words = max(1, int(rng.lognormvariate(1.6, 0.9)))
        text = " ".join(rng.choice(_WORDS) for _ in range(min(words, 400)))
        if rng.random() < 0.05:
            text = text.replace(" ", "\n", 2)
        out.append("" if rng.random() < 0.04 else text)
    return out


def messages_frame(rows: int = ROWS, *, seed: int = 7, chats_per_chunk: int = 100) -> pl.DataFrame:
    """A realistic MESSAGES frame of exactly `rows` rows with unique keys (deterministic for `seed`)."""
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < rows:
        sizes.append(max(1, int(rng.paretovariate(1.2) * 20)))
    sizes[-1] -= sum(sizes) - rows
    chats = len(sizes)
    bodies = pl.Series("body", _bodies(rng, 8192))
    chat = (
        pl.DataFrame({"chat": pl.int_range(chats, eager=True), "n": sizes})
        .with_columns(
            is_group=(pl.col("chat") % 9 == 0),
            phone=(pl.col("chat") * 7919 % 900_000_000 + 4_915_100_000_000).cast(pl.String),
            start=pl.lit(1_600_000_000) + pl.col("chat").hash(seed) % 50_000_000,
        )
        .with_columns(
            chat_id=pl.when(pl.col("is_group"))
            .then(pl.format("{}-1600000000@g.us", pl.col("phone")))
            .otherwise(pl.format("{}@c.us", pl.col("phone"))),
            chunk_key=pl.format("chunk-{}", (pl.col("chat") // chats_per_chunk).cast(pl.String).str.zfill(5)),
        )
    )
    frame = (
        chat.select(pl.col("chat").repeat_by("n").explode())
        .join(chat, on="chat", how="left", maintain_order="left")
        .with_columns(i=pl.int_range(pl.len(), dtype=pl.Int64))
        .with_columns(h=pl.col("i").hash(seed))
        .with_columns(
            from_me=(pl.col("h") % 5 < 2),
            gap=(pl.col("h") // 7 % 3600 + 1).cast(pl.Int64),
            member=(pl.col("h") // 11 % 40 + 4_917_000_000_000).cast(pl.String),
        )
        .with_columns(
            seconds=pl.col("start") + pl.col("gap").cum_sum().over("chat"),
            suffix=(pl.col("h") // 13).cast(pl.String).str.slice(0, 16).str.zfill(16),
        )
        .with_columns(
            waha_session=pl.lit("default"),
            message_id=pl.when(pl.col("is_group") & ~pl.col("from_me"))
            .then(pl.format("false_{}_3EB0{}_{}@c.us", pl.col("chat_id"), pl.col("suffix"), pl.col("member")))
            .otherwise(pl.format("{}_{}_3EB0{}", pl.col("from_me"), pl.col("chat_id"), pl.col("suffix"))),
            sent_at=pl.from_epoch("seconds", time_unit="s")
            .dt.cast_time_unit("us")
            .dt.replace_time_zone("UTC"),
            sender_id=pl.when(pl.col("from_me"))
            .then(None)
            .when(pl.col("is_group"))
            .then(pl.format("{}@c.us", pl.col("member")))
            .otherwise(pl.col("chat_id")),
            has_media=(pl.col("h") // 19 % 25 == 0),
            ack=(pl.col("h") // 23 % 4).cast(pl.Int16),
            session_id=pl.format("{}:{}", pl.col("chat_id"), (pl.col("i") // 12).cast(pl.String)),
        )
    )
    frame = frame.with_columns(body=bodies.gather(frame.get_column("h") // 17 % len(bodies)))
    return schemas.conform(frame, schemas.MESSAGES)


@contextmanager
def _fresh_schema(url: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, name)
        conn.execute("CHECKPOINT")
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _row(case: str, rows: int, seconds: float, note: str = "") -> dict[str, object]:
    return {
        "load_1m": round(os.getloadavg()[0], 1),
        "case": case,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": int(rows / seconds),
        "note": note,
    }


def _backend_cpu(conn: psycopg.Connection) -> float | None:
    """CPU seconds used so far by `conn`'s server process, if the server runs on this machine."""
    try:
        stat = Path(f"/proc/{conn.info.backend_pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loader_cases(url: str, frame: pl.DataFrame) -> list[dict[str, object]]:
    out = []
    keys = frame.get_column("chunk_key").unique().to_list()
    with _fresh_schema(url) as schema, psycopg.connect(url) as conn:
        for case, mode in (
            ("loader merge, empty table", "merge"),
            ("loader merge, same rows again", "merge"),
            ("loader replace, same partitions", "replace"),
        ):
            server_before = _backend_cpu(conn)
            client_before = time.process_time()
            started = time.perf_counter()
            result = load_frame(conn, schema, "messages", frame, mode=mode, partition_keys=keys)  # type: ignore[arg-type]
            conn.commit()
            seconds = time.perf_counter() - started
            server_after = _backend_cpu(conn)
            cpu = f"cpu client {time.process_time() - client_before:.1f}s"
            if server_before is not None and server_after is not None:
                cpu += f" server {server_after - server_before:.1f}s"
            note = (
                f"{cpu}; copy {result.copy_seconds:.1f}s; +{result.inserted:,} ~{result.updated:,}"
                f" -{result.deleted:,}"
            )
            out.append(_row(case, frame.height, seconds, note))
    return out


def _naive_case(url: str, frame: pl.DataFrame) -> dict[str, object]:
    sample = frame.head(BASELINE_ROWS)
    with _fresh_schema(url) as schema, psycopg.connect(url) as conn:
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(schema, "messages"),
            sql.SQL(", ").join(map(sql.Identifier, sample.columns)),
            sql.SQL(", ").join(sql.Placeholder() * sample.width),
        )
        started = time.perf_counter()
        with conn.cursor() as cur:
            for row in sample.iter_rows():
                cur.execute(statement, row)
        conn.commit()
        seconds = time.perf_counter() - started
    return _row("naive INSERT per row", sample.height, seconds, "one statement per row, one commit")


def _psql_cases(url: str, frame: pl.DataFrame) -> list[dict[str, object]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "messages.csv"
        frame.write_csv(path, include_header=False, quote_style="non_numeric")
        columns = ", ".join(frame.columns)
        with _fresh_schema(url) as schema:
            target = f'"{schema}".messages'
            started = time.perf_counter()
            subprocess.run(
                [
                    PSQL,
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    url,
                    "-c",
                    f"\\copy {target} ({columns}) FROM '{path}' (FORMAT csv)",
                ],
                check=True,
            )
            out.append(
                _row(
                    "psql \\copy CSV, indexed table",
                    frame.height,
                    time.perf_counter() - started,
                    "the floor for a logged indexed load",
                )
            )
        started = time.perf_counter()
        subprocess.run(
            [
                PSQL,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                "CREATE TEMP TABLE stage (" + ", ".join(f"{c} text" for c in frame.columns) + ")",
                "-c",
                f"\\copy stage FROM '{path}' (FORMAT csv)",
            ],
            check=True,
        )
        out.append(
            _row(
                "psql \\copy CSV, TEMP text table",
                frame.height,
                time.perf_counter() - started,
                "raw COPY floor, no index, no WAL",
            )
        )
    return out


def run(pg_url: str, rows: int = ROWS) -> list[dict[str, object]]:
    """Run every case against `pg_url`; one dict per case (case, rows, seconds, rows_per_s, note)."""
    frame = messages_frame(rows)
    results = _loader_cases(pg_url, frame)
    results.append(_naive_case(pg_url, frame))
    results.extend(_psql_cases(pg_url, frame))
    return results


def format_table(results: list[dict[str, object]]) -> str:
    """The results as a fixed-width text table."""
    lines = [f"{'case':34} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'load':>5}  note (+ins ~upd -del)"]
    for r in results:
        figures = f"{r['rows']:>10,} {r['seconds']:>8} {r['rows_per_s']:>10,} {r['load_1m']:>5}"
        lines.append(f"{r['case']!s:34} {figures}  {r['note']}")
    return "\n".join(lines)


def _default_url() -> str:
    url = os.environ.get("WAHAFLOW_BENCH_DATABASE_URL")
    if url:
        return url
    from wahaflow.settings import get_settings
    from wahaflow.warehouse.embedded import database_url

    return database_url(get_settings())


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else ROWS
    print(format_table(run(_default_url(), count)))
