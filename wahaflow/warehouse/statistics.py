"""Planner statistics of bulk-loaded tables, refreshed in the background after the load commits.

Autovacuum analyzes a bulk-loaded table only later; until then the planner sees an empty or much
smaller table, and the checks that follow a chunk run (joins over the run's messages) pick nested
loops that take seconds instead of milliseconds. So a load that grew a table by at least
`ANALYZE_SHARE` of it (and `ANALYZE_MIN_ROWS` rows) ANALYZEs it. It does so after its commit, on a
connection of its own in a thread of this process (`analyze_grown_tables`), while Dagster records
the run's materializations; the next reader that needs good plans waits for it
(`wait_for_statistics`). ANALYZE takes no lock that blocks reads or writes. A failed ANALYZE is
logged and forgotten: the statistics only make queries faster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import psycopg
from psycopg import sql

from wahaflow.warehouse.loader import LoadResult

log = logging.getLogger(__name__)

ANALYZE_MIN_ROWS = 10_000
ANALYZE_SHARE = 0.2

_pending: dict[tuple[str, str], list[threading.Thread]] = {}
_lock = threading.Lock()


def grown_enough(inserted: int, estimate: float) -> bool:
    """Whether `inserted` new rows call for an ANALYZE of a table the planner believes holds
    `estimate` rows (-1: never analyzed)."""
    return inserted >= ANALYZE_MIN_ROWS and (estimate < 0 or inserted >= ANALYZE_SHARE * estimate)


def analyze_grown_tables(url: str, schema: str, results: Mapping[str, LoadResult]) -> threading.Thread | None:
    """ANALYZE, in a thread of its own, each table of `schema` that the committed `results` grew
    enough (see `grown_enough`); None when none did."""
    tables = [table for table, result in results.items() if result.inserted >= ANALYZE_MIN_ROWS]
    if not tables:
        return None
    inserted = {table: results[table].inserted for table in tables}
    worker = threading.Thread(
        target=_analyze, args=(url, schema, inserted), name="wahaflow-analyze", daemon=False
    )
    with _lock:
        waiting = _pending.setdefault((url, schema), [])
        waiting[:] = [thread for thread in waiting if thread.is_alive()]
        waiting.append(worker)
    worker.start()
    return worker


def wait_for_statistics(url: str, schema: str) -> None:
    """Wait for the ANALYZEs this process started on `schema` (at `url`) to end."""
    with _lock:
        waiting = list(_pending.get((url, schema), ()))
    for thread in waiting:
        thread.join()


def _analyze(url: str, schema: str, inserted: Mapping[str, int]) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for table, rows in inserted.items():
                ident = sql.Identifier(schema, table)
                row = conn.execute(
                    "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [ident.as_string(conn)]
                ).fetchone()
                if row is not None and grown_enough(rows, float(row[0])):
                    conn.execute(sql.SQL("ANALYZE {}").format(ident))
    except psycopg.Error as error:
        log.warning("ANALYZE of %s after a load failed (%s); autovacuum will do it later", schema, error)
