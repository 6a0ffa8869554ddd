"""Section `e2e`: `wahaflow sync` end to end, on the same cases as the peers.

Each case runs `.venv/bin/wahaflow sync` as a child process against a simulator process, with its
configuration as shipped: the warehouse and the Dagster instance (runs, events, partitions) in one
Postgres database. That database is fresh for each case (on the bench server, dropped afterwards),
and so is `WAHAFLOW_HOME` (hence the Dagster home under it): nothing leaks between cases. A second
`wahaflow sync` follows at once (nothing new): the incremental cost. On the big account a third one
follows after 1% new messages were added to random chats (`ACTIVITY_SHARE`). Reported: process wall
time, messages/s, requests the simulator answered, peak resident memory, CPU time, the time as a
share of the full import, and the stored rows against the ground truth (exact message and session
ids, no duplicates). A first sync under 30 s is repeated, each into a fresh database, and the median
one reported, as for the peers (`common.median_run`); the incremental syncs follow the last one.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any

from benchmarks.common import (
    REPO,
    Simulator,
    Truth,
    case_name,
    check_warehouse,
    child_env,
    measured_fields,
    median_run,
    run_measured,
    temp_database,
    timed_out_fields,
    truth,
)

WAHAFLOW = REPO / ".venv" / "bin" / "wahaflow"
SCHEMA = "wahaflow"
TIMEOUT_S = 900.0
CASES: list[tuple[str, float]] = [("seed", 0), ("seed", 300), ("big", 0), ("huge", 0)]
ENGINE_CASES: list[tuple[str, float, str, int]] = [("seed", 300, "WEBJS", 32), ("seed", 300, "WEBJS", 16)]
"""Cases on an engine without the account stream (chat by chat), beside the ideal time: requests
needed x latency / `WAHAFLOW_WAHA_CONCURRENCY` (the last field)."""
CONCURRENCY = 32  # WAHAFLOW_WAHA_CONCURRENCY's default
ACTIVITY_CASES = {("big", 0)}
"""Cases followed by a sync after `ACTIVITY_SHARE` new messages (last case of their simulator)."""
ACTIVITY_SHARE = 0.01
QUICK_CASES: list[tuple[str, float]] = [("seed", 0)]


def _row(
    tool: str, case: str, measured: Any, requests: int, check: dict[str, Any], expected: Truth
) -> dict[str, Any]:
    row: dict[str, Any] = {"tool": tool, "case": case}
    if measured.timed_out:
        return row | timed_out_fields(measured, requests, TIMEOUT_S)
    if not measured.ok:
        return row | {
            "wall s": round(measured.seconds, 2),
            "requests": requests,
            "correct": False,
            "note": "not available: " + measured.error(),
        }
    fetched = check["messages"] if tool == "wahaflow" else None
    return row | measured_fields(measured, requests, check, expected, fetched)


def run_case(sim: Simulator, pg_url: str, concurrency: int = CONCURRENCY) -> list[dict[str, Any]]:
    """A first sync (the median of up to 3, each into a fresh database and WAHAFLOW_HOME, see
    `median_run`), then an incremental one (plus one after new activity, for `ACTIVITY_CASES`) on
    the last first sync's database, with `concurrency` requests in flight; one row each."""
    case = case_name(sim.preset, sim.latency_ms, sim.engine)
    if concurrency != CONCURRENCY:
        case += f", {concurrency} in flight"
    expected = truth(sim.preset, sim.engine)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as kept:  # the database and home of the last first sync
        first: dict[str, Any] = {}

        def first_sync() -> dict[str, Any]:
            kept.close()
            db_url = kept.enter_context(temp_database(pg_url, "bench_wahaflow"))
            home = kept.enter_context(tempfile.TemporaryDirectory(prefix="wahaflow-bench-"))
            first["env"] = _sync_env(sim, db_url, home, concurrency)
            first["db_url"] = db_url
            return _sync(sim, "wahaflow", case, first["env"], db_url, expected, concurrency)

        rows.append(median_run(first_sync))
        print(f"  e2e {case} wahaflow: {rows[0].get('wall s')} s, correct {rows[0].get('correct')}")
        if not rows[0].get("correct"):
            return rows
        syncs = ["wahaflow nothing new"]
        if (sim.preset, sim.latency_ms) in ACTIVITY_CASES:
            syncs.append(f"wahaflow {ACTIVITY_SHARE:.0%} new")
        for tool in syncs:
            note = ""
            if tool != "wahaflow nothing new":
                before = expected.messages
                expected, chats = sim.add_messages(round(ACTIVITY_SHARE * before))
                note = f"{expected.messages - before:,} new messages in {chats:,} chats"
            row = _sync(sim, tool, case, first["env"], first["db_url"], expected, concurrency)
            if row.get("wall s") and rows[0].get("wall s"):
                row["of full"] = f"{row['wall s'] / rows[0]['wall s']:.0%}"
            if note and row.get("note") == "ok":
                row["note"] = note
            rows.append(row)
            print(f"  e2e {case} {tool}: {row.get('wall s')} s, correct {row.get('correct')}")
            if not row.get("correct"):
                break
    return rows


def _sync_env(sim: Simulator, db_url: str, home: str, concurrency: int) -> dict[str, str]:
    # no DAGSTER_HOME: wahaflow keeps its own under WAHAFLOW_HOME, storing runs in the database
    return child_env(
        **sim.env(),
        WAHAFLOW_DATABASE_URL=db_url,
        WAHAFLOW_SCHEMA=SCHEMA,
        WAHAFLOW_HOME=home,
        WAHAFLOW_WAHA_CONCURRENCY=str(concurrency),
    )


def _sync(
    sim: Simulator,
    tool: str,
    case: str,
    env: dict[str, str],
    db_url: str,
    expected: Truth,
    concurrency: int,
) -> dict[str, Any]:
    """One measured `wahaflow sync`, checked against `expected`: its row."""
    sim.reset()
    measured = run_measured([WAHAFLOW, "sync"], env=env, timeout=TIMEOUT_S)
    requests = sim.requests()
    check = check_warehouse(db_url, SCHEMA, expected) if measured.ok else {}
    row = _row(tool, case, measured, requests, check, expected)
    if sim.engine != "NOWEB" and tool == "wahaflow" and measured.ok:
        ideal = requests * sim.latency_ms / 1000 / concurrency
        row["note"] = (
            f"ideal {ideal:.1f} s ({requests:,} requests x {sim.latency_ms:g} ms / {concurrency}); "
            f"{row['wall s'] / ideal:.2f}x"
        )
    return row


def run(pg_url: str, quick: bool = False) -> list[dict[str, Any]]:
    """Every case; a failing `wahaflow sync` gives a row noted "not available: <error>"."""
    rows: list[dict[str, Any]] = []
    cases = QUICK_CASES if quick else CASES
    for preset in dict.fromkeys(p for p, _ in cases):
        with Simulator(preset) as sim:
            for latency in (lat for p, lat in cases if p == preset):
                sim.set_latency(latency)
                rows.extend(run_case(sim, pg_url))
    for preset, latency, engine, concurrency in [] if quick else ENGINE_CASES:
        with Simulator(preset, latency, engine) as sim:
            rows.extend(run_case(sim, pg_url, concurrency))
    return rows
